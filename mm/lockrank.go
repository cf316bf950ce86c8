package mm

import "github.com/vmspace/vmspace/internal/lockrank"

// mm's locks are ranked in the system's one lock order, declared in
// internal/lockrank with the locks of the other packages (hostfile's
// Mappable, Translate and internal-mapping locks, the platform's, the
// memory file's, the System V registry's): race builds and -tags lockrank
// builds check every acquisition and panic on one out of order, across
// packages; other builds compile the checks away. The names below are
// mm's short names for the table's.

// lockRank is a lock's place in the lock order.
type lockRank = lockrank.Rank

const rankActive = lockrank.Active

// lockRankChecks is true in builds that check the lock order.
const lockRankChecks = lockrank.Checks

// rankedMutex and rankedRWMutex are sync's mutexes of rank R.
type (
	rankedMutex[R lockrank.Tag]   = lockrank.Mutex[R]
	rankedRWMutex[R lockrank.Tag] = lockrank.RWMutex[R]
)

// The ranks of mm's locks (lockrank's tags).
type (
	metadataRank        = lockrank.MetadataTag
	mappingRank         = lockrank.MappingTag
	specialMappableRank = lockrank.MappableTag
	privateRefsRank     = lockrank.PrivateRefsTag
	aioManagerRank      = lockrank.AIOManagerTag
	aioContextRank      = lockrank.AIOContextTag
	aioNrRank           = lockrank.AIONrTag
	anonVMARank         = lockrank.AnonVMATag
	commitRank          = lockrank.CommitTag
	uffdRank            = lockrank.UffdTag
)

func lockRankAcquire(r lockRank, lock any, read bool) { lockrank.Acquire(r, lock, read) }
func lockRankRelease(lock any)                        { lockrank.Release(lock) }
func lockRankDowngrade(lock any)                      { lockrank.Downgrade(lock) }
func lockRankUnshared(f func())                       { lockrank.Unshared(f) }
