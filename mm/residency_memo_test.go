package mm

import (
	"testing"

	"github.com/vmspace/vmspace/hostarch"
)

// TestResidencyMemo: the readers of the whole address space (Stats, VMAs,
// PageRuns) ask the host about the residency of many pmas whose pages are
// neighbours in the memory file with one query, not one per pma, and still
// count exactly the pages that were touched.
func TestResidencyMemo(t *testing.T) {
	m := newTestMM(t)
	const pages = 64
	const pg = hostarch.PageSize
	a := mustMap(t, m, anon(window, pages*pg, hostarch.ReadWrite))
	for i := 0; i < pages; i++ {
		if _, err := m.CopyOut(ctx, a+hostarch.Addr(i)*pg, []byte{1}, IOOpts{}); err != nil {
			t.Fatal(err)
		}
	}
	// Every other page read-only: 64 vmas and 64 pmas over one run of
	// the memory file.
	for i := 1; i < pages; i += 2 {
		if err := m.MProtect(ctx, a+hostarch.Addr(i)*pg, pg, hostarch.Read, MProtectOpts{}); err != nil {
			t.Fatal(err)
		}
	}
	// Two pages given back: 62 resident, in three runs of the file.
	dropped := map[int]bool{3: true, 10: true}
	for i := range dropped {
		if err := m.MAdvise(ctx, a+hostarch.Addr(i)*pg, pg, AdvDontNeed); err != nil {
			t.Fatal(err)
		}
	}
	const want = (pages - 2) * pg

	var st MemoryStats
	if n := countResidencyQueries(t, func() { st = m.Stats() }); n > 3 {
		t.Errorf("Stats asked the host %d times for %d neighbouring pmas", n, pages)
	}
	if st.RssAnon != want {
		t.Errorf("Stats: RssAnon = %#x, want %#x", st.RssAnon, want)
	}

	var infos []VMAInfo
	if n := countResidencyQueries(t, func() { infos = m.VMAs(ctx) }); n > 3 {
		t.Errorf("VMAs asked the host %d times for %d neighbouring pmas", n, pages)
	}
	var rss uint64
	for _, vi := range infos {
		if vi.Range.Start < a || vi.Range.End > a+pages*pg {
			continue
		}
		i := int((vi.Range.Start - a) / pg)
		wantVMA := uint64(pg)
		if dropped[i] {
			wantVMA = 0
		}
		if vi.Rss != wantVMA {
			t.Errorf("VMAs: page %d's vma has Rss %#x, want %#x", i, vi.Rss, wantVMA)
		}
		rss += vi.Rss
	}
	if rss != want {
		t.Errorf("VMAs: Rss sums to %#x, want %#x", rss, want)
	}

	var runs []PageRun
	all := hostarch.AddrRange{Start: a, End: a + pages*pg}
	if n := countResidencyQueries(t, func() { runs = m.PageRuns(all) }); n > 3 {
		t.Errorf("PageRuns asked the host %d times for %d neighbouring pmas", n, pages)
	}
	resident := map[int]bool{}
	for _, r := range runs {
		for p := r.Range.Start; p < r.Range.End; p += pg {
			resident[int((p-a)/pg)] = r.Resident
		}
	}
	for i := 0; i < pages; i++ {
		if resident[i] == dropped[i] {
			t.Errorf("PageRuns: page %d resident %v, want %v", i, resident[i], !dropped[i])
		}
	}
}
