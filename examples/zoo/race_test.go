//go:build race

package zoo

// raceEnabled: under the race detector the test's own client, which has
// no concurrency worth checking (tok and the apps run as separate,
// uninstrumented processes), is several times slower and the zoo took six
// minutes on 2 cores; TestZoo skips, and .ci/run runs it without -race.
const raceEnabled = true
