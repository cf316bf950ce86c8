package hostfile

import (
	"context"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/pgalloc"
	"github.com/vmspace/vmspace/safemem"
	"github.com/vmspace/vmspace/segment"
)

// cacheMaxKey bounds the keys of the cache: maxFileSize rounded up to a
// page.
const cacheMaxKey = 1 << 63

// maxTranslateExtent bounds how much of the optional range one Translate
// covers beyond the required range (Linux's fault-around, in spirit).
const maxTranslateExtent = hostarch.HugePageSize

// cacheVal is the value of a cache segment.
type cacheVal struct {
	// off is the memory-file offset holding the segment's first byte.
	off uint64
	// dirty is true if the pages may differ from the host file: they
	// were translated writable for a shared mapping and not written back
	// since (or are still mapped writable).
	dirty bool
}

// cacheFuncs are the segment.Functions of the cache. Segments merge when
// their memory-file ranges are contiguous and their dirty bits agree.
type cacheFuncs struct{}

func (cacheFuncs) MinKey() uint64       { return 0 }
func (cacheFuncs) MaxKey() uint64       { return cacheMaxKey }
func (cacheFuncs) ClearValue(*cacheVal) {}
func (cacheFuncs) Merge(r1 segment.Range[uint64], v1 cacheVal, _ segment.Range[uint64], v2 cacheVal) (cacheVal, bool) {
	return v1, v1.off+r1.Length() == v2.off && v1.dirty == v2.dirty
}
func (cacheFuncs) Split(r segment.Range[uint64], v cacheVal, split uint64) (cacheVal, cacheVal) {
	return v, cacheVal{off: v.off + (split - r.Start), dirty: v.dirty}
}

// cacheSet is the type of File.cache.
type cacheSet = segment.Set[uint64, cacheVal, cacheFuncs]

// cacheIter is an iterator into a cacheSet.
type cacheIter = segment.Iterator[uint64, cacheVal, cacheFuncs]

// segRange converts a MappableRange to a segment range.
func segRange(mr memmap.MappableRange) segment.Range[uint64] { return segment.Range[uint64](mr) }

// fileRangeOf returns the memory-file range backing the part r of the
// cache segment seg.
func fileRangeOf(seg cacheIter, r segment.Range[uint64]) memmap.FileRange {
	off := seg.Value().off + (r.Start - seg.Start())
	return memmap.FileRange{Start: off, End: off + r.Length()}
}

// pageRoundUpSize rounds a file size (at most maxFileSize) up to a page.
func pageRoundUpSize(size uint64) uint64 {
	return (size + hostarch.PageMask) &^ uint64(hostarch.PageMask)
}

// checkPageRange reports whether mr is non-empty, well-formed and
// page-aligned.
func checkPageRange(mr memmap.MappableRange) bool {
	return mr.Start < mr.End && hostarch.IsPageAligned(mr.Start) && hostarch.IsPageAligned(mr.End)
}

// Translate implements memmap.Mappable.Translate.
//
// With at.Write false the Translations are read-only (Read|Execute): the
// memory manager asks that for private mappings, and copies on write. With
// at.Write they are writable (for shared mappings), the translated pages are
// marked dirty, and a File that cannot be written is EACCES. Pages wholly
// past end-of-file are a *memmap.BusError; Translations then cover the part
// of required before end-of-file.
//
// Preconditions (memory manager): activeMu held; see the package
// documentation.
func (f *File) Translate(ctx context.Context, required, optional memmap.MappableRange, at hostarch.AccessType) ([]memmap.Translation, error) {
	if !checkPageRange(required) || !optional.IsSupersetOf(required) || !hostarch.IsPageAligned(optional.Start) || !hostarch.IsPageAligned(optional.End) {
		return nil, fmt.Errorf("hostfile: Translate(%v, %v): bad ranges: %w", required, optional, unix.EINVAL)
	}
	if f.noPages {
		return nil, &memmap.BusError{Err: fmt.Errorf("hostfile: no huge page for %v: %w", required, unix.ENOMEM)}
	}
	if f.direct {
		return f.translateDirect(required, optional, at)
	}
	// Fast path: everything needed is cached already.
	f.dataMu.RLock()
	ts, done, err := f.translateLocked(required, optional, at, false)
	f.dataMu.RUnlock()
	if done {
		return ts, err
	}
	f.dataMu.Lock()
	defer f.dataMu.Unlock()
	ts, _, err = f.translateLocked(required, optional, at, true)
	return ts, err
}

// translateLocked is Translate with dataMu held: for reading if !mutate, in
// which case it reports done == false, changing nothing, if it would have to
// fill the cache or mark pages dirty; for writing if mutate.
func (f *File) translateLocked(required, optional memmap.MappableRange, at hostarch.AccessType, mutate bool) (ts []memmap.Translation, done bool, err error) {
	if f.released {
		return nil, true, fmt.Errorf("hostfile: Translate of released file: %w", unix.EBADF)
	}
	if at.Write && !f.fdWritable {
		return nil, true, fmt.Errorf("hostfile: writable Translate of a file not open for writing: %w", unix.EACCES)
	}
	pgend := pageRoundUpSize(f.size)
	if required.Start >= pgend {
		return nil, true, f.busError(required.Start)
	}
	req := required
	var reqErr error
	if req.End > pgend {
		req.End = pgend
		reqErr = f.busError(pgend)
	}
	opt := boundOptional(req, optional, pgend)
	markDirty := at.Write && f.kind == hostKind

	if !mutate {
		if !f.coveredLocked(req, markDirty) {
			return nil, false, nil
		}
		if markDirty {
			// Only req is known to be dirty already.
			opt = req
		}
		return f.translationsLocked(opt, at), true, reqErr
	}

	// Fill the required range; it must succeed.
	if err := f.fillLocked(req); err != nil {
		// Translations cover whatever prefix of req is cached.
		ts = f.prefixTranslationsLocked(req, at)
		if markDirty {
			for _, t := range ts {
				f.setDirtyLocked(t.Source, true)
			}
		}
		return ts, true, err
	}
	// Fill the optional range as far as it is cheap: stop at the first
	// failure (for example the memory file's limit), and keep what is
	// cached. Memory with no host file gets pages only where touched, as
	// Linux's shmem (mincore shows it): its optional range translates
	// only what is cached already.
	if f.kind == hostKind {
		if opt.Start < req.Start {
			if err := f.fillLocked(memmap.MappableRange{Start: opt.Start, End: req.Start}); err != nil {
				opt.Start = req.Start
			}
		}
		if opt.End > req.End {
			if err := f.fillLocked(memmap.MappableRange{Start: req.End, End: opt.End}); err != nil {
				opt.End = req.End
			}
		}
	}
	ts = f.translationsLocked(opt, at)
	if markDirty {
		for _, t := range ts {
			f.setDirtyLocked(t.Source, true)
		}
	}
	return ts, true, reqErr
}

// busError is the error of a translation at off, past end-of-file.
func (f *File) busError(off uint64) error {
	return &memmap.BusError{Err: fmt.Errorf("hostfile: offset %#x is past the end of %q (%#x bytes): %w", off, f.name, f.size, unix.EFAULT)}
}

// boundOptional returns the part of optional to translate along with req:
// at most maxTranslateExtent around req, and nothing at or past pgend.
// Preconditions: req is within optional and below pgend.
func boundOptional(req, optional memmap.MappableRange, pgend uint64) memmap.MappableRange {
	opt := optional
	if opt.End > pgend {
		opt.End = pgend
	}
	if opt.Length() <= maxTranslateExtent {
		return opt
	}
	// Centre a window of maxTranslateExtent on the huge page holding
	// req.Start, keeping all of req.
	win := memmap.MappableRange{Start: req.Start &^ uint64(hostarch.HugePageMask)}
	win.End = win.Start + maxTranslateExtent
	if win.End < req.End {
		win.End = req.End
	}
	return opt.Intersect(win)
}

// coveredLocked reports whether the cache covers all of mr, and, if
// needDirty, whether all of it is dirty. Preconditions: dataMu held.
func (f *File) coveredLocked(mr memmap.MappableRange, needDirty bool) bool {
	next := mr.Start
	for seg := range f.cache.Segments(segRange(mr)) {
		if seg.Start() > next || (needDirty && !seg.Value().dirty) {
			return false
		}
		next = seg.End()
	}
	return next >= mr.End
}

// perms returns the permissions of translations for access at.
func perms(at hostarch.AccessType) hostarch.AccessType {
	if at.Write {
		return hostarch.AnyAccess
	}
	return hostarch.ReadExecute
}

// translationsLocked returns Translations of every cached range within opt.
// Preconditions: dataMu held.
func (f *File) translationsLocked(opt memmap.MappableRange, at hostarch.AccessType) []memmap.Translation {
	var ts []memmap.Translation
	p := perms(at)
	for seg := range f.cache.Segments(segRange(opt)) {
		r := seg.Range().Intersect(segRange(opt))
		ts = append(ts, memmap.Translation{
			Source: memmap.MappableRange(r),
			File:   f.mf,
			Offset: fileRangeOf(seg, r).Start,
			Perms:  p,
		})
	}
	return ts
}

// prefixTranslationsLocked returns Translations of the cached prefix of
// req. Preconditions: dataMu held.
func (f *File) prefixTranslationsLocked(req memmap.MappableRange, at hostarch.AccessType) []memmap.Translation {
	var ts []memmap.Translation
	next := req.Start
	p := perms(at)
	for seg := range f.cache.Segments(segRange(req)) {
		if seg.Start() > next {
			break
		}
		r := seg.Range().Intersect(segRange(req))
		ts = append(ts, memmap.Translation{
			Source: memmap.MappableRange(r),
			File:   f.mf,
			Offset: fileRangeOf(seg, r).Start,
			Perms:  p,
		})
		next = r.End
	}
	return ts
}

// fillLocked makes sure that the cache covers mr, which must lie below
// size rounded up to a page: for each uncached range it allocates
// memory-file pages and, for a host file, reads them from the host file.
// On error, some of mr may have been filled.
//
// Preconditions: dataMu held for writing; mr page-aligned.
func (f *File) fillLocked(mr memmap.MappableRange) error {
	pos := mr.Start
	for pos < mr.End {
		seg, gap := f.cache.Find(pos)
		if seg.Ok() {
			pos = seg.End()
			continue
		}
		if !gap.Ok() {
			return fmt.Errorf("hostfile: offset %#x out of range: %w", pos, unix.EFBIG)
		}
		r := memmap.MappableRange{Start: pos, End: min(gap.End(), mr.End)}
		fr, err := f.mf.Allocate(r.Length(), pgalloc.AllocOpts{})
		if err != nil {
			return fmt.Errorf("hostfile: caching %v of %q: %w", r, f.name, err)
		}
		if f.kind == hostKind {
			if err := f.readHostLocked(fr, r); err != nil {
				f.mf.DecRef(fr)
				return &memmap.BusError{Err: err}
			}
		}
		f.cache.Insert(gap, segRange(r), cacheVal{off: fr.Start})
		pos = r.End
	}
	return nil
}

// readHostLocked reads the host file's bytes [r.Start, min(r.End, size))
// into the memory-file range fr (of r's length, freshly allocated and so
// zero). Bytes past the end of the host file stay zero.
// Preconditions: dataMu held.
func (f *File) readHostLocked(fr memmap.FileRange, r memmap.MappableRange) error {
	if f.fd < 0 || !f.fdReadable {
		return fmt.Errorf("hostfile: %q is not open for reading: %w", f.name, unix.EACCES)
	}
	n := min(r.End, f.size) - r.Start
	if r.Start >= f.size {
		return nil
	}
	bs, err := f.mf.MapInternal(memmap.FileRange{Start: fr.Start, End: fr.Start + n}, hostarch.Write)
	if err != nil {
		return err
	}
	off := int64(r.Start)
	for b := range bs.All {
		buf := b.ToSlice()
		for len(buf) > 0 {
			m, err := unix.Pread(f.fd, buf, off)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return fmt.Errorf("hostfile: reading %q at %#x: %w", f.name, off, err)
			}
			if m == 0 {
				// The host file is shorter than we think: the rest
				// reads as zero.
				return nil
			}
			buf = buf[m:]
			off += int64(m)
		}
	}
	return nil
}

// setDirtyLocked sets the dirty bit of the cached pages in mr.
// Preconditions: dataMu held for writing.
func (f *File) setDirtyLocked(mr memmap.MappableRange, dirty bool) {
	r := segRange(mr)
	for seg := f.cache.LowerBoundSegment(r.Start); seg.Ok() && seg.Start() < r.End; seg = seg.NextSegment() {
		if seg.Value().dirty == dirty {
			continue
		}
		seg = f.cache.Isolate(seg, r)
		seg.ValuePtr().dirty = dirty
	}
	f.cache.MergeRange(r)
	f.cache.MergeAdjacent(r)
}

// dropCacheLocked removes the cached pages in mr from the cache and returns
// their memory-file ranges, whose references the caller must drop with
// decRefPages once no Translate can be about to use them.
// Preconditions: dataMu held for writing.
func (f *File) dropCacheLocked(mr memmap.MappableRange) []memmap.FileRange {
	var frs []memmap.FileRange
	r := segRange(mr)
	for seg := range f.cache.Segments(r) {
		frs = append(frs, fileRangeOf(seg, seg.Range().Intersect(r)))
	}
	if len(frs) > 0 {
		f.cache.RemoveRange(r)
	}
	return frs
}

// decRefPages drops the cache's references on frs.
func (f *File) decRefPages(frs []memmap.FileRange) {
	for _, fr := range frs {
		f.mf.DecRef(fr)
	}
}

// mapCachedLocked returns the internal mapping of the cached bytes [off,
// off+n) of segment seg. Preconditions: dataMu held; [off, off+n) within
// seg.
func (f *File) mapCachedLocked(seg cacheIter, off, n uint64) (safemem.BlockSeq, error) {
	start := seg.Value().off + (off - seg.Start())
	return f.mf.MapInternal(memmap.FileRange{Start: start, End: start + n}, hostarch.ReadWrite)
}

// zeroCachedLocked zeroes the cached bytes of [start, end); uncached bytes
// are left alone. Preconditions: dataMu held.
func (f *File) zeroCachedLocked(start, end uint64) error {
	if start >= end {
		return nil
	}
	r := segment.Range[uint64]{Start: start, End: end}
	for seg := range f.cache.Segments(r) {
		p := seg.Range().Intersect(r)
		bs, err := f.mapCachedLocked(seg, p.Start, p.Length())
		if err != nil {
			return err
		}
		if _, err := safemem.ZeroSeq(bs); err != nil {
			return fmt.Errorf("hostfile: zeroing cached pages of %q: %w", f.name, err)
		}
	}
	return nil
}

// Resident implements mm's Residency: out[i] is 1 if page i of mr is cached
// (in memory), else 0. len(out) must be mr.Length() / page size; extra
// entries are left alone, missing ones ignored.
func (f *File) Resident(mr memmap.MappableRange, out []byte) {
	if mr.Start > mr.End {
		return
	}
	n := min(uint64(len(out)), (mr.End-mr.Start)>>hostarch.PageShift)
	out = out[:n]
	clear(out)
	r := segment.Range[uint64]{Start: mr.Start &^ uint64(hostarch.PageMask), End: mr.End}
	if f.direct {
		f.residentDirect(memmap.MappableRange(r), out)
		return
	}
	f.dataMu.RLock()
	defer f.dataMu.RUnlock()
	for seg := range f.cache.Segments(r) {
		p := seg.Range().Intersect(r)
		for off := p.Start; off < p.End; off += hostarch.PageSize {
			i := (off - r.Start) >> hostarch.PageShift
			if i < n {
				out[i] = 1
			}
		}
	}
}

// CachedBytes returns the number of bytes in f's page cache.
func (f *File) CachedBytes() uint64 {
	f.dataMu.RLock()
	defer f.dataMu.RUnlock()
	return f.cache.Span()
}

// DirtyBytes returns the number of cached bytes not yet written back.
func (f *File) DirtyBytes() uint64 {
	f.dataMu.RLock()
	defer f.dataMu.RUnlock()
	var n uint64
	for seg := f.cache.FirstSegment(); seg.Ok(); seg = seg.NextSegment() {
		if seg.Value().dirty {
			n += seg.Range().Length()
		}
	}
	return n
}
