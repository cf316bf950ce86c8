package vmspace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/vmspace/vmspace/checkpoint"
	"github.com/vmspace/vmspace/checkpoint/hostfiles"
	"github.com/vmspace/vmspace/hostfile"
	"github.com/vmspace/vmspace/kernel"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/mm"
)

// The vmspace executor's checkpoint statement: every live process's
// MemoryManager is saved with mm.Saver, with the Files, memfds, shm
// segments and AIO contexts they reach (through package
// checkpoint/hostfiles), and the processes' names for files and segments;
// then everything is released, the memory file is checked to hold nothing,
// and the processes are restored from the image in place (the driver keeps
// its Proc values; the AIO names keep their ids, which are ring addresses).

// recNames is the executor's record of the processes' named files and
// segments (an application record).
const recNames = checkpoint.KindApp + 1

// checkpoint implements Executor.Checkpoint for vmspace.
func (e *vmspaceExec) checkpoint(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	procs := make([]*vproc, 0, len(e.procs))
	for p := range e.procs {
		procs = append(procs, p)
	}
	img, err := e.saveAndRelease(ctx, procs)
	if err != nil {
		return fmt.Errorf("checkpoint: saving: %w", err)
	}
	if n := e.mf.UsageAllocated(); n != 0 {
		return fmt.Errorf("checkpoint: %#x bytes of the memory file are still allocated after releasing everything", n)
	}
	if err := e.restore(ctx, procs, img); err != nil {
		return fmt.Errorf("checkpoint: restoring: %w", err)
	}
	return nil
}

// namedObjects are the distinct files and segments that procs name.
type namedObjects struct {
	fds      []*hostfile.FD
	fdIndex  map[*hostfile.FD]uint64
	segs     []*hostfile.Shm
	segIndex map[*hostfile.Shm]uint64
}

func namedObjectsOf(procs []*vproc) *namedObjects {
	n := &namedObjects{fdIndex: map[*hostfile.FD]uint64{}, segIndex: map[*hostfile.Shm]uint64{}}
	for _, p := range procs {
		for _, name := range slices.Sorted(maps.Keys(p.files)) {
			if fd := p.files[name]; !hasKey(n.fdIndex, fd) {
				n.fdIndex[fd] = uint64(len(n.fds))
				n.fds = append(n.fds, fd)
			}
		}
		for _, name := range slices.Sorted(maps.Keys(p.shms)) {
			if s := p.shms[name]; !hasKey(n.segIndex, s) {
				n.segIndex[s] = uint64(len(n.segs))
				n.segs = append(n.segs, s)
			}
		}
	}
	return n
}

// saveAndRelease writes procs' address spaces, the objects they reach and
// their names to an image, releasing everything on the way: a segment's
// state (whether IPC_RMID removed it) is known only once its attachments
// are gone, so the names go last.
func (e *vmspaceExec) saveAndRelease(ctx context.Context, procs []*vproc) ([]byte, error) {
	var buf bytes.Buffer
	w, err := checkpoint.NewWriter(&buf)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	s := mm.NewSaver(w, hostfiles.New(hostfiles.Options{}))
	mms := make([]*mm.MemoryManager, len(procs))
	for i, p := range procs {
		mms[i] = p.mm
	}
	if err := s.SaveManagers(ctx, mms...); err != nil {
		return nil, err
	}
	if err := e.injected("save"); err != nil {
		return nil, err
	}
	// Saving may have taken long: past the deadline, stop before
	// anything is released.
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	named := namedObjectsOf(procs)
	var enc checkpoint.Encoder
	enc.Uvarint(uint64(len(named.fds)))
	for _, fd := range named.fds {
		oid, err := s.SaveObject(ctx, fd.File(), fd.File())
		if err != nil {
			return nil, err
		}
		enc.Uvarint(oid)
		enc.Bool(fd.Readable())
		enc.Bool(fd.Writable())
	}
	// A segment is saved through one of its attachments' objects, which
	// ConfigureMMap makes (a gone one has none, and needs none).
	segObj := make([]uint64, len(named.segs))
	for i, seg := range named.segs {
		if seg.Gone() {
			continue
		}
		var opts memmap.MMapOpts
		if err := seg.ConfigureMMap(ctx, &opts); err != nil {
			return nil, err
		}
		segObj[i], err = s.SaveObject(ctx, opts.Mappable, opts.MappingIdentity)
		opts.MappingIdentity.DecRef(ctx)
		if err != nil {
			return nil, err
		}
	}

	// Release everything.
	for _, p := range procs {
		release(ctx, p.mm)
		p.mm = nil
	}
	for _, fd := range e.files {
		fd.Close(ctx)
	}
	e.files = nil
	enc.Uvarint(uint64(len(named.segs)))
	for i, seg := range named.segs {
		// With no attachment left, a removed segment is gone.
		enc.Uvarint(seg.Size())
		enc.Uvarint(segObj[i])
		enc.Bool(seg.Gone())
		seg.Remove(ctx)
	}

	enc.Uvarint(uint64(len(procs)))
	for _, p := range procs {
		enc.Uvarint(uint64(len(p.files)))
		for _, name := range slices.Sorted(maps.Keys(p.files)) {
			enc.String(name)
			enc.Uvarint(named.fdIndex[p.files[name]])
		}
		enc.Uvarint(uint64(len(p.shms)))
		for _, name := range slices.Sorted(maps.Keys(p.shms)) {
			enc.String(name)
			enc.Uvarint(named.segIndex[p.shms[name]])
		}
	}
	if err := e.injected("release"); err != nil {
		return nil, err
	}
	if err := w.Record(recNames, enc.Bytes()); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// restore restores procs from img.
func (e *vmspaceExec) restore(ctx context.Context, procs []*vproc, img []byte) (err error) {
	r, err := checkpoint.NewReader(bytes.NewReader(img))
	if err != nil {
		return err
	}
	defer r.Close()
	codec := hostfiles.New(hostfiles.Options{MemoryFile: e.mf})
	rs, err := mm.NewRestorer(r, mm.RestoreOptions{MemoryFile: e.mf, Codec: codec, Platform: committingPlatform{}})
	if err != nil {
		return err
	}
	defer rs.Close(ctx)
	if err := rs.Load(ctx); err != nil {
		return err
	}
	apps := rs.AppRecords()
	if len(apps) != 1 || apps[0].Kind != recNames {
		return errors.New("the image lacks the processes' names")
	}
	mms, err := rs.Build(ctx)
	if err != nil {
		return err
	}
	if len(mms) != len(procs) {
		err = fmt.Errorf("the image has %d processes, not %d", len(mms), len(procs))
	} else {
		err = e.injected("restore")
	}
	// The restored managers are active, as the ones saved were.
	active := 0
	for err == nil && active < len(mms) {
		if err = mms[active].Activate(ctx); err == nil {
			active++
		}
	}
	// On failure, everything made here goes.
	var fds []*hostfile.FD
	var segs []*hostfile.Shm
	defer func() {
		if err != nil {
			for i, m := range mms {
				if i < active {
					m.Deactivate()
				}
				m.DecUsers(ctx)
			}
			for _, fd := range fds {
				fd.Close(ctx)
			}
			for _, s := range segs {
				s.Remove(ctx)
			}
		}
	}()
	if err != nil {
		return err
	}

	d := checkpoint.NewDecoder(recNames, apps[0].Payload)
	nfds := d.UvarintMax(1<<20, "files")
	for i := uint64(0); i < nfds && d.Err() == nil; i++ {
		oid, rd, wr := d.Uvarint(), d.Bool(), d.Bool()
		m, _, found := rs.Object(oid)
		f, isFile := m.(*hostfile.File)
		if d.Err() != nil || !found || !isFile {
			return fmt.Errorf("file %d: object %d is not a file", i, oid)
		}
		fd, err := hostfile.NewFD(f, rd, wr)
		if err != nil {
			return err
		}
		fds = append(fds, fd)
	}
	// Restored segments that no process names, or that were removed,
	// are removed again (they live on while attached).
	keep := map[*hostfile.Shm]bool{}
	nsegs := d.UvarintMax(1<<20, "segments")
	for i := uint64(0); i < nsegs && d.Err() == nil; i++ {
		size, oid, gone := d.Uvarint(), d.Uvarint(), d.Bool()
		if d.Err() != nil {
			break
		}
		if oid == 0 {
			// Gone before the checkpoint: a segment that is gone.
			s, err := hostfile.NewShm(e.mf, size)
			if err != nil {
				return err
			}
			s.Remove(ctx)
			segs = append(segs, s)
			continue
		}
		m, _, found := rs.Object(oid)
		s, isShm := codec.RestoredShm(m)
		if !found || !isShm {
			return fmt.Errorf("segment %d: object %d is not a segment", i, oid)
		}
		keep[s] = keep[s] || !gone
		segs = append(segs, s)
	}
	nprocs := d.Uvarint()
	if d.Err() == nil && nprocs != uint64(len(procs)) {
		return fmt.Errorf("the names are of %d processes, not %d", nprocs, len(procs))
	}
	files := make([]map[string]*hostfile.FD, len(procs))
	shms := make([]map[string]*hostfile.Shm, len(procs))
	for i := range procs {
		files[i] = map[string]*hostfile.FD{}
		shms[i] = map[string]*hostfile.Shm{}
		n := d.UvarintMax(1<<20, "names")
		for j := uint64(0); j < n && d.Err() == nil; j++ {
			name, k := d.String(1<<12), d.Uvarint()
			if k >= uint64(len(fds)) {
				d.Fail("file index %d", k)
				break
			}
			files[i][name] = fds[k]
		}
		n = d.UvarintMax(1<<20, "names")
		for j := uint64(0); j < n && d.Err() == nil; j++ {
			name, k := d.String(1<<12), d.Uvarint()
			if k >= uint64(len(segs)) {
				d.Fail("segment index %d", k)
				break
			}
			shms[i][name] = segs[k]
		}
	}
	if err := d.Finish(); err != nil {
		return err
	}
	for _, s := range codec.RestoredShms() {
		if !keep[s] {
			s.Remove(ctx)
		}
	}
	for i, p := range procs {
		p.mm = mms[i]
		e.setup(p.mm)
		p.files = files[i]
		p.shms = shms[i]
	}
	// The segments get ids again (the script knows them by name only).
	e.shm = kernel.NewShmRegistry(e.mf)
	for _, s := range segs {
		if _, ok := e.shm.ID(s); !ok {
			e.shm.Adopt(s, 1)
		}
	}
	e.files = fds
	return nil
}

// injected returns the failure a test injects at stage, if any.
func (e *vmspaceExec) injected(stage string) error {
	if e.fault == nil {
		return nil
	}
	return e.fault(stage)
}

// hasKey reports whether m has key k.
func hasKey[K comparable, V any](m map[K]V, k K) bool {
	_, ok := m[k]
	return ok
}
