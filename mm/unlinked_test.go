package mm

import (
	"bytes"
	"debug/elf"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/hostfile"
	"golang.org/x/sys/unix"
)

// TestCoreDumpUnlinkedByLinkCount checks that a core dump treats a shared
// file mapping as anonymous shared memory (dumped) exactly when the file
// has no name left (st_nlink 0), as Linux's vma_dump_size does: a linked
// file whose own name ends in " (deleted)" is not dumped, a removed file
// is.
func TestCoreDumpUnlinkedByLinkCount(t *testing.T) {
	const pg = hostarch.PageSize
	mf := newMF(t, 0)
	m := New(Options{MemoryFile: mf})
	defer m.DecUsers(ctx)
	dir := t.TempDir()
	var addrs []hostarch.Addr
	for i, name := range []string{"linked (deleted)", "removed"} {
		path := filepath.Join(dir, name)
		mustOK(t, "WriteFile", os.WriteFile(path, make([]byte, 2*pg), 0o600))
		fd, err := hostfile.OpenFile(mf, path, unix.O_RDWR, 0)
		mustOK(t, "open", err)
		defer fd.Close(ctx)
		a, err := m.mmapFlags(ctx, window+hostarch.Addr(i)*0x100000, 2*pg, ProtRead|ProtWrite, MapShared|MapFixed, fd, 0)
		mustOK(t, "mmap", err)
		write(t, m, a, []byte(name))
		addrs = append(addrs, a)
		if name == "removed" {
			mustOK(t, "Remove", os.Remove(path))
		}
	}
	var core bytes.Buffer
	mustOK(t, "WriteCoreDump", m.WriteCoreDump(ctx, &core, CoreNotes{Signal: int32(unix.SIGSEGV)}))
	f, err := elf.NewFile(bytes.NewReader(core.Bytes()))
	mustOK(t, "elf.NewFile", err)
	dumped := make(map[uint64]uint64)
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD {
			dumped[p.Vaddr] = p.Filesz
		}
	}
	if got := dumped[uint64(addrs[0])]; got != 0 {
		t.Errorf("a linked file named \"linked (deleted)\": %#x bytes dumped, want 0", got)
	}
	if got := dumped[uint64(addrs[1])]; got != 2*pg {
		t.Errorf("a removed file: %#x bytes dumped, want %#x", got, 2*pg)
	}
}
