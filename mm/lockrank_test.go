package mm

import (
	"strings"
	"testing"
)

// TestLockRankChecked checks that, in builds with lock-rank checks (race
// builds, as tests run, or -tags lockrank), taking locks in the order
// lockRanks declares works and taking one out of order panics, so that the
// test doing it fails.
func TestLockRankChecked(t *testing.T) {
	if !lockRankChecks {
		t.Skip("lock-rank checks are compiled into race builds and -tags lockrank builds only")
	}
	m, m2 := newTestMM(t), newTestMM(t)
	mustPanic := func(what string, f func()) {
		t.Helper()
		defer func() {
			r := recover()
			if s, _ := r.(string); !strings.Contains(s, "lockrank: ") {
				t.Errorf("%s: recovered %v, want a lock-rank panic", what, r)
			}
		}()
		f()
	}

	// In order, with two managers' activeMu (as Fork) and a downgrade.
	m.metadataMu.Lock()
	m.mappingMu.RLock()
	m.activeMu.Lock()
	m2.activeMu.Lock()
	m.privateRefs.mu.Lock()
	m.anonVMAMu.Lock()
	m.anonVMAMu.Unlock()
	m.privateRefs.mu.Unlock()
	m2.activeMu.Unlock()
	rt := m.activeMu.DowngradeLock()

	// Out of order: each attempt panics before it locks anything.
	mustPanic("metadataMu under activeMu", func() { m2.metadataMu.Lock() })
	mustPanic("mappingMu under activeMu", func() { m2.mappingMu.RLock() })
	mustPanic("activeMu read twice", func() { m.activeMu.RLock() })
	m.activeMu.RUnlock(rt)
	mustPanic("mappingMu read twice", func() { m.mappingMu.RLock() })
	m.anonVMAMu.Lock()
	mustPanic("a lock under a leaf", func() { m.privateRefs.mu.Lock() })
	mustPanic("a leaf under a leaf", func() { m.commitLocked().mu.Lock() })
	m.anonVMAMu.Unlock()
	m.mappingMu.RUnlock()
	m.metadataMu.Unlock()

	// Everything was released: the same locks can be taken again.
	m.mappingMu.Lock()
	m.activeMu.Lock()
	m.activeMu.Unlock()
	m.mappingMu.Unlock()
}
