//go:build race

package e2e

// raceEnabled: under the race detector the test client runs several times
// slower, so the load tests scale down; .ci/run also runs them without it
// at full size.
const raceEnabled = true
