package hostfile

import (
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/safemem"
)

// openDirect opens path with flags and returns a directly mapped File for
// it, and the host descriptor (closed at the end of the test) through
// which the test changes the file behind the File's back.
func openDirect(t testing.TB, path string, flags int) (*File, *os.File) {
	t.Helper()
	hf, err := os.OpenFile(path, flags, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hf.Close() })
	f, err := NewDirectFile(newMF(t), int(hf.Fd()))
	if err != nil {
		t.Fatalf("NewDirectFile: %v", err)
	}
	return f, hf
}

// TestDirectTranslate checks that a directly mapped file translates to the
// host file itself, sees the host file's changes at once, and is a bus
// error past the host file's end as it is now.
func TestDirectTranslate(t *testing.T) {
	ctx := context.Background()
	data := pattern(3*pg, 1)
	f, hf := openDirect(t, tempFile(t, data), os.O_RDWR)
	defer f.DecRef(ctx)
	if !f.IsDirect() || !f.IsHostFile() {
		t.Fatalf("IsDirect %v IsHostFile %v", f.IsDirect(), f.IsHostFile())
	}
	ts, err := f.Translate(ctx, mr(pg, 2*pg), mr(0, 8*pg), hostarch.Read)
	if err != nil {
		t.Fatalf("Translate: %v", err)
	}
	if len(ts) != 1 || ts[0].Source != mr(0, 3*pg) || ts[0].Offset != 0 || ts[0].Perms != hostarch.AnyAccess {
		t.Fatalf("Translate = %+v, want one AnyAccess translation of [0, 3 pages) at offset 0", ts)
	}
	if ts[0].File.FD() != f.fd {
		t.Fatalf("translation's FD %d, want the File's own %d", ts[0].File.FD(), f.fd)
	}
	if ts[0].File == memmap.File(f.MemoryFile()) {
		t.Fatal("translation names the memory file")
	}
	mustEqual(t, "translated", readTranslated(t, ts, mr(0, 3*pg)), data)
	// A write by somebody else shows at once; a write through the
	// translation reaches the host file at once.
	if _, err := hf.WriteAt([]byte("other"), pg+10); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "after a host write", readTranslated(t, ts, mr(pg+10, pg+15)), []byte("other"))
	writeTranslated(t, ts, 2*pg+1, []byte("mine"))
	got := make([]byte, 4)
	if _, err := hf.ReadAt(got, 2*pg+1); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "host file after a write through the mapping", got, []byte("mine"))
	if f.CachedBytes() != 0 {
		t.Fatalf("CachedBytes %d, want 0", f.CachedBytes())
	}

	// Past the end: a bus error, and a prefix up to the end.
	if _, err := f.Translate(ctx, mr(3*pg, 4*pg), mr(3*pg, 4*pg), hostarch.Read); !memmap.IsBusError(err) {
		t.Fatalf("Translate past EOF: %v, want a BusError", err)
	}
	ts, err = f.Translate(ctx, mr(2*pg, 4*pg), mr(2*pg, 4*pg), hostarch.Read)
	if !memmap.IsBusError(err) || len(ts) != 1 || ts[0].Source != mr(2*pg, 3*pg) {
		t.Fatalf("Translate across EOF = %+v, %v; want [2, 3 pages) and a BusError", ts, err)
	}
	// The host file grows behind the File's back: the pages are valid at
	// once, and read as what the host says.
	if err := hf.Truncate(5*pg + 1); err != nil {
		t.Fatal(err)
	}
	if f.Size() != 5*pg+1 {
		t.Fatalf("Size %d after the host grew the file", f.Size())
	}
	ts, err = f.Translate(ctx, mr(5*pg, 6*pg), mr(5*pg, 6*pg), hostarch.Read)
	if err != nil {
		t.Fatalf("Translate of the grown file: %v", err)
	}
	mustEqual(t, "grown page", readTranslated(t, ts, mr(5*pg, 6*pg)), make([]byte, pg))
}

// TestDirectInternalBusError checks that an internal access to a page
// past the host file's end fails with SIGBUS (safemem) instead of crashing,
// and works again once the file grows.
func TestDirectInternalBusError(t *testing.T) {
	ctx := context.Background()
	f, hf := openDirect(t, tempFile(t, pattern(2*pg, 2)), os.O_RDWR)
	defer f.DecRef(ctx)
	ts, err := f.Translate(ctx, mr(0, 2*pg), mr(0, 2*pg), hostarch.Read)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := ts[0].File.MapInternal(memmap.FileRange{Start: pg, End: 2 * pg}, hostarch.Read)
	if err != nil {
		t.Fatal(err)
	}
	if err := hf.Truncate(pg); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, pg)
	_, err = safemem.CopySeq(safemem.BlockSeqOf(safemem.BlockFromSafeSlice(buf)), bs)
	var fe *safemem.FaultError
	if !errors.As(err, &fe) || fe.Signal != unix.SIGBUS {
		t.Fatalf("copy past EOF: %v, want a SIGBUS FaultError", err)
	}
	if err := hf.Truncate(2 * pg); err != nil {
		t.Fatal(err)
	}
	if _, err := safemem.CopySeq(safemem.BlockSeqOf(safemem.BlockFromSafeSlice(buf)), bs); err != nil {
		t.Fatalf("copy after growing again: %v", err)
	}
	mustEqual(t, "regrown page", buf, make([]byte, pg))
}

// TestDirectIO checks ReadAt, WriteAt, Truncate and Punch of a directly
// mapped file: they act on the host file, mappings see them, and
// shrinking invalidates every mapping past the new end.
func TestDirectIO(t *testing.T) {
	ctx := context.Background()
	data := pattern(4*pg, 3)
	f, hf := openDirect(t, tempFile(t, data), os.O_RDWR)
	defer f.DecRef(ctx)
	ms := &fakeMS{}
	if err := f.AddMapping(ctx, ms, ar(0x10000, 0x10000+4*pg), 0, true); err != nil {
		t.Fatal(err)
	}
	defer f.RemoveMapping(ctx, ms, ar(0x10000, 0x10000+4*pg), 0, true)
	ts, err := f.Translate(ctx, mr(0, 4*pg), mr(0, 4*pg), hostarch.Write)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := f.WriteAt([]byte("written"), 100); n != 7 || err != nil {
		t.Fatalf("WriteAt = %d, %v", n, err)
	}
	mustEqual(t, "mapping after WriteAt", readTranslated(t, ts, mr(100, 107)), []byte("written"))
	writeTranslated(t, ts, 200, []byte("mapped"))
	got := make([]byte, 6)
	if n, err := f.ReadAt(got, 200); n != 6 || err != nil {
		t.Fatalf("ReadAt = %d, %v", n, err)
	}
	mustEqual(t, "ReadAt after a write through the mapping", got, []byte("mapped"))
	if n, err := f.ReadAt(make([]byte, 2*pg), 3*pg); n != pg || err != io.EOF {
		t.Fatalf("ReadAt across EOF = %d, %v; want %d, EOF", n, err, pg)
	}

	if err := f.Punch(ctx, mr(pg, 2*pg)); err != nil {
		t.Fatalf("Punch: %v", err)
	}
	mustEqual(t, "punched page", readTranslated(t, ts, mr(pg, 2*pg)), make([]byte, pg))
	if calls := ms.take(); len(calls) != 0 {
		t.Fatalf("Punch invalidated %v; the host's mappings need nothing", calls)
	}

	if err := f.Truncate(ctx, pg+5); err != nil {
		t.Fatalf("Truncate: %v", err)
	}
	if fi, _ := hf.Stat(); fi.Size() != pg+5 {
		t.Fatalf("host size %d after Truncate", fi.Size())
	}
	calls := ms.take()
	if len(calls) != 1 || calls[0].ar != ar(0x10000+2*pg, 0x10000+4*pg) || !calls[0].opts.InvalidatePrivate {
		t.Fatalf("Truncate invalidated %v, want the pages past the new end, private copies too", calls)
	}
	if err := f.Truncate(ctx, 4*pg); err != nil {
		t.Fatal(err)
	}
	if calls := ms.take(); len(calls) != 0 {
		t.Fatalf("growing invalidated %v", calls)
	}
}

// TestDirectLifetime checks that the host descriptor and internal mappings
// outlive the File's last reference while page references remain, and go
// with the last one.
func TestDirectLifetime(t *testing.T) {
	ctx := context.Background()
	f, _ := openDirect(t, tempFile(t, pattern(2*pg, 4)), os.O_RDONLY)
	ts, err := f.Translate(ctx, mr(0, 2*pg), mr(0, 2*pg), hostarch.Read)
	if err != nil {
		t.Fatal(err)
	}
	if ts[0].Perms != hostarch.ReadExecute {
		t.Fatalf("perms of a read-only file: %v", ts[0].Perms)
	}
	if _, err := ts[0].File.MapInternal(memmap.FileRange{Start: 0, End: pg}, hostarch.Write); !errors.Is(err, unix.EACCES) {
		t.Fatalf("writable MapInternal of a read-only file: %v, want EACCES", err)
	}
	if _, err := f.Translate(ctx, mr(0, pg), mr(0, pg), hostarch.Write); !errors.Is(err, unix.EACCES) {
		t.Fatalf("writable Translate of a read-only file: %v, want EACCES", err)
	}
	hm := ts[0].File
	fd := hm.FD()
	hm.IncRef(memmap.FileRange{Start: 0, End: 2 * pg})
	f.DecRef(ctx)
	if err := unix.FcntlFlock(uintptr(fd), unix.F_GETLK, &unix.Flock_t{Type: unix.F_RDLCK}); err != nil {
		t.Fatalf("descriptor closed while pages are referenced: %v", err)
	}
	mustEqual(t, "after the File's last reference", readMF(t, hm, memmap.FileRange{Start: 0, End: 2 * pg}), pattern(2*pg, 4))
	// Dropped in two pieces, as split pmas do.
	hm.DecRef(memmap.FileRange{Start: 0, End: pg})
	if hm.FD() != fd {
		t.Fatal("descriptor closed with a page still referenced")
	}
	hm.DecRef(memmap.FileRange{Start: pg, End: 2 * pg})
	if hm.FD() != -1 {
		t.Fatalf("FD %d after the last page reference, want -1", hm.FD())
	}
	if _, err := hm.MapInternal(memmap.FileRange{Start: 0, End: pg}, hostarch.Read); !errors.Is(err, unix.EBADF) {
		t.Fatalf("MapInternal after close: %v, want EBADF", err)
	}
}

// TestDirectResident checks that residency is the host page cache's, as
// a mapping of the host file made by anybody sees it.
func TestDirectResident(t *testing.T) {
	ctx := context.Background()
	f, hf := openDirect(t, tempFile(t, pattern(4*pg, 5)), os.O_RDWR)
	defer f.DecRef(ctx)
	fd := int(hf.Fd())
	// Drop the clean pages, then bring page 2 back.
	unix.Fsync(fd)
	unix.Fadvise(fd, 0, 4*pg, unix.FADV_DONTNEED)
	if _, err := hf.ReadAt(make([]byte, 1), 2*pg); err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(fd, 0, 4*pg, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	want := make([]byte, 4)
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&want[0]))); e != 0 {
		t.Fatal(e)
	}
	for i := range want {
		want[i] &= 1
	}
	out := make([]byte, 4)
	f.Resident(mr(0, 4*pg), out)
	mustEqual(t, "Resident against the host's mincore", out, want)
	if want[2] != 1 || want[0] != 0 {
		t.Skipf("this file system keeps dropped pages (mincore %v): the comparison is weak", want)
	}
}

// TestDirectTable checks that a direct Table makes directly mapped Files,
// one per inode.
func TestDirectTable(t *testing.T) {
	ctx := context.Background()
	mf := newMF(t)
	path := tempFile(t, pattern(pg, 6))
	tab := NewDirectTable(mf)
	a, err := tab.Open(path, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	b, err := tab.Open(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	if a.File() != b.File() || !a.File().IsDirect() || tab.Len() != 1 {
		t.Fatalf("same inode: Files %p %p direct %v, table of %d", a.File(), b.File(), a.File().IsDirect(), tab.Len())
	}
	if !a.File().CanWrite() {
		t.Fatal("the File was not upgraded to the read-write descriptor")
	}
	if NewTable(mf).direct {
		t.Fatal("NewTable makes a direct table")
	}
}

// TestDirectHostTruncated checks that a Table told of a truncation made
// behind its Files' back invalidates every mapping from the first page
// boundary at or after the truncation point or the host file's end,
// private copies included, and nothing for inodes it does not hold.
func TestDirectHostTruncated(t *testing.T) {
	ctx := context.Background()
	path := tempFile(t, pattern(6*pg, 7))
	tab := NewDirectTable(newMF(t))
	fd, err := tab.Open(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close(ctx)
	f := fd.File()
	ms := &fakeMS{}
	if err := f.AddMapping(ctx, ms, ar(0x10000, 0x10000+6*pg), 0, false); err != nil {
		t.Fatal(err)
	}
	defer f.RemoveMapping(ctx, ms, ar(0x10000, 0x10000+6*pg), 0, false)
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	dev, ino := uint64(st.Dev), st.Ino
	if !tab.Has(dev, ino) || tab.Has(dev, ino+1) {
		t.Fatalf("Has: %v for the file, %v for another inode", tab.Has(dev, ino), tab.Has(dev, ino+1))
	}
	if tab.HostTruncated(dev, ino+1, 0) || len(ms.take()) != 0 {
		t.Fatal("HostTruncated of an inode the table does not hold did something")
	}
	for _, c := range []struct {
		name       string
		size, from uint64
		want       hostarch.AddrRange
	}{
		// A truncation to 2 pages and 5 bytes: the partial page stays.
		{"truncate", 2*pg + 5, ^uint64(0), ar(0x10000+3*pg, 0x10000+6*pg)},
		// A collapse at page 1 (the file is 5 pages then).
		{"collapse", 5 * pg, pg, ar(0x10000+pg, 0x10000+6*pg)},
		// A truncation to 0.
		{"truncate to 0", 0, ^uint64(0), ar(0x10000, 0x10000+6*pg)},
	} {
		if err := os.Truncate(path, int64(c.size)); err != nil {
			t.Fatal(err)
		}
		if !tab.HostTruncated(dev, ino, c.from) {
			t.Fatalf("%s: HostTruncated does not know the file", c.name)
		}
		calls := ms.take()
		if len(calls) != 1 || calls[0].ar != c.want || !calls[0].opts.InvalidatePrivate {
			t.Errorf("%s: invalidated %v, want %v with private copies", c.name, calls, c.want)
		}
	}
}

// TestDirectChunkSize checks that the internal mappings of a directly
// mapped host file are sized by the file: 2 MiB for a small file (not 64
// MiB of vmspace's address space), larger for a large one, and that
// accesses across chunks see the file.
func TestDirectChunkSize(t *testing.T) {
	for _, c := range []struct {
		size  int64
		shift uint
	}{{pg, 21}, {64 << 20, 21}, {64<<20 + 1, 22}, {1 << 40, 26}} {
		if got := directChunkShiftFor(uint64(c.size)); got != c.shift {
			t.Errorf("directChunkShiftFor(%#x) = %d, want %d", c.size, got, c.shift)
		}
	}
	data := pattern(3*pg, 4)
	path := tempFile(t, data)
	if err := os.Truncate(path, 5<<20); err != nil {
		t.Fatal(err)
	}
	f, _ := openDirect(t, path, os.O_RDWR)
	defer f.DecRef(context.Background())
	fr := memmap.FileRange{Start: 2<<20 - pg, End: 2<<20 + pg}
	ims, err := f.hm.MapInternal(fr, hostarch.Write)
	if err != nil {
		t.Fatal(err)
	}
	if ims.NumBlocks() != 2 {
		t.Fatalf("a range across 2 MiB is %d blocks, want 2 (one per chunk)", ims.NumBlocks())
	}
	if _, err := safemem.CopySeq(ims, safemem.BlockSeqOf(safemem.BlockFromSafeSlice(pattern(2*pg, 9)))); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 2*pg)
	hf, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer hf.Close()
	if _, err := hf.ReadAt(got, int64(fr.Start)); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "written across chunks", got, pattern(2*pg, 9))
	f.hm.mu.Lock()
	shift, n := f.hm.shift, len(f.hm.chunks)
	f.hm.mu.Unlock()
	if shift != 21 || n != 2 {
		t.Fatalf("chunks of 1<<%d bytes, %d of them; want 2 MiB ones, 2", shift, n)
	}
}
