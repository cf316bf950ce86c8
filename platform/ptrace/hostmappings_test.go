package ptrace

import (
	"fmt"
	"testing"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
)

// recordingCaller is a Caller that only records the calls it is asked to
// make.
type recordingCaller struct {
	calls []string
	// refuse makes Unmap report that it cannot unmap now.
	refuse bool
}

func (c *recordingCaller) Map(rs []hostarch.AddrRange, m Mapping, precommit bool) (int, error) {
	for _, r := range rs {
		c.calls = append(c.calls, fmt.Sprintf("mmap %#x-%#x off %#x", uint64(r.Start), uint64(r.End), uint64(r.Start)+m.Delta))
	}
	return len(rs), nil
}

func (c *recordingCaller) Unmap(ar hostarch.AddrRange) bool {
	if c.refuse {
		return false
	}
	c.calls = append(c.calls, fmt.Sprintf("munmap %#x-%#x", uint64(ar.Start), uint64(ar.End)))
	return true
}

// TestHostMappings checks the driver's bookkeeping: MapFile makes host
// calls only for what is not mapped that way already, Unmap defers its
// munmap until Flush (or a MapFile over the range takes its place), stale
// pieces inherited at a fork are mapped over unless trusted, and Covers
// and the generation follow.
func TestHostMappings(t *testing.T) {
	const pg = hostarch.PageSize
	f := newTestFile(t, 1, 16)
	g := newTestFile(t, 2, 16)
	var h HostMappings
	c := &recordingCaller{}
	base := hostarch.Addr(0x10000000)
	expect := func(what string, want ...string) {
		t.Helper()
		if fmt.Sprint(c.calls) != fmt.Sprint(want) {
			t.Errorf("%s: calls %q, want %q", what, c.calls, want)
		}
		c.calls = nil
	}
	mapFile := func(addr hostarch.Addr, f memmap.File, off, n uint64, at hostarch.AccessType) {
		t.Helper()
		if err := h.MapFile(addr, f, memmap.FileRange{Start: off, End: off + n}, at, false, c); err != nil {
			t.Fatal(err)
		}
	}
	mapFile(base+pg, f, pg, 2*pg, hostarch.Read)
	expect("first map", "mmap 0x10001000-0x10003000 off 0x1000")
	gen := h.Generation()
	mapFile(base, f, 0, 4*pg, hostarch.Read)
	expect("a wider map", "mmap 0x10000000-0x10001000 off 0x0", "mmap 0x10003000-0x10004000 off 0x3000")
	if h.Generation() == gen {
		t.Error("the generation did not change with a mapping")
	}
	mapFile(base, f, 0, 4*pg, hostarch.Read)
	expect("the same again")
	mapFile(base, f, 0, 2*pg, hostarch.ReadWrite)
	expect("other permissions", "mmap 0x10000000-0x10002000 off 0x0")
	if !h.Covers(hostarch.AddrRange{Start: base, End: base + 4*pg}, hostarch.Read) || h.Covers(hostarch.AddrRange{Start: base, End: base + 4*pg}, hostarch.Write) {
		t.Error("Covers disagrees with what was mapped")
	}
	if err := h.MapFile(base+1, f, memmap.FileRange{Start: 0, End: pg}, hostarch.Read, false, c); err == nil {
		t.Error("MapFile of an unaligned address succeeded")
	}
	if err := h.MapFile(StubStart-pg, f, memmap.FileRange{Start: 0, End: 2 * pg}, hostarch.Read, false, c); err == nil {
		t.Error("MapFile past StubStart succeeded")
	}

	// Deferred unmaps.
	if !h.Unmap(base+pg, 2*pg) || h.Unmap(base+8*pg, pg) {
		t.Error("Unmap reports wrongly what was mapped")
	}
	expect("a deferred unmap")
	if h.Covers(hostarch.AddrRange{Start: base + pg, End: base + 2*pg}, hostarch.Read) || !h.Pending() {
		t.Error("an unmapped range still shows, or nothing is pending")
	}
	mapFile(base+2*pg, g, 0, pg, hostarch.Read)
	expect("a map over a pending unmap", "mmap 0x10002000-0x10003000 off 0x0")
	c.refuse = true
	if h.Flush(c) || !h.Pending() {
		t.Error("Flush succeeded although the caller refused")
	}
	c.refuse = false
	if !h.Flush(c) || h.Pending() {
		t.Error("Flush left unmaps pending")
	}
	expect("the flush: only what no map replaced", "munmap 0x10001000-0x10002000")

	// A fork child's inherited mappings.
	var child HostMappings
	child.Inherit(h.PiecesIn([]hostarch.AddrRange{{Start: base, End: base + 4*pg}}))
	if got := child.StalePieces(hostarch.AddrRange{Start: base, End: base + 4*pg}); len(got) != 3 {
		t.Errorf("stale pieces %v, want 3", got)
	}
	if err := child.MapFile(base+3*pg, f, memmap.FileRange{Start: 3 * pg, End: 4 * pg}, hostarch.Read, false, c); err != nil {
		t.Fatal(err)
	}
	expect("untrusted stale piece", "mmap 0x10003000-0x10004000 off 0x3000")
	child.SetTrustStale(true)
	if err := child.MapFile(base, f, memmap.FileRange{Start: 0, End: pg}, hostarch.ReadWrite, false, c); err != nil {
		t.Fatal(err)
	}
	expect("trusted stale piece: confirmed")
	child.SetTrustStale(false)
	if got := child.StalePieces(hostarch.AddrRange{Start: base, End: base + 4*pg}); fmt.Sprint(got) != fmt.Sprint([]hostarch.AddrRange{{Start: base + 2*pg, End: base + 3*pg}}) {
		t.Errorf("stale pieces after confirming: %v", got)
	}
	child.Forget(hostarch.AddrRange{Start: base + 2*pg, End: base + 3*pg})
	if len(child.StalePieces(hostarch.AddrRange{Start: base, End: base + 4*pg})) != 0 {
		t.Error("a forgotten piece is still there")
	}

	// Files of a type that cannot be compared are never taken as
	// mapped.
	sf := sliceFile{fd: f.fd}
	mapFile(base+8*pg, sf, 0, pg, hostarch.Read)
	mapFile(base+8*pg, sf, 0, pg, hostarch.Read)
	expect("a non-comparable File", "mmap 0x10008000-0x10009000 off 0x0", "mmap 0x10008000-0x10009000 off 0x0")
}
