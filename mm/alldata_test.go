package mm

import (
	"testing"

	"github.com/vmspace/vmspace/hostarch"
)

// countResidencyQueries counts the host residency queries (mincore) that f
// makes.
func countResidencyQueries(t *testing.T, f func()) int {
	n := 0
	testHookResidencyQuery = func() { n++ }
	defer func() { testHookResidencyQuery = nil }()
	f()
	return n
}

// TestForkRemembersAllData checks that once a fork has found every page of
// a pma holding data, later forks and the copy-on-write of a child copy
// those pages without asking the host again, and that what the children
// get stays exact: whole pmas, and after MADV_DONTNEED of a page, a hole
// there.
func TestForkRemembersAllData(t *testing.T) {
	mm := newTestMM(t)
	const size = 4 << 20
	pages := size / hostarch.PageSize
	a := mustMap(t, mm, anon(0x300000000000, size, hostarch.ReadWrite))
	touchAll := func(v byte) {
		for p := 0; p < pages; p++ {
			if _, err := mm.CopyOut(ctx, a+hostarch.Addr(p)*hostarch.PageSize, []byte{v}, IOOpts{}); err != nil {
				t.Fatalf("CopyOut: %v", err)
			}
		}
	}
	fork := func() *MemoryManager {
		child, err := mm.Fork(ctx)
		if err != nil {
			t.Fatalf("Fork: %v", err)
		}
		return child
	}
	touchAll(1)
	var child *MemoryManager
	if n := countResidencyQueries(t, func() { child = fork() }); n == 0 {
		t.Errorf("the first fork asked the host nothing")
	}
	child.DecUsers(ctx)
	touchAll(2) // the parent owns its pages again
	if n := countResidencyQueries(t, func() { child = fork() }); n != 0 {
		t.Errorf("a second fork asked the host %d times about pages known to hold data", n)
	}
	if got := child.ResidentSetSize(); got != size {
		t.Errorf("child's RSS = %#x, want %#x", got, size)
	}
	// The child's copy-on-write copies whole pmas without asking either.
	if n := countResidencyQueries(t, func() {
		if _, err := child.CopyOut(ctx, a, []byte{9}, IOOpts{}); err != nil {
			t.Fatalf("child CopyOut: %v", err)
		}
	}); n != 0 {
		t.Errorf("the child's copy-on-write asked the host %d times", n)
	}
	var b [1]byte
	if _, err := child.CopyIn(ctx, a+hostarch.Addr(pages-1)*hostarch.PageSize, b[:], IOOpts{}); err != nil || b[0] != 2 {
		t.Errorf("child reads %d (%v) from its last page, want 2", b[0], err)
	}
	child.DecUsers(ctx)

	// A page dropped by MADV_DONTNEED is a hole again: the next child
	// has none there, though the rest of the pma is still known whole.
	touchAll(3)
	hole := a + hostarch.Addr(pages/2)*hostarch.PageSize
	if err := mm.MAdvise(ctx, hole, hostarch.PageSize, AdvDontNeed); err != nil {
		t.Fatalf("MADV_DONTNEED: %v", err)
	}
	child = fork()
	defer child.DecUsers(ctx)
	if got, want := child.ResidentSetSize(), uint64(size-hostarch.PageSize); got != want {
		t.Errorf("child's RSS after MADV_DONTNEED of a page = %#x, want %#x", got, want)
	}
	vec, err := child.MInCore(ctx, a, size)
	if err != nil {
		t.Fatalf("MInCore: %v", err)
	}
	for p := range vec {
		if want := p != pages/2; (vec[p] != 0) != want {
			t.Errorf("child page %d: resident %v, want %v", p, vec[p] != 0, want)
		}
	}
}
