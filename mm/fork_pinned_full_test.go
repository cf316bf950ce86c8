package mm

import (
	"testing"

	"github.com/vmspace/vmspace/hostarch"
)

// TestForkPinnedWhenFull: when the memory file cannot supply the child's
// copies of pinned pages, ForkPinned shares them copy-on-write instead, and
// the child's pmas then map the parent's pages at their own offsets: a
// pinned range whose pages hold data in two runs (the second not at the
// start of the parent's pma) reads the parent's bytes in the child, and
// every page goes back to the memory file when both are released.
func TestForkPinnedWhenFull(t *testing.T) {
	for _, limit := range []uint64{0, 1 << 20} {
		mf := newMF(t, limit)
		m := New(Options{MemoryFile: mf})
		mustOK(t, "Activate", m.Activate(ctx))
		a := mustMap(t, m, anon(window, 0x10000, hostarch.ReadWrite))
		for _, off := range []hostarch.Addr{0, 0x2000} {
			if _, err := m.CopyOut(ctx, a+off, []byte{byte('A' + off>>12)}, IOOpts{}); err != nil {
				t.Fatal(err)
			}
		}
		if limit != 0 {
			// Fill the memory file.
			for i := hostarch.Addr(0); ; i++ {
				b := mustMap(t, m, anon(window+0x100000+i*0x2000, 0x1000, hostarch.ReadWrite))
				if _, err := m.CopyOut(ctx, b, []byte{1}, IOOpts{}); err != nil {
					break
				}
			}
		}
		c, _, err := m.ForkPinned(ctx, []hostarch.AddrRange{{Start: a, End: a + 0x3000}})
		mustOK(t, "ForkPinned", err)
		for _, off := range []hostarch.Addr{0, 0x2000} {
			b := make([]byte, 1)
			if _, err := c.CopyIn(ctx, a+off, b, IOOpts{}); err != nil || b[0] != byte('A'+off>>12) {
				t.Errorf("limit %#x: the child reads %q (%v) at +%#x, want %q", limit, b, err, uint64(off), string(rune('A'+off>>12)))
			}
		}
		if err := c.CheckInvariants(); err != nil {
			t.Errorf("limit %#x: child: %v", limit, err)
		}
		if err := m.CheckInvariants(); err != nil {
			t.Errorf("limit %#x: parent: %v", limit, err)
		}
		c.DecUsers(ctx)
		m.Deactivate()
		m.DecUsers(ctx)
		if u := mf.UsageAllocated(); u != 0 {
			t.Errorf("limit %#x: %#x bytes of the memory file still allocated after release", limit, u)
		}
	}
}
