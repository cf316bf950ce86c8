package lockrank

import "testing"

// mustPanic runs f and fails unless it panics with a lock-rank error.
func mustPanic(t *testing.T, what string, f func()) {
	t.Helper()
	if Violation(f) == "" {
		t.Errorf("%s: no lock-rank panic", what)
	}
}

// TestOrderChecked checks, in builds with checks (race builds, as tests
// run), that locks of different packages' ranks taken in the table's
// order work, and that each inverted acquisition panics before it locks.
func TestOrderChecked(t *testing.T) {
	if !Checks {
		t.Skip("lock-rank checks are compiled into race builds and -tags lockrank builds only")
	}
	var (
		shm      Mutex[ShmRegistryTag]
		mapping  RWMutex[MappingTag]
		mappable Mutex[MappableTag]
		active   RWMutex[activeTestTag]
		data     RWMutex[FileDataTag]
		plat     Mutex[PlatformTag]
		mf       Mutex[MemoryFileTag]
		keepers  Mutex[KeepersTag]
	)
	// In order, across packages.
	shm.Lock()
	mapping.RLock()
	mappable.Lock()
	active.Lock()
	data.RLock()
	plat.Lock()
	mf.Lock()
	mf.Unlock()
	plat.Unlock()
	data.RUnlock()
	active.Unlock()
	mappable.Unlock()
	mapping.RUnlock()
	shm.Unlock()

	// Inverted: each panics.
	mf.Lock()
	mustPanic(t, "hostfile's dataMu under the memory file's lock", func() { data.RLock(); data.RUnlock() })
	mustPanic(t, "a leaf under a leaf", func() { keepers.Lock(); keepers.Unlock() })
	mf.Unlock()
	data.Lock()
	mustPanic(t, "a Mappable's lock under dataMu", func() { mappable.Lock(); mappable.Unlock() })
	mustPanic(t, "the registry under dataMu", func() { shm.Lock(); shm.Unlock() })
	mustPanic(t, "dataMu again", func() { data.RLock(); data.RUnlock() })
	data.Unlock()
	plat.Lock()
	mustPanic(t, "mappingMu under a platform lock", func() { mapping.Lock(); mapping.Unlock() })
	plat.Unlock()

	// All released: the locks can be taken again, and TryLock is
	// recorded (an Unlock of an unrecorded lock panics).
	if !data.TryLock() {
		t.Fatal("TryLock of a free lock failed")
	}
	data.Unlock()
	mappable.Lock()
	mappable.Unlock()
}

// activeTestTag is the Active rank's tag (mm's activeMu is a sharded
// lock of its own that calls Acquire directly).
type activeTestTag struct{}

func (activeTestTag) rank() Rank { return Active }

// TestEveryRankNamed checks that every rank has a name in the table and
// that the leaves come last, so that a rank added to the order is
// described.
func TestEveryRankNamed(t *testing.T) {
	leaves := false
	for r := None + 1; r < numRanks; r++ {
		if ranks[r].name == "" {
			t.Errorf("rank %d has no name", r)
		}
		if leaves && !ranks[r].leaf {
			t.Errorf("%v, not a leaf, comes after a leaf", r)
		}
		leaves = leaves || ranks[r].leaf
	}
}
