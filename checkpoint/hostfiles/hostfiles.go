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
//   - a host file that is no longer linked (deleted, or another file at its
//     path): its whole contents, as CRIU saves "ghost" files. On restore
//     they go to a new unlinked file (O_TMPFILE in Options.GhostDir), whose
//     cached pages are read again.
//
// A File reached through several objects (mapped, and open by name) is
// saved once and restored as one File.
package hostfiles

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

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
)

// Limits a loader enforces.
const (
	maxName       = 4096
	maxPerRecord  = 4096
	maxFileSize   = 1<<63 - 1
	anonName      = "/dev/zero (deleted)"
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
	// loaded are the Files read so far, by id-1.
	loaded []*rFile
}

// New returns a Codec.
func New(opts Options) *Codec {
	return &Codec{opts: opts, saved: map[*hostfile.File]uint64{}}
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
func (c *Codec) SaveObject(ctx context.Context, w *checkpoint.Writer, m memmap.Mappable, id memmap.MappingIdentity, use checkpoint.ObjectUse) error {
	f, err := fileOf(m, id)
	if err != nil {
		return err
	}
	fid, ok := c.saved[f]
	if !ok {
		fid = uint64(len(c.saved)) + 1
		c.saved[f] = fid
	}
	e := w.Encoder()
	e.Uvarint(fid)
	e.Bool(m != nil)
	e.Bool(id != nil)
	e.Bool(!ok)
	if err := w.Record(recRef, e.Bytes()); err != nil {
		return err
	}
	if ok {
		return nil
	}
	return saveFile(ctx, w, f, use)
}

// cachedRanges returns the ranges of f's cached pages below end.
func cachedRanges(f *hostfile.File, end uint64) []memmap.MappableRange {
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
func translations(ctx context.Context, f *hostfile.File, mr memmap.MappableRange, at hostarch.AccessType) ([]memmap.Translation, error) {
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
		deleted := strings.HasSuffix(path, deletedSuffix)
		path = strings.TrimSuffix(path, deletedSuffix)
		if deleted || path == "" || unix.Stat(path, &st) != nil || uint64(st.Dev) != f.DeviceID() || st.Ino != f.InodeID() ||
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
	var err error
	switch kind {
	case kindMemfd, kindAnon:
		err = saveCacheContents(ctx, w, f, cached)
	case kindGhost:
		ps := w.Pages(pageRoundUp(size))
		if err = ps.ReaderAt(0, f, size); err == nil {
			err = ps.End()
		}
	case kindHost:
		err = saveDirty(ctx, w, f, path, cached)
	}
	if err != nil {
		return fmt.Errorf("hostfiles: saving %q: %w", name, err)
	}
	return w.Record(recFileEnd, nil)
}

// saveCacheContents writes, for each cached range, a page stream of its
// contents in the memory file.
func saveCacheContents(ctx context.Context, w *checkpoint.Writer, f *hostfile.File, cached []memmap.MappableRange) error {
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
// the cached pages whose contents differ from the host file at path.
func saveDirty(ctx context.Context, w *checkpoint.Writer, f *hostfile.File, path string, cached []memmap.MappableRange) error {
	var hfd = -1
	if len(cached) > 0 {
		var err error
		if hfd, err = unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
			return fmt.Errorf("opening %q: %w", path, err)
		}
		defer unix.Close(hfd)
	}
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
				if err := preadFull(hfd, hb, off); err != nil {
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
