//go:build race

package bolt

// Under the race detector every Open's scan of two 32 MiB log segments
// takes seconds and the package's tests took over ten minutes; 1 MiB
// segments exercise the same code.
func init() { defaultSegmentSize = 1 << 20 }
