package mm

import (
	"testing"

	"github.com/vmspace/vmspace/hostarch"
)

// TestFindVMA: FindVMA returns the first vma ending after the address that
// the matcher accepts, described as VMAsIn describes it, and looks at no
// vma after the one that stopped it: a PROCMAP_QUERY near the bottom of
// an address space of many vmas costs one vma, not all those above
// (before, the query described every vma above the address, O(n) per
// query and O(n^2) for a walk of the whole space).
func TestFindVMA(t *testing.T) {
	mm := newTestMM(t)
	const n = 64
	// Alternate permissions so that the vmas do not merge.
	for i := 0; i < n; i++ {
		perms := hostarch.Read
		if i%2 == 1 {
			perms = hostarch.ReadWrite
		}
		mustMap(t, mm, anon(window+hostarch.Addr(i)*hostarch.PageSize, hostarch.PageSize, perms))
	}
	all := mm.VMAsIn(ctx, hostarch.AddrRange{Start: window, End: window + n*hostarch.PageSize}, false)
	if len(all) != n {
		t.Fatalf("%d vmas, want %d", len(all), n)
	}
	looked := 0
	first := func(hostarch.AddrRange, string, VMAKind) (bool, bool) {
		looked++
		return true, true
	}
	got, ok := mm.FindVMA(ctx, window+hostarch.PageSize/2, first)
	if !ok || got.Range != all[0].Range || got.Perms != all[0].Perms || got.Name != all[0].Name || looked != 1 {
		t.Fatalf("first vma: %+v %v after looking at %d vmas; want %+v after one", got, ok, looked, all[0])
	}
	// The first writable vma at or after the second page's end: the
	// fourth (index 3), looking at vmas 2 and 3 only.
	looked = 0
	var seen []hostarch.Addr
	got, ok = mm.FindVMA(ctx, window+2*hostarch.PageSize, func(r hostarch.AddrRange, perms string, _ VMAKind) (bool, bool) {
		looked++
		seen = append(seen, r.Start)
		return perms[1] == 'w', false
	})
	if !ok || got.Range != all[3].Range || looked != 2 || seen[0] != all[2].Range.Start {
		t.Fatalf("first writable from vma 2: %+v %v after looking at %v; want %v after vmas 2 and 3", got.Range, ok, seen, all[3].Range)
	}
	// A matcher that stops at once finds nothing when it does not accept.
	looked = 0
	if _, ok := mm.FindVMA(ctx, window, func(hostarch.AddrRange, string, VMAKind) (bool, bool) {
		looked++
		return false, true
	}); ok || looked != 1 {
		t.Fatalf("stopping matcher: found %v after %d vmas, want nothing after one", ok, looked)
	}
	// Above every vma: nothing, nothing looked at.
	looked = 0
	if _, ok := mm.FindVMA(ctx, window+n*hostarch.PageSize, first); ok || looked != 0 {
		t.Fatalf("above the vmas: found %v after %d vmas", ok, looked)
	}
}
