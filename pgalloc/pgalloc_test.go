package pgalloc

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/safemem"
	"github.com/vmspace/vmspace/segment"
)

const page = hostarch.PageSize

// newFile returns a new MemoryFile closed at the end of the test, after
// checking that nothing is left allocated or unreleased if checkEmpty.
func newFile(t testing.TB, opts Options) *MemoryFile {
	t.Helper()
	if opts.Name == "" {
		opts.Name = fmt.Sprintf("pgalloc-test-%s", strings.ReplaceAll(t.Name(), "/", "-"))
	}
	f, err := New(opts)
	if err != nil {
		t.Fatalf("New(%+v): %v", opts, err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return f
}

// checkInvariants checks f's internal consistency.
func checkInvariants(t testing.TB, f *MemoryFile) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	var allocated uint64
	size := f.size.Load()
	var prev segment.Iterator[uint64, refCount, usedFuncs]
	for seg := f.used.FirstSegment(); seg.Ok(); seg = seg.NextSegment() {
		r := seg.Range()
		if r.End > size || !hostarch.IsPageAligned(r.Start) || !hostarch.IsPageAligned(r.End) {
			t.Errorf("segment %v: unaligned or past the file size %#x", r, size)
		}
		if seg.Value() > 0 {
			allocated += r.Length()
		}
		if prev.Ok() && prev.End() == r.Start && prev.Value() == seg.Value() {
			t.Errorf("segments %v and %v both have count %d but are not merged", prev.Range(), r, seg.Value())
		}
		prev = seg
	}
	if got := f.allocated.Load(); got != allocated {
		t.Errorf("allocated = %#x, but segments with references span %#x", got, allocated)
	}
	var held uint64
	for _, fr := range f.held {
		held += fr.Length()
	}
	if held != f.heldBytes {
		t.Errorf("heldBytes = %#x, but held ranges span %#x", f.heldBytes, held)
	}
	var cached uint64
	free := append(append([]memmap.FileRange(nil), f.pending...), f.held...)
	for _, c := range f.cache {
		cached += c.fr.Length()
		free = append(free, c.fr)
	}
	if cached != f.cacheBytes {
		t.Errorf("cacheBytes = %#x, but cached ranges span %#x", f.cacheBytes, cached)
	}
	if f.cacheBytes > f.reuseLimit {
		t.Errorf("cacheBytes = %#x, past the limit %#x", f.cacheBytes, f.reuseLimit)
	}
	for _, fr := range free {
		for seg := range f.used.Segments(segment.Range[uint64](fr)) {
			if seg.Value() != 0 {
				t.Errorf("pending, held or cached range %v overlaps %v with count %d", fr, seg.Range(), seg.Value())
			}
		}
	}
}

// refsOf returns the reference count of every page of fr (0 for free pages
// and pages awaiting release).
func refsOf(f *MemoryFile, fr memmap.FileRange) []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]uint64, fr.Length()/page)
	for i := range out {
		if seg := f.used.FindSegment(fr.Start + uint64(i)*page); seg.Ok() {
			out[i] = uint64(seg.Value())
		}
	}
	return out
}

// usedLen returns the number of segments in f.used.
func usedLen(f *MemoryFile) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.used.Len()
}

// mustAllocate allocates or fails the test.
func mustAllocate(t testing.TB, f *MemoryFile, length uint64, opts AllocOpts) memmap.FileRange {
	t.Helper()
	fr, err := f.Allocate(length, opts)
	if err != nil {
		t.Fatalf("Allocate(%#x, %+v): %v", length, opts, err)
	}
	if fr.Length() != length || !hostarch.IsPageAligned(fr.Start) {
		t.Fatalf("Allocate(%#x, %+v) = %v", length, opts, fr)
	}
	return fr
}

// mapBytes returns the internal mapping of fr as one slice (fr must lie in
// one chunk).
func mapBytes(t testing.TB, f *MemoryFile, fr memmap.FileRange) []byte {
	t.Helper()
	bs, err := f.MapInternal(fr, hostarch.ReadWrite)
	if err != nil {
		t.Fatalf("MapInternal(%v): %v", fr, err)
	}
	if bs.NumBlocks() != 1 || bs.NumBytes() != fr.Length() {
		t.Fatalf("MapInternal(%v) = %v, want one block of %#x bytes", fr, bs, fr.Length())
	}
	return bs.Head().ToSlice()
}

// fileBytes reads fr from the memfd with pread, bypassing the mappings.
func fileBytes(t testing.TB, f *MemoryFile, fr memmap.FileRange) []byte {
	t.Helper()
	b := make([]byte, fr.Length())
	n, err := unix.Pread(f.FD(), b, int64(fr.Start))
	if err != nil || n != len(b) {
		t.Fatalf("pread(%v) = %d, %v", fr, n, err)
	}
	return b
}

// isZero reports whether b is all zero bytes.
func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// mustPanic runs fn and fails unless it panics with a message containing
// want.
func mustPanic(t *testing.T, want string, fn func()) {
	t.Helper()
	defer func() {
		t.Helper()
		r := recover()
		if r == nil {
			t.Errorf("no panic; want one containing %q", want)
			return
		}
		if msg := fmt.Sprint(r); !strings.Contains(msg, want) {
			t.Errorf("panic %q; want one containing %q", msg, want)
		}
	}()
	fn()
}

func TestAllocateBadInput(t *testing.T) {
	f := newFile(t, Options{})
	for _, tc := range []struct {
		name   string
		length uint64
		opts   AllocOpts
		want   error
	}{
		{"zero", 0, AllocOpts{}, unix.EINVAL},
		{"one byte", 1, AllocOpts{}, unix.EINVAL},
		{"page less one", page - 1, AllocOpts{}, unix.EINVAL},
		{"page plus one", page + 1, AllocOpts{}, unix.EINVAL},
		{"huge unaligned", hostarch.HugePageSize + 1, AllocOpts{Huge: true}, unix.EINVAL},
		{"max uint64", ^uint64(0), AllocOpts{}, unix.EINVAL},
		{"bad direction", page, AllocOpts{Dir: Direction(7)}, unix.EINVAL},
		{"negative direction", page, AllocOpts{Dir: Direction(-1)}, unix.EINVAL},
		{"larger than the file may be", maxFileSize + page, AllocOpts{}, ErrLimit},
		{"page-aligned but enormous", ^uint64(0) &^ hostarch.PageMask, AllocOpts{}, ErrLimit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fr, err := f.Allocate(tc.length, tc.opts)
			if !errors.Is(err, tc.want) {
				t.Errorf("Allocate(%#x, %+v) = %v, %v; want error %v", tc.length, tc.opts, fr, err, tc.want)
			}
		})
	}
	if got := f.UsageAllocated(); got != 0 {
		t.Errorf("UsageAllocated after failed allocations = %#x", got)
	}
	if got := usedLen(f); got != 0 {
		t.Errorf("used set has %d segments after failed allocations", got)
	}
	// The file's maximum size is itself allocatable in principle; ErrLimit
	// for more wraps ENOMEM.
	if _, err := f.Allocate(maxFileSize+page, AllocOpts{}); !errors.Is(err, unix.ENOMEM) {
		t.Errorf("oversized Allocate error %v does not wrap ENOMEM", err)
	}
}

func TestAllocateDistinctZeroed(t *testing.T) {
	f := newFile(t, Options{DisableAsyncRelease: true})
	var frs []memmap.FileRange
	for i, n := range []uint64{1, 3, 1, 16, 2, 512, 7} {
		fr := mustAllocate(t, f, n*page, AllocOpts{})
		for _, o := range frs {
			if fr.Overlaps(o) {
				t.Fatalf("allocation %v overlaps earlier %v", fr, o)
			}
		}
		b := mapBytes(t, f, fr)
		if !isZero(b) {
			t.Fatalf("new allocation %v does not read as zero", fr)
		}
		for j := range b {
			b[j] = byte(i + 1)
		}
		frs = append(frs, fr)
	}
	// Bottom-up allocation packs from offset 0.
	if frs[0].Start != 0 || frs[1].Start != page {
		t.Errorf("bottom-up allocations at %v, %v; want 0 and %#x", frs[0], frs[1], page)
	}
	for i, fr := range frs {
		if got := fileBytes(t, f, fr); !bytes.Equal(got, bytes.Repeat([]byte{byte(i + 1)}, int(fr.Length()))) {
			t.Errorf("contents of %v changed", fr)
		}
	}
	var total uint64
	for _, fr := range frs {
		total += fr.Length()
	}
	if got := f.UsageAllocated(); got != total {
		t.Errorf("UsageAllocated = %#x, want %#x", got, total)
	}
	checkInvariants(t, f)
	for _, fr := range frs {
		f.DecRef(fr)
	}
	if got := f.UsageAllocated(); got != 0 {
		t.Errorf("UsageAllocated after freeing everything = %#x", got)
	}
	checkInvariants(t, f)
}

func TestRefCountsOverlappingSubranges(t *testing.T) {
	f := newFile(t, Options{DisableAsyncRelease: true})
	fr := mustAllocate(t, f, 8*page, AllocOpts{})
	at := func(a, b uint64) memmap.FileRange {
		return memmap.FileRange{Start: fr.Start + a*page, End: fr.Start + b*page}
	}
	steps := []struct {
		op        string
		r         memmap.FileRange
		want      []uint64
		allocated uint64 // pages
	}{
		{"inc", at(1, 5), []uint64{1, 2, 2, 2, 2, 1, 1, 1}, 8},
		{"inc", at(3, 7), []uint64{1, 2, 2, 3, 3, 2, 2, 1}, 8},
		{"dec", at(0, 8), []uint64{0, 1, 1, 2, 2, 1, 1, 0}, 6},
		{"dec", at(2, 4), []uint64{0, 1, 0, 1, 2, 1, 1, 0}, 5},
		{"inc", at(3, 4), []uint64{0, 1, 0, 2, 2, 1, 1, 0}, 5},
		{"dec", at(3, 5), []uint64{0, 1, 0, 1, 1, 1, 1, 0}, 5},
		{"dec", at(3, 7), []uint64{0, 1, 0, 0, 0, 0, 0, 0}, 1},
		{"dec", at(1, 2), []uint64{0, 0, 0, 0, 0, 0, 0, 0}, 0},
	}
	for i, s := range steps {
		switch s.op {
		case "inc":
			f.IncRef(s.r)
		case "dec":
			f.DecRef(s.r)
		}
		if got := refsOf(f, fr); fmt.Sprint(got) != fmt.Sprint(s.want) {
			t.Fatalf("step %d (%s %v): counts %v, want %v", i, s.op, s.r, got, s.want)
		}
		if got := f.UsageAllocated(); got != s.allocated*page {
			t.Errorf("step %d: UsageAllocated = %#x, want %#x", i, got, s.allocated*page)
		}
		checkInvariants(t, f)
	}
	if n := usedLen(f); n != 0 {
		t.Errorf("used set has %d segments after everything was freed", n)
	}
}

func TestRefCountMerging(t *testing.T) {
	f := newFile(t, Options{DisableAsyncRelease: true})
	fr := mustAllocate(t, f, 16*page, AllocOpts{})
	// Splitting the counts and restoring them must leave one segment.
	for i := uint64(0); i < 16; i += 2 {
		f.IncRef(memmap.FileRange{Start: fr.Start + i*page, End: fr.Start + (i+1)*page})
	}
	if n := usedLen(f); n != 16 {
		t.Errorf("after IncRef of alternate pages: %d segments, want 16", n)
	}
	for i := uint64(0); i < 16; i += 2 {
		f.DecRef(memmap.FileRange{Start: fr.Start + i*page, End: fr.Start + (i+1)*page})
	}
	if n := usedLen(f); n != 1 {
		t.Errorf("after restoring the counts: %d segments, want 1", n)
	}
	// Two allocations with equal counts are one segment too.
	fr2 := mustAllocate(t, f, 4*page, AllocOpts{})
	if fr2.Start != fr.End || usedLen(f) != 1 {
		t.Errorf("second allocation %v after %v: %d segments, want 1", fr2, fr, usedLen(f))
	}
	checkInvariants(t, f)
	f.DecRef(memmap.FileRange{Start: fr.Start, End: fr2.End})
	checkInvariants(t, f)
}

func TestRefCountMisuse(t *testing.T) {
	f := newFile(t, Options{DisableAsyncRelease: true})
	fr := mustAllocate(t, f, 4*page, AllocOpts{})
	f.DecRef(memmap.FileRange{Start: fr.Start + 3*page, End: fr.End})
	before := refsOf(f, memmap.FileRange{Start: 0, End: 8 * page})
	for _, tc := range []struct {
		name string
		fn   func()
		want string
	}{
		{"DecRef of a freed page", func() { f.DecRef(fr) }, "holds no reference"},
		{"IncRef of a freed page", func() { f.IncRef(fr) }, "holds no reference"},
		{"DecRef never allocated", func() { f.DecRef(memmap.FileRange{Start: 100 * page, End: 101 * page}) }, "holds no reference"},
		{"IncRef past the end", func() { f.IncRef(memmap.FileRange{Start: fr.Start, End: fr.End + page}) }, "holds no reference"},
		{"DecRef unaligned", func() { f.DecRef(memmap.FileRange{Start: fr.Start, End: fr.Start + 1}) }, "not a page-aligned range"},
		{"IncRef malformed", func() { f.IncRef(memmap.FileRange{Start: 2 * page, End: page}) }, "not a page-aligned range"},
		{"DecRef beyond the key space", func() { f.DecRef(memmap.FileRange{Start: 0, End: ^uint64(0) &^ hostarch.PageMask}) }, "not a page-aligned range"},
	} {
		t.Run(tc.name, func(t *testing.T) { mustPanic(t, tc.want, tc.fn) })
	}
	// The panics changed nothing and left the lock free.
	if got := refsOf(f, memmap.FileRange{Start: 0, End: 8 * page}); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Errorf("counts changed by failed calls: %v, want %v", got, before)
	}
	// Empty ranges are no-ops.
	f.IncRef(memmap.FileRange{Start: 5 * page, End: 5 * page})
	f.DecRef(memmap.FileRange{Start: 5 * page, End: 5 * page})
	f.DecRef(memmap.FileRange{Start: fr.Start, End: fr.Start + 3*page})
	checkInvariants(t, f)
	if got := f.UsageAllocated(); got != 0 {
		t.Errorf("UsageAllocated = %#x", got)
	}
}

// TestRefCountModel compares random IncRef/DecRef/Allocate sequences with a
// per-page model.
func TestRefCountModel(t *testing.T) {
	for _, async := range []bool{false, true} {
		t.Run(fmt.Sprintf("async=%v", async), func(t *testing.T) {
			f := newFile(t, Options{DisableAsyncRelease: !async})
			rng := rand.New(rand.NewPCG(1, 2))
			model := map[uint64]uint64{} // page offset -> count
			var live []memmap.FileRange  // allocated ranges (some pages maybe freed)
			for step := 0; step < 3000; step++ {
				switch op := rng.IntN(10); {
				case op < 3 || len(live) == 0:
					fr := mustAllocate(t, f, uint64(1+rng.IntN(8))*page, AllocOpts{Dir: Direction(rng.IntN(2))})
					for off := fr.Start; off < fr.End; off += page {
						if model[off] != 0 {
							t.Fatalf("step %d: Allocate returned %v, whose page %#x has %d references", step, fr, off, model[off])
						}
						model[off] = 1
					}
					live = append(live, fr)
				default:
					i := rng.IntN(len(live))
					fr := live[i]
					n := fr.Length() / page
					a := uint64(rng.IntN(int(n)))
					b := a + 1 + uint64(rng.IntN(int(n-a)))
					sub := memmap.FileRange{Start: fr.Start + a*page, End: fr.Start + b*page}
					held := true
					for off := sub.Start; off < sub.End; off += page {
						held = held && model[off] > 0
					}
					if !held {
						continue
					}
					if op < 5 {
						f.IncRef(sub)
						for off := sub.Start; off < sub.End; off += page {
							model[off]++
						}
					} else {
						f.DecRef(sub)
						for off := sub.Start; off < sub.End; off += page {
							model[off]--
						}
					}
					alive := false
					for off := fr.Start; off < fr.End; off += page {
						alive = alive || model[off] > 0
					}
					if !alive {
						live = append(live[:i], live[i+1:]...)
					}
				}
				if step%100 == 0 {
					var want uint64
					for _, c := range model {
						if c > 0 {
							want += page
						}
					}
					if got := f.UsageAllocated(); got != want {
						t.Fatalf("step %d: UsageAllocated = %#x, model says %#x", step, got, want)
					}
					for _, fr := range live {
						got := refsOf(f, fr)
						for j, c := range got {
							if w := model[fr.Start+uint64(j)*page]; c != w {
								t.Fatalf("step %d: page %#x has count %d, model %d", step, fr.Start+uint64(j)*page, c, w)
							}
						}
					}
					checkInvariants(t, f)
				}
			}
			for _, fr := range live {
				for off := fr.Start; off < fr.End; off += page {
					for ; model[off] > 0; model[off]-- {
						f.DecRef(memmap.FileRange{Start: off, End: off + page})
					}
				}
			}
			f.WaitReleased()
			if got := f.UsageAllocated(); got != 0 {
				t.Errorf("UsageAllocated at the end = %#x", got)
			}
			if n := usedLen(f); n != 0 {
				t.Errorf("used set has %d segments at the end", n)
			}
		})
	}
}

// reuseZeroed checks that an allocation of fr's size gets fr, released
// just before, reading as zero, and frees it again.
func reuseZeroed(t *testing.T, f *MemoryFile, fr memmap.FileRange) {
	t.Helper()
	fr2 := mustAllocate(t, f, fr.Length(), AllocOpts{})
	if fr2 != fr {
		t.Errorf("reallocation got %v, want the released %v", fr2, fr)
	}
	if !isZero(mapBytes(t, f, fr2)) || !isZero(fileBytes(t, f, fr2)) {
		t.Errorf("reused range %v does not read as zero", fr2)
	}
	f.DecRef(fr2)
}

func TestReuseAfterFreeReadsZero(t *testing.T) {
	for _, async := range []bool{false, true} {
		t.Run(fmt.Sprintf("async=%v", async), func(t *testing.T) {
			f := newFile(t, Options{DisableAsyncRelease: !async})
			fr := mustAllocate(t, f, 4*page, AllocOpts{})
			b := mapBytes(t, f, fr)
			for i := range b {
				b[i] = 0xa5
			}
			f.DecRef(fr)
			f.WaitReleased()
			reuseZeroed(t, f, fr)
		})
	}
}

// TestFreedNotReusedBeforeRelease checks that a page whose release has not
// happened yet is never handed out.
func TestFreedNotReusedBeforeRelease(t *testing.T) {
	f := newFile(t, Options{})
	fr := mustAllocate(t, f, page, AllocOpts{})
	// Hold the releaser off by taking the lock and queueing by hand, as
	// DecRef does, without kicking.
	f.mu.Lock()
	seg := f.used.FindSegment(fr.Start)
	seg.SetValue(0)
	f.pending = append(f.pending, fr)
	f.allocated.Store(0)
	f.mu.Unlock()
	fr2 := mustAllocate(t, f, page, AllocOpts{})
	if fr2.Overlaps(fr) {
		t.Errorf("allocation %v reuses %v before its release", fr2, fr)
	}
	f.WaitReleased()
	fr3 := mustAllocate(t, f, page, AllocOpts{})
	if fr3 != fr {
		t.Errorf("after release got %v, want %v", fr3, fr)
	}
	f.DecRef(fr2)
	f.DecRef(fr3)
}

// TestHoldFreed checks Options.HoldFreed: a freed page keeps its contents
// and is neither released nor reused, however much is allocated meanwhile,
// until ReleaseHeld; then it is released and reused, reading as zero.
func TestHoldFreed(t *testing.T) {
	for _, async := range []bool{false, true} {
		t.Run(fmt.Sprintf("async=%v", async), func(t *testing.T) {
			f := newFile(t, Options{HoldFreed: true, DisableAsyncRelease: !async})
			fr := mustAllocate(t, f, 4*page, AllocOpts{})
			b := mapBytes(t, f, fr)
			for i := range b {
				b[i] = 0x5a
			}
			f.DecRef(fr)
			f.WaitReleased()
			if got := f.UsageHeld(); got != fr.Length() {
				t.Errorf("UsageHeld = %#x, want %#x", got, fr.Length())
			}
			if got := f.UsageAllocated(); got != 0 {
				t.Errorf("UsageAllocated = %#x after freeing everything", got)
			}
			// A write through a mapping that outlived the free stays
			// in the held page, which nobody else gets.
			b[7] = 0x77
			var others []memmap.FileRange
			for i := 0; i < 8; i++ {
				o := mustAllocate(t, f, 4*page, AllocOpts{})
				if o.Overlaps(fr) {
					t.Fatalf("allocation %v reuses the held %v", o, fr)
				}
				if !isZero(mapBytes(t, f, o)) {
					t.Errorf("allocation %v does not read as zero", o)
				}
				others = append(others, o)
			}
			if b[0] != 0x5a || b[7] != 0x77 {
				t.Errorf("held page changed before ReleaseHeld: %#x %#x", b[0], b[7])
			}
			checkInvariants(t, f)
			for _, o := range others {
				f.DecRef(o)
			}
			f.ReleaseHeld()
			f.WaitReleased()
			if got := f.UsageHeld(); got != 0 {
				t.Errorf("UsageHeld = %#x after ReleaseHeld", got)
			}
			reuseZeroed(t, f, fr)
			f.ReleaseHeld()
			f.WaitReleased()
			if c := f.UsageCommitted(); c != 0 {
				t.Errorf("UsageCommitted = %#x after releasing everything", c)
			}
			checkInvariants(t, f)
		})
	}
}

func TestHostMemoryReturned(t *testing.T) {
	for _, async := range []bool{false, true} {
		t.Run(fmt.Sprintf("async=%v", async), func(t *testing.T) {
			f := newFile(t, Options{DisableAsyncRelease: !async})
			const n = 16 << 20
			if c := f.UsageCommitted(); c != 0 {
				t.Fatalf("new file has %#x bytes committed", c)
			}
			fr := mustAllocate(t, f, n, AllocOpts{Populate: true})
			if c := f.UsageCommitted(); c < n {
				t.Fatalf("after populating %#x bytes, UsageCommitted = %#x", uint64(n), c)
			}
			// Free half, in pieces: only that half is returned.
			for off := fr.Start; off < fr.Start+n/2; off += 64 * page {
				f.DecRef(memmap.FileRange{Start: off, End: off + 64*page})
			}
			f.WaitReleased()
			if c := f.UsageCommitted(); c < n/2 || c > n/2+hostarch.HugePageSize {
				t.Errorf("after freeing half, UsageCommitted = %#x, want about %#x", c, uint64(n/2))
			}
			if got := f.UsageAllocated(); got != n/2 {
				t.Errorf("UsageAllocated = %#x, want %#x", got, uint64(n/2))
			}
			f.DecRef(memmap.FileRange{Start: fr.Start + n/2, End: fr.End})
			f.WaitReleased()
			if c := f.UsageCommitted(); c != 0 {
				t.Errorf("after freeing everything, UsageCommitted = %#x", c)
			}
			checkInvariants(t, f)
		})
	}
}

func TestLimit(t *testing.T) {
	const limit = 1 << 20
	f := newFile(t, Options{Limit: limit, DisableAsyncRelease: true})
	fr := mustAllocate(t, f, limit/2, AllocOpts{})
	fr2 := mustAllocate(t, f, limit/2, AllocOpts{Huge: true})
	size, allocated, segs := f.TotalSize(), f.UsageAllocated(), usedLen(f)
	for _, tc := range []struct {
		length uint64
		opts   AllocOpts
	}{
		{page, AllocOpts{}},
		{page, AllocOpts{Dir: TopDown}},
		{limit, AllocOpts{Populate: true}},
		{limit * 4096, AllocOpts{Huge: true}},
	} {
		got, err := f.Allocate(tc.length, tc.opts)
		if !errors.Is(err, ErrLimit) || !errors.Is(err, unix.ENOMEM) {
			t.Errorf("Allocate(%#x, %+v) past the limit = %v, %v; want ErrLimit (ENOMEM)", tc.length, tc.opts, got, err)
		}
	}
	if f.TotalSize() != size || f.UsageAllocated() != allocated || usedLen(f) != segs || f.UsageCommitted() != 0 {
		t.Errorf("failed allocations changed usage: size %#x→%#x, allocated %#x→%#x, segments %d→%d, committed %#x",
			size, f.TotalSize(), allocated, f.UsageAllocated(), segs, usedLen(f), f.UsageCommitted())
	}
	// IncRef does not count against the limit: the pages are allocated once.
	f.IncRef(fr)
	f.DecRef(fr)
	f.DecRef(memmap.FileRange{Start: fr.Start, End: fr.Start + 2*page})
	fr3 := mustAllocate(t, f, 2*page, AllocOpts{})
	if _, err := f.Allocate(page, AllocOpts{}); !errors.Is(err, ErrLimit) {
		t.Errorf("Allocate at the limit again: %v", err)
	}
	f.DecRef(memmap.FileRange{Start: fr.Start + 2*page, End: fr.End})
	f.DecRef(fr2)
	f.DecRef(fr3)
	checkInvariants(t, f)
	if got := f.UsageAllocated(); got != 0 {
		t.Errorf("UsageAllocated = %#x", got)
	}
}

func TestHugeAndTopDown(t *testing.T) {
	f := newFile(t, Options{DisableAsyncRelease: true})
	size := f.TotalSize()
	steps := []struct {
		length uint64
		opts   AllocOpts
		want   uint64 // expected start
	}{
		{page, AllocOpts{}, 0},
		{page, AllocOpts{Huge: true}, hostarch.HugePageSize},
		{hostarch.HugePageSize, AllocOpts{Huge: true}, 2 * hostarch.HugePageSize},
		{page, AllocOpts{}, page},
		{page, AllocOpts{Dir: TopDown}, size - page},
		{2 * page, AllocOpts{Dir: TopDown}, size - 3*page},
		{page, AllocOpts{Dir: TopDown, Huge: true}, size - hostarch.HugePageSize},
		{3 * hostarch.HugePageSize, AllocOpts{Dir: TopDown, Huge: true}, size - 4*hostarch.HugePageSize},
		{page, AllocOpts{Dir: TopDown}, size - 4*page},
	}
	var frs []memmap.FileRange
	for i, s := range steps {
		fr := mustAllocate(t, f, s.length, s.opts)
		if fr.Start != s.want {
			t.Errorf("step %d: Allocate(%#x, %+v) = %v, want start %#x", i, s.length, s.opts, fr, s.want)
		}
		frs = append(frs, fr)
	}
	if f.TotalSize() != size {
		t.Errorf("file grew from %#x to %#x", size, f.TotalSize())
	}
	checkInvariants(t, f)
	for _, fr := range frs {
		f.DecRef(fr)
	}
}

func TestGrowth(t *testing.T) {
	f := newFile(t, Options{DisableAsyncRelease: true})
	if f.TotalSize() != chunkSize {
		t.Fatalf("initial size %#x", f.TotalSize())
	}
	a := mustAllocate(t, f, chunkSize-page, AllocOpts{})
	b := mustAllocate(t, f, 3*page, AllocOpts{})
	if b.Start != chunkSize-page || f.TotalSize() != 2*chunkSize {
		t.Errorf("straddling allocation %v, size %#x; want start %#x, size %#x", b, f.TotalSize(), uint64(chunkSize-page), uint64(2*chunkSize))
	}
	// Top-down with the file full below its end grows it too.
	c := mustAllocate(t, f, chunkSize, AllocOpts{Dir: TopDown})
	if f.TotalSize() != 3*chunkSize && f.TotalSize() != 4*chunkSize {
		t.Errorf("size after top-down growth %#x", f.TotalSize())
	}
	if c.End > f.TotalSize() || c.Overlaps(b) {
		t.Errorf("top-down growth allocated %v (size %#x)", c, f.TotalSize())
	}
	f.DecRef(a)
	f.DecRef(b)
	f.DecRef(c)
	checkInvariants(t, f)
}

// TestGrowthWaitsForRelease checks that the file is not grown past
// growFreely while freed memory is awaiting release.
// With a reuse cache big enough to keep the freed chunk, the cache is
// released first.
func TestGrowthWaitsForRelease(t *testing.T) {
	for _, reuse := range []uint64{0, 2 * chunkSize} {
		f := newFile(t, Options{ReuseLimit: reuse})
		f.growFreely = 0
		for i := 0; i < 5; i++ {
			fr := mustAllocate(t, f, chunkSize, AllocOpts{})
			if fr.Start != 0 {
				t.Errorf("reuse %#x, round %d: full-file allocation at %v, want 0", reuse, i, fr)
			}
			f.DecRef(fr)
		}
		if f.TotalSize() != chunkSize {
			t.Errorf("reuse %#x: file grew to %#x instead of waiting for the release", reuse, f.TotalSize())
		}
	}
}

func TestMapInternal(t *testing.T) {
	f := newFile(t, Options{DisableAsyncRelease: true})
	a := mustAllocate(t, f, chunkSize-page, AllocOpts{})
	b := mustAllocate(t, f, 3*page, AllocOpts{}) // [1G-4K, 1G+8K)
	bs, err := f.MapInternal(b, hostarch.ReadWrite)
	if err != nil {
		t.Fatalf("MapInternal(%v): %v", b, err)
	}
	if bs.NumBlocks() != 2 || bs.NumBytes() != 3*page || bs.Head().Len() != page {
		t.Fatalf("MapInternal across chunks = %v, want blocks of %#x and %#x bytes", bs, page, 2*page)
	}
	var blocks []safemem.Block
	for blk := range bs.All {
		if !blk.NeedSafecopy() {
			t.Errorf("block %v does not ask for safe copies", blk)
		}
		blocks = append(blocks, blk)
	}
	copy(blocks[0].ToSlice(), "first chunk")
	copy(blocks[1].ToSlice(), "second chunk")
	if got := fileBytes(t, f, memmap.FileRange{Start: b.Start, End: b.Start + 11}); string(got) != "first chunk" {
		t.Errorf("file at %#x = %q", b.Start, got)
	}
	if got := fileBytes(t, f, memmap.FileRange{Start: chunkSize, End: chunkSize + 12}); string(got) != "second chunk" {
		t.Errorf("file at %#x = %q", uint64(chunkSize), got)
	}
	// A sub-range within one chunk is one block at the same address.
	one, err := f.MapInternal(memmap.FileRange{Start: chunkSize + 7, End: chunkSize + 12}, hostarch.Read)
	if err != nil || one.NumBlocks() != 1 || string(one.Head().ToSlice()) != "second chunk"[7:] {
		t.Errorf("unaligned MapInternal = %v, %v", one, err)
	}
	for _, tc := range []struct {
		name string
		fr   memmap.FileRange
		want error // nil: empty result, no error
	}{
		{"empty", memmap.FileRange{Start: page, End: page}, nil},
		{"malformed", memmap.FileRange{Start: 2 * page, End: page}, unix.EINVAL},
		{"past end of file", memmap.FileRange{Start: 0, End: f.TotalSize() + page}, unix.EINVAL},
		{"far past end", memmap.FileRange{Start: ^uint64(0) - page, End: ^uint64(0)}, unix.EINVAL},
	} {
		bs, err := f.MapInternal(tc.fr, hostarch.Read)
		if !errors.Is(err, tc.want) || (tc.want == nil && !bs.IsEmpty()) {
			t.Errorf("%s: MapInternal(%v) = %v, %v; want error %v", tc.name, tc.fr, bs, err, tc.want)
		}
	}
	f.DecRef(a)
	f.DecRef(b)
}

// TestPopulate checks that a populated allocation is committed and takes
// (almost) no host fault when written through the internal mapping, unlike
// an unpopulated one.
func TestPopulate(t *testing.T) {
	f := newFile(t, Options{DisableAsyncRelease: true})
	const n = 4 << 20
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	faults := func(fr memmap.FileRange) int64 {
		b := mapBytes(t, f, fr)
		var before, after unix.Rusage
		unix.Getrusage(unix.RUSAGE_THREAD, &before)
		for i := 0; i < len(b); i += page {
			b[i] = 1
		}
		unix.Getrusage(unix.RUSAGE_THREAD, &after)
		return (after.Minflt - before.Minflt) + (after.Majflt - before.Majflt)
	}
	lazy := mustAllocate(t, f, n, AllocOpts{})
	if c := f.UsageCommitted(); c != 0 {
		t.Errorf("unpopulated allocation committed %#x bytes", c)
	}
	lazyFaults := faults(lazy)
	pop := mustAllocate(t, f, n, AllocOpts{Populate: true})
	if c := f.UsageCommitted(); c < 2*n {
		t.Errorf("after populating, UsageCommitted = %#x, want %#x", c, uint64(2*n))
	}
	if !isZero(fileBytes(t, f, pop)) {
		t.Errorf("populated allocation is not zero")
	}
	popFaults := faults(pop)
	t.Logf("faults writing %d pages: unpopulated %d, populated %d", n/page, lazyFaults, popFaults)
	if lazyFaults < n/page/2 {
		t.Errorf("writing unpopulated pages took only %d faults; the fault count is not measuring anything", lazyFaults)
	}
	if popFaults > n/page/16 {
		t.Errorf("writing populated pages took %d faults", popFaults)
	}
	// Commit of an existing range.
	f.DecRef(lazy)
	if err := f.Commit(lazy); !errors.Is(err, unix.EINVAL) {
		t.Errorf("Commit of a freed range: %v", err)
	}
	fr := mustAllocate(t, f, n, AllocOpts{})
	before := f.UsageCommitted()
	if err := f.Commit(fr); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if c := f.UsageCommitted(); c < before+n {
		t.Errorf("Commit raised UsageCommitted from %#x only to %#x", before, c)
	}
	f.DecRef(fr)
	f.DecRef(pop)
}

func TestDecommit(t *testing.T) {
	f := newFile(t, Options{DisableAsyncRelease: true})
	fr := mustAllocate(t, f, 64*page, AllocOpts{Populate: true})
	b := mapBytes(t, f, fr)
	for i := range b {
		b[i] = 7
	}
	sub := memmap.FileRange{Start: fr.Start + 16*page, End: fr.Start + 48*page}
	if err := f.Decommit(sub); err != nil {
		t.Fatalf("Decommit(%v): %v", sub, err)
	}
	// Check the usage first: reading a hole of a shared shmem mapping
	// allocates a page again.
	if c := f.UsageCommitted(); c != 32*page {
		t.Errorf("UsageCommitted after Decommit = %#x, want %#x", c, 32*page)
	}
	if !isZero(b[16*page : 48*page]) {
		t.Errorf("decommitted range does not read as zero")
	}
	if b[16*page-1] != 7 || b[48*page] != 7 {
		t.Errorf("Decommit touched bytes outside %v", sub)
	}
	if got := refsOf(f, fr); got[20] != 1 || f.UsageAllocated() != 64*page {
		t.Errorf("Decommit changed reference counts: %v", got)
	}
	for _, bad := range []memmap.FileRange{
		{Start: fr.Start, End: fr.Start},
		{Start: fr.Start + 1, End: fr.End},
		{Start: fr.End, End: fr.End + page},
		{Start: fr.End, End: fr.Start},
	} {
		if err := f.Decommit(bad); !errors.Is(err, unix.EINVAL) {
			t.Errorf("Decommit(%v) = %v, want EINVAL", bad, err)
		}
	}
	f.DecRef(fr)
}

func TestConcurrent(t *testing.T) {
	for _, async := range []bool{false, true} {
		t.Run(fmt.Sprintf("async=%v", async), func(t *testing.T) {
			f := newFile(t, Options{DisableAsyncRelease: !async, Limit: 64 << 20})
			const workers = 8
			iters := 300
			if testing.Short() {
				iters = 50
			}
			var wg sync.WaitGroup
			errs := make(chan error, workers)
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(w), 99))
					var held []memmap.FileRange
					for i := 0; i < iters; i++ {
						n := uint64(1 + rng.IntN(16))
						fr, err := f.Allocate(n*page, AllocOpts{Huge: rng.IntN(8) == 0, Dir: Direction(rng.IntN(2)), Populate: rng.IntN(4) == 0})
						if err != nil {
							errs <- err
							return
						}
						bs, err := f.MapInternal(fr, hostarch.ReadWrite)
						if err != nil {
							errs <- err
							return
						}
						tag := byte(w*16 + i%16 + 1)
						for blk := range bs.All {
							s := blk.ToSlice()
							for j := 0; j < len(s); j += page {
								if s[j] != 0 {
									errs <- fmt.Errorf("new allocation %v reads %#x at +%#x", fr, s[j], j)
									return
								}
								s[j] = tag
							}
						}
						// Share part of it, then drop the share.
						sub := memmap.FileRange{Start: fr.Start, End: fr.Start + (1+uint64(rng.IntN(int(n))))*page}
						f.IncRef(sub)
						held = append(held, fr)
						if len(held) > 4 {
							old := held[0]
							held = held[1:]
							f.DecRef(old)
						}
						f.DecRef(sub)
						for blk := range bs.All {
							s := blk.ToSlice()
							for j := 0; j < len(s); j += page {
								if s[j] != tag {
									errs <- fmt.Errorf("allocation %v changed under its owner at +%#x", fr, j)
									return
								}
							}
						}
					}
					for _, fr := range held {
						f.DecRef(fr)
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			f.WaitReleased()
			checkInvariants(t, f)
			if got := f.UsageAllocated(); got != 0 {
				t.Errorf("UsageAllocated = %#x after everything was freed", got)
			}
			if got := f.UsageCommitted(); got != 0 {
				t.Errorf("UsageCommitted = %#x after everything was freed", got)
			}
			if n := usedLen(f); n != 0 {
				t.Errorf("%d segments left", n)
			}
		})
	}
}

func TestClose(t *testing.T) {
	name := "pgalloc-test-close-leak-check"
	goroutines := runtime.NumGoroutine()
	f, err := New(Options{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	fr := mustAllocate(t, f, chunkSize+page, AllocOpts{})
	if err := f.Commit(memmap.FileRange{Start: fr.End - 2*page, End: fr.End}); err != nil {
		t.Fatal(err)
	}
	small := mustAllocate(t, f, page, AllocOpts{})
	f.DecRef(small)
	if _, err := f.MapInternal(fr, hostarch.Read); err != nil {
		t.Fatal(err)
	}
	mapped := func() int {
		maps, err := os.ReadFile("/proc/self/maps")
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(maps), "memfd:"+name)
	}
	if n := mapped(); n != 2 {
		t.Errorf("%d internal mappings in /proc/self/maps, want 2", n)
	}
	fd := f.FD()
	if err := f.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n := mapped(); n != 0 {
		t.Errorf("%d internal mappings left after Close", n)
	}
	if n := runtime.NumGoroutine(); n > goroutines {
		t.Errorf("%d goroutines after Close, %d before New: the releaser leaked", n, goroutines)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != unix.EBADF {
		t.Errorf("fd %d still open after Close (fcntl: %v)", fd, err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := f.Allocate(page, AllocOpts{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Allocate after Close: %v", err)
	}
	if _, err := f.MapInternal(memmap.FileRange{Start: 0, End: page}, hostarch.Read); !errors.Is(err, ErrClosed) {
		t.Errorf("MapInternal after Close: %v", err)
	}
	if err := f.Decommit(fr); !errors.Is(err, ErrClosed) {
		t.Errorf("Decommit after Close: %v", err)
	}
	f.IncRef(fr) // no-ops
	f.DecRef(fr)
	f.WaitReleased()
	if f.UsageAllocated() != 0 || f.UsageCommitted() != 0 {
		t.Errorf("usage after Close: %#x allocated, %#x committed", f.UsageAllocated(), f.UsageCommitted())
	}
}

func TestDirectionString(t *testing.T) {
	for d, want := range map[Direction]string{BottomUp: "BottomUp", TopDown: "TopDown", 9: "Direction(9)"} {
		if got := d.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(d), got, want)
		}
	}
}

// TestRefCount checks that RefCount reports each page's references and 0
// for a free page.
func TestRefCount(t *testing.T) {
	f := newFile(t, Options{DisableAsyncRelease: true})
	fr, err := f.Allocate(3*page, AllocOpts{})
	if err != nil {
		t.Fatal(err)
	}
	f.IncRef(memmap.FileRange{Start: fr.Start + page, End: fr.Start + 2*page})
	for i, want := range []uint64{1, 2, 1} {
		if got := f.RefCount(fr.Start + uint64(i)*page); got != want {
			t.Errorf("page %d: RefCount = %d, want %d", i, got, want)
		}
	}
	f.DecRef(memmap.FileRange{Start: fr.Start + page, End: fr.Start + 2*page})
	f.DecRef(fr)
	if got := f.RefCount(fr.Start + page); got != 0 {
		t.Errorf("freed page: RefCount = %d, want 0", got)
	}
}

// TestGrowsFreelyWhileReleasing: below growFreely the file grows rather than
// waits for memory being released. A chunk freed into the reuse cache
// stands in the way of a lazy allocation (which never takes cached pages):
// the cache is released in the background and the allocation lands in the
// grown file at once. (Waiting for the release instead made the first lazy
// faults after a large populate about ten times slower: bench's fault_256m
// right after populate_256m.)
func TestGrowsFreelyWhileReleasing(t *testing.T) {
	f := newFile(t, Options{ReuseLimit: 2 * chunkSize})
	a := mustAllocate(t, f, chunkSize, AllocOpts{Populate: true})
	f.DecRef(a)
	b := mustAllocate(t, f, chunkSize, AllocOpts{})
	if b.Start != chunkSize || f.TotalSize() != 2*chunkSize {
		t.Errorf("lazy allocation at %v with the file at %#x; want it at %#x in a file grown to %#x", b, f.TotalSize(), uint64(chunkSize), uint64(2*chunkSize))
	}
	f.DecRef(b)
	f.WaitReleased()
	checkInvariants(t, f)
	if !f.presized {
		t.Errorf("the memfd was not given its maximum size (RLIMIT_FSIZE?)")
	}
}
