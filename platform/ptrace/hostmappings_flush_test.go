package ptrace

import (
	"fmt"
	"testing"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
)

// TestFlushExcept checks that FlushExcept makes the pending unmaps but
// for the parts that lie in the ranges kept, which stay pending for a
// later Flush, also when the caller refuses midway.
func TestFlushExcept(t *testing.T) {
	const pg = hostarch.PageSize
	f := newTestFile(t, 1, 16)
	var h HostMappings
	c := &recordingCaller{}
	base := hostarch.Addr(0x10000000)
	page := func(i int) hostarch.Addr { return base + hostarch.Addr(i)*pg }
	if err := h.MapFile(base, f, memmap.FileRange{Start: 0, End: 16 * pg}, hostarch.ReadWrite, false, c); err != nil {
		t.Fatal(err)
	}
	c.calls = nil
	h.Unmap(page(0), 8*pg)
	h.Unmap(page(10), 4*pg)
	keep := []hostarch.AddrRange{
		{Start: page(2), End: page(3)},
		{Start: page(5), End: page(7)},
		{Start: page(13), End: page(15)}, // partly outside what is pending
		{Start: page(9), End: page(10)},  // not pending at all
	}
	c.refuse = true
	if h.FlushExcept(c, keep) {
		t.Error("FlushExcept succeeded although the caller refused")
	}
	c.refuse = false
	if h.FlushExcept(c, keep) || !h.Pending() {
		t.Error("FlushExcept reports nothing pending although pages were kept")
	}
	want := []string{
		"munmap 0x10000000-0x10002000", "munmap 0x10003000-0x10005000", "munmap 0x10007000-0x10008000",
		"munmap 0x1000a000-0x1000d000",
	}
	if fmt.Sprint(c.calls) != fmt.Sprint(want) {
		t.Errorf("FlushExcept made %q, want %q", c.calls, want)
	}
	c.calls = nil
	if !h.Flush(c) || h.Pending() {
		t.Error("Flush left unmaps pending")
	}
	want = []string{"munmap 0x10002000-0x10003000", "munmap 0x10005000-0x10007000", "munmap 0x1000d000-0x1000e000"}
	if fmt.Sprint(c.calls) != fmt.Sprint(want) {
		t.Errorf("the later Flush made %q, want %q", c.calls, want)
	}
}

// TestProtect checks that Protect lowers the recorded permissions within
// its range only, so that Covers and MapFile see what the host maps after
// its user's mprotect: a later MapFile with the lower permissions makes
// no call, one with write access maps again.
func TestProtect(t *testing.T) {
	const pg = hostarch.PageSize
	f := newTestFile(t, 1, 16)
	var h HostMappings
	c := &recordingCaller{}
	base := hostarch.Addr(0x10000000)
	page := func(i int) hostarch.Addr { return base + hostarch.Addr(i)*pg }
	if err := h.MapFile(base, f, memmap.FileRange{Start: 0, End: 8 * pg}, hostarch.ReadWrite, false, c); err != nil {
		t.Fatal(err)
	}
	gen := h.Generation()
	h.Protect(hostarch.AddrRange{Start: page(2), End: page(4)}, hostarch.Read)
	if h.Generation() == gen {
		t.Error("Protect left the generation as it was")
	}
	if h.Covers(hostarch.AddrRange{Start: page(2), End: page(3)}, hostarch.Write) {
		t.Error("a protected page is still recorded writable")
	}
	if !h.Covers(hostarch.AddrRange{Start: page(0), End: page(2)}, hostarch.Write) || !h.Covers(hostarch.AddrRange{Start: page(4), End: page(8)}, hostarch.Write) {
		t.Error("Protect changed pages outside its range")
	}
	if !h.Covers(hostarch.AddrRange{Start: page(0), End: page(8)}, hostarch.Read) {
		t.Error("Protect unmapped pages")
	}
	c.calls = nil
	if err := h.MapFile(page(2), f, memmap.FileRange{Start: 2 * pg, End: 4 * pg}, hostarch.Read, false, c); err != nil || len(c.calls) != 0 {
		t.Errorf("MapFile read-only of the protected pages made %q (%v), want nothing", c.calls, err)
	}
	if err := h.MapFile(page(2), f, memmap.FileRange{Start: 2 * pg, End: 3 * pg}, hostarch.ReadWrite, false, c); err != nil || len(c.calls) != 1 {
		t.Errorf("MapFile writable of a protected page made %q (%v), want one mmap", c.calls, err)
	}
}
