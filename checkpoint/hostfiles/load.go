package hostfiles

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vmspace/vmspace/checkpoint"
	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/hostfile"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/pgalloc"
	"github.com/vmspace/vmspace/safemem"
)

// rFile is a File read from an image.
type rFile struct {
	// f is the File, with the creation reference, which is dropped when
	// the last pending object using it is discarded.
	f *hostfile.File
	// users counts the pending objects using f that are not discarded.
	users int
	// dirty are the dirty contents of a host file, staged in the memory
	// file until Commit: dirty[i] goes to file offset at[i].
	dirty []staged
	// committed is set once the dirty contents are in the cache.
	committed bool
}

// staged is a range of dirty contents staged in the memory file.
type staged struct {
	// off is the file offset the contents belong at.
	off uint64
	// fr holds them; the rFile holds its reference until Commit or
	// Discard.
	fr memmap.FileRange
}

// rShm is a System V segment read from an image.
type rShm struct {
	// seg is the new segment.
	seg *hostfile.Shm
	// m and id are an attachment's Mappable and MappingIdentity, with
	// the reference ConfigureMMap gave, dropped when the last pending
	// object using them is discarded.
	m  memmap.Mappable
	id memmap.MappingIdentity
	// users counts the pending objects using the segment that are not
	// discarded.
	users int
	// committed is set once the restore succeeded; until then a discarded
	// segment is removed.
	committed bool
}

// pending is a checkpoint.PendingObject: one reference to an rFile or an
// rShm.
type pending struct {
	c       *Codec
	file    *rFile
	shm     *rShm
	hasM    bool
	hasID   bool
	discard bool
}

// RestoredShm returns the segment restored with the attachment Mappable m
// (as Restorer.Object returns it).
func (c *Codec) RestoredShm(m memmap.Mappable) (*hostfile.Shm, bool) {
	for _, rs := range c.loadedShm {
		if rs.m == m {
			return rs.seg, true
		}
	}
	return nil, false
}

// RestoredShms returns every segment restored.
func (c *Codec) RestoredShms() []*hostfile.Shm {
	var out []*hostfile.Shm
	for _, rs := range c.loadedShm {
		out = append(out, rs.seg)
	}
	return out
}

// LoadObject implements checkpoint.ObjectCodec.
func (c *Codec) LoadObject(ctx context.Context, r *checkpoint.Reader) (checkpoint.PendingObject, error) {
	if c.opts.MemoryFile == nil {
		return nil, errors.New("hostfiles: restoring needs Options.MemoryFile")
	}
	d, err := r.Expect(recRef)
	if err != nil {
		return nil, err
	}
	fid := d.Uvarint()
	hasM, hasID, isNew, isShm := d.Bool(), d.Bool(), d.Bool(), d.Bool()
	if err := d.Finish(); err != nil {
		return nil, err
	}
	if !hasM && !hasID {
		return nil, r.Fail("hostfiles: reference to neither a mappable nor an identity")
	}
	if isShm {
		var rs *rShm
		switch {
		case isNew && fid == uint64(len(c.loadedShm))+1:
			rs, err = c.loadShm(ctx, r)
			if err != nil {
				return nil, err
			}
			c.loadedShm = append(c.loadedShm, rs)
		case !isNew && fid >= 1 && fid <= uint64(len(c.loadedShm)):
			rs = c.loadedShm[fid-1]
		default:
			return nil, r.Fail("hostfiles: segment %d out of sequence", fid)
		}
		rs.id.IncRef()
		rs.users++
		return &pending{c: c, shm: rs, hasM: hasM, hasID: hasID}, nil
	}
	var rf *rFile
	switch {
	case isNew && fid == uint64(len(c.loaded))+1:
		rf, err = c.loadFile(ctx, r)
		if err != nil {
			return nil, err
		}
		c.loaded = append(c.loaded, rf)
	case !isNew && fid >= 1 && fid <= uint64(len(c.loaded)):
		rf = c.loaded[fid-1]
	default:
		return nil, r.Fail("hostfiles: file %d out of sequence", fid)
	}
	rf.f.IncRef()
	rf.users++
	return &pending{c: c, file: rf, hasM: hasM, hasID: hasID}, nil
}

// Build implements checkpoint.PendingObject.
func (p *pending) Build(ctx context.Context) (memmap.Mappable, memmap.MappingIdentity, error) {
	var m memmap.Mappable
	var id memmap.MappingIdentity
	if p.shm != nil {
		if p.hasM {
			m = p.shm.m
		}
		if p.hasID {
			id = p.shm.id
		}
		return m, id, nil
	}
	if p.hasM {
		m = p.file.f
	}
	if p.hasID {
		id = p.file.f
	}
	return m, id, nil
}

// Commit implements checkpoint.PendingObject: the dirty contents of a host
// file go into its cache, as dirty pages.
func (p *pending) Commit(ctx context.Context) error {
	if p.shm != nil {
		p.shm.committed = true
		return nil
	}
	rf := p.file
	if rf.committed {
		return nil
	}
	rf.committed = true
	mf := p.c.opts.MemoryFile
	for _, s := range rf.dirty {
		mr := memmap.MappableRange{Start: s.off, End: s.off + s.fr.Length()}
		ts, err := translations(ctx, rf.f, mr, hostarch.Write)
		if err != nil {
			return fmt.Errorf("hostfiles: restoring dirty pages %v of %q: %w", mr, rf.f.MappedName(ctx), err)
		}
		src, err := mf.MapInternal(s.fr, hostarch.Read)
		if err != nil {
			return err
		}
		for _, t := range ts {
			dst, err := t.File.MapInternal(t.FileRange(), hostarch.Write)
			if err != nil {
				return err
			}
			if _, err := safemem.CopySeq(dst, src.DropFirst64(t.Source.Start-s.off).TakeFirst64(t.Source.Length())); err != nil {
				return err
			}
		}
	}
	rf.dropStaged(p.c)
	return nil
}

// dropStaged frees the staged dirty contents.
func (rf *rFile) dropStaged(c *Codec) {
	for _, s := range rf.dirty {
		c.opts.MemoryFile.DecRef(s.fr)
	}
	rf.dirty = nil
}

// Discard implements checkpoint.PendingObject.
func (p *pending) Discard(ctx context.Context) {
	if p.discard {
		return
	}
	p.discard = true
	if rs := p.shm; rs != nil {
		rs.id.DecRef(ctx)
		if rs.users--; rs.users == 0 {
			rs.id.DecRef(ctx)
			if !rs.committed {
				rs.seg.Remove(ctx)
			}
		}
		return
	}
	rf := p.file
	rf.f.DecRef(ctx)
	if rf.users--; rf.users == 0 {
		rf.dropStaged(p.c)
		rf.f.DecRef(ctx)
	}
}

// loadShm reads a new segment's records and makes it.
func (c *Codec) loadShm(ctx context.Context, r *checkpoint.Reader) (*rShm, error) {
	d, err := r.Expect(recFile)
	if err != nil {
		return nil, err
	}
	kind := d.Byte()
	d.String(maxName)
	size := d.UvarintMax(maxFileSize, "segment size")
	d.Bool()
	nranges := d.Uvarint()
	if err := d.Finish(); err != nil {
		return nil, err
	}
	if kind != kindShm {
		return nil, d.Fail("a segment of file kind %d", kind)
	}
	cached, err := readCached(r, nranges, size)
	if err != nil {
		return nil, err
	}
	seg, err := hostfile.NewShm(c.opts.MemoryFile, size)
	if err != nil {
		return nil, fmt.Errorf("hostfiles: restoring a segment of %d bytes: %w", size, err)
	}
	var opts memmap.MMapOpts
	if err := seg.ConfigureMMap(ctx, &opts); err != nil {
		seg.Remove(ctx)
		return nil, err
	}
	rs := &rShm{seg: seg, m: opts.Mappable, id: opts.MappingIdentity}
	cf, ok := rs.m.(cacheFile)
	if ok {
		err = loadCache(ctx, r, cf, shmName, cached)
	} else {
		err = fmt.Errorf("hostfiles: a segment's mapping of type %T", rs.m)
	}
	if err == nil {
		var d *checkpoint.Decoder
		if d, err = r.Expect(recFileEnd); err == nil {
			err = d.Finish()
		}
	}
	if err != nil {
		rs.id.DecRef(ctx)
		seg.Remove(ctx)
		return nil, err
	}
	return rs, nil
}

// readCached reads the recCached records of nranges ranges of a file of
// size bytes.
func readCached(r *checkpoint.Reader, nranges, size uint64) ([]memmap.MappableRange, error) {
	pgend := pageRoundUp(size)
	if nranges > pgend>>hostarch.PageShift {
		return nil, r.Fail("hostfiles: %d cached ranges in a file of %#x bytes", nranges, size)
	}
	var cached []memmap.MappableRange
	for uint64(len(cached)) < nranges {
		d, err := r.Expect(recCached)
		if err != nil {
			return nil, err
		}
		n := d.UvarintMax(maxPerRecord, "cached ranges")
		if n == 0 || n > nranges-uint64(len(cached)) {
			return nil, d.Fail("bad count %d of cached ranges", n)
		}
		for i := uint64(0); i < n; i++ {
			mr := memmap.MappableRange{Start: d.Uvarint(), End: d.Uvarint()}
			if d.Err() != nil {
				return nil, d.Err()
			}
			if mr.Start >= mr.End || !hostarch.IsPageAligned(mr.Start) || !hostarch.IsPageAligned(mr.End) || mr.End > pgend ||
				(len(cached) > 0 && mr.Start < cached[len(cached)-1].End) {
				return nil, d.Fail("bad cached range %v in a file of %#x bytes", mr, size)
			}
			cached = append(cached, mr)
		}
		if err := d.Finish(); err != nil {
			return nil, err
		}
	}
	return cached, nil
}

// loadCache fills the cached ranges of f (a memfd's, or a segment's) and
// reads their contents into them.
func loadCache(ctx context.Context, r *checkpoint.Reader, f cacheFile, name string, cached []memmap.MappableRange) error {
	for _, mr := range cached {
		// Translating for writing fills the cache with zero pages.
		ts, err := translations(ctx, f, mr, hostarch.Write)
		if err != nil {
			return fmt.Errorf("hostfiles: filling the cache of %q: %w", name, err)
		}
		var blocks []safemem.Block
		for _, t := range ts {
			ims, err := t.File.MapInternal(t.FileRange(), hostarch.Write)
			if err != nil {
				return err
			}
			for b := range ims.All {
				blocks = append(blocks, b)
			}
		}
		data, zero := checkpoint.BlockSink(safemem.BlockSeqFromSlice(blocks))
		if err := r.ReadPages(mr.Length(), data, zero); err != nil {
			return err
		}
	}
	return nil
}

// loadFile reads a new File's records and makes it.
func (c *Codec) loadFile(ctx context.Context, r *checkpoint.Reader) (rf *rFile, err error) {
	d, err := r.Expect(recFile)
	if err != nil {
		return nil, err
	}
	kind := d.Byte()
	name := d.String(maxName)
	size := d.UvarintMax(maxFileSize, "file size")
	canWrite := d.Bool()
	var path string
	var stDev, stIno, stSize, mtime uint64
	var mayWriteBack bool
	if kind == kindHost {
		path = d.String(maxName)
		stDev, stIno, stSize, mtime = d.Uvarint(), d.Uvarint(), d.Uvarint(), d.Uvarint()
		mayWriteBack = d.Bool()
	}
	nranges := d.Uvarint()
	if err := d.Finish(); err != nil {
		return nil, err
	}
	if kind < kindMemfd || kind > kindGhost {
		return nil, d.Fail("unknown file kind %d", kind)
	}
	cached, err := readCached(r, nranges, size)
	if err != nil {
		return nil, err
	}

	rf = &rFile{}
	defer func() {
		if err != nil && rf.f != nil {
			rf.dropStaged(c)
			rf.f.DecRef(ctx)
		}
	}()
	switch kind {
	case kindMemfd, kindAnon:
		err = c.loadMemfd(ctx, r, rf, kind, name, size, cached)
	case kindGhost:
		err = c.loadGhost(ctx, r, rf, name, size, canWrite, cached)
	case kindHost:
		err = c.loadHost(ctx, r, rf, path, size, canWrite, cached, fileID{stDev, stIno, stSize, mtime}, mayWriteBack)
	}
	if err != nil {
		return rf, err
	}
	d, err = r.Expect(recFileEnd)
	if err != nil {
		return rf, err
	}
	return rf, d.Finish()
}

// loadMemfd makes a memfd or shared anonymous memory and loads its cache.
func (c *Codec) loadMemfd(ctx context.Context, r *checkpoint.Reader, rf *rFile, kind byte, name string, size uint64, cached []memmap.MappableRange) error {
	mf := c.opts.MemoryFile
	if kind == kindAnon {
		fd, err := hostfile.NewSharedAnon(ctx, mf, size)
		if err != nil {
			return err
		}
		var opts memmap.MMapOpts
		// Take over the FD's reference.
		if err := fd.ConfigureMMap(ctx, &opts); err != nil {
			return err
		}
		rf.f = fd.File()
	} else {
		mname := strings.TrimSuffix(strings.TrimPrefix(name, memfdPrefix), deletedSuffix)
		f, err := hostfile.NewMemfd(mf, mname, size)
		if err != nil {
			return err
		}
		rf.f = f
	}
	return loadCache(ctx, r, rf.f, name, cached)
}

// fileID identifies a host file's state.
type fileID struct {
	dev, ino, size, mtime uint64
}

// fill reads the cached ranges of a host file into its cache again.
func fill(ctx context.Context, f *hostfile.File, cached []memmap.MappableRange) error {
	for _, mr := range cached {
		if _, err := translations(ctx, f, mr, hostarch.Read); err != nil {
			return fmt.Errorf("hostfiles: reading %v of %q: %w", mr, f.MappedName(ctx), err)
		}
	}
	return nil
}

// loadGhost makes a new unlinked host file with the saved contents.
func (c *Codec) loadGhost(ctx context.Context, r *checkpoint.Reader, rf *rFile, name string, size uint64, canWrite bool, cached []memmap.MappableRange) error {
	dir := c.opts.GhostDir
	if dir == "" {
		dir = os.TempDir()
	}
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		// No O_TMPFILE here: make a file and unlink it at once.
		f, err2 := os.CreateTemp(dir, "vmspace-ghost-")
		if err2 != nil {
			return fmt.Errorf("hostfiles: making a file for %q: %w", name, err2)
		}
		os.Remove(f.Name())
		fd, err = unix.Dup(int(f.Fd()))
		f.Close()
		if err != nil {
			return err
		}
	}
	defer unix.Close(fd)
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		return fmt.Errorf("hostfiles: sizing the file for %q: %w", name, err)
	}
	err = r.ReadPages(pageRoundUp(size), func(off uint64, b []byte) error {
		if off >= size {
			return nil
		}
		b = b[:min(uint64(len(b)), size-off)]
		for len(b) > 0 {
			n, err := unix.Pwrite(fd, b, int64(off))
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return fmt.Errorf("hostfiles: writing the file for %q: %w", name, err)
			}
			b = b[n:]
			off += uint64(n)
		}
		return nil
	}, func(uint64, uint64) error { return nil })
	if err != nil {
		return err
	}
	use := fd
	if !canWrite {
		ro, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", fd), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("hostfiles: reopening the file for %q read-only: %w", name, err)
		}
		defer unix.Close(ro)
		use = ro
	}
	f, err := hostfile.NewFile(c.opts.MemoryFile, use)
	if err != nil {
		return err
	}
	rf.f = f
	if err := fill(ctx, f, cached); err != nil {
		return err
	}
	return c.stageDirty(r, rf, name, cached)
}

// stageDirty reads the page streams of a host file's dirty pages into
// staging memory, for Commit.
func (c *Codec) stageDirty(r *checkpoint.Reader, rf *rFile, name string, cached []memmap.MappableRange) error {
	mf := c.opts.MemoryFile
	for _, mr := range cached {
		err := r.ReadPages(mr.Length(), func(off uint64, b []byte) error {
			fr, err := mf.Allocate(uint64(len(b)), pgalloc.AllocOpts{})
			if err != nil {
				return err
			}
			rf.dirty = append(rf.dirty, staged{off: mr.Start + off, fr: fr})
			ims, err := mf.MapInternal(fr, hostarch.Write)
			if err != nil {
				return err
			}
			_, err = safemem.CopySeq(ims, safemem.BlockSeqOf(safemem.BlockFromSafeSlice(b)))
			return err
		}, func(off, n uint64) error {
			return r.Fail("hostfiles: zero pages in the dirty pages of %q", name)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// loadHost opens a host file by path, checks that it is the saved one, and
// stages its dirty contents.
func (c *Codec) loadHost(ctx context.Context, r *checkpoint.Reader, rf *rFile, path string, size uint64, canWrite bool, cached []memmap.MappableRange, want fileID, mayWriteBack bool) error {
	// Check the file before opening it (opening some devices has effects),
	// and again after.
	check := func(st *unix.Stat_t) error {
		got := fileID{uint64(st.Dev), st.Ino, uint64(st.Size), uint64(st.Mtim.Nano())}
		if st.Mode&unix.S_IFMT != unix.S_IFREG || got.dev != want.dev || got.ino != want.ino || got.size != want.size ||
			(got.mtime != want.mtime && !(mayWriteBack && got.mtime > want.mtime)) {
			return fmt.Errorf("hostfiles: %q is not the file that was saved, or changed since (device %#x inode %d size %d mtime %d, saved %#x %d %d %d)",
				path, got.dev, got.ino, got.size, got.mtime, want.dev, want.ino, want.size, want.mtime)
		}
		return nil
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fmt.Errorf("hostfiles: stat of %q: %w", path, err)
	}
	if err := check(&st); err != nil {
		return err
	}
	flags := unix.O_RDONLY
	if canWrite {
		flags = unix.O_RDWR
	}
	fd, err := unix.Open(path, flags|unix.O_CLOEXEC|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("hostfiles: opening %q: %w", path, err)
	}
	defer unix.Close(fd)
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("hostfiles: stat of %q: %w", path, err)
	}
	if err := check(&st); err != nil {
		return err
	}
	// The File's own descriptor is a dup, which must not be non-blocking
	// (harmless for regular files, but clear it all the same).
	if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err == nil {
		unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl&^unix.O_NONBLOCK)
	}
	got := fileID{uint64(st.Dev), st.Ino, uint64(st.Size), uint64(st.Mtim.Nano())}
	if size != got.size {
		return fmt.Errorf("hostfiles: %q: the saved cache was of %d bytes, the file has %d", path, size, got.size)
	}
	var f *hostfile.File
	if c.opts.Table != nil {
		f, err = c.opts.Table.File(fd)
	} else {
		f, err = hostfile.NewFile(c.opts.MemoryFile, fd)
	}
	if err != nil {
		return err
	}
	rf.f = f
	if err := fill(ctx, f, cached); err != nil {
		return err
	}
	return c.stageDirty(r, rf, path, cached)
}
