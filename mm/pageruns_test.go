package mm

import (
	"slices"
	"testing"

	"github.com/vmspace/vmspace/hostarch"
)

// TestPageRuns: PageRuns tells resident pages, pages shared copy-on-write
// with a fork relative, and guard pages apart, and leaves out the rest.
func TestPageRuns(t *testing.T) {
	m := newTestMM(t)
	const unit = hostarch.HugePageSize
	a := mustMap(t, m, anon(window, 3*unit, hostarch.ReadWrite))
	m.CopyOut(ctx, a, []byte("one"), IOOpts{})
	m.CopyOut(ctx, a+unit, []byte("two"), IOOpts{})
	g := a + 2*unit + 0x10000
	if err := m.MAdvise(ctx, g, hostarch.PageSize, AdvGuardInstall); err != nil {
		t.Fatal(err)
	}
	child, err := m.Fork(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer child.DecUsers(ctx)
	// The child has only the pages the parent touched (a fork copies
	// no memory-file holes); its write takes a copy of its first page,
	// so only the second unit's first page stays shared.
	child.CopyOut(ctx, a, []byte("ONE"), IOOpts{})
	all := hostarch.AddrRange{Start: a, End: a + 3*unit}
	rng := func(s, e hostarch.Addr) hostarch.AddrRange { return hostarch.AddrRange{Start: s, End: e} }
	const pg = hostarch.PageSize
	guard := PageRun{Range: rng(g, g+pg), Guard: true}
	for _, c := range []struct {
		name string
		m    *MemoryManager
		want []PageRun
	}{
		// Only touched pages are resident (as smaps' Rss counts).
		{"parent", m, []PageRun{
			{Range: rng(a, a+pg), Resident: true},
			{Range: rng(a+unit, a+unit+pg), Resident: true, Shared: true},
			guard,
		}},
		{"child", child, []PageRun{
			{Range: rng(a, a+pg), Resident: true},
			{Range: rng(a+unit, a+unit+pg), Resident: true, Shared: true},
			guard,
		}},
	} {
		if got := c.m.PageRuns(all); !slices.Equal(got, c.want) {
			t.Errorf("%s: PageRuns = %+v, want %+v", c.name, got, c.want)
		}
	}
	// A range cuts runs.
	part := rng(a+unit/2, a+unit+2*pg)
	if got, w := m.PageRuns(part), []PageRun{{Range: rng(a+unit, a+unit+pg), Resident: true, Shared: true}}; !slices.Equal(got, w) {
		t.Errorf("PageRuns(%v) = %+v, want %+v", part, got, w)
	}
	check(t, m)
}
