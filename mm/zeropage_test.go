package mm

import (
	"bytes"
	"strings"
	"testing"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
)

// zeroStates returns a letter per page of [a, a+n pages): z for the zero
// page (present, neither a file's nor exclusive), x for an exclusive
// private page, p for another present page, . for none.
func zeroStates(t *testing.T, m *MemoryManager, a hostarch.Addr, n int) string {
	t.Helper()
	var b strings.Builder
	for _, st := range m.PageStates(hostarch.AddrRange{Start: a, End: a + hostarch.Addr(n)*hostarch.PageSize}) {
		switch {
		case st&PagePresent == 0:
			if st&PageZero != 0 {
				t.Errorf("a page absent but zero: %#x", st)
			}
			b.WriteByte('.')
		case st&PageZero != 0:
			if st&(PageFile|PageExclusive|PageHostFile) != 0 {
				t.Errorf("a zero page that is a file's or exclusive: %#x", st)
			}
			b.WriteByte('z')
		case st&PageExclusive != 0:
			b.WriteByte('x')
		default:
			b.WriteByte('p')
		}
	}
	return b.String()
}

// mincoreString returns mincore's answer for [a, a+n pages) as 0s and 1s.
func mincoreString(t *testing.T, m *MemoryManager, a hostarch.Addr, n int) string {
	t.Helper()
	vec, err := m.MInCore(ctx, a, uint64(n)*hostarch.PageSize)
	if err != nil {
		t.Fatalf("MInCore: %v", err)
	}
	for i := range vec {
		vec[i] += '0'
	}
	return string(vec)
}

func fault(t *testing.T, m *MemoryManager, a hostarch.Addr, at hostarch.AccessType) {
	t.Helper()
	if err := m.HandleUserFault(ctx, a, at, 0); err != nil {
		t.Fatalf("HandleUserFault(%#x, %v): %v", uint64(a), at, err)
	}
}

func pageAt(a hostarch.Addr, i int) hostarch.Addr { return a + hostarch.Addr(i)*hostarch.PageSize }

// TestZeroPageRead: on a kernel with the shared zero page, a read fault of
// private anonymous memory maps the zero page, a page at a time: nothing
// is allocated from the memory file, nothing counts in the resident set,
// the pages read (only those) are present to mincore and pagemap, read as
// zeros, the host maps them read-only from memmap.ZeroPage, and the vma
// gets no anon_vma.
func TestZeroPageRead(t *testing.T) {
	m, p := newRecordingMM(t)
	const n = 400
	a := mustMap(t, m, anon(window, n*hostarch.PageSize, hostarch.ReadWrite))
	for _, i := range []int{1, 3, 4, 5} {
		fault(t, m, pageAt(a, i), hostarch.Read)
	}
	if got, want := mincoreString(t, m, a, 8), "01011100"; got != want {
		t.Errorf("mincore after reading pages 1, 3-5: %s, want %s", got, want)
	}
	if got, want := zeroStates(t, m, a, 8), ".z.zzz.."; got != want {
		t.Errorf("page states after reading pages 1, 3-5: %s, want %s", got, want)
	}
	for _, i := range []int{1, 3} {
		at, ok := p.as.perms(pageAt(a, i))
		if !ok || at.Write || p.as.files[pageAt(a, i)] != memmap.ZeroPage {
			t.Errorf("page %d mapped %v (%v) of %v, want read-only of the zero page", i, at, ok, p.as.files[pageAt(a, i)])
		}
	}
	if _, ok := p.as.perms(pageAt(a, 2)); ok {
		t.Errorf("page 2, never touched, is mapped")
	}
	// Reads through the manager's own I/O fault in the same way.
	if got := read(t, m, pageAt(a, 10), 5*hostarch.PageSize); !bytes.Equal(got, make([]byte, len(got))) {
		t.Errorf("zero pages do not read as zeros")
	}
	for i := 0; i < n; i++ {
		fault(t, m, pageAt(a, i), hostarch.Read)
	}
	if u := m.mf.UsageAllocated(); u != 0 {
		t.Errorf("reading %d pages allocated %d bytes of the memory file", n, u)
	}
	if s := m.Stats(); s.VmRSS != 0 || s.RssAnon != 0 {
		t.Errorf("reading %d pages: VmRSS %d, RssAnon %d, want 0", n, s.VmRSS, s.RssAnon)
	}
	if smaps := m.SmapsText(ctx); !strings.Contains(smaps, "\nRss:                   0 kB\n") {
		t.Errorf("smaps counts the zero page:\n%s", smaps)
	}
	if v := m.vmas.FindSegment(a).ValuePtr(); v.written() {
		t.Errorf("reads gave the vma an anon_vma")
	}
	// Writing every other page makes those pages alone resident.
	for i := 0; i < n; i += 2 {
		write(t, m, pageAt(a, i), []byte{1})
	}
	if s := m.Stats(); s.RssAnon != n/2*hostarch.PageSize {
		t.Errorf("after writing %d of the pages: RssAnon %d kB, want %d kB", n/2, s.RssAnon>>10, n/2*4)
	}
	check(t, m)
}

// TestZeroPageWrite: a write to a page mapped to the zero page replaces
// that page alone with private memory (Linux's write fault on a zero-page
// entry); its neighbours stay the zero page. The write gives the vma its
// anon_vma. Writing through the manager's I/O (CopyOut) does the same.
func TestZeroPageWrite(t *testing.T) {
	m, p := newRecordingMM(t)
	a := mustMap(t, m, anon(window, 16*hostarch.PageSize, hostarch.ReadWrite))
	for i := 0; i < 8; i++ {
		fault(t, m, pageAt(a, i), hostarch.Read)
	}
	fault(t, m, pageAt(a, 2), hostarch.Write)
	if got, want := zeroStates(t, m, a, 4), "zz.z"; got != want {
		// Private memory is present once touched (residentLocked).
		t.Errorf("page states after a write fault on page 2: %s, want %s", got, want)
	}
	write(t, m, pageAt(a, 2), []byte{2})
	write(t, m, pageAt(a, 5)+10, []byte("five"))
	if got, want := zeroStates(t, m, a, 9), "zzxzzxzz."; got != want {
		t.Errorf("page states after writing pages 2 and 5: %s, want %s", got, want)
	}
	if u := m.mf.UsageAllocated(); u != 2*hostarch.PageSize {
		t.Errorf("writing two zero pages allocated %d bytes, want two pages", u)
	}
	if at, ok := p.as.perms(pageAt(a, 2)); !ok || !at.Write || p.as.files[pageAt(a, 2)] == memmap.ZeroPage {
		t.Errorf("page 2 after a write fault: %v %v of %v, want writable private memory", at, ok, p.as.files[pageAt(a, 2)])
	}
	if at, ok := p.as.perms(pageAt(a, 3)); !ok || at.Write || p.as.files[pageAt(a, 3)] != memmap.ZeroPage {
		t.Errorf("page 3, only read, is mapped %v %v of %v", at, ok, p.as.files[pageAt(a, 3)])
	}
	if got := read(t, m, pageAt(a, 5)+8, 8); string(got) != "\x00\x00five\x00\x00" {
		t.Errorf("page 5 reads %q", got)
	}
	if v := m.vmas.FindSegment(a).ValuePtr(); !v.written() {
		t.Errorf("a write left the vma without an anon_vma")
	}
	check(t, m)
}

// TestZeroPageMAdvise: MADV_PAGEOUT and MADV_FREE leave the zero page
// mapped (Linux reclaims and frees only normal pages); MADV_DONTNEED and
// munmap drop it.
func TestZeroPageMAdvise(t *testing.T) {
	m := newTestMM(t)
	a := mustMap(t, m, anon(window, 8*hostarch.PageSize, hostarch.ReadWrite))
	for i := 0; i < 6; i++ {
		fault(t, m, pageAt(a, i), hostarch.Read)
	}
	for _, c := range []struct {
		adv  Advice
		page int
		want string
	}{
		{AdvPageOut, 1, "11111100"},
		{AdvFree, 2, "11111100"},
		{AdvDontNeed, 3, "11101100"},
	} {
		if err := m.MAdvise(ctx, pageAt(a, c.page), hostarch.PageSize, c.adv); err != nil {
			t.Fatalf("MAdvise(%v): %v", c.adv, err)
		}
		if got := mincoreString(t, m, a, 8); got != c.want {
			t.Errorf("mincore after advice %v on page %d: %s, want %s", c.adv, c.page, got, c.want)
		}
	}
	if err := m.MUnmap(ctx, pageAt(a, 4), hostarch.PageSize); err != nil {
		t.Fatal(err)
	}
	if got, want := zeroStates(t, m, a, 8), "zzz..z.."; got != want {
		t.Errorf("page states after DONTNEED of 3 and munmap of 4: %s, want %s", got, want)
	}
	check(t, m)
}

// TestZeroPageMProtect: a page read in a read-only mapping maps the zero
// page; after mprotect to read-write, a write replaces it (the zero page
// never becomes writable).
func TestZeroPageMProtect(t *testing.T) {
	m := newTestMM(t)
	a := mustMap(t, m, anon(window, 4*hostarch.PageSize, hostarch.Read))
	fault(t, m, pageAt(a, 1), hostarch.Read)
	fault(t, m, pageAt(a, 2), hostarch.Read)
	if err := m.MProtect(ctx, a, 4*hostarch.PageSize, hostarch.ReadWrite, MProtectOpts{}); err != nil {
		t.Fatal(err)
	}
	if got, want := zeroStates(t, m, a, 4), ".zz."; got != want {
		t.Errorf("after mprotect: %s, want %s", got, want)
	}
	write(t, m, pageAt(a, 1), []byte{7})
	if got, want := zeroStates(t, m, a, 4), ".xz."; got != want {
		t.Errorf("after writing page 1: %s, want %s", got, want)
	}
	if got := read(t, m, pageAt(a, 1), 2); got[0] != 7 || got[1] != 0 {
		t.Errorf("page 1 reads %v", got)
	}
	check(t, m)
}

// TestZeroPageFork: a vma only read has no anon_vma, so a fork child gets
// none of its pages (Linux copies no page table of it); in a vma written
// too, the child gets the zero-page entries, and a write on either side
// replaces only that side's page.
func TestZeroPageFork(t *testing.T) {
	m := newTestMM(t)
	a := mustMap(t, m, anon(window, 4*hostarch.PageSize, hostarch.ReadWrite))
	b := mustMap(t, m, anon(window+0x100000, 4*hostarch.PageSize, hostarch.ReadWrite))
	fault(t, m, pageAt(a, 1), hostarch.Read)
	fault(t, m, pageAt(b, 1), hostarch.Read)
	write(t, m, pageAt(b, 3), []byte{3})
	c, err := m.Fork(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.DecUsers(ctx)
	if got, want := zeroStates(t, c, a, 4), "...."; got != want {
		t.Errorf("child's copy of a vma only read: %s, want %s", got, want)
	}
	if got, want := zeroStates(t, c, b, 4), ".z.p"; got != want {
		t.Errorf("child's copy of a vma read and written: %s, want %s", got, want)
	}
	write(t, c, pageAt(b, 1), []byte{9})
	if got, want := zeroStates(t, c, b, 4), ".x.p"; got != want {
		t.Errorf("child after writing page 1: %s, want %s", got, want)
	}
	if got, want := zeroStates(t, m, b, 4), ".z.p"; got != want {
		t.Errorf("parent after the child wrote page 1: %s, want %s", got, want)
	}
	if got := read(t, m, pageAt(b, 1), 1); got[0] != 0 {
		t.Errorf("parent's page 1 reads %d", got[0])
	}
	check(t, m)
	check(t, c)
	if err := CheckPrivateRefs(m, c); err != nil {
		t.Error(err)
	}
}

// TestZeroPageMRemap: zero pages move with their mapping and stay the
// zero page; a write at the new place replaces them.
func TestZeroPageMRemap(t *testing.T) {
	m := newTestMM(t)
	a := mustMap(t, m, anon(window, 4*hostarch.PageSize, hostarch.ReadWrite))
	fault(t, m, pageAt(a, 0), hostarch.Read)
	fault(t, m, pageAt(a, 1), hostarch.Read)
	write(t, m, pageAt(a, 2), []byte{2})
	to := window + 0x400000
	na, err := m.MRemap(ctx, a, 4*hostarch.PageSize, 4*hostarch.PageSize, MRemapOpts{MayMove: true, Fixed: true, NewAddr: to})
	if err != nil || na != to {
		t.Fatalf("MRemap = %#x, %v", uint64(na), err)
	}
	if got, want := zeroStates(t, m, to, 4), "zzx."; got != want {
		t.Errorf("after mremap: %s, want %s", got, want)
	}
	write(t, m, pageAt(to, 0), []byte{1})
	if got, want := zeroStates(t, m, to, 4), "xzx."; got != want {
		t.Errorf("after writing the moved page 0: %s, want %s", got, want)
	}
	check(t, m)
}

// TestZeroPageCheckpoint: zero pages are saved and restored as such, and
// cost the memory file nothing before or after.
func TestZeroPageCheckpoint(t *testing.T) {
	mf := newMF(t, 0)
	m := New(Options{MemoryFile: mf})
	a := mustMap(t, m, anon(window, 8*hostarch.PageSize, hostarch.ReadWrite))
	for i := 0; i < 4; i++ {
		fault(t, m, pageAt(a, i), hostarch.Read)
	}
	write(t, m, pageAt(a, 2), []byte{2})
	restored, _ := checkpointCycle(t, mf, []*MemoryManager{m}, nil, nil)
	r := restored[0]
	if got, want := zeroStates(t, r, a, 8), "zzxz...."; got != want {
		t.Errorf("restored: %s, want %s", got, want)
	}
	if u := mf.UsageAllocated(); u != hostarch.PageSize {
		t.Errorf("restored manager uses %d bytes of the memory file, want one page", u)
	}
	write(t, r, pageAt(a, 3), []byte{3})
	if got, want := zeroStates(t, r, a, 8), "zzxx...."; got != want {
		t.Errorf("restored, after writing page 3: %s, want %s", got, want)
	}
	releaseAll(t, mf, restored)
}

// TestNoZeroPageRead: without the zero page (Limits.NoZeroPage), a read
// allocates private memory, as before, and gives the vma its anon_vma.
func TestNoZeroPageRead(t *testing.T) {
	m := newTestMM(t)
	m.limits.NoZeroPage = true
	a := mustMap(t, m, anon(window, 4*hostarch.PageSize, hostarch.ReadWrite))
	fault(t, m, pageAt(a, 1), hostarch.Read)
	if st := m.PageStates(hostarch.AddrRange{Start: a, End: pageAt(a, 4)}); st[1]&PageZero != 0 {
		t.Errorf("a read maps the zero page on a kernel without one")
	}
	if u := m.mf.UsageAllocated(); u == 0 {
		t.Errorf("a read allocated nothing on a kernel without the zero page")
	}
	if v := m.vmas.FindSegment(a).ValuePtr(); !v.written() {
		t.Errorf("a read left the vma without an anon_vma on a kernel without the zero page")
	}
	check(t, m)
}

// TestZeroPageWriteUnit: a write to a zero page whose neighbours were
// never touched allocates them too, within the allocation unit and up
// to the next pma, as a write into a gap does (a platform that serves a first store as a read
// and then a write must not pay a fault per page); zero pages read
// earlier in the unit stay the zero page.
func TestZeroPageWriteUnit(t *testing.T) {
	m, p := newRecordingMM(t)
	a := mustMap(t, m, anon(window, 16*hostarch.PageSize, hostarch.ReadWrite))
	fault(t, m, pageAt(a, 8), hostarch.Read)
	fault(t, m, pageAt(a, 0), hostarch.Read)
	fault(t, m, pageAt(a, 0), hostarch.Write)
	for i := 0; i < 16; i++ {
		at, ok := p.as.perms(pageAt(a, i))
		zero := p.as.files[pageAt(a, i)] == memmap.ZeroPage
		switch {
		case i == 8 && (!ok || at.Write || !zero):
			t.Errorf("page 8, read before the write, is mapped %v %v (zero %v), want the zero page", at, ok, zero)
		case i < 8 && (!ok || !at.Write || zero):
			t.Errorf("page %d is mapped %v %v (zero %v) after a write to page 0, want writable private memory", i, at, ok, zero)
		case i > 8 && ok:
			t.Errorf("page %d, past the zero page 8, is mapped %v", i, at)
		}
	}
	if u := m.mf.UsageAllocated(); u != 8*hostarch.PageSize {
		t.Errorf("the write allocated %d bytes, want 8 pages (up to the zero page)", u)
	}
	check(t, m)
}
