package mm

import (
	"testing"

	"github.com/vmspace/vmspace/hostarch"
)

// TestCOWBreaksOnePage checks that copy-on-write after a fork is broken a
// page at a time, as Linux breaks it: a child writing one byte in each of
// a few scattered pages of a large written region makes the memory file's
// usage grow by those pages (not by a 2 MiB unit each), smaps counts just
// them as the child's private pages, and both sides read what they wrote.
// A write of the parent to a page the child copied takes it over without
// a copy; one to a page still shared copies that page only.
func TestCOWBreaksOnePage(t *testing.T) {
	m := newTestMM(t)
	const size = 8 << 20
	a := mustMap(t, m, anon(window, size, hostarch.ReadWrite))
	npages := size / hostarch.PageSize
	for i := 0; i < npages; i++ {
		if _, err := m.CopyOut(ctx, a+hostarch.Addr(i*hostarch.PageSize), []byte{byte(i), 'P'}, IOOpts{}); err != nil {
			t.Fatal(err)
		}
	}
	child, err := m.Fork(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer child.DecUsers(ctx)
	mf := m.MemoryFile()
	before := mf.UsageAllocated()

	// Scattered pages: several in one huge page, others far apart, the
	// last page of the region.
	written := map[int]bool{}
	for _, i := range []int{3, 5, 6, 511, 512, 1000, 1500, npages - 1} {
		written[i] = true
		if _, err := child.CopyOut(ctx, a+hostarch.Addr(i*hostarch.PageSize)+1, []byte{'C'}, IOOpts{}); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := mf.UsageAllocated()-before, uint64(len(written))*hostarch.PageSize; got != want {
		t.Errorf("the child's writes to %d pages grew the memory file's usage by %d KiB, want %d", len(written), got>>10, want>>10)
	}
	vi := child.VMAs(ctx)
	for _, v := range vi {
		if v.Range.Start != a {
			continue
		}
		if want := uint64(len(written)) * hostarch.PageSize; v.PrivateDirty != want || v.SharedDirty != size-want {
			t.Errorf("the child's smaps: Private_Dirty %d KiB, Shared_Dirty %d KiB; want %d and %d", v.PrivateDirty>>10, v.SharedDirty>>10, want>>10, (size-want)>>10)
		}
	}
	readAll := func(who string, mm *MemoryManager, want func(i int) byte) {
		t.Helper()
		buf := make([]byte, 2)
		for i := 0; i < npages; i++ {
			if _, err := mm.CopyIn(ctx, a+hostarch.Addr(i*hostarch.PageSize), buf, IOOpts{}); err != nil {
				t.Fatal(err)
			}
			if buf[0] != byte(i) || buf[1] != want(i) {
				t.Fatalf("%s: page %d holds %q, want %q", who, i, buf, []byte{byte(i), want(i)})
			}
		}
	}
	readAll("child", child, func(i int) byte {
		if written[i] {
			return 'C'
		}
		return 'P'
	})
	readAll("parent", m, func(int) byte { return 'P' })

	// The parent takes over a page the child copied, and copies one it
	// still shares.
	before = mf.UsageAllocated()
	m.CopyOut(ctx, a+5*hostarch.PageSize+1, []byte{'Q'}, IOOpts{})
	if got := mf.UsageAllocated(); got != before {
		t.Errorf("the parent's write to a page only it maps grew the usage by %d KiB", (got-before)>>10)
	}
	m.CopyOut(ctx, a+7*hostarch.PageSize+1, []byte{'Q'}, IOOpts{})
	if got := mf.UsageAllocated() - before; got != hostarch.PageSize {
		t.Errorf("the parent's write to a shared page grew the usage by %d KiB, want 4", got>>10)
	}
	readAll("parent", m, func(i int) byte {
		if i == 5 || i == 7 {
			return 'Q'
		}
		return 'P'
	})
	readAll("child", child, func(i int) byte {
		if written[i] {
			return 'C'
		}
		return 'P'
	})
	check(t, m)
	check(t, child)
	if err := CheckPrivateRefs(m, child); err != nil {
		t.Fatal(err)
	}
}
