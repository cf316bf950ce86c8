package hostfile

import (
	"context"
	"fmt"
	"io"

	"golang.org/x/sys/unix"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/safemem"
	"github.com/vmspace/vmspace/segment"
)

// ReadAt reads len(p) bytes at offset off, as pread(2) through vmspace:
// cached pages (which see writes through shared mappings) come from the
// cache, the rest from the host file (or zeros for a memfd). It implements
// io.ReaderAt: fewer than len(p) bytes come with io.EOF. A negative offset
// is EINVAL; a file whose host descriptor cannot read is EBADF.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("hostfile: ReadAt(%d): %w", off, unix.EINVAL)
	}
	if f.direct {
		return f.readAtDirect(p, off)
	}
	f.dataMu.RLock()
	defer f.dataMu.RUnlock()
	if f.released || !f.fdReadable {
		return 0, fmt.Errorf("hostfile: ReadAt of %q: %w", f.name, unix.EBADF)
	}
	if uint64(off) >= f.size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := int(min(uint64(len(p)), f.size-uint64(off)))
	buf := p[:n]
	pos := uint64(off)
	for len(buf) > 0 {
		seg, gap := f.cache.Find(pos)
		var m int
		if seg.Ok() {
			m = int(min(seg.End()-pos, uint64(len(buf))))
			bs, err := f.mapCachedLocked(seg, pos, uint64(m))
			if err != nil {
				return n - len(buf), err
			}
			if _, err := safemem.CopySeq(safemem.BlockSeqOf(safemem.BlockFromSafeSlice(buf[:m])), bs); err != nil {
				return n - len(buf), fmt.Errorf("hostfile: reading cached pages of %q: %w", f.name, err)
			}
		} else {
			m = int(min(gap.End()-pos, uint64(len(buf))))
			if f.kind == hostKind {
				if err := f.preadLocked(buf[:m], pos); err != nil {
					return n - len(buf), err
				}
			} else {
				clear(buf[:m])
			}
		}
		buf = buf[m:]
		pos += uint64(m)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// preadLocked fills buf from the host file at off; bytes past the host
// file's end read as zero. Preconditions: dataMu held.
func (f *File) preadLocked(buf []byte, off uint64) error {
	for len(buf) > 0 {
		m, err := unix.Pread(f.fd, buf, int64(off))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("hostfile: reading %q at %#x: %w", f.name, off, err)
		}
		if m == 0 {
			clear(buf)
			return nil
		}
		buf = buf[m:]
		off += uint64(m)
	}
	return nil
}

// WriteAt writes p at offset off, as pwrite(2) through vmspace: to the host
// file and to the cached pages it covers, so that mappings see it at once.
// Writing past the end extends the file. A negative offset is EINVAL, a
// write reaching past the maximum file size EFBIG, a file not open for
// writing EBADF. It implements io.WriterAt.
func (f *File) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("hostfile: WriteAt(%d): %w", off, unix.EINVAL)
	}
	if f.direct {
		return f.writeAtDirect(p, off)
	}
	f.dataMu.Lock()
	defer f.dataMu.Unlock()
	if f.released || !f.fdWritable {
		return 0, fmt.Errorf("hostfile: WriteAt of %q: %w", f.name, unix.EBADF)
	}
	if len(p) == 0 {
		return 0, nil
	}
	start := uint64(off)
	end := start + uint64(len(p))
	if end < start || end > maxFileSize {
		return 0, fmt.Errorf("hostfile: WriteAt(%d, %d bytes): %w", off, len(p), unix.EFBIG)
	}
	oldSize := f.size

	var n int
	var werr error
	if f.kind == hostKind {
		n, werr = f.pwriteLocked(p, start)
		if n == 0 {
			return 0, werr
		}
	} else {
		// The cache is the only storage: make sure it holds every page
		// written.
		pr := memmap.MappableRange{Start: start &^ uint64(hostarch.PageMask), End: pageRoundUpSize(end)}
		if err := f.fillLocked(pr); err != nil {
			// Pages filled past the end must not stay: nothing can
			// translate them, so they can go at once.
			f.decRefPages(f.dropCacheLocked(memmap.MappableRange{Start: pageRoundUpSize(oldSize), End: cacheMaxKey}))
			return 0, err
		}
		n = len(p)
	}
	wend := start + uint64(n)
	if wend > oldSize {
		if err := f.zeroGrownTailLocked(oldSize, start); err != nil {
			return 0, err
		}
		f.size = wend
	}
	if err := f.copyToCacheLocked(p[:n], start); err != nil {
		return n, err
	}
	return n, werr
}

// zeroGrownTailLocked is called when a host file grows from oldSize: bytes
// of the old last page from oldSize up to upTo, which a shared mapping may
// have written past the old end, read as zero afterwards, as Linux's ext4
// and other disk file systems do (the part past end-of-file of a page is
// not file data, and is zeroed when written back). A memfd or shared
// anonymous memory keeps them, as Linux's shmem does.
// Preconditions: dataMu held for writing.
func (f *File) zeroGrownTailLocked(oldSize, upTo uint64) error {
	if f.kind != hostKind {
		return nil
	}
	return f.zeroCachedLocked(oldSize, min(upTo, pageRoundUpSize(oldSize)))
}

// pwriteLocked writes p to the host file at off and returns how much it
// wrote. Preconditions: dataMu held.
func (f *File) pwriteLocked(p []byte, off uint64) (int, error) {
	fd, release, err := f.useFDLocked()
	if err != nil {
		return 0, err
	}
	defer release()
	done := 0
	for done < len(p) {
		m, err := unix.Pwrite(fd, p[done:], int64(off)+int64(done))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, fmt.Errorf("hostfile: writing %q at %#x: %w", f.name, off+uint64(done), err)
		}
		if m == 0 {
			return done, fmt.Errorf("hostfile: writing %q at %#x: %w", f.name, off+uint64(done), io.ErrShortWrite)
		}
		done += m
	}
	return done, nil
}

// copyToCacheLocked copies p into the cached pages of [off, off+len(p)).
// Uncached bytes are skipped. Preconditions: dataMu held for writing.
func (f *File) copyToCacheLocked(p []byte, off uint64) error {
	r := segment.Range[uint64]{Start: off, End: off + uint64(len(p))}
	for seg := range f.cache.Segments(r) {
		q := seg.Range().Intersect(r)
		bs, err := f.mapCachedLocked(seg, q.Start, q.Length())
		if err != nil {
			return err
		}
		src := p[q.Start-off : q.End-off]
		if _, err := safemem.CopySeq(bs, safemem.BlockSeqOf(safemem.BlockFromSafeSlice(src))); err != nil {
			return fmt.Errorf("hostfile: writing cached pages of %q: %w", f.name, err)
		}
	}
	return nil
}

// Truncate sets the file size, as ftruncate(2) through vmspace. Shrinking
// drops cached pages past the new end, zeroes the rest of the new last
// page, and invalidates every mapping of the pages past the new end,
// private copies included, so that accesses there fault with SIGBUS.
// Growing makes pages valid again, reading as zeros (except, for a memfd
// or shared anonymous memory, bytes of the old last page that a shared
// mapping wrote past the old end, which Linux's shmem keeps). A negative size is
// EINVAL, one beyond the maximum file size EFBIG, a file not open for
// writing EINVAL (as Linux's ftruncate).
func (f *File) Truncate(ctx context.Context, size int64) error {
	if size < 0 {
		return fmt.Errorf("hostfile: Truncate(%d): %w", size, unix.EINVAL)
	}
	if uint64(size) > maxFileSize {
		return fmt.Errorf("hostfile: Truncate(%d): %w", size, unix.EFBIG)
	}
	newSize := uint64(size)
	f.mapsMu.Lock()
	defer f.mapsMu.Unlock()
	if f.direct {
		return f.truncateDirect(size)
	}

	f.dataMu.Lock()
	if f.released {
		f.dataMu.Unlock()
		return fmt.Errorf("hostfile: Truncate of %q: %w", f.name, unix.EBADF)
	}
	if !f.fdWritable {
		f.dataMu.Unlock()
		return fmt.Errorf("hostfile: Truncate of %q, not open for writing: %w", f.name, unix.EINVAL)
	}
	if f.kind == hostKind {
		for {
			err := unix.Ftruncate(f.fd, size)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				f.dataMu.Unlock()
				return fmt.Errorf("hostfile: ftruncate(%q, %d): %w", f.name, size, err)
			}
			break
		}
	}
	oldSize := f.size
	f.size = newSize
	var dropped []memmap.FileRange
	var zerr error
	newEnd := pageRoundUpSize(newSize)
	switch {
	case newSize < oldSize:
		dropped = f.dropCacheLocked(memmap.MappableRange{Start: newEnd, End: cacheMaxKey})
		zerr = f.zeroCachedLocked(newSize, newEnd)
	case newSize > oldSize:
		zerr = f.zeroGrownTailLocked(oldSize, newSize)
	}
	f.dataMu.Unlock()

	if newSize < oldSize {
		// Invalidate before dropping the cache's references: a Translate
		// that read the cache before the change has finished (and its
		// pmas are gone) once Invalidate returns.
		f.invalidateMappingsLocked(memmap.MappableRange{Start: newEnd, End: (mappingFuncs{}).MaxKey()}, memmap.InvalidateOpts{InvalidatePrivate: true})
	}
	f.decRefPages(dropped)
	return zerr
}

// Sync writes the dirty cached pages of mr back to the host file (the
// write-back part of msync(2)). Pages still mapped by a shared writable
// mapping stay dirty, as they may be written again without a new Translate.
// It does nothing for memfds and shared anonymous memory.
func (f *File) Sync(ctx context.Context, mr memmap.MappableRange) error {
	if mr.Start > mr.End {
		return fmt.Errorf("hostfile: Sync(%v): %w", mr, unix.EINVAL)
	}
	return f.writeBack(ctx, mr, true)
}

// dirtyPiece is a dirty cached range to write back.
type dirtyPiece struct {
	mr memmap.MappableRange
	fr memmap.FileRange
}

// writeBack writes the dirty cached pages of mr back to the host file and
// marks them clean, or, if keepMapped, clean except where a shared writable
// mapping covers them. Cached pages that a shared writable mapping covers
// count as dirty whatever their dirty bit. It stops at the first error,
// which it returns.
func (f *File) writeBack(ctx context.Context, mr memmap.MappableRange, keepMapped bool) error {
	if f.kind != hostKind || f.direct {
		return nil
	}
	f.mapsMu.Lock()
	defer f.mapsMu.Unlock()
	f.dataMu.Lock()
	defer f.dataMu.Unlock()
	if f.released {
		return nil
	}
	r := segRange(mr).Intersect(segment.Range[uint64]{Start: 0, End: pageRoundUpSize(f.size)})
	// Pages under a shared writable mapping may have been written through
	// it whatever their translation said: count them dirty.
	for _, w := range f.writableMappedLocked(memmap.MappableRange(r)) {
		f.setDirtyLocked(w, true)
	}
	var pieces []dirtyPiece
	for seg := range f.cache.Segments(r) {
		if !seg.Value().dirty {
			continue
		}
		p := seg.Range().Intersect(r)
		pieces = append(pieces, dirtyPiece{mr: memmap.MappableRange(p), fr: fileRangeOf(seg, p)})
	}
	for _, p := range pieces {
		// Only the bytes before end-of-file go out.
		n := min(p.mr.End, f.size) - p.mr.Start
		if p.mr.Start < f.size && n > 0 {
			bs, err := f.mf.MapInternal(memmap.FileRange{Start: p.fr.Start, End: p.fr.Start + n}, hostarch.Read)
			if err != nil {
				return err
			}
			off := p.mr.Start
			for b := range bs.All {
				m, err := f.pwriteLocked(b.ToSlice(), off)
				if err != nil {
					// Whatever was written stays dirty too: harmless.
					return err
				}
				off += uint64(m)
			}
		}
		f.setDirtyLocked(p.mr, false)
		if keepMapped {
			for _, w := range f.writableMappedLocked(p.mr) {
				f.setDirtyLocked(w, true)
			}
		}
	}
	return nil
}

// Punch implements mm's Puncher (madvise(MADV_REMOVE)): it frees the
// contents of mr, which then read as zeros. The cached pages go, the host
// file gets a hole (fallocate(FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE); a
// host file system without hole punching makes it EOPNOTSUPP), and every
// shared translation of mr is invalidated (private copies stay, as in
// Linux). The part of mr past end-of-file is ignored.
//
// Preconditions (memory manager): mappingMu may be held; activeMu must not
// be.
func (f *File) Punch(ctx context.Context, mr memmap.MappableRange) error {
	if !checkPageRange(mr) {
		return fmt.Errorf("hostfile: Punch(%v): %w", mr, unix.EINVAL)
	}
	if f.direct {
		return f.punchDirect(mr)
	}
	f.mapsMu.Lock()
	defer f.mapsMu.Unlock()
	f.dataMu.Lock()
	if f.released || !f.fdWritable {
		f.dataMu.Unlock()
		return fmt.Errorf("hostfile: Punch of %q: %w", f.name, unix.EBADF)
	}
	r := mr.Intersect(memmap.MappableRange{Start: 0, End: pageRoundUpSize(f.size)})
	if r.Length() == 0 {
		f.dataMu.Unlock()
		return nil
	}
	if f.kind == hostKind {
		for {
			err := unix.Fallocate(f.fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, int64(r.Start), int64(r.Length()))
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				f.dataMu.Unlock()
				return fmt.Errorf("hostfile: punching %v of %q: %w", r, f.name, err)
			}
			break
		}
	}
	dropped := f.dropCacheLocked(r)
	f.dataMu.Unlock()
	f.invalidateMappingsLocked(r, memmap.InvalidateOpts{})
	f.decRefPages(dropped)
	return nil
}

// PageOut implements mm.PageOuter (MADV_PAGEOUT): it drops the cached
// pages of mr that one pma alone maps (the memory file counts the cache's
// reference and that one) and that are clean: for a host file, not dirty
// (the host file has them); for memory without one, all zeros, so never
// written as far as can be told (a page written with zeros goes too, where
// Linux would keep it dirty). Linux reclaims such pages without swap.
// A directly mapped file leaves it to the host (pageOutDirect).
func (f *File) PageOut(ctx context.Context, mr memmap.MappableRange) {
	if !checkPageRange(mr) {
		return
	}
	if f.direct {
		f.pageOutDirect(mr)
		return
	}
	f.mapsMu.Lock()
	defer f.mapsMu.Unlock()
	f.dataMu.Lock()
	if f.released {
		f.dataMu.Unlock()
		return
	}
	var drop []memmap.MappableRange
	for seg := range f.cache.Segments(segRange(mr)) {
		if seg.Value().dirty {
			continue
		}
		r := seg.Range().Intersect(segRange(mr))
		for off := r.Start; off < r.End; off += hostarch.PageSize {
			page := segment.Range[uint64]{Start: off, End: off + hostarch.PageSize}
			if f.mf.RefCount(fileRangeOf(seg, page).Start) != 2 {
				continue
			}
			if f.kind != hostKind && !f.zeroCachedPageLocked(seg, off) {
				continue
			}
			if n := len(drop); n > 0 && drop[n-1].End == off {
				drop[n-1].End = page.End
			} else {
				drop = append(drop, memmap.MappableRange(page))
			}
		}
	}
	var dropped []memmap.FileRange
	for _, r := range drop {
		dropped = append(dropped, f.dropCacheLocked(r)...)
	}
	f.dataMu.Unlock()
	for _, r := range drop {
		f.invalidateMappingsLocked(r, memmap.InvalidateOpts{})
	}
	f.decRefPages(dropped)
}

// zeroCachedPageLocked reports whether the cached page at off, in seg, holds
// only zeros (false if it cannot be read). Preconditions: dataMu held.
func (f *File) zeroCachedPageLocked(seg cacheIter, off uint64) bool {
	bs, err := f.mapCachedLocked(seg, off, hostarch.PageSize)
	if err != nil {
		return false
	}
	var buf [hostarch.PageSize]byte
	if n, err := safemem.CopySeq(safemem.BlockSeqOf(safemem.BlockFromSafeSlice(buf[:])), bs); err != nil || n != hostarch.PageSize {
		return false
	}
	for _, b := range buf {
		if b != 0 {
			return false
		}
	}
	return true
}

// InvalidateUnsavable implements memmap.Mappable.InvalidateUnsavable. The
// cache can always be read again from the host file once dirty pages are
// written back, which it does; memfd pages live in the memory file, which
// is saved with it.
func (f *File) InvalidateUnsavable(ctx context.Context) error {
	return f.writeBack(ctx, memmap.MappableRange{Start: 0, End: cacheMaxKey}, true)
}
