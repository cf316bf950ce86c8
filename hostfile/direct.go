package hostfile

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/internal/lockrank"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/pgalloc"
	"github.com/vmspace/vmspace/safemem"
)

// A directly mapped host file (NewDirectFile, NewDirectTable) has no page
// cache of its own: its Translations name the host file itself (hostMem),
// so that platforms map the host file and the host kernel's page cache is
// the only one. Its size, holes and contents are whatever the host says at
// the moment; writes by anybody show through at once.

// Internal mappings of a directly mapped host file (vmspace maps the file
// into its own address space for the memory manager's accesses) are 2 MiB
// to 64 MiB each: the smallest size that covers the file, as large as it
// is when first mapped, in at most maxInitialChunks of them. Small files
// then cost little of vmspace's address space (which RLIMIT_AS may bound),
// large ones few mappings.
const (
	minDirectChunkShift = 21
	maxDirectChunkShift = 26
	maxInitialChunks    = 32
)

// directChunkShiftFor returns the chunk size (as a shift) for a file of
// size bytes.
func directChunkShiftFor(size uint64) uint {
	s := uint(minDirectChunkShift)
	for s < maxDirectChunkShift && size > maxInitialChunks<<s {
		s++
	}
	return s
}

// hostMem is the memmap.File of a directly mapped host file: offsets are
// offsets in the host file, FD is the File's own host descriptor, and
// MapInternal maps the host file (shared) into vmspace. Accesses past the
// host file's end fault with SIGBUS, which safemem reports as an error.
//
// Page references (IncRef/DecRef, taken by the memory manager on what
// Translate returns) keep the host descriptor and the internal mappings
// alive after the File's last reference, until the last page reference
// goes.
type hostMem struct {
	// f is the File. Immutable.
	f *File

	// pages counts the page references held. Atomic; its drop to zero
	// after release is acted on with f.dataMu held.
	pages atomic.Int64

	// mu guards the fields below. It comes after f.dataMu.
	mu lockrank.Mutex[lockrank.HostMemTag]

	// chunks are the internal mappings by chunk index. Guarded by mu.
	chunks map[uint64]hostChunk

	// retired are read-only chunk mappings replaced by writable ones,
	// kept until close since cached pointers may still refer to them.
	// Guarded by mu.
	retired []retiredChunk

	// closed is set once the descriptor is closed and the mappings are
	// gone. Guarded by mu.
	closed bool

	// shift is log2 of the size of the internal mappings, chosen when the
	// first is made (directChunkShiftFor), 0 before. Guarded by mu.
	shift uint
}

// retiredChunk is a retired internal mapping of chunk ci at p.
type retiredChunk struct {
	ci uint64
	p  unsafe.Pointer
}

// hostChunk is one internal mapping of 1<<hostMem.shift bytes.
type hostChunk struct {
	// p is its address.
	p unsafe.Pointer
	// writable is true if it was mapped PROT_WRITE.
	writable bool
}

var _ memmap.File = (*hostMem)(nil)

// NewDirectFile is NewFile for a directly mapped host file: its mappings
// map the host file itself rather than a page cache in mf (see the package
// documentation for when to use which).
func NewDirectFile(mf *pgalloc.MemoryFile, hostFD int) (*File, error) {
	return newFileOf(mf, hostFD, true)
}

// NewDirectTable is NewTable for directly mapped host files: every File it
// makes maps the host file itself (NewDirectFile).
func NewDirectTable(mf *pgalloc.MemoryFile) *Table {
	t := NewTable(mf)
	t.direct = true
	return t
}

// IsDirect reports whether f is a directly mapped host file.
func (f *File) IsDirect() bool { return f.direct }

// hostSizeLocked returns the host file's size now. Preconditions: dataMu
// held.
func (f *File) hostSizeLocked() (uint64, error) {
	fd, done, err := f.useFDLocked()
	if err != nil {
		return 0, err
	}
	defer done()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, fmt.Errorf("hostfile: fstat of %q: %w", f.name, err)
	}
	if st.Size < 0 {
		return 0, fmt.Errorf("hostfile: %q: size out of range: %w", f.name, unix.EFBIG)
	}
	return uint64(st.Size), nil
}

// translateDirect is Translate for a directly mapped host file: one
// Translation of the host file covering required, and optional as far as
// maxTranslateExtent around it and the end of the file allow. Its
// permissions are AnyAccess if the File's descriptor can write (a read of
// a shared mapping need not be translated again for a write), else
// Read|Execute. Pages wholly past end-of-file now are a *memmap.BusError.
func (f *File) translateDirect(required, optional memmap.MappableRange, at hostarch.AccessType) ([]memmap.Translation, error) {
	f.dataMu.RLock()
	defer f.dataMu.RUnlock()
	if f.released {
		return nil, fmt.Errorf("hostfile: Translate of released file: %w", unix.EBADF)
	}
	if at.Write && !f.fdWritable {
		return nil, fmt.Errorf("hostfile: writable Translate of a file not open for writing: %w", unix.EACCES)
	}
	size, err := f.hostSizeLocked()
	if err != nil {
		return nil, err
	}
	pgend := pageRoundUpSize(size)
	if required.Start >= pgend {
		return nil, directBusError(f, required.Start, size)
	}
	req := required
	var reqErr error
	if req.End > pgend {
		req.End = pgend
		reqErr = directBusError(f, pgend, size)
	}
	opt := boundOptional(req, optional, pgend)
	p := hostarch.ReadExecute
	if f.fdWritable {
		p = hostarch.AnyAccess
	}
	return []memmap.Translation{{Source: opt, File: f.hm, Offset: opt.Start, Perms: p}}, reqErr
}

// directBusError is the error of a translation at off, past the end of a
// host file of size bytes.
func directBusError(f *File, off, size uint64) error {
	return &memmap.BusError{Err: fmt.Errorf("hostfile: offset %#x is past the end of %q (%#x bytes): %w", off, f.name, size, unix.EFAULT)}
}

// readAtDirect is ReadAt for a directly mapped host file: pread of the host
// file. Preconditions: off >= 0.
func (f *File) readAtDirect(p []byte, off int64) (int, error) {
	f.dataMu.RLock()
	defer f.dataMu.RUnlock()
	if f.released || !f.fdReadable {
		return 0, fmt.Errorf("hostfile: ReadAt of %q: %w", f.name, unix.EBADF)
	}
	fd, release, err := f.useFDLocked()
	if err != nil {
		return 0, err
	}
	defer release()
	done := 0
	for done < len(p) {
		m, err := unix.Pread(fd, p[done:], off+int64(done))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, fmt.Errorf("hostfile: reading %q at %#x: %w", f.name, off+int64(done), err)
		}
		if m == 0 {
			return done, io.EOF
		}
		done += m
	}
	return done, nil
}

// writeAtDirect is WriteAt for a directly mapped host file: pwrite of the
// host file. Preconditions: off >= 0.
func (f *File) writeAtDirect(p []byte, off int64) (int, error) {
	f.dataMu.RLock()
	defer f.dataMu.RUnlock()
	if f.released || !f.fdWritable {
		return 0, fmt.Errorf("hostfile: WriteAt of %q: %w", f.name, unix.EBADF)
	}
	end := uint64(off) + uint64(len(p))
	if end < uint64(off) || end > maxFileSize {
		return 0, fmt.Errorf("hostfile: WriteAt(%d, %d bytes): %w", off, len(p), unix.EFBIG)
	}
	return f.pwriteLocked(p, uint64(off))
}

// truncateDirect is Truncate for a directly mapped host file: ftruncate of
// the host file (the host drops its pages and makes shared mappings fault
// past the end), and, when it shrinks, the invalidation of every mapping
// of the pages past the new end, so that private copies of them go too,
// as in Linux. Preconditions: mapsMu held; 0 <= size <= maxFileSize.
func (f *File) truncateDirect(size int64) error {
	f.dataMu.RLock()
	if f.released || !f.fdWritable {
		released := f.released
		f.dataMu.RUnlock()
		if released {
			return fmt.Errorf("hostfile: Truncate of %q: %w", f.name, unix.EBADF)
		}
		return fmt.Errorf("hostfile: Truncate of %q, not open for writing: %w", f.name, unix.EINVAL)
	}
	oldSize, err := f.hostSizeLocked()
	fd, release, ferr := f.useFDLocked()
	if err == nil && ferr != nil {
		err = ferr
	}
	if ferr == nil {
		defer release()
	}
	for err == nil {
		err = unix.Ftruncate(fd, size)
		if err == unix.EINTR {
			err = nil
			continue
		}
		if err != nil {
			err = fmt.Errorf("hostfile: ftruncate(%q, %d): %w", f.name, size, err)
		}
		break
	}
	f.dataMu.RUnlock()
	if err != nil {
		return err
	}
	if uint64(size) < oldSize {
		newEnd := pageRoundUpSize(uint64(size))
		f.invalidateMappingsLocked(memmap.MappableRange{Start: newEnd, End: (mappingFuncs{}).MaxKey()}, memmap.InvalidateOpts{InvalidatePrivate: true})
	}
	return nil
}

// punchDirect is Punch for a directly mapped host file: a hole in the host
// file, which the host's mappings see at once; private copies stay.
func (f *File) punchDirect(mr memmap.MappableRange) error {
	f.dataMu.RLock()
	defer f.dataMu.RUnlock()
	if f.released || !f.fdWritable {
		return fmt.Errorf("hostfile: Punch of %q: %w", f.name, unix.EBADF)
	}
	size, err := f.hostSizeLocked()
	if err != nil {
		return err
	}
	r := mr.Intersect(memmap.MappableRange{Start: 0, End: pageRoundUpSize(size)})
	if r.Length() == 0 {
		return nil
	}
	fd, release, err := f.useFDLocked()
	if err != nil {
		return err
	}
	defer release()
	for {
		err := unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, int64(r.Start), int64(r.Length()))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("hostfile: punching %v of %q: %w", r, f.name, err)
		}
		return nil
	}
}

// residentDirect is Resident for a directly mapped host file: the host page
// cache's residency (mincore of an internal mapping). Preconditions: mr is
// page-aligned at its start; len(out) == mr.Length() / page size.
func (f *File) residentDirect(mr memmap.MappableRange, out []byte) {
	clear(out)
	mr.End = mr.Start + uint64(len(out))<<hostarch.PageShift
	ims, err := f.hm.MapInternal(memmap.FileRange(mr), hostarch.Read)
	if err != nil {
		return
	}
	i := 0
	for b := range ims.All {
		n := b.Len() >> hostarch.PageShift
		vec := out[i : i+n]
		if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(b.Pointer()), uintptr(b.Len()), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
			clear(vec)
		}
		for j := range vec {
			vec[j] &= 1
		}
		i += n
	}
}

// releaseDirect frees what a directly mapped host file holds once its last
// reference has gone: the descriptor and the internal mappings, unless
// page references remain (then the last DecRef does it). Preconditions:
// dataMu held for writing; f.released set.
func (f *File) releaseDirectLocked() {
	if f.hm.pages.Load() == 0 {
		f.hm.closeLocked()
	}
}

// IncRef implements memmap.File.IncRef.
func (h *hostMem) IncRef(fr memmap.FileRange) {
	h.pages.Add(int64(pageCount(fr)))
}

// DecRef implements memmap.File.DecRef. Dropping references that are not
// held is a programming error: it panics.
func (h *hostMem) DecRef(fr memmap.FileRange) {
	n := h.pages.Add(-int64(pageCount(fr)))
	if n < 0 {
		panic(fmt.Sprintf("hostfile: DecRef(%v) of %q: more page references dropped than taken", fr, h.f.name))
	}
	if n > 0 {
		return
	}
	h.f.dataMu.Lock()
	defer h.f.dataMu.Unlock()
	if h.f.released && h.pages.Load() == 0 {
		h.closeLocked()
	}
}

// pageCount returns the number of pages fr touches.
func pageCount(fr memmap.FileRange) uint64 {
	if fr.End <= fr.Start {
		return 0
	}
	return (pageRoundUpSize(fr.End) - (fr.Start &^ uint64(hostarch.PageMask))) >> hostarch.PageShift
}

// FD implements memmap.File.FD: the File's own host descriptor (which a
// platform opens again, or passes on, to map the host file), or -1 once
// closed or if the descriptor is kept aside (then Path names it).
func (h *hostMem) FD() int {
	h.f.dataMu.RLock()
	defer h.f.dataMu.RUnlock()
	return h.f.fd
}

// Path returns a path through which a process with access to vmspace's
// descriptors can open the host file, whether the File's descriptor is
// its own (/proc/PID/fd/N) or kept aside (/proc/PID/task/TID/fd/N), or ""
// once closed. The path stays valid while page references are held.
func (h *hostMem) Path() string {
	h.f.dataMu.RLock()
	defer h.f.dataMu.RUnlock()
	d := h.f.descLocked()
	if !d.open() {
		return ""
	}
	return d.procPath()
}

// MapInternal implements memmap.File.MapInternal: a shared mapping of the
// host file in vmspace, readable, and writable if at.Write (EACCES if the
// File's descriptor cannot write). A range within one chunk (2 to 64 MiB) is one
// Block. Accesses past the host file's end fault (SIGBUS): the Blocks need
// fault-tolerant access.
func (h *hostMem) MapInternal(fr memmap.FileRange, at hostarch.AccessType) (safemem.BlockSeq, error) {
	if fr.Start > fr.End || fr.End > cacheMaxKey {
		return safemem.BlockSeq{}, fmt.Errorf("hostfile: MapInternal(%v): %w", fr, unix.EINVAL)
	}
	if fr.Start == fr.End {
		return safemem.BlockSeq{}, nil
	}
	f := h.f
	f.dataMu.RLock()
	defer f.dataMu.RUnlock()
	if at.Write && !f.fdWritable {
		return safemem.BlockSeq{}, fmt.Errorf("hostfile: writable MapInternal of %q, not open for writing: %w", f.name, unix.EACCES)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || !f.descLocked().open() {
		return safemem.BlockSeq{}, fmt.Errorf("hostfile: MapInternal of closed file %q: %w", f.name, unix.EBADF)
	}
	if h.shift == 0 {
		size, err := f.hostSizeLocked()
		if err != nil {
			return safemem.BlockSeq{}, err
		}
		h.shift = directChunkShiftFor(size)
	}
	shift := h.shift
	first, last := fr.Start>>shift, (fr.End-1)>>shift
	var blocks []safemem.Block
	for ci := first; ci <= last; ci++ {
		p, err := h.chunkLocked(ci, at.Write)
		if err != nil {
			return safemem.BlockSeq{}, err
		}
		piece := fr.Intersect(memmap.FileRange{Start: ci << shift, End: (ci + 1) << shift})
		off := piece.Start & (1<<shift - 1)
		blocks = append(blocks, safemem.BlockFromUnsafePointer(unsafe.Add(p, off), int(piece.Length())))
	}
	if len(blocks) == 1 {
		return safemem.BlockSeqOf(blocks[0]), nil
	}
	return safemem.BlockSeqFromSlice(blocks), nil
}

// chunkLocked returns the internal mapping of chunk ci, writable if write,
// mapping it if needed: writable whenever the descriptor can write.
// Preconditions: f.dataMu held; mu held; not closed.
func (h *hostMem) chunkLocked(ci uint64, write bool) (unsafe.Pointer, error) {
	if h.chunks == nil {
		h.chunks = make(map[uint64]hostChunk)
	}
	c, ok := h.chunks[ci]
	if ok && (c.writable || !write) {
		return c.p, nil
	}
	prot := unix.PROT_READ
	if h.f.fdWritable {
		prot |= unix.PROT_WRITE
	}
	fd, done, err := h.f.useFDLocked()
	if err != nil {
		return nil, err
	}
	p, err := unix.MmapPtr(fd, int64(ci<<h.shift), nil, 1<<h.shift, prot, unix.MAP_SHARED)
	done()
	if err != nil {
		return nil, fmt.Errorf("hostfile: mapping %q at %#x: %w", h.f.name, ci<<h.shift, err)
	}
	if ok {
		h.retired = append(h.retired, retiredChunk{ci: ci, p: c.p})
	}
	h.chunks[ci] = hostChunk{p: p, writable: prot&unix.PROT_WRITE != 0}
	return p, nil
}

// closeLocked closes the descriptor and removes the internal mappings.
// Preconditions: f.dataMu held for writing; no page references left.
func (h *hostMem) closeLocked() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	for _, c := range h.chunks {
		unix.MunmapPtr(c.p, 1<<h.shift)
	}
	for _, r := range h.retired {
		unix.MunmapPtr(r.p, 1<<h.shift)
	}
	h.chunks, h.retired = nil, nil
	h.f.closeFDsLocked()
}

// Has reports whether t has a File for the host inode with st_dev dev and
// st_ino ino.
func (t *Table) Has(dev, ino uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.files[fileKey{dev: dev, ino: ino}]
	return ok
}

// HostTruncated tells t that the host file with st_dev dev and st_ino ino
// was truncated, or had a range collapsed or inserted at offset from,
// behind its Files' back: by a host system call that the host kernel ran
// for a program whose file I/O it does. If t has a directly mapped File
// for the inode, every mapping of its pages from the first page boundary
// at or after from, or after the host file's end now if that comes first,
// is invalidated, private copy-on-write copies included, as Linux's
// truncate_pagecache does: a later access faults again, and past the end
// of the file gets SIGBUS. (For a truncation, from is the new size or
// more.) It reports whether t had a File for the inode.
func (t *Table) HostTruncated(dev, ino, from uint64) bool {
	t.mu.Lock()
	f, ok := t.files[fileKey{dev: dev, ino: ino}]
	if ok {
		f.IncRef()
	}
	t.mu.Unlock()
	if !ok {
		return false
	}
	defer f.DecRef(context.Background())
	if f.direct {
		f.hostTruncated(from)
	}
	return true
}

// hostTruncated is HostTruncated for one directly mapped File.
func (f *File) hostTruncated(from uint64) {
	f.mapsMu.Lock()
	defer f.mapsMu.Unlock()
	f.dataMu.RLock()
	if f.released {
		f.dataMu.RUnlock()
		return
	}
	size, err := f.hostSizeLocked()
	f.dataMu.RUnlock()
	if err != nil {
		// Not knowing the end, keep the copies: dropping one below
		// the end would lose the program's writes.
		return
	}
	start := pageRoundUpSize(min(from, size, maxFileSize))
	f.invalidateMappingsLocked(memmap.MappableRange{Start: start, End: (mappingFuncs{}).MaxKey()}, memmap.InvalidateOpts{InvalidatePrivate: true})
}
