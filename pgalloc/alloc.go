package pgalloc

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/segment"
)

// Allocate allocates length bytes of the file and returns their range, each
// page holding one reference. length must be a positive multiple of the page
// size (else the error wraps unix.EINVAL). The pages read as zero.
//
// Allocate takes the first free range that fits, from the bottom or the top
// of the file as opts.Dir says, huge-page-aligned if opts.Huge. It fails
// with an error wrapping ErrLimit if the allocation would exceed
// Options.Limit or the file's maximum size; nothing changes then. If
// opts.Populate is set and committing host memory fails, the allocation is
// undone and the error (typically wrapping unix.ENOMEM) returned.
func (f *MemoryFile) Allocate(length uint64, opts AllocOpts) (memmap.FileRange, error) {
	if length == 0 || !hostarch.IsPageAligned(length) {
		return memmap.FileRange{}, fmt.Errorf("pgalloc: Allocate(%#x): length is not a positive multiple of the page size: %w", length, unix.EINVAL)
	}
	if opts.Dir != BottomUp && opts.Dir != TopDown {
		return memmap.FileRange{}, fmt.Errorf("pgalloc: Allocate: invalid direction %v: %w", opts.Dir, unix.EINVAL)
	}
	if length > maxFileSize {
		return memmap.FileRange{}, fmt.Errorf("pgalloc: Allocate(%#x): larger than the file's maximum size: %w", length, ErrLimit)
	}
	align := uint64(hostarch.PageSize)
	if opts.Huge {
		align = hostarch.HugePageSize
	}

	f.mu.Lock()
	if opts.Populate && !f.closed {
		if fr, ok := f.takeCachedLocked(length, align); ok {
			f.mu.Unlock()
			if opts.Overwrite {
				return fr, nil
			}
			if err := f.zeroCached(fr); err != nil {
				// Not written, so maybe not committed: not back
				// to the cache.
				f.freeFresh(fr, false)
				return memmap.FileRange{}, err
			}
			return fr, nil
		}
	}
	// A small populating allocation commits a whole batch, but only where
	// one fits in the file as it is: it neither grows the file nor waits
	// for releases to make room for pages it did not ask for.
	total := length
	var (
		start uint64
		err   error
		found bool
	)
	if opts.Populate {
		if total = f.commitBatchLocked(length); total != length {
			start, found = f.findGapLocked(total, align, opts.Dir)
			if !found {
				total = length
			}
		}
	}
	if !found {
		start, err = f.findFreeLocked(total, align, opts.Dir)
		if err != nil {
			f.mu.Unlock()
			return memmap.FileRange{}, err
		}
	}
	all := memmap.FileRange{Start: start, End: start + total}
	f.used.Insert(f.used.FindGap(start), segment.Range[uint64](all), 1)
	f.allocated.Store(f.allocated.Load() + total)
	f.mu.Unlock()

	fr := memmap.FileRange{Start: start, End: start + length}
	if !opts.Populate {
		return fr, nil
	}
	err = f.populate(all)
	if err != nil && total != length {
		// The batch did not fit in host memory; what was asked for
		// may. Return the surplus first (part of it may have been
		// committed), uncached: it is not all committed.
		f.freeFresh(memmap.FileRange{Start: fr.End, End: all.End}, false)
		total = length
		err = f.populate(fr)
	}
	if err != nil {
		f.freeFresh(fr, false)
		return memmap.FileRange{}, err
	}
	if total != length {
		f.freeFresh(memmap.FileRange{Start: fr.End, End: all.End}, true)
	}
	return fr, nil
}

// findGapLocked returns the start of a free range of length bytes aligned
// to align, in the direction dir, within the file as it is, or false if
// there is none or the allocation would pass the limit. Preconditions: mu
// held; as for findFreeLocked.
func (f *MemoryFile) findGapLocked(length, align uint64, dir Direction) (uint64, bool) {
	if f.closed {
		return 0, false
	}
	if alloc := f.allocated.Load(); f.limit != 0 && (length > f.limit || alloc > f.limit-length) {
		return 0, false
	}
	within := segment.Range[uint64]{Start: 0, End: f.size.Load()}
	if dir == TopDown {
		return f.used.FindHighestGap(within, length, align)
	}
	return f.used.FindLowestGap(within, length, align)
}

// findFreeLocked returns the start of a free range of length bytes aligned
// to align, in the direction dir, growing the file if it must. It checks the
// limit. It may release and retake mu (while waiting for freed memory to be
// released), so the caller must not rely on state read before it.
//
// Preconditions: mu held; length and align are positive multiples of the
// page size, align a power of two, length <= maxFileSize.
func (f *MemoryFile) findFreeLocked(length, align uint64, dir Direction) (uint64, error) {
	for {
		if f.closed {
			return 0, ErrClosed
		}
		if alloc := f.allocated.Load(); f.limit != 0 && (length > f.limit || alloc > f.limit-length) {
			return 0, fmt.Errorf("pgalloc: allocating %#x bytes with %#x of the %#x-byte limit allocated: %w", length, alloc, f.limit, ErrLimit)
		}
		if start, ok := f.findGapLocked(length, align, dir); ok {
			return start, nil
		}
		// Nothing fits in the file as it is: grow it enough for the lowest
		// fit. Memory that is being released (or cached, and released now,
		// in the background) will soon be free: wait for it rather than
		// grow the file past growFreely. Below that, waiting would cost
		// more than it saves: releasing hundreds of MiB takes tens of
		// milliseconds, which growing overlaps, and a small file's growth
		// costs little of vmspace's own address space.
		start, ok := f.used.FindLowestGap(segment.Range[uint64]{Start: 0, End: maxFileSize}, length, align)
		if !ok {
			return 0, fmt.Errorf("pgalloc: no free range of %#x bytes below the file's maximum size: %w", length, ErrLimit)
		}
		newSize := (start + length + chunkMask) &^ uint64(chunkMask)
		if f.flushCacheLocked() {
			f.kickLocked()
		}
		if (len(f.pending) > 0 || f.releasing > 0) && newSize > f.growFreely {
			f.kickLocked()
			f.released.Wait()
			continue
		}
		if !f.presized {
			if err := unix.Ftruncate(f.fd, int64(newSize)); err != nil {
				return 0, fmt.Errorf("pgalloc: growing the memory file to %#x bytes: %w", newSize, err)
			}
		}
		f.size.Store(newSize)
	}
}

// IncRef implements memmap.File.IncRef: it takes a reference on every page
// of fr, which must be page-aligned and already hold at least one reference
// on every page. Violating that is a programming error in the caller, and
// IncRef panics (leaving the counts unchanged). An empty fr does nothing, as
// does any IncRef after Close.
func (f *MemoryFile) IncRef(fr memmap.FileRange) {
	if fr.Start == fr.End {
		return
	}
	if !checkPageRange(fr) {
		panic(fmt.Sprintf("pgalloc: IncRef(%v): not a page-aligned range within the file", fr))
	}
	r := segment.Range[uint64](fr)
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	if msg := f.unreferencedLocked("IncRef", r); msg != "" {
		f.mu.Unlock()
		panic(msg)
	}
	for seg := f.used.LowerBoundSegment(r.Start); seg.Ok() && seg.Start() < r.End; seg = seg.NextSegment() {
		seg = f.used.Isolate(seg, r)
		*seg.ValuePtr()++
	}
	// Interior neighbours differed before and still do; only the ends may
	// now match their outer neighbours.
	f.used.MergeAdjacent(r)
	f.mu.Unlock()
}

// RefCount returns the number of references on the page at off, 0 if it
// is free.
func (f *MemoryFile) RefCount(off uint64) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if seg := f.used.FindSegment(off); seg.Ok() {
		return uint64(seg.Value())
	}
	return 0
}

// DecRef implements memmap.File.DecRef: it drops a reference on every page
// of fr, which must be page-aligned and hold at least one reference on every
// page. A page whose count reaches zero is freed: its host memory is
// released (asynchronously unless Options.DisableAsyncRelease; after the
// next ReleaseHeld with Options.HoldFreed) and it is reused only after that,
// so it reads as zero when allocated again.
//
// DecRef of a page that holds no reference (never allocated, or already
// freed) is a programming error in the caller: DecRef panics, leaving the
// counts unchanged. An empty fr does nothing, as does any DecRef after
// Close.
func (f *MemoryFile) DecRef(fr memmap.FileRange) {
	if fr.Start == fr.End {
		return
	}
	if !checkPageRange(fr) {
		panic(fmt.Sprintf("pgalloc: DecRef(%v): not a page-aligned range within the file", fr))
	}
	r := segment.Range[uint64](fr)
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	if msg := f.unreferencedLocked("DecRef", r); msg != "" {
		f.mu.Unlock()
		panic(msg)
	}
	var freed uint64
	queued := false
	for seg := f.used.LowerBoundSegment(r.Start); seg.Ok() && seg.Start() < r.End; seg = seg.NextSegment() {
		seg = f.used.Isolate(seg, r)
		v := seg.ValuePtr()
		*v--
		if *v == 0 {
			fr := memmap.FileRange(seg.Range())
			freed += fr.Length()
			if f.freeLocked(fr) {
				queued = true
			}
		}
	}
	f.used.MergeAdjacent(r)
	if freed != 0 {
		f.allocated.Store(f.allocated.Load() - freed)
	}
	if queued {
		f.kickLocked()
	}
	f.mu.Unlock()
	if queued && !f.async {
		for f.releaseBatch() {
		}
	}
}

// unreferencedLocked returns a panic message naming op if a page of r holds
// no reference, or "" if every page holds one. Preconditions: mu held.
func (f *MemoryFile) unreferencedLocked(op string, r segment.Range[uint64]) string {
	if bad, ok := f.firstUnreferencedLocked(r); !ok {
		return fmt.Sprintf("pgalloc: %s(%v): page %#x holds no reference (never allocated, or already freed)", op, r, bad)
	}
	return ""
}

// firstUnreferencedLocked returns the first page of r that holds no
// reference and false, or true if every page holds one. Preconditions: mu
// held.
func (f *MemoryFile) firstUnreferencedLocked(r segment.Range[uint64]) (uint64, bool) {
	next := r.Start
	for seg := range f.used.Segments(r) {
		if seg.Start() > next {
			return next, false
		}
		if seg.Value() == 0 {
			return max(seg.Start(), r.Start), false
		}
		next = seg.End()
	}
	if next < r.End {
		return next, false
	}
	return 0, true
}

// checkHeld returns an error unless fr is a non-empty page-aligned range
// whose every page holds a reference. op names the caller in the error.
func (f *MemoryFile) checkHeld(op string, fr memmap.FileRange) error {
	if fr.Start >= fr.End || !checkPageRange(fr) {
		return fmt.Errorf("pgalloc: %s(%v): not a non-empty page-aligned range: %w", op, fr, unix.EINVAL)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return ErrClosed
	}
	if bad, ok := f.firstUnreferencedLocked(segment.Range[uint64](fr)); !ok {
		return fmt.Errorf("pgalloc: %s(%v): page %#x holds no reference: %w", op, fr, bad, unix.EINVAL)
	}
	return nil
}

// Decommit returns the host memory of fr, which stays allocated with its
// reference counts unchanged but reads as zero afterwards (as after
// madvise(MADV_DONTNEED) of private anonymous memory). fr must be a
// non-empty page-aligned range whose every page holds a reference (else the
// error wraps unix.EINVAL). The caller must hold those references for the
// duration of the call, and must not be accessing fr concurrently.
func (f *MemoryFile) Decommit(fr memmap.FileRange) error {
	if err := f.checkHeld("Decommit", fr); err != nil {
		return err
	}
	f.punch(fr)
	return nil
}

// Commit commits host memory for fr now, as AllocOpts.Populate does for a
// new allocation. fr must be a non-empty page-aligned range whose every page
// holds a reference (else the error wraps unix.EINVAL). Contents are
// unchanged.
func (f *MemoryFile) Commit(fr memmap.FileRange) error {
	if err := f.checkHeld("Commit", fr); err != nil {
		return err
	}
	return f.populate(fr)
}
