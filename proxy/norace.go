//go:build !race

package proxy

// raceEnabled is set in builds with the race detector.
const raceEnabled = false
