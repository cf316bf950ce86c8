package pgalloc

import (
	"time"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/safemem"
	"github.com/vmspace/vmspace/segment"
)

// Reuse of freed pages
//
// Committing a page of the memfd is the dearest thing the memory file
// does: the host allocates and zeroes it, and, on a virtualised host with
// shadow page tables, the first access through the internal mapping takes
// an exit besides (about 20 µs a page on a loaded 6.18 PVM guest, against
// 0.5 µs to zero a page already committed and mapped). So pages freed while
// the reuse cache has room are not released at once: they stay committed,
// count 0 in used (so no ordinary allocation takes them), listed in cache.
// An Allocate with Populate, whose caller wants every page committed now,
// takes them first, zeroing them; an ordinary Allocate never does, so that
// host commitment still means "touched" for pages allocated lazily (mm's
// mincore reads it).
//
// Pages freed from a lazy allocation may include some never touched, and
// so not committed: a populating allocation that takes them commits them
// by writing them (zeroing, or the caller's own writes with Overwrite), a
// host fault each. Pages that a populating allocation failed to commit
// are released instead (freeFresh), never cached.
//
// Cached pages are released like any freed page (punched, then free) when
// they have gone unused for a full trim period, when the cache would grow
// past its limit, when an allocation finds no free range (before the file
// grows), and by WaitReleased.

// DefaultReuseLimit is Options.ReuseLimit's default.
const DefaultReuseLimit = 512 << 20

// commitBatch is the least that a populating Allocate commits when the
// reuse cache has nothing for it: the surplus goes to the cache, committed,
// for the next ones. One fallocate and one madvise for 2 MiB cost far less
// than the same two calls for each of 512 pages (copy-on-write breaks
// allocate one page at a time). The surplus is never taken by an ordinary
// allocation, so committing it ahead says nothing about what a program
// touched.
const commitBatch = 2 << 20

// commitBatchLocked returns how much a populating Allocate of length
// bytes that found nothing in the cache should take and commit: a whole
// commitBatch if length is smaller and the surplus fits in the cache and
// under the limit, else length. Preconditions: mu held.
func (f *MemoryFile) commitBatchLocked(length uint64) uint64 {
	if length >= commitBatch || f.reuseLimit == 0 || f.closed {
		return length
	}
	surplus := uint64(commitBatch) - length
	if f.cacheBytes+surplus > f.reuseLimit {
		return length
	}
	if f.limit != 0 {
		if alloc := f.allocated.Load(); alloc > f.limit || f.limit-alloc < 2*commitBatch {
			return length
		}
	}
	return commitBatch
}

// freeFresh frees fr, part of an allocation that the allocating call has
// not returned (one reference, its own; nobody else has seen the pages):
// to the reuse cache if committed says that every page of it is committed
// (a batch's surplus), else, or if the cache has no room, queued for
// release, so that the cache never holds pages that a failed populate
// left uncommitted. Held pages (Options.HoldFreed) wait for stale
// mappings; these never had one, so they skip that. Preconditions: mu not
// held.
func (f *MemoryFile) freeFresh(fr memmap.FileRange, committed bool) {
	r := segment.Range[uint64](fr)
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	for seg := f.used.LowerBoundSegment(r.Start); seg.Ok() && seg.Start() < r.End; seg = seg.NextSegment() {
		seg = f.used.Isolate(seg, r)
		seg.SetValue(0)
	}
	f.used.MergeAdjacent(r)
	f.allocated.Store(f.allocated.Load() - fr.Length())
	queued := true
	if committed {
		queued = f.cacheOrQueueLocked(fr)
	} else {
		f.pending = append(f.pending, fr)
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

// trimPeriod is how often cached pages are aged: a page cached for two
// ticks without being reused is released.
const trimPeriod = 2 * time.Second

// cachedRange is a range of the reuse cache and the trim tick it was
// cached in.
type cachedRange struct {
	fr   memmap.FileRange
	tick uint64
}

// freeLocked disposes of fr, whose count has just reached zero in used:
// held (Options.HoldFreed), kept in the reuse cache if it has room, or
// queued for release. It reports whether the releaser has work.
// Preconditions: mu held; fr is not held already.
func (f *MemoryFile) freeLocked(fr memmap.FileRange) (queued bool) {
	if f.hold {
		f.held = append(f.held, fr)
		f.heldBytes += fr.Length()
		return false
	}
	return f.cacheOrQueueLocked(fr)
}

// cacheOrQueueLocked puts fr, freed and not held, in the reuse cache if it
// has room, else in pending. It reports whether it went to pending.
// Preconditions: mu held.
func (f *MemoryFile) cacheOrQueueLocked(fr memmap.FileRange) (queued bool) {
	if r := segment.Range[uint64](fr); !f.exposed.IsEmpty() && !f.exposed.IsEmptyRange(r) {
		// The exposed pages are released: a new page replaces each
		// in the file, and whoever holds the old one keeps it as it
		// is. The rest may be cached.
		var rest []memmap.FileRange
		for g := range f.exposed.Gaps(r) {
			if gr := g.Range().Intersect(r); gr.Length() > 0 {
				rest = append(rest, memmap.FileRange(gr))
			}
		}
		for seg := range f.exposed.Segments(r) {
			f.pending = append(f.pending, memmap.FileRange(seg.Range().Intersect(r)))
		}
		f.exposed.RemoveRange(r)
		for _, g := range rest {
			f.cacheOrQueueLocked(g)
		}
		return true
	}
	if f.reuseLimit == 0 || f.cacheBytes+fr.Length() > f.reuseLimit || f.closed {
		f.pending = append(f.pending, fr)
		return true
	}
	f.cache = append(f.cache, cachedRange{fr: fr, tick: f.trimTick})
	f.cacheBytes += fr.Length()
	if f.trimTimer == nil {
		f.trimTimer = time.AfterFunc(trimPeriod, f.trim)
	}
	return false
}

// flushCacheLocked moves every cached range to pending, and reports
// whether there were any. Preconditions: mu held.
func (f *MemoryFile) flushCacheLocked() bool {
	if len(f.cache) == 0 {
		return false
	}
	for _, c := range f.cache {
		f.pending = append(f.pending, c.fr)
	}
	f.cache, f.cacheBytes = nil, 0
	return true
}

// trim runs every trimPeriod while the cache is not empty: it queues for
// release the ranges cached before the previous tick.
func (f *MemoryFile) trim() {
	f.mu.Lock()
	f.trimTimer = nil
	if f.closed {
		f.mu.Unlock()
		return
	}
	keep := f.cache[:0]
	queued := false
	for _, c := range f.cache {
		if c.tick < f.trimTick {
			f.pending = append(f.pending, c.fr)
			f.cacheBytes -= c.fr.Length()
			queued = true
		} else {
			keep = append(keep, c)
		}
	}
	clear(f.cache[len(keep):])
	f.cache = keep
	f.trimTick++
	if len(f.cache) > 0 {
		f.trimTimer = time.AfterFunc(trimPeriod, f.trim)
	}
	if queued {
		f.kickLocked()
	}
	f.mu.Unlock()
	if queued && !f.async {
		// No releaser goroutine: release here.
		for f.releaseBatch() {
		}
	}
}

// takeCachedLocked takes length bytes, aligned to align, from the reuse
// cache, giving them one reference, and returns their range, or false if
// no cached range fits. The pages hold whatever they held when freed.
// Preconditions: mu held; length and align as for findFreeLocked.
func (f *MemoryFile) takeCachedLocked(length, align uint64) (memmap.FileRange, bool) {
	if f.cacheBytes < length {
		return memmap.FileRange{}, false
	}
	for i := range f.cache {
		c := f.cache[i]
		start := (c.fr.Start + align - 1) &^ (align - 1)
		if start < c.fr.Start || start+length > c.fr.End || start+length < start {
			continue
		}
		fr := memmap.FileRange{Start: start, End: start + length}
		// Replace the entry by what is left of it on either side. What
		// is left after fr stays in the entry's place, so that the next
		// take starts where this one ended: successive small takes (a
		// copy-on-write break a page at a time) get adjacent pages,
		// whose pmas merge.
		switch left, right := c.fr.Start < fr.Start, fr.End < c.fr.End; {
		case right:
			f.cache[i].fr.Start = fr.End
			if left {
				f.cache = append(f.cache, cachedRange{fr: memmap.FileRange{Start: c.fr.Start, End: fr.Start}, tick: c.tick})
			}
		case left:
			f.cache[i].fr.End = fr.Start
		default:
			f.cache[i] = f.cache[len(f.cache)-1]
			f.cache = f.cache[:len(f.cache)-1]
		}
		f.cacheBytes -= length
		r := segment.Range[uint64](fr)
		for seg := f.used.LowerBoundSegment(r.Start); seg.Ok() && seg.Start() < r.End; seg = seg.NextSegment() {
			seg = f.used.Isolate(seg, r)
			seg.SetValue(1)
		}
		f.used.MergeAdjacent(r)
		f.allocated.Store(f.allocated.Load() + length)
		return fr, true
	}
	return memmap.FileRange{}, false
}

// zeroCached zeroes fr, just taken from the reuse cache, through the
// internal mapping. Preconditions: mu not held; the caller holds fr's only
// reference.
func (f *MemoryFile) zeroCached(fr memmap.FileRange) error {
	bs, err := f.MapInternal(fr, hostarch.Write)
	if err != nil {
		return err
	}
	if _, err := safemem.ZeroSeq(bs); err != nil {
		return &populateError{fr: fr, err: err}
	}
	return nil
}

// UsageCached returns the number of bytes of freed pages kept committed for
// reuse (see Options.ReuseLimit).
func (f *MemoryFile) UsageCached() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cacheBytes
}

// Expose declares that the host kernel may hold references to the host
// memory of the allocated pages fr beyond the file's own mappings, for
// as long as it likes: a pipe holds the pages given to it with vmsplice
// until they are read, a socket those of a MSG_ZEROCOPY send until they
// are sent. Such pages are released when freed, never kept for reuse
// (see cacheOrQueueLocked), so that the holder goes on seeing what they
// held, as on Linux, and never what the next owner of their place in the
// file writes there. Pages not allocated are left alone.
func (f *MemoryFile) Expose(fr memmap.FileRange) {
	r := segment.Range[uint64](fr)
	if r.Length() == 0 || !r.WellFormed() {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	var add []segment.Range[uint64]
	for seg := range f.used.Segments(r) {
		if seg.Value() > 0 {
			add = append(add, seg.Range().Intersect(r))
		}
	}
	for _, a := range add {
		var gaps []segment.Range[uint64]
		for g := range f.exposed.Gaps(a) {
			if gr := g.Range().Intersect(a); gr.Length() > 0 {
				gaps = append(gaps, gr)
			}
		}
		for _, g := range gaps {
			f.exposed.Add(g, struct{}{})
		}
	}
}
