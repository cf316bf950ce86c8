package hostfile

import (
	"context"
	"os"
	"testing"

	"github.com/vmspace/vmspace/internal/lockrank"
)

// TestLockOrderChecked checks that hostfile's locks are ranked in the
// system's lock order (internal/lockrank): in a race build, taking a
// File's mapsMu (a Mappable's lock, which comes before the memory
// manager's activeMu) while holding its dataMu (Translate's, after it)
// panics, as does taking dataMu under a directly mapped File's hostMem.mu.
func TestLockOrderChecked(t *testing.T) {
	if !lockrank.Checks {
		t.Skip("lock-rank checks are compiled into race builds and -tags lockrank builds only")
	}
	ctx := context.Background()
	tab := NewDirectTable(newMF(t))
	fd, err := tab.Open(tempFile(t, pattern(pg, 2)), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close(ctx)
	f := fd.File()
	mustPanic := func(what string, fn func()) {
		t.Helper()
		if lockrank.Violation(fn) == "" {
			t.Errorf("%s: no lock-rank panic", what)
		}
	}
	f.dataMu.RLock()
	mustPanic("mapsMu under dataMu", func() { f.mapsMu.Lock(); f.mapsMu.Unlock() })
	f.dataMu.RUnlock()
	f.hm.mu.Lock()
	mustPanic("dataMu under hostMem.mu", func() { f.dataMu.RLock(); f.dataMu.RUnlock() })
	f.hm.mu.Unlock()
	// In order.
	f.mapsMu.Lock()
	f.dataMu.Lock()
	f.hm.mu.Lock()
	f.hm.mu.Unlock()
	f.dataMu.Unlock()
	f.mapsMu.Unlock()
}
