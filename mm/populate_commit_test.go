package mm

import (
	"testing"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
)

// TestPopulateCommitsOnlyTheRange: MADV_POPULATE_READ/WRITE and MAP_POPULATE
// of a few pages of a large anonymous mapping have the AddressSpace commit
// those pages only (Linux populates only the range asked for), although the
// pma behind them (and the host mapping) covers the whole huge page around
// them. Committing the whole pma made 512 pages resident (mincore) under
// vmspace run for one page populated, and cost 2 MiB of host memory each.
func TestPopulateCommitsOnlyTheRange(t *testing.T) {
	mm, p := newRecordingMM(t)
	// A kernel without the zero page, whose read populate allocates
	// (with it, a read maps the zero page a page at a time:
	// TestZeroPagePopulateRead).
	mm.limits.NoZeroPage = true
	const size = 8 << 20
	a := mustMap(t, mm, anon(0, size, hostarch.ReadWrite))
	base := (a + hugePageSize - 1) &^ (hugePageSize - 1)
	committed := func() []hostarch.Addr {
		p.as.mu.Lock()
		defer p.as.mu.Unlock()
		var out []hostarch.Addr
		for pg := range p.as.committed {
			out = append(out, pg)
		}
		clear(p.as.committed)
		return out
	}
	for _, c := range []struct {
		name  string
		adv   Advice
		start hostarch.Addr
		pages uint64
	}{
		{"populate_read", AdvPopulateRead, base + 5*hostarch.PageSize, 1},
		{"populate_write", AdvPopulateWrite, base + hugePageSize + 7*hostarch.PageSize, 3},
	} {
		if err := mm.MAdvise(ctx, c.start, c.pages*hostarch.PageSize, c.adv); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		got := committed()
		if uint64(len(got)) != c.pages {
			t.Errorf("%s of %d pages committed %d pages", c.name, c.pages, len(got))
		}
		for _, pg := range got {
			if pg < c.start || pg >= c.start+hostarch.Addr(c.pages*hostarch.PageSize) {
				t.Errorf("%s committed %#x, outside [%#x, +%d pages)", c.name, uint64(pg), uint64(c.start), c.pages)
				break
			}
		}
		// The rest of the pma is mapped all the same.
		if _, ok := p.as.perms(c.start &^ (hugePageSize - 1)); !ok {
			t.Errorf("%s: the rest of the pma is not mapped", c.name)
		}
	}
	// MAP_POPULATE commits what it maps.
	o := anon(0, 3*hostarch.PageSize, hostarch.ReadWrite)
	o.PlatformEffect = memmap.MMapPopulate
	b := mustMap(t, mm, o)
	if got := committed(); len(got) != 3 {
		t.Errorf("MAP_POPULATE of 3 pages committed %d pages at %#x", len(got), uint64(b))
	}
}
