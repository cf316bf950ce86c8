package loader

import (
	"testing"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/mm"
)

// TestPlaceVDSODraw checks the mmap randomization taken for ASLR.VDSOAt:
// the draw that puts the block, below the mappings above it, at the
// address asked for, and none (a random draw) where no draw of Linux's
// range can (above mmap_base unrandomized, beyond the range's bits,
// unaligned).
func TestPlaceVDSODraw(t *testing.T) {
	const (
		ts    = hostarch.Addr(0x7ffffffff000)
		rlim  = 8 << 20
		above = 0x35000
		size  = 0x8000
	)
	probe := &randomizer{a: &ASLR{}}
	base := uint64(mmapBaseRnd(ts, rlim, probe.stackMaxRandom(), 0))
	for _, c := range []struct {
		name string
		at   uint64
		want uint64
		set  bool
	}{
		{"one page down", base - above - size - hostarch.PageSize, hostarch.PageSize, true},
		{"no randomization", base - above - size, 0, true},
		{"the deepest draw", base - above - size - (1<<28-1)<<hostarch.PageShift, (1<<28 - 1) << hostarch.PageShift, true},
		{"beyond the bits", base - above - size - (1<<28)<<hostarch.PageShift, 0, false},
		{"above mmap_base", base - above - size + hostarch.PageSize, 0, false},
		{"unaligned", base - above - size - hostarch.PageSize - 16, 0, false},
	} {
		r := &randomizer{a: &ASLR{VDSOAt: hostarch.Addr(c.at), VDSOSize: size}}
		r.placeVDSO(ts, rlim, above)
		if r.mmapSet != c.set || (c.set && r.mmapFixed != c.want) {
			t.Errorf("%s: set %v draw %#x, want set %v draw %#x", c.name, r.mmapSet, r.mmapFixed, c.set, c.want)
			continue
		}
		if !c.set {
			continue
		}
		l := layout(mm.MmapLayout{MinAddr: 0x10000, MaxAddr: ts + hostarch.PageSize}, rlim, false, r)
		if got := uint64(l.TopDownBase) - above - size; got != c.at {
			t.Errorf("%s: the vDSO block would land at %#x, want %#x", c.name, got, c.at)
		}
	}
}
