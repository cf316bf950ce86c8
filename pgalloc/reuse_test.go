package pgalloc

import (
	"errors"
	"fmt"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
)

// fill writes b's pattern into fr through the internal mapping.
func fill(t *testing.T, f *MemoryFile, fr memmap.FileRange, b byte) {
	t.Helper()
	m := mapBytes(t, f, fr)
	for i := range m {
		m[i] = b
	}
}

// TestReuseCache checks the reuse cache: freed pages stay committed and
// unallocated; a populating allocation takes them, reading as zero; an
// ordinary one never does; WaitReleased releases them.
func TestReuseCache(t *testing.T) {
	for _, async := range []bool{true, false} {
		t.Run(fmt.Sprintf("async=%v", async), func(t *testing.T) {
			f := newFile(t, Options{DisableAsyncRelease: !async, ReuseLimit: 64 * page})
			fr := mustAllocate(t, f, 8*page, AllocOpts{Populate: true})
			fill(t, f, fr, 0xa5)
			f.DecRef(fr)
			f.WaitReleased()
			if got := f.UsageCached(); got != 0 {
				t.Errorf("UsageCached = %#x after WaitReleased", got)
			}
			if c := f.UsageCommitted(); c != 0 {
				t.Errorf("UsageCommitted = %#x after WaitReleased", c)
			}

			fr = mustAllocate(t, f, 8*page, AllocOpts{Populate: true})
			fill(t, f, fr, 0xa5)
			f.DecRef(fr)
			if got := f.UsageCached(); got != 8*page {
				t.Fatalf("UsageCached = %#x after freeing 8 pages, want %#x", got, 8*page)
			}
			if got := f.UsageAllocated(); got != 0 {
				t.Errorf("UsageAllocated = %#x with everything freed", got)
			}
			if c := f.UsageCommitted(); c < 8*page {
				t.Errorf("cached pages were released: UsageCommitted = %#x", c)
			}
			checkInvariants(t, f)

			// An ordinary allocation does not take cached pages.
			lazy := mustAllocate(t, f, 8*page, AllocOpts{})
			if lazy.Overlaps(fr) {
				t.Errorf("ordinary allocation %v took cached pages %v", lazy, fr)
			}
			// A populating one does, and they read as zero.
			a := mustAllocate(t, f, 2*page, AllocOpts{Populate: true})
			b := mustAllocate(t, f, 6*page, AllocOpts{Populate: true})
			for _, x := range []memmap.FileRange{a, b} {
				if !fr.IsSupersetOf(x) {
					t.Errorf("populating allocation %v is not from the cached %v", x, fr)
				}
				if !isZero(mapBytes(t, f, x)) || !isZero(fileBytes(t, f, x)) {
					t.Errorf("reused range %v does not read as zero", x)
				}
			}
			if got := f.UsageCached(); got != 0 {
				t.Errorf("UsageCached = %#x after reusing everything", got)
			}
			checkInvariants(t, f)
			for _, x := range []memmap.FileRange{a, b, lazy} {
				f.DecRef(x)
			}
			f.WaitReleased()
			if got, c := f.UsageCached(), f.UsageCommitted(); got != 0 || c != 0 {
				t.Errorf("after WaitReleased: UsageCached = %#x, UsageCommitted = %#x", got, c)
			}
			checkInvariants(t, f)
		})
	}
}

// TestReuseCacheLimitAndAlignment checks that the cache never holds more
// than its limit (what does not fit is released), and that a huge
// allocation takes an aligned part of a cached range.
func TestReuseCacheLimitAndAlignment(t *testing.T) {
	const huge = hostarch.HugePageSize
	f := newFile(t, Options{ReuseLimit: 3 * huge})
	big := mustAllocate(t, f, 4*huge, AllocOpts{Huge: true})
	f.DecRef(memmap.FileRange{Start: big.Start, End: big.Start + 2*huge + page})
	if got := f.UsageCached(); got != 2*huge+page {
		t.Errorf("UsageCached = %#x, want %#x", got, 2*huge+page)
	}
	f.DecRef(memmap.FileRange{Start: big.Start + 2*huge + page, End: big.End})
	if got := f.UsageCached(); got != 2*huge+page {
		t.Errorf("UsageCached = %#x after freeing past the limit, want %#x", got, 2*huge+page)
	}
	checkInvariants(t, f)
	// From the cached [start, start+2h+4K): a page, then a huge-aligned
	// unit, which must skip to start+h.
	p := mustAllocate(t, f, page, AllocOpts{Populate: true})
	h := mustAllocate(t, f, huge, AllocOpts{Populate: true, Huge: true})
	if p.Start < big.Start || p.End > big.Start+2*huge+page {
		t.Errorf("page %v not from the cache", p)
	}
	if h.Start != big.Start+huge {
		t.Errorf("huge allocation %v, want one at %#x", h, big.Start+huge)
	}
	if got := f.UsageCached(); got != huge {
		t.Errorf("UsageCached = %#x, want %#x", got, uint64(huge))
	}
	checkInvariants(t, f)
	f.DecRef(p)
	f.DecRef(h)
	f.WaitReleased()
	checkInvariants(t, f)
}

// TestReuseCacheTrim checks the ageing: a range cached for two trim ticks
// without reuse is released; one cached since the last tick is not.
func TestReuseCacheTrim(t *testing.T) {
	for _, async := range []bool{true, false} {
		t.Run(fmt.Sprintf("async=%v", async), func(t *testing.T) {
			f := newFile(t, Options{DisableAsyncRelease: !async, ReuseLimit: 64 * page})
			old := mustAllocate(t, f, 4*page, AllocOpts{Populate: true})
			f.DecRef(old)
			f.trim() // old was cached in this tick: kept
			if got := f.UsageCached(); got != 4*page {
				t.Fatalf("UsageCached = %#x after one tick, want %#x", got, 4*page)
			}
			young := mustAllocate(t, f, 2*page, AllocOpts{})
			fill(t, f, young, 1)
			f.DecRef(young)
			f.trim() // old goes, young stays
			if async {
				// The releaser was kicked; wait for it without
				// flushing the cache as WaitReleased would.
				f.mu.Lock()
				for len(f.pending) > 0 || f.releasing > 0 {
					f.released.Wait()
				}
				f.mu.Unlock()
			}
			if got := f.UsageCached(); got != 2*page {
				t.Errorf("UsageCached = %#x after two ticks, want %#x", got, 2*page)
			}
			if c := f.UsageCommitted(); c != 2*page {
				t.Errorf("UsageCommitted = %#x, want only the young range's %#x", c, 2*page)
			}
			checkInvariants(t, f)
			f.trim()
			f.WaitReleased()
			if got, c := f.UsageCached(), f.UsageCommitted(); got != 0 || c != 0 {
				t.Errorf("after three ticks: UsageCached = %#x, UsageCommitted = %#x", got, c)
			}
		})
	}
}

// TestPopulateBatch checks batched commitment: a small populating
// allocation that finds the cache empty commits a whole batch and caches
// the surplus, committed and unallocated; the next small ones take from
// it without committing more; ordinary allocations never get it; and
// everything is released in the end. An Overwrite allocation from the
// cache is not zeroed, and one without it is.
func TestPopulateBatch(t *testing.T) {
	f := newFile(t, Options{ReuseLimit: 4 * commitBatch})
	a := mustAllocate(t, f, page, AllocOpts{Populate: true})
	if got := f.UsageAllocated(); got != page {
		t.Errorf("UsageAllocated = %#x, want one page", got)
	}
	if got := f.UsageCached(); got != commitBatch-page {
		t.Errorf("UsageCached = %#x after a one-page populating allocation, want the batch's surplus %#x", got, commitBatch-page)
	}
	committed := f.UsageCommitted()
	if committed < commitBatch {
		t.Errorf("UsageCommitted = %#x, want the whole batch %#x", committed, commitBatch)
	}
	checkInvariants(t, f)
	lazy := mustAllocate(t, f, 16*page, AllocOpts{})
	b := mustAllocate(t, f, 2*page, AllocOpts{Populate: true})
	if b.Start != a.End {
		t.Errorf("second populating allocation %v does not follow %v in the batch", b, a)
	}
	if lazy.Start < a.Start+commitBatch && lazy.End > a.Start {
		t.Errorf("ordinary allocation %v took from the batch at %#x", lazy, a.Start)
	}
	if c := f.UsageCommitted(); c != committed {
		t.Errorf("taking from the batch changed UsageCommitted %#x -> %#x", committed, c)
	}
	if got := f.UsageCached(); got != commitBatch-3*page {
		t.Errorf("UsageCached = %#x, want %#x", got, commitBatch-3*page)
	}
	// Reuse: b's pages, written and freed, come back as they were with
	// Overwrite and zeroed without.
	fill(t, f, b, 0x5a)
	f.DecRef(b)
	var others []memmap.FileRange
	o := allocateFrom(t, f, b, AllocOpts{Populate: true, Overwrite: true}, &others)
	if m := mapBytes(t, f, o); m[0] != 0x5a {
		t.Errorf("Overwrite allocation %v was zeroed (or is not the freed page)", o)
	}
	fill(t, f, o, 0x5a)
	f.DecRef(o)
	z := allocateFrom(t, f, b, AllocOpts{Populate: true}, &others)
	if !isZero(mapBytes(t, f, z)) {
		t.Errorf("reused %v without Overwrite does not read as zero", z)
	}
	f.DecRef(z)
	f.DecRef(a)
	f.DecRef(lazy)
	for _, x := range others {
		f.DecRef(x)
	}
	checkInvariants(t, f)
	f.WaitReleased()
	if got, c := f.UsageCached(), f.UsageCommitted(); got != 0 || c != 0 || f.UsageAllocated() != 0 {
		t.Errorf("after freeing everything: UsageCached = %#x, UsageCommitted = %#x, UsageAllocated = %#x", got, c, f.UsageAllocated())
	}
}

// allocateFrom allocates pages with opts until one comes from within fr,
// and returns it; the others are appended to others.
func allocateFrom(t *testing.T, f *MemoryFile, fr memmap.FileRange, opts AllocOpts, others *[]memmap.FileRange) memmap.FileRange {
	t.Helper()
	for range commitBatch / page {
		x := mustAllocate(t, f, page, opts)
		if fr.Contains(x.Start) {
			return x
		}
		*others = append(*others, x)
	}
	t.Fatalf("no allocation reused %v", fr)
	return memmap.FileRange{}
}

// failPopulate makes populate fail with ENOMEM, for the rest of the test,
// for every range that fail selects.
func failPopulate(t *testing.T, fail func(fr memmap.FileRange) bool) {
	testHookPopulate = func(fr memmap.FileRange) error {
		if fail(fr) {
			return unix.ENOMEM
		}
		return nil
	}
	t.Cleanup(func() { testHookPopulate = nil })
}

// committed reports whether every page of fr is committed (resident in
// the memfd, as mincore of the internal mapping says).
func committed(t *testing.T, f *MemoryFile, fr memmap.FileRange) bool {
	t.Helper()
	vec := make([]byte, fr.Length()/page)
	m := mapBytes(t, f, fr)
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatalf("mincore(%v): %v", fr, e)
	}
	for _, v := range vec {
		if v&1 == 0 {
			return false
		}
	}
	return true
}

// TestPopulateBatchFailure checks what a batch does when host memory is
// short (injected failures): a one-page allocation whose batch cannot be
// committed still succeeds if its own page can (nothing is cached then),
// and a range whose commitment failed is released, not cached, so that
// no later populating allocation gets pages that are not committed.
func TestPopulateBatchFailure(t *testing.T) {
	t.Run("batch", func(t *testing.T) {
		f := newFile(t, Options{DisableAsyncRelease: true, ReuseLimit: 4 * commitBatch})
		failPopulate(t, func(fr memmap.FileRange) bool { return fr.Length() > page })
		a, err := f.Allocate(page, AllocOpts{Populate: true, Overwrite: true})
		if err != nil {
			t.Fatalf("one-page populating allocation failed with its batch: %v", err)
		}
		if !committed(t, f, a) {
			t.Errorf("allocation %v is not committed", a)
		}
		if got := f.UsageCached(); got != 0 {
			t.Errorf("UsageCached = %#x after a failed batch", got)
		}
		if got := f.UsageAllocated(); got != page {
			t.Errorf("UsageAllocated = %#x, want one page", got)
		}
		checkInvariants(t, f)
		f.DecRef(a)
	})
	t.Run("all", func(t *testing.T) {
		f := newFile(t, Options{DisableAsyncRelease: true, ReuseLimit: 4 * commitBatch})
		failPopulate(t, func(memmap.FileRange) bool { return true })
		for _, n := range []uint64{page, 4 * page, commitBatch} {
			if fr, err := f.Allocate(n, AllocOpts{Populate: true}); !errors.Is(err, unix.ENOMEM) {
				t.Fatalf("Allocate(%#x) with commitment failing = %v, %v; want ENOMEM", n, fr, err)
			}
		}
		if got := f.UsageCached(); got != 0 {
			t.Errorf("UsageCached = %#x: ranges whose commitment failed were cached", got)
		}
		if got := f.UsageAllocated(); got != 0 {
			t.Errorf("UsageAllocated = %#x after failed allocations", got)
		}
		checkInvariants(t, f)
		// Commitment works again: populating allocations get
		// committed pages, with and without Overwrite.
		testHookPopulate = nil
		for _, opts := range []AllocOpts{{Populate: true, Overwrite: true}, {Populate: true}} {
			for range 8 {
				a := mustAllocate(t, f, page, opts)
				if !committed(t, f, a) {
					t.Fatalf("Allocate(%+v) = %v, not committed", opts, a)
				}
				defer f.DecRef(a)
			}
		}
	})
}

// TestPopulateBatchNoGrowth checks that a small populating allocation
// commits a batch only where one fits already: it neither grows the file
// nor waits for releases to make room for the batch's surplus.
func TestPopulateBatchNoGrowth(t *testing.T) {
	f := newFile(t, Options{DisableAsyncRelease: true, ReuseLimit: 4 * commitBatch})
	size := f.TotalSize()
	big := mustAllocate(t, f, size-4*page, AllocOpts{})
	a := mustAllocate(t, f, page, AllocOpts{Populate: true})
	if got := f.TotalSize(); got != size {
		t.Errorf("a one-page populating allocation grew the file from %#x to %#x", size, got)
	}
	if a.Start != big.End {
		t.Errorf("allocation %v is not the page after %v", a, big)
	}
	if got := f.UsageCached(); got != 0 {
		t.Errorf("UsageCached = %#x: a batch was committed past the free space", got)
	}
	checkInvariants(t, f)
	f.DecRef(a)
	f.DecRef(big)
}

// TestReuseCacheAdjacentTakes checks that one-page populating allocations
// served by the reuse cache come in ascending order from one cached range,
// as long as it lasts, whatever else the cache holds: a copy-on-write
// break allocates a page at a time, and only adjacent pages let its pmas
// merge (bench's fork_cow_break had a pma per page otherwise).
func TestReuseCacheAdjacentTakes(t *testing.T) {
	f := newFile(t, Options{DisableAsyncRelease: true, ReuseLimit: 64 * page})
	var frs []memmap.FileRange
	for range 3 {
		fr := mustAllocate(t, f, 8*page, AllocOpts{Populate: true})
		fill(t, f, fr, 0xa5)
		frs = append(frs, fr)
	}
	for _, fr := range frs {
		f.DecRef(fr)
	}
	if got := f.UsageCached(); got != 24*page {
		t.Fatalf("UsageCached = %#x, want %#x", got, 24*page)
	}
	var taken []memmap.FileRange
	prev := mustAllocate(t, f, page, AllocOpts{Populate: true, Overwrite: true})
	taken = append(taken, prev)
	for i := 1; i < 8; i++ {
		fr := mustAllocate(t, f, page, AllocOpts{Populate: true, Overwrite: true})
		taken = append(taken, fr)
		if fr.Start != prev.End {
			t.Errorf("take %d: %v does not follow %v", i, fr, prev)
		}
		prev = fr
	}
	checkInvariants(t, f)
	for _, fr := range taken {
		f.DecRef(fr)
	}
	f.WaitReleased()
	if got := f.UsageAllocated(); got != 0 {
		t.Errorf("UsageAllocated = %#x after freeing everything", got)
	}
}

// TestExposedNotCached checks that pages the host kernel holds (here a
// pipe, given the first page with vmsplice from the internal mapping) and
// that were declared so (Expose) are released when freed, not cached: the
// pipe then yields what the page held when it was given, however the pages
// taken from the cache afterwards are written, and the rest of the freed
// range is cached as before.
func TestExposedNotCached(t *testing.T) {
	f := newFile(t, Options{ReuseLimit: 64 * page})
	fr := mustAllocate(t, f, 8*page, AllocOpts{Populate: true})
	fill(t, f, fr, 'A')
	var p [2]int
	if err := unix.Pipe(p[:]); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	m := mapBytes(t, f, fr)
	iov := []unix.Iovec{{Base: &m[0], Len: page}}
	if n, err := unix.Vmsplice(p[1], iov, 0); err != nil || n != page {
		t.Fatalf("vmsplice = %d, %v", n, err)
	}
	f.Expose(memmap.FileRange{Start: fr.Start, End: fr.Start + page})
	// Exposing pages not allocated does nothing.
	f.Expose(memmap.FileRange{Start: fr.End + 64*page, End: fr.End + 66*page})
	f.DecRef(fr)
	if got := f.UsageCached(); got != 7*page {
		t.Errorf("UsageCached = %#x after freeing 8 pages, one exposed; want %#x", got, 7*page)
	}
	checkInvariants(t, f)
	// Populating allocations take the cached pages, and the released
	// one once free, and write them.
	var again []memmap.FileRange
	for i := 0; i < 16; i++ {
		x := mustAllocate(t, f, page, AllocOpts{Populate: true})
		fill(t, f, x, 'S')
		again = append(again, x)
	}
	buf := make([]byte, page)
	if n, err := unix.Read(p[0], buf); err != nil || n != page {
		t.Fatalf("read of the pipe = %d, %v", n, err)
	}
	for i, b := range buf {
		if b != 'A' {
			t.Fatalf("the pipe's page reads %q at %d, want 'A': the page was reused while the pipe held it", b, i)
		}
	}
	f.mu.Lock()
	n := f.exposed.Len()
	f.mu.Unlock()
	if n != 0 {
		t.Errorf("%d exposed ranges left after their pages were freed", n)
	}
	for _, x := range again {
		f.DecRef(x)
	}
	checkInvariants(t, f)
}
