// Package lockrank declares vmspace's lock order once, as a table of ranks,
// and the mutexes that follow it: a Mutex or RWMutex of a rank checks, in
// race builds (as tests run) and -tags lockrank builds, that every
// acquisition comes in the order the table declares, across packages, and
// panics on one out of order; in other builds they are sync's mutexes and
// the checks compile away.
//
// A goroutine holding ranked locks may take only a lock of a higher rank
// than all of them, or of the same rank as the highest where the rank
// allows several at once (Multi: those of different objects, taken in an
// order their caller keeps consistent); under a leaf it may take no ranked
// lock at all. The order, outermost first, is the one docs/ARCHITECTURE.md
// shows ("Locks, outermost first").
package lockrank

import (
	"strings"
	"sync"
)

// Rank is a lock's place in the lock order.
type Rank uint8

// The ranks, outermost first.
const (
	None Rank = iota
	// FastPath is sandbox's fastpath.mu: the tracer thread holds it
	// whenever it is not waiting for the next report, the fast path's
	// server while it serves a call, so it is held around everything
	// the sandbox does.
	FastPath
	// ShmRegistry is kernel.ShmRegistry.mu: System V segments (shmctl
	// copies to and from a manager's memory with it held).
	ShmRegistry
	// Metadata is mm's MemoryManager.metadataMu.
	Metadata
	// Mapping is mm's MemoryManager.mappingMu.
	Mapping
	// FileTable is hostfile's Table.mu (opening, and a Table File's last
	// DecRef, which mm makes with mappingMu held).
	FileTable
	// Mappable is a Mappable's lock that mm's mapping changes take
	// (AddMapping, RemoveMapping, CopyMapping) under mappingMu and that
	// takes activeMu (Invalidate): hostfile's File.mapsMu, mm's
	// SpecialMappable.mu.
	Mappable
	// Active is mm's MemoryManager.activeMu.
	Active
	// FileData is hostfile's File.dataMu, the lock Translate takes under
	// activeMu.
	FileData
	// PrivateRefs is mm's privateRefs.mu.
	PrivateRefs
	// Platform is a platform's lock held while it maps or unmaps for a
	// manager (platform/ptrace's tracer.mu, its Platform.mu).
	Platform
	// AIOManager is mm's aioManager.mu.
	AIOManager
	// AIOContext is mm's AIOContext.mu.
	AIOContext
	// HostMem is hostfile's hostMem.mu: a directly mapped host file's
	// internal mappings, under its dataMu (closing them takes keepers.mu).
	HostMem

	// Leaves: nothing ranked is taken under them.

	// AIONr is the mutex of mm's aioNr, the system-wide count of AIO
	// events.
	AIONr
	// AnonVMA is mm's MemoryManager.anonVMAMu (faults, under mappingMu
	// for reading and activeMu).
	AnonVMA
	// Commit is mm's Commit.mu (under mappingMu).
	Commit
	// Uffd is mm's Userfaultfd.mu (under mappingMu and activeMu: queuing
	// userfaults and events, and waking them).
	Uffd
	// Shm is hostfile's Shm.mu: a System V segment's removal and
	// attachment count.
	Shm
	// Keepers is hostfile's keepers.mu: the keeper threads.
	Keepers
	// MemoryFile is pgalloc's MemoryFile.mu: the allocation state.
	MemoryFile
	// MemoryFileMap is pgalloc's MemoryFile.mapMu: the creation of chunk
	// mappings.
	MemoryFileMap
	numRanks
)

// ranks describes each rank: its locks' names; whether several locks of
// the rank may be held at once (mm's Fork holds the child's activeMu and
// then the parent's; Save locks all its managers, class by class); whether
// it is a leaf.
var ranks = [numRanks]struct {
	name        string
	multi, leaf bool
}{
	FastPath:      {name: "sandbox.fastpath.mu"},
	ShmRegistry:   {name: "kernel.ShmRegistry.mu"},
	Metadata:      {name: "mm.MemoryManager.metadataMu", multi: true},
	Mapping:       {name: "mm.MemoryManager.mappingMu", multi: true},
	FileTable:     {name: "hostfile.Table.mu"},
	Mappable:      {name: "a Mappable's lock (hostfile.File.mapsMu, mm.SpecialMappable.mu)"},
	Active:        {name: "mm.MemoryManager.activeMu", multi: true},
	FileData:      {name: "hostfile.File.dataMu"},
	PrivateRefs:   {name: "mm.privateRefs.mu"},
	Platform:      {name: "a platform lock (ptrace tracer.mu, Platform.mu)"},
	AIOManager:    {name: "mm.aioManager.mu"},
	AIOContext:    {name: "mm.AIOContext.mu"},
	AIONr:         {name: "mm.aioNr.mu", leaf: true},
	AnonVMA:       {name: "mm.MemoryManager.anonVMAMu", leaf: true},
	Commit:        {name: "mm.Commit.mu", leaf: true},
	Uffd:          {name: "mm.Userfaultfd.mu", leaf: true},
	HostMem:       {name: "hostfile.hostMem.mu"},
	Shm:           {name: "hostfile.Shm.mu", leaf: true},
	Keepers:       {name: "hostfile.keepers.mu", leaf: true},
	MemoryFile:    {name: "pgalloc.MemoryFile.mu", leaf: true},
	MemoryFileMap: {name: "pgalloc.MemoryFile.mapMu", leaf: true},
}

func (r Rank) String() string {
	if r < numRanks && ranks[r].name != "" {
		return ranks[r].name
	}
	return "lockrank.None"
}

// Tag is a type that names a rank in the type of a ranked lock, so that
// the lock needs no field for it. The tags are declared here, one per
// rank.
type Tag interface{ rank() Rank }

// The tags, one per rank.
type (
	FastPathTag      struct{}
	ShmRegistryTag   struct{}
	MetadataTag      struct{}
	MappingTag       struct{}
	FileTableTag     struct{}
	MappableTag      struct{}
	FileDataTag      struct{}
	PrivateRefsTag   struct{}
	PlatformTag      struct{}
	AIOManagerTag    struct{}
	AIOContextTag    struct{}
	AIONrTag         struct{}
	AnonVMATag       struct{}
	CommitTag        struct{}
	UffdTag          struct{}
	HostMemTag       struct{}
	ShmTag           struct{}
	KeepersTag       struct{}
	MemoryFileTag    struct{}
	MemoryFileMapTag struct{}
)

func (FastPathTag) rank() Rank      { return FastPath }
func (ShmRegistryTag) rank() Rank   { return ShmRegistry }
func (MetadataTag) rank() Rank      { return Metadata }
func (MappingTag) rank() Rank       { return Mapping }
func (FileTableTag) rank() Rank     { return FileTable }
func (MappableTag) rank() Rank      { return Mappable }
func (FileDataTag) rank() Rank      { return FileData }
func (PrivateRefsTag) rank() Rank   { return PrivateRefs }
func (PlatformTag) rank() Rank      { return Platform }
func (AIOManagerTag) rank() Rank    { return AIOManager }
func (AIOContextTag) rank() Rank    { return AIOContext }
func (AIONrTag) rank() Rank         { return AIONr }
func (AnonVMATag) rank() Rank       { return AnonVMA }
func (CommitTag) rank() Rank        { return Commit }
func (UffdTag) rank() Rank          { return Uffd }
func (HostMemTag) rank() Rank       { return HostMem }
func (ShmTag) rank() Rank           { return Shm }
func (KeepersTag) rank() Rank       { return Keepers }
func (MemoryFileTag) rank() Rank    { return MemoryFile }
func (MemoryFileMapTag) rank() Rank { return MemoryFileMap }

// Mutex is a sync.Mutex of rank R. In builds with checks, an acquisition
// out of order panics.
type Mutex[R Tag] struct {
	m sync.Mutex
}

// Lock locks l.
func (l *Mutex[R]) Lock() {
	if Checks {
		var r R
		Acquire(r.rank(), l, false)
	}
	l.m.Lock()
}

// Unlock unlocks l.
func (l *Mutex[R]) Unlock() {
	if Checks {
		Release(l)
	}
	l.m.Unlock()
}

// RWMutex is a sync.RWMutex of rank R (see Mutex).
type RWMutex[R Tag] struct {
	m sync.RWMutex
}

// Lock locks l for writing.
func (l *RWMutex[R]) Lock() {
	if Checks {
		var r R
		Acquire(r.rank(), l, false)
	}
	l.m.Lock()
}

// Unlock unlocks l for writing.
func (l *RWMutex[R]) Unlock() {
	if Checks {
		Release(l)
	}
	l.m.Unlock()
}

// TryLock locks l for writing if it is free, and reports whether it did.
func (l *RWMutex[R]) TryLock() bool {
	if !l.m.TryLock() {
		return false
	}
	if Checks {
		var r R
		note(r.rank(), l, false)
	}
	return true
}

// TryRLock locks l for reading if it can without waiting, and reports
// whether it did.
func (l *RWMutex[R]) TryRLock() bool {
	if !l.m.TryRLock() {
		return false
	}
	if Checks {
		var r R
		note(r.rank(), l, true)
	}
	return true
}

// RLock locks l for reading.
func (l *RWMutex[R]) RLock() {
	if Checks {
		var r R
		Acquire(r.rank(), l, true)
	}
	l.m.RLock()
}

// RUnlock unlocks l for reading.
func (l *RWMutex[R]) RUnlock() {
	if Checks {
		Release(l)
	}
	l.m.RUnlock()
}

// Violation runs f and returns the message of the lock-order panic it
// raised, or "" if it raised none (a test's check that an acquisition out
// of order is caught). Other panics go on.
func Violation(f func()) (msg string) {
	defer func() {
		if r := recover(); r != nil {
			s, ok := r.(string)
			if !ok || !strings.HasPrefix(s, "lockrank: ") {
				panic(r)
			}
			msg = s
		}
	}()
	f()
	return ""
}
