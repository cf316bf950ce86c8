//go:build race

package mm

// raceEnabled is true in race-detector builds, whose instrumentation
// allocates where plain builds do not.
const raceEnabled = true
