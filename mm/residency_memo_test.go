package mm

import (
	"testing"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
)

// TestResidencyMemo: the readers of the whole address space (Stats, VMAs,
// PageRuns) ask the host about the residency of many pmas whose pages are
// neighbours in the memory file with one query, not one per pma, and still
// count exactly the pages that were touched.
func TestResidencyMemo(t *testing.T) {
	m := newTestMM(t)
	const pages = 64
	const pg = hostarch.PageSize
	a := touchedAnon(t, m, pages)
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

// TestResidencyMemoForkedHeap: after a fork, a parent that writes every
// other page of its heap holds pmas whose memory-file ranges alternate
// with pages only the child still maps. The readers of the whole space
// still ask the host a few times, not once per pma, and count exactly:
// Rss, the shared pages (SharedDirty, half of each in Pss) and the
// private copies.
func TestResidencyMemoForkedHeap(t *testing.T) {
	m := newTestMM(t)
	const pages = 256
	const pg = hostarch.PageSize
	a := touchedAnon(t, m, pages)
	c, err := m.Fork(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.DecUsers(ctx)
	for i := 0; i < pages; i += 2 {
		if _, err := m.CopyOut(ctx, a+hostarch.Addr(i)*pg, []byte{2}, IOOpts{}); err != nil {
			t.Fatal(err)
		}
	}
	// The parent's last shared page given back: it is the child's alone.
	if err := m.MAdvise(ctx, a+(pages-1)*pg, pg, AdvDontNeed); err != nil {
		t.Fatal(err)
	}
	const shared = (pages/2 - 1) * pg
	const private = pages / 2 * pg
	var st MemoryStats
	if n := countResidencyQueries(t, func() { st = m.Stats() }); n > 3 {
		t.Errorf("Stats asked the host %d times", n)
	}
	if st.RssAnon != shared+private {
		t.Errorf("Stats: RssAnon = %#x, want %#x", st.RssAnon, shared+private)
	}
	var infos []VMAInfo
	if n := countResidencyQueries(t, func() { infos = m.VMAs(ctx) }); n > 3 {
		t.Errorf("VMAs asked the host %d times", n)
	}
	for _, vi := range infos {
		if vi.Range.Start != a {
			continue
		}
		if vi.Rss != shared+private || vi.SharedDirty != shared || vi.PrivateDirty != private || vi.Pss != shared/2+private {
			t.Errorf("VMAs: Rss %#x SharedDirty %#x PrivateDirty %#x Pss %#x, want %#x %#x %#x %#x",
				vi.Rss, vi.SharedDirty, vi.PrivateDirty, vi.Pss, shared+private, shared, private, shared/2+private)
		}
	}
	var runs []PageRun
	if n := countResidencyQueries(t, func() { runs = m.PageRuns(hostarch.AddrRange{Start: a, End: a + pages*pg}) }); n > 3 {
		t.Errorf("PageRuns asked the host %d times", n)
	}
	var got [pages]byte // 's' shared, 'p' private, 0 not resident
	for _, r := range runs {
		for p := r.Range.Start; p < r.Range.End; p += pg {
			got[(p-a)/pg] = "ps"[btoi(r.Shared)]
		}
	}
	for i := 0; i < pages; i++ {
		want := byte('s')
		switch {
		case i == pages-1:
			want = 0
		case i%2 == 0:
			want = 'p'
		}
		if got[i] != want {
			t.Errorf("PageRuns: page %d is %q, want %q", i, got[i], want)
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestSortByStart: the packed-key sort orders file ranges as the
// comparison sort does, on both of its paths.
func TestSortByStart(t *testing.T) {
	for _, huge := range []bool{false, true} {
		var frs []memmap.FileRange
		for i := 0; i < 1000; i++ {
			start := uint64((i*7919)%1000) * hostarch.PageSize
			if huge && i == 500 {
				start = 1 << 62 // beyond the packed keys
			}
			frs = append(frs, memmap.FileRange{Start: start, End: start + hostarch.PageSize})
		}
		sortByStart(frs)
		for i := 1; i < len(frs); i++ {
			if frs[i-1].Start > frs[i].Start || frs[i].End != frs[i].Start+hostarch.PageSize {
				t.Fatalf("huge %v: %v before %v", huge, frs[i-1], frs[i])
			}
		}
	}
}

// touchedAnon maps pages of private anonymous memory in m and writes each.
func touchedAnon(t *testing.T, m *MemoryManager, pages int) hostarch.Addr {
	t.Helper()
	a := mustMap(t, m, anon(window, uint64(pages)*hostarch.PageSize, hostarch.ReadWrite))
	for i := 0; i < pages; i++ {
		if _, err := m.CopyOut(ctx, a+hostarch.Addr(i)*hostarch.PageSize, []byte{1}, IOOpts{}); err != nil {
			t.Fatal(err)
		}
	}
	return a
}
