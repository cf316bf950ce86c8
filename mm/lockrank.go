package mm

import "sync"

// lockRank is a lock's place in mm's lock order. A goroutine holding locks
// may take only a lock of a higher rank than all of them, or of the same
// rank as the highest where lockRanks allows several (those of different
// managers, taken in an order their caller makes consistent).
//
// Locks of other packages have places in the order too (see the package
// documentation): Mappable locks come between mappingMu and activeMu, the
// locks Translate takes between activeMu and privateRefs.mu, the platform
// AddressSpace's and the memory file's after privateRefs.mu. Only mm's own
// locks are ranked and checked.
type lockRank uint8

const (
	rankNone lockRank = iota
	// rankMetadata is MemoryManager.metadataMu.
	rankMetadata
	// rankMapping is MemoryManager.mappingMu.
	rankMapping
	// rankSpecialMappable is SpecialMappable.mu, taken by AddMapping and
	// CopyMapping (a Mappable's lock) under mappingMu.
	rankSpecialMappable
	// rankActive is MemoryManager.activeMu.
	rankActive
	// rankPrivateRefs is privateRefs.mu.
	rankPrivateRefs
	// rankAIOManager is aioManager.mu.
	rankAIOManager
	// rankAIOContext is AIOContext.mu.
	rankAIOContext
	// rankAIONr is the mutex of aioNr, the system-wide count of AIO
	// events: a leaf.
	rankAIONr
	// rankAnonVMA is MemoryManager.anonVMAMu, taken by faults under
	// mappingMu (read) and activeMu: a leaf.
	rankAnonVMA
	// rankCommit is Commit.mu, taken under mappingMu: a leaf.
	rankCommit
	// rankUffd is Userfaultfd.mu, taken under mappingMu and activeMu: a
	// leaf.
	rankUffd
	numLockRanks
)

// lockRanks describes each rank: its lock's name; whether several locks of
// the rank may be held at once (multi: Fork holds the child's activeMu and
// then the parent's; Save locks all its managers, class by class); whether
// it is a leaf, under which nothing ranked may be taken.
var lockRanks = [numLockRanks]struct {
	name        string
	multi, leaf bool
}{
	rankMetadata:        {name: "MemoryManager.metadataMu", multi: true},
	rankMapping:         {name: "MemoryManager.mappingMu", multi: true},
	rankSpecialMappable: {name: "SpecialMappable.mu"},
	rankActive:          {name: "MemoryManager.activeMu", multi: true},
	rankPrivateRefs:     {name: "privateRefs.mu"},
	rankAIOManager:      {name: "aioManager.mu"},
	rankAIOContext:      {name: "AIOContext.mu"},
	rankAIONr:           {name: "aioNr.mu", leaf: true},
	rankAnonVMA:         {name: "MemoryManager.anonVMAMu", leaf: true},
	rankCommit:          {name: "Commit.mu", leaf: true},
	rankUffd:            {name: "Userfaultfd.mu", leaf: true},
}

func (r lockRank) String() string {
	if r < numLockRanks && lockRanks[r].name != "" {
		return lockRanks[r].name
	}
	return "rankNone"
}

// rankTag types name a rank in the type of a ranked lock, so that the lock
// needs no field for it.
type rankTag interface{ rank() lockRank }

type (
	metadataRank        struct{}
	mappingRank         struct{}
	specialMappableRank struct{}
	privateRefsRank     struct{}
	aioManagerRank      struct{}
	aioContextRank      struct{}
	aioNrRank           struct{}
	anonVMARank         struct{}
	commitRank          struct{}
	uffdRank            struct{}
)

func (metadataRank) rank() lockRank        { return rankMetadata }
func (mappingRank) rank() lockRank         { return rankMapping }
func (specialMappableRank) rank() lockRank { return rankSpecialMappable }
func (privateRefsRank) rank() lockRank     { return rankPrivateRefs }
func (aioManagerRank) rank() lockRank      { return rankAIOManager }
func (aioContextRank) rank() lockRank      { return rankAIOContext }
func (aioNrRank) rank() lockRank           { return rankAIONr }
func (anonVMARank) rank() lockRank         { return rankAnonVMA }
func (commitRank) rank() lockRank          { return rankCommit }
func (uffdRank) rank() lockRank            { return rankUffd }

// rankedMutex is a sync.Mutex of rank R. In builds with lock-rank checks
// (lockrank_check.go: race builds, as tests run, or -tags lockrank), an
// acquisition out of order panics; in others it is a sync.Mutex.
type rankedMutex[R rankTag] struct {
	m sync.Mutex
}

// Lock locks l.
func (l *rankedMutex[R]) Lock() {
	if lockRankChecks {
		var r R
		lockRankAcquire(r.rank(), l, false)
	}
	l.m.Lock()
}

// Unlock unlocks l.
func (l *rankedMutex[R]) Unlock() {
	if lockRankChecks {
		lockRankRelease(l)
	}
	l.m.Unlock()
}

// rankedRWMutex is a sync.RWMutex of rank R (see rankedMutex).
type rankedRWMutex[R rankTag] struct {
	m sync.RWMutex
}

// Lock locks l for writing.
func (l *rankedRWMutex[R]) Lock() {
	if lockRankChecks {
		var r R
		lockRankAcquire(r.rank(), l, false)
	}
	l.m.Lock()
}

// Unlock unlocks l for writing.
func (l *rankedRWMutex[R]) Unlock() {
	if lockRankChecks {
		lockRankRelease(l)
	}
	l.m.Unlock()
}

// RLock locks l for reading.
func (l *rankedRWMutex[R]) RLock() {
	if lockRankChecks {
		var r R
		lockRankAcquire(r.rank(), l, true)
	}
	l.m.RLock()
}

// RUnlock unlocks l for reading.
func (l *rankedRWMutex[R]) RUnlock() {
	if lockRankChecks {
		lockRankRelease(l)
	}
	l.m.RUnlock()
}
