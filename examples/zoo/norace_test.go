//go:build !race

package zoo

// raceEnabled: see race_test.go.
const raceEnabled = false
