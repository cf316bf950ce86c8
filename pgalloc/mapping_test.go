package pgalloc

import (
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/safemem"
)

// mappedBytes returns the address space f's internal mappings take.
func mappedBytes(f *MemoryFile) uint64 {
	f.mapMu.Lock()
	defer f.mapMu.Unlock()
	return f.mapped
}

// internalMappings counts f's mappings in /proc/self/maps.
func internalMappings(t *testing.T, name string) int {
	t.Helper()
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(maps), "memfd:"+name+" ")
}

// TestMapInternalWindows checks that where vmspace's address space has no
// room for a whole chunk, the file is mapped in 2 MiB windows, only those
// used, that data written through them is the file's, and that running out
// of address space altogether is ErrAddressSpace (ENOMEM), not a fault.
func TestMapInternalWindows(t *testing.T) {
	const name = "pgalloc-test-windows"
	f := newFile(t, Options{DisableAsyncRelease: true, Name: name, MapBudget: 3 * windowSize})
	used := func() uint64 { return mappedBytes(f) }
	a := mustAllocate(t, f, 2*windowSize, AllocOpts{}) // [0, 4M)
	b := mustAllocate(t, f, 2*windowSize, AllocOpts{}) // [4M, 8M)

	// Within one window: one block, one window mapped.
	one, err := f.MapInternal(memmap.FileRange{Start: page, End: 3 * page}, hostarch.ReadWrite)
	if err != nil || one.NumBlocks() != 1 || one.NumBytes() != 2*page {
		t.Fatalf("MapInternal in a window = %v, %v; want one block of %#x bytes", one, err, 2*page)
	}
	if used() != windowSize || internalMappings(t, name) != 1 {
		t.Errorf("%#x bytes in %d mappings after mapping two pages; want one window", used(), internalMappings(t, name))
	}
	if _, err := safemem.Copy(one.Head(), safemem.BlockFromSafeSlice([]byte("in window 0"))); err != nil {
		t.Fatalf("writing through the window: %v", err)
	}
	if got := fileBytes(t, f, memmap.FileRange{Start: page, End: page + 11}); string(got) != "in window 0" {
		t.Errorf("file at %#x = %q", page, got)
	}

	// Across windows: one block per window, each at the right offset.
	across := memmap.FileRange{Start: windowSize - page, End: windowSize + page}
	bs, err := f.MapInternal(across, hostarch.ReadWrite)
	if err != nil || bs.NumBlocks() != 2 || bs.Head().Len() != page || bs.NumBytes() != 2*page {
		t.Fatalf("MapInternal across windows = %v, %v; want two blocks of %#x bytes", bs, err, page)
	}
	src := make([]byte, 2*page)
	for i := range src {
		src[i] = byte(i*7 + 1)
	}
	if n, err := safemem.CopySeq(bs, safemem.BlockSeqOf(safemem.BlockFromSafeSlice(src))); n != 2*page || err != nil {
		t.Fatalf("copy into the windows: %d, %v", n, err)
	}
	if got := fileBytes(t, f, across); string(got) != string(src) {
		t.Errorf("file across windows differs from what was written through them")
	}
	if used() != 2*windowSize {
		t.Errorf("%#x bytes mapped; want two windows", used())
	}
	// Mapped again: no new mapping, the same memory.
	again, err := f.MapInternal(memmap.FileRange{Start: page, End: 2 * page}, hostarch.Read)
	if err != nil || string(again.Head().ToSlice()[:11]) != "in window 0" || used() != 2*windowSize {
		t.Errorf("MapInternal of a mapped window = %v, %v (%#x mapped)", again, err, used())
	}

	// Two more windows do not fit: the call fails and leaves neither
	// mapped.
	if _, err := f.MapInternal(b, hostarch.Read); !errors.Is(err, ErrAddressSpace) || used() != 2*windowSize {
		t.Errorf("MapInternal of two windows with room for one: %v, %#x mapped; want ErrAddressSpace, two windows mapped", err, used())
	}
	// Committing them needs no mapping.
	before := f.UsageCommitted()
	if err := f.Commit(b); err != nil || used() != 2*windowSize || f.UsageCommitted() < before+b.Length() {
		t.Errorf("Commit(%v) with no room to map it: %v, %#x mapped, %#x committed (%#x before)", b, err, used(), f.UsageCommitted(), before)
	}
	// A third window fits; a fourth does not: ErrAddressSpace, ENOMEM,
	// and what was mapped stays usable.
	if _, err := f.MapInternal(memmap.FileRange{Start: b.Start, End: b.Start + page}, hostarch.Read); err != nil {
		t.Fatalf("MapInternal of a third window: %v", err)
	}
	_, err = f.MapInternal(memmap.FileRange{Start: b.End - page, End: b.End}, hostarch.Read)
	if !errors.Is(err, ErrAddressSpace) || !errors.Is(err, unix.ENOMEM) {
		t.Errorf("MapInternal with no address space left: %v; want ErrAddressSpace (ENOMEM)", err)
	}
	if _, err := f.MapInternal(across, hostarch.Read); err != nil {
		t.Errorf("MapInternal of mapped windows after a failure: %v", err)
	}
	// Populating through windows commits every page.
	if err := f.Commit(memmap.FileRange{Start: a.Start, End: a.Start + windowSize}); err != nil {
		t.Errorf("Commit through a window: %v", err)
	}

	// Close unmaps every window.
	f.DecRef(a)
	f.DecRef(b)
	if err := f.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n := internalMappings(t, name); n != 0 {
		t.Errorf("%d internal mappings left after Close", n)
	}
}

// TestMapInternalWholeChunkFirst checks that a chunk is mapped whole when
// it fits, and that a later chunk that does not fit is mapped in windows
// while the first stays whole.
func TestMapInternalWholeChunkFirst(t *testing.T) {
	f := newFile(t, Options{DisableAsyncRelease: true, MapBudget: chunkSize + windowSize})
	used := func() uint64 { return mappedBytes(f) }
	a := mustAllocate(t, f, chunkSize, AllocOpts{})
	b := mustAllocate(t, f, chunkSize, AllocOpts{})
	bs, err := f.MapInternal(a, hostarch.ReadWrite)
	if err != nil || bs.NumBlocks() != 1 || used() != chunkSize {
		t.Fatalf("MapInternal of a chunk = %v, %v (%#x mapped); want one block, the chunk mapped whole", bs, err, used())
	}
	if _, err := f.MapInternal(memmap.FileRange{Start: b.Start, End: b.Start + page}, hostarch.ReadWrite); err != nil {
		t.Fatalf("MapInternal in the second chunk: %v", err)
	}
	if used() != chunkSize+windowSize {
		t.Errorf("%#x bytes mapped; want the first chunk and one window of the second", used())
	}
	// Across the boundary: the rest of the first chunk, then the window.
	across := memmap.FileRange{Start: a.End - page, End: b.Start + page}
	if bs, err := f.MapInternal(across, hostarch.Read); err != nil || bs.NumBlocks() != 2 || bs.NumBytes() != 2*page {
		t.Errorf("MapInternal across a whole chunk and a window = %v, %v", bs, err)
	}
	f.DecRef(a)
	f.DecRef(b)
}

// TestMapInternalWindowed checks that with Options.Windowed a chunk is
// mapped in windows though a whole chunk would fit: only the windows used
// take address space.
func TestMapInternalWindowed(t *testing.T) {
	const name = "pgalloc-test-windowed"
	f := newFile(t, Options{DisableAsyncRelease: true, Name: name, Windowed: true})
	a := mustAllocate(t, f, chunkSize, AllocOpts{})
	bs, err := f.MapInternal(memmap.FileRange{Start: a.Start + page, End: a.Start + 2*page}, hostarch.ReadWrite)
	if err != nil || bs.NumBytes() != page {
		t.Fatalf("MapInternal of a page = %v, %v", bs, err)
	}
	if got := mappedBytes(f); got != windowSize || internalMappings(t, name) != 1 {
		t.Errorf("%#x bytes in %d mappings after mapping a page; want one window", got, internalMappings(t, name))
	}
	if _, err := safemem.Copy(bs.Head(), safemem.BlockFromSafeSlice([]byte("windowed"))); err != nil {
		t.Fatalf("writing through the window: %v", err)
	}
	if got := fileBytes(t, f, memmap.FileRange{Start: a.Start + page, End: a.Start + page + 8}); string(got) != "windowed" {
		t.Errorf("file = %q", got)
	}
	f.DecRef(a)
}
