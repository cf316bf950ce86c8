package hostfiles

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/vmspace/vmspace/hostfile"
	"golang.org/x/sys/unix"
)

// TestLinkedNameEndsDeleted checks that a linked host file whose own name
// ends in " (deleted)" is saved as the host file it is, and restored from
// its path, not as a ghost of an unlinked file: whether a file has a name
// left is its link count, not what its /proc link shows.
func TestLinkedNameEndsDeleted(t *testing.T) {
	mf := newMF(t)
	path := filepath.Join(t.TempDir(), "host (deleted)")
	must(t, os.WriteFile(path, []byte("contents"), 0o600))
	fd, err := hostfile.OpenFile(mf, path, unix.O_RDWR, 0)
	must(t, err)
	f := fd.File()
	f.IncRef()
	fd.Close(ctx)
	img := save(t, [2]any{f, f})
	f.DecRef(ctx)
	ghosts := t.TempDir()
	ps, _, err := load(t, img, 1, Options{MemoryFile: mf, GhostDir: ghosts}, true)
	must(t, err)
	defer discard(ps)
	m, _, _ := ps[0].Build(ctx)
	g := m.(*hostfile.File)
	if got := g.MappedName(ctx); got != path {
		t.Errorf("restored as %q, want the file itself, %q", got, path)
	}
	if ents, _ := os.ReadDir(ghosts); len(ents) != 0 {
		t.Errorf("a ghost was made for a linked file: %v", ents)
	}
}
