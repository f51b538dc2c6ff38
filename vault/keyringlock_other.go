//go:build !unix

package vault

import "time"

// LockKeyringFile does nothing where flock is not available.
func LockKeyringFile(path string, wait time.Duration) (unlock func(), err error) {
	return func() {}, nil
}
