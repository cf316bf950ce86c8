//go:build !race && !lockrank

package mm

// lockRankChecks is false: ranked locks are plain mutexes, and the calls
// below are compiled away.
const lockRankChecks = false

func lockRankAcquire(lockRank, any, bool) {}
func lockRankRelease(any)                 {}
func lockRankDowngrade(any)               {}
func lockRankUnshared(f func())           { f() }
