// Package hostfiles saves and restores hostfile.Files in checkpoint images:
// it is the checkpoint.ObjectCodec for the files, memfds and shared
// anonymous memory that package hostfile provides.
//
// What is saved of a File:
//
//   - a memfd or shared anonymous memory: its name, size and page cache:
//     which pages are cached, their contents (as a page stream: zero pages
//     cost a run entry if resident, nothing otherwise). On restore a new
//     File of the same kind, name and size gets the same cache. (Its inode
//     number, which only /proc/PID/maps shows, is a new one: hostfile has no
//     way to choose it.)
//
//   - a host file that is still linked at its path: the path, the identity
//     of the file (device, inode, size, modification time), which pages are
//     cached, and the cached pages whose contents differ from the host file
//     (dirty pages not yet written back). On restore the path is opened and
//     must be the same file: device, inode and size equal, and the
//     modification time equal, or later if the saved address spaces mapped
//     the file shared and writable or it had dirty pages (releasing the
//     saved address spaces writes those back, which moves the time). The
//     cached pages are read again, and the dirty contents written into the
//     cache as dirty pages, only once the whole image has been checked
//     (Commit): a refused image never reaches the host file.
//
//   - a host file that is no longer linked (deleted, or another file at its
//     path): its whole contents, as CRIU saves "ghost" files. On restore
//     they go to a new unlinked file (O_TMPFILE in Options.GhostDir), whose
//     cached pages are read again.
//
//   - a System V segment (hostfile.Shm), reached through the Mappable and
//     MappingIdentity of one of its attachments: its size and its memfd's
//     cache, as for a memfd. On restore a new segment gets the same
//     contents; RestoredShm gives it to the caller, who knows whether it
//     was removed (IPC_RMID) and calls Remove if so. Segments are
//     recognised by what their attachments offer (the File's methods, a
//     Size method, and the name /SYSV00000000 (deleted)), since hostfile
//     does not export their types.
//
// A File (or segment) reached through several objects (mapped, and open by
// name) is saved once and restored as one.
package hostfiles

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/vmspace/vmspace/checkpoint"
	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/hostfile"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/pgalloc"
	"github.com/vmspace/vmspace/safemem"
)

// Record kinds.
const (
	// recRef: a reference to a File, {file id, has mappable, has
	// identity, new}; a new File's records follow.
	recRef = checkpoint.KindCodec + 0x10 + iota
	// recFile: a File's description.
	recFile
	// recCached: ranges of cached pages.
	recCached
	// recFileEnd ends a File's records.
	recFileEnd
)

// File kinds in recFile.
const (
	kindMemfd = 1
	kindAnon  = 2
	kindHost  = 3
	kindGhost = 4
	kindShm   = 5
)

// Limits a loader enforces.
const (
	maxName       = 4096
	maxPerRecord  = 4096
	maxFileSize   = 1<<63 - 1
	anonName      = "/dev/zero (deleted)"
	shmName       = "/SYSV00000000 (deleted)"
	memfdPrefix   = "/memfd:"
	deletedSuffix = " (deleted)"
)

// Options configure a Codec.
type Options struct {
	// MemoryFile is where restored Files cache their pages. Required to
	// restore.
	MemoryFile *pgalloc.MemoryFile
	// GhostDir is the directory in which the contents of host files that
	// were no longer linked are restored; "" means os.TempDir().
	GhostDir string
	// Table, if not nil, is the table that restored host files (not
	// ghosts) join, sharing the cache of Files already open there.
	Table *hostfile.Table
}

// Codec is the checkpoint.ObjectCodec of hostfile.Files. One Codec serves
// one save or one restore.
type Codec struct {
	opts Options
	// saved maps Files saved so far to their ids (from 1).
	saved map[*hostfile.File]uint64
	// savedShm maps the Mappables of segments saved so far to their ids
	// (from 1).
	savedShm map[memmap.Mappable]uint64
	// loaded are the Files read so far, by id-1.
	loaded []*rFile
	// loadedShm are the segments read so far, by id-1.
	loadedShm []*rShm
}

// New returns a Codec.
func New(opts Options) *Codec {
	return &Codec{opts: opts, saved: map[*hostfile.File]uint64{}, savedShm: map[memmap.Mappable]uint64{}}
}

// cacheFile is what saving a page cache needs: *hostfile.File has it, and
// so do the attachments of a hostfile.Shm, which embed their File.
type cacheFile interface {
	Resident(mr memmap.MappableRange, out []byte)
	Translate(ctx context.Context, required, optional memmap.MappableRange, at hostarch.AccessType) ([]memmap.Translation, error)
	MappedName(ctx context.Context) string
}

// shmMapping is the Mappable of a hostfile.Shm's attachment.
type shmMapping interface {
	memmap.Mappable
	cacheFile
	// Size is the segment's size.
	Size() uint64
	IsHostFile() bool
}

// asShm returns m as a segment's attachment, if it is one.
func asShm(ctx context.Context, m memmap.Mappable, id memmap.MappingIdentity) (shmMapping, bool) {
	if _, isFile := m.(*hostfile.File); isFile || m == nil {
		return nil, false
	}
	sm, ok := m.(shmMapping)
	if !ok || sm.IsHostFile() || (id != nil && memmap.KindOf(id) != memmap.KindSysVShm) {
		return nil, false
	}
	return sm, true
}

var _ checkpoint.ObjectCodec = (*Codec)(nil)

// fileOf returns the File of an object: m and id must be the same File, or
// one of them nil.
func fileOf(m memmap.Mappable, id memmap.MappingIdentity) (*hostfile.File, error) {
	var fm, fi *hostfile.File
	if m != nil {
		f, ok := m.(*hostfile.File)
		if !ok {
			return nil, fmt.Errorf("hostfiles: cannot save a Mappable of type %T", m)
		}
		fm = f
	}
	if id != nil {
		f, ok := id.(*hostfile.File)
		if !ok {
			return nil, fmt.Errorf("hostfiles: cannot save a MappingIdentity of type %T", id)
		}
		fi = f
	}
	switch {
	case fm != nil && fi != nil && fm != fi:
		return nil, errors.New("hostfiles: a Mappable and a MappingIdentity of different Files")
	case fm != nil:
		return fm, nil
	case fi != nil:
		return fi, nil
	}
	return nil, errors.New("hostfiles: no File to save")
}

// SaveObject implements checkpoint.ObjectCodec.
func (c *Codec) SaveObject(ctx context.Context, w *checkpoint.Writer, m memmap.Mappable, id memmap.MappingIdentity, use checkpoint.ObjectUse) (err error) {
	if sm, ok := asShm(ctx, m, id); ok {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("hostfiles: segment mapping of type %T cannot be identified: %v", m, r)
			}
		}()
		sid, seen := c.savedShm[m]
		if !seen {
			sid = uint64(len(c.savedShm)) + 1
			c.savedShm[m] = sid
		}
		if err := writeRef(w, sid, m != nil, id != nil, !seen, true); err != nil || seen {
			return err
		}
		return saveShm(ctx, w, sm)
	}
	f, err := fileOf(m, id)
	if err != nil {
		return err
	}
	fid, ok := c.saved[f]
	if !ok {
		fid = uint64(len(c.saved)) + 1
		c.saved[f] = fid
	}
	if err := writeRef(w, fid, m != nil, id != nil, !ok, false); err != nil || ok {
		return err
	}
	return saveFile(ctx, w, f, use)
}

// writeRef writes a recRef.
func writeRef(w *checkpoint.Writer, id uint64, hasM, hasID, isNew, isShm bool) error {
	e := w.Encoder()
	e.Uvarint(id)
	e.Bool(hasM)
	e.Bool(hasID)
	e.Bool(isNew)
	e.Bool(isShm)
	return w.Record(recRef, e.Bytes())
}

// saveShm writes a segment's records: its size and its cache.
func saveShm(ctx context.Context, w *checkpoint.Writer, sm shmMapping) error {
	size := sm.Size()
	cached := cachedRanges(sm, pageRoundUp(size))
	e := w.Encoder()
	e.Byte(kindShm)
	e.String(shmName)
	e.Uvarint(size)
	e.Bool(true)
	e.Uvarint(uint64(len(cached)))
	if err := w.Record(recFile, e.Bytes()); err != nil {
		return err
	}
	if err := writeCached(w, cached); err != nil {
		return err
	}
	if err := saveCacheContents(ctx, w, sm, cached); err != nil {
		return fmt.Errorf("hostfiles: saving a shm segment: %w", err)
	}
	return w.Record(recFileEnd, nil)
}

// writeCached writes recCached records of cached.
func writeCached(w *checkpoint.Writer, cached []memmap.MappableRange) error {
	for i := 0; i < len(cached); i += maxPerRecord {
		chunk := cached[i:min(len(cached), i+maxPerRecord)]
		e := w.Encoder()
		e.Uvarint(uint64(len(chunk)))
		for _, mr := range chunk {
			e.Uvarint(mr.Start)
			e.Uvarint(mr.End)
		}
		if err := w.Record(recCached, e.Bytes()); err != nil {
			return err
		}
	}
	return nil
}

// cachedRanges returns the ranges of f's cached pages below end.
func cachedRanges(f cacheFile, end uint64) []memmap.MappableRange {
	var out []memmap.MappableRange
	const step = 1 << 30
	for start := uint64(0); start < end; start += step {
		mr := memmap.MappableRange{Start: start, End: min(end, start+step)}
		vec := make([]byte, mr.Length()>>hostarch.PageShift)
		f.Resident(mr, vec)
		for i, r := range vec {
			if r == 0 {
				continue
			}
			off := mr.Start + uint64(i)<<hostarch.PageShift
			if n := len(out); n > 0 && out[n-1].End == off {
				out[n-1].End += hostarch.PageSize
			} else {
				out = append(out, memmap.MappableRange{Start: off, End: off + hostarch.PageSize})
			}
		}
	}
	return out
}

// translations returns the memory-file translations of mr, which must be
// cached, for access at, in chunks of at most 2 MiB.
func translations(ctx context.Context, f cacheFile, mr memmap.MappableRange, at hostarch.AccessType) ([]memmap.Translation, error) {
	var out []memmap.Translation
	for start := mr.Start; start < mr.End; {
		req := memmap.MappableRange{Start: start, End: min(mr.End, start+hostarch.HugePageSize)}
		ts, err := f.Translate(ctx, req, req, at)
		if err != nil {
			return nil, err
		}
		next := req.Start
		for _, t := range ts {
			src := t.Source.Intersect(req)
			if src.Start != next {
				return nil, fmt.Errorf("hostfiles: translation of %v leaves a hole at %#x", req, next)
			}
			t.Offset += src.Start - t.Source.Start
			t.Source = src
			out = append(out, t)
			next = src.End
		}
		if next != req.End {
			return nil, fmt.Errorf("hostfiles: translation of %v stops at %#x", req, next)
		}
		start = req.End
	}
	return out, nil
}

// pageRoundUp rounds a file size up to a page.
func pageRoundUp(n uint64) uint64 { return (n + hostarch.PageMask) &^ uint64(hostarch.PageMask) }

// saveFile writes a File's records.
func saveFile(ctx context.Context, w *checkpoint.Writer, f *hostfile.File, use checkpoint.ObjectUse) error {
	name := f.MappedName(ctx)
	size := f.Size()
	kind := kindMemfd
	var path string
	var st unix.Stat_t
	if f.IsHostFile() {
		kind = kindHost
		path = name
		// A file with no name left (st_nlink 0) is a ghost; a linked
		// file's own name may end in " (deleted)".
		if f.Unlinked() || path == "" || unix.Stat(path, &st) != nil || uint64(st.Dev) != f.DeviceID() || st.Ino != f.InodeID() ||
			st.Mode&unix.S_IFMT != unix.S_IFREG {
			kind = kindGhost
		}
	} else if name == anonName {
		kind = kindAnon
	}
	cached := cachedRanges(f, pageRoundUp(size))
	e := w.Encoder()
	e.Byte(byte(kind))
	e.String(name)
	e.Uvarint(size)
	e.Bool(f.CanWrite())
	if kind == kindHost {
		e.String(path)
		e.Uvarint(uint64(st.Dev))
		e.Uvarint(st.Ino)
		e.Uvarint(uint64(st.Size))
		e.Uvarint(uint64(st.Mtim.Nano()))
		e.Bool(use.SharedWritable || f.DirtyBytes() != 0)
	}
	e.Uvarint(uint64(len(cached)))
	if err := w.Record(recFile, e.Bytes()); err != nil {
		return err
	}
	if err := writeCached(w, cached); err != nil {
		return err
	}
	var err error
	switch kind {
	case kindMemfd, kindAnon:
		err = saveCacheContents(ctx, w, f, cached)
	case kindGhost:
		// The contents as read through the File, then the cached pages
		// that differ from them: the bytes of the last page past
		// end-of-file, which only the cache holds.
		ps := w.Pages(pageRoundUp(size))
		if err = ps.ReaderAt(0, f, size); err == nil {
			err = ps.End()
		}
		if err == nil {
			err = saveDirty(ctx, w, f, cached, func(b []byte, off uint64) error {
				n := uint64(0)
				if off < size {
					n = min(uint64(len(b)), size-off)
				}
				if _, err := f.ReadAt(b[:n], int64(off)); err != nil && n > 0 {
					return err
				}
				clear(b[n:])
				return nil
			})
		}
	case kindHost:
		var hfd = -1
		if len(cached) > 0 {
			if hfd, err = unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
				return fmt.Errorf("hostfiles: opening %q: %w", path, err)
			}
			defer unix.Close(hfd)
		}
		err = saveDirty(ctx, w, f, cached, func(b []byte, off uint64) error { return preadFull(hfd, b, off) })
	}
	if err != nil {
		return fmt.Errorf("hostfiles: saving %q: %w", name, err)
	}
	return w.Record(recFileEnd, nil)
}

// saveCacheContents writes, for each cached range, a page stream of its
// contents in the memory file.
func saveCacheContents(ctx context.Context, w *checkpoint.Writer, f cacheFile, cached []memmap.MappableRange) error {
	for _, mr := range cached {
		ts, err := translations(ctx, f, mr, hostarch.Read)
		if err != nil {
			return err
		}
		ps := w.Pages(mr.Length())
		for _, t := range ts {
			if err := ps.FileRange(t.Source.Start-mr.Start, t.File, t.FileRange()); err != nil {
				return err
			}
		}
		if err := ps.End(); err != nil {
			return err
		}
	}
	return nil
}

// saveDirty writes, for each cached range of a host file, a page stream of
// the cached pages whose contents differ from what ref reads (the host
// file, with zeros past its end).
func saveDirty(ctx context.Context, w *checkpoint.Writer, f *hostfile.File, cached []memmap.MappableRange, ref func(b []byte, off uint64) error) error {
	const chunk = 1 << 20
	cache := make([]byte, chunk)
	host := make([]byte, chunk)
	for _, mr := range cached {
		ts, err := translations(ctx, f, mr, hostarch.Read)
		if err != nil {
			return err
		}
		ps := w.Pages(mr.Length())
		for _, t := range ts {
			ims, err := t.File.MapInternal(t.FileRange(), hostarch.Read)
			if err != nil {
				return err
			}
			for done := uint64(0); done < t.Source.Length(); {
				n := min(uint64(chunk), t.Source.Length()-done)
				cb, hb := cache[:n], host[:n]
				if _, err := safemem.CopySeq(safemem.BlockSeqOf(safemem.BlockFromSafeSlice(cb)), ims.DropFirst64(done).TakeFirst64(n)); err != nil {
					return err
				}
				off := t.Source.Start + done
				if err := ref(hb, off); err != nil {
					return err
				}
				for i := uint64(0); i < n; {
					if bytes.Equal(cb[i:i+hostarch.PageSize], hb[i:i+hostarch.PageSize]) {
						i += hostarch.PageSize
						continue
					}
					j := i + hostarch.PageSize
					for j < n && !bytes.Equal(cb[j:j+hostarch.PageSize], hb[j:j+hostarch.PageSize]) {
						j += hostarch.PageSize
					}
					if err := ps.Data(off+i-mr.Start, cb[i:j]); err != nil {
						return err
					}
					i = j
				}
				done += n
			}
		}
		if err := ps.End(); err != nil {
			return err
		}
	}
	return nil
}

// preadFull fills b from fd at off; bytes past the end of the file read as
// zero.
func preadFull(fd int, b []byte, off uint64) error {
	for len(b) > 0 {
		n, err := unix.Pread(fd, b, int64(off))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("reading the host file at %#x: %w", off, err)
		}
		if n == 0 {
			clear(b)
			return nil
		}
		b = b[n:]
		off += uint64(n)
	}
	return nil
}
