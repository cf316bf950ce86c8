package hostfile

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmspace/vmspace/memmap"
)

// TestUnlinked checks that a File says it has no name left exactly when
// the host file's link count is 0, whatever its name says: a linked file
// named "... (deleted)" has one, the same file once removed has none, in
// a cached and a direct Table alike, and memfds never have one.
func TestUnlinked(t *testing.T) {
	ctx := context.Background()
	mf := newMF(t)
	for _, tab := range []*Table{NewTable(mf), NewDirectTable(mf)} {
		path := filepath.Join(t.TempDir(), "data (deleted)")
		if err := os.WriteFile(path, pattern(pg, 1), 0o600); err != nil {
			t.Fatal(err)
		}
		fd, err := tab.Open(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		f := fd.File()
		if f.Unlinked() || memmap.Unlinked(f) {
			t.Errorf("direct %v: a linked file named %q counts as unlinked", tab.direct, path)
		}
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		if !f.Unlinked() || !memmap.Unlinked(f) {
			t.Errorf("direct %v: a removed file counts as linked", tab.direct)
		}
		fd.Close(ctx)
	}
	m, err := NewMemfd(mf, "x", pg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.DecRef(ctx)
	if !m.Unlinked() || !memmap.Unlinked(m) {
		t.Error("a memfd counts as linked")
	}
}
