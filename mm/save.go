package mm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/vmspace/vmspace/checkpoint"
	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/segment"
	"golang.org/x/sys/unix"
)

// Checkpoint images of address spaces.
//
// A Saver writes, into a checkpoint image (package checkpoint), any number
// of MemoryManagers at once, together with what they reach:
//
//   - objects: every distinct (Mappable, MappingIdentity) pair of a vma, the
//     executable's identity and the AIO rings. SpecialMappables (AIO rings,
//     vDSOs) are saved by this package, with their contents; everything
//     else goes through a checkpoint.ObjectCodec supplied by the caller (see
//     package checkpoint/hostfiles for files, memfds and shared anonymous
//     memory).
//   - private memory, per family of managers forked from one another (one
//     privateRefs): the memory-file pages that the saved managers' private
//     pmas refer to, as runs of contiguous pages with the number of pmas
//     referring to each page; their contents as page streams (pages never
//     touched, and zero pages that are not resident, cost nothing; resident
//     zero pages cost a run entry).
//   - each manager: its header (layout, brk, data segment, limits, default
//     mlock mode, usage peaks, fault count, metadata), vmas (every
//     attribute), pmas (private ones by their memory-file offset, others by
//     the permissions their translation had, to be translated again),
//     guard regions and AIO contexts.
//
// A Restorer reads such an image in two phases. Load reads every record,
// checking it fully (ranges, orders, references, and that the reference
// counts of private memory equal the number of pmas that refer to each page)
// and loads memory contents into fresh memory-file pages; nothing outside
// the memory file changes, so a truncated, corrupted or foreign image is
// refused with everything as it was. Build then makes the objects and the
// managers, translates the shared pmas again, checks every invariant, and
// commits the objects.
//
// Consistency: the Saver holds the managers' metadata, mapping and active
// locks (for reading) while it saves, so no vma or pma changes; but accesses
// through existing pmas do not take those locks for writing, so the caller
// must stop the application's threads (as for any checkpoint) for the
// contents to be a consistent snapshot.

// Record kinds of package mm.
const (
	// recObject: an object; followed by its page stream (special) or by
	// the codec's records.
	recObject = checkpoint.KindMM + iota
	// recRun: a run of a family's private memory; followed by its page
	// stream.
	recRun
	// recManager: a manager's header; followed by recVMAs, recPMAs,
	// recGuards and recAIO records and recManagerEnd.
	recManager
	recVMAs
	recPMAs
	recGuards
	recAIO
	recManagerEnd
)

// Object types of recObject.
const (
	objCodec   = 1
	objSpecial = 2
)

// Limits of the format, which a Restorer enforces.
const (
	// maxRunLength bounds a run of private memory.
	maxRunLength = 64 << 20
	// maxSpecialSize bounds a SpecialMappable.
	maxSpecialSize = 1 << 30
	// maxPerRecord bounds the vmas, pmas, guard ranges, AIO contexts or
	// run segments of one record.
	maxPerRecord = 4096
	// maxNameLen bounds vma and special names.
	maxNameLen = 4096
	// maxAuxv bounds the auxiliary vector.
	maxAuxv = 1024
	// maxFamilies bounds family numbers.
	maxFamilies = 1 << 20
	// knownVMAFlags are the vmaFlags bits that exist.
	knownVMAFlags = vmaMaybeGuard<<1 - 1
)

// pma flag bits in recPMAs.
const (
	pmaFlagPrivate = 1 << iota
	pmaFlagNeedCOW
	pmaFlagLazyFree
	// pmaFlagZero marks a pma of the zero page (pma.isZero), saved
	// with its permissions alone, as a shared pma.
	pmaFlagZero
)

// objKey identifies an object: a vma's mappable and identity.
type objKey struct {
	m  memmap.Mappable
	id memmap.MappingIdentity
}

// Saver writes address spaces and the objects they reach into a checkpoint
// image. It is not safe for concurrent use.
type Saver struct {
	// w is the image.
	w *checkpoint.Writer
	// codec saves the objects this package does not own; may be nil if
	// there are none.
	codec checkpoint.ObjectCodec
	// objects maps saved objects to their ids (from 1).
	objects map[objKey]uint64
	// saved is set once SaveManagers has run.
	saved bool
	// err is the first error; the image is unusable after it.
	err error
}

// NewSaver returns a Saver writing to w, with codec saving objects other
// than SpecialMappables.
func NewSaver(w *checkpoint.Writer, codec checkpoint.ObjectCodec) *Saver {
	return &Saver{w: w, codec: codec, objects: map[objKey]uint64{}}
}

// Save writes a complete image of mms (see Saver) to w.
func Save(ctx context.Context, w io.Writer, mms []*MemoryManager, codec checkpoint.ObjectCodec) error {
	cw, err := checkpoint.NewWriter(w)
	if err != nil {
		return err
	}
	s := NewSaver(cw, codec)
	if err := s.SaveManagers(ctx, mms...); err != nil {
		cw.Close()
		return err
	}
	return cw.Close()
}

// lookupObject returns the id of k, and whether it was saved, converting a
// panic from a non-comparable key into an error.
func (s *Saver) lookupObject(k objKey) (id uint64, ok bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("mm: object (%T, %T) cannot be identified: %v", k.m, k.id, r)
		}
	}()
	id, ok = s.objects[k]
	return id, ok, nil
}

// SaveObject saves the object (m, id), unless already saved, and returns
// its id in the image, which Restorer.Object takes after a restore. An
// application saves this way what it refers to outside the address spaces
// (open files, for example); it should call SaveManagers first, so that
// objects the managers map shared and writable are saved knowing it.
func (s *Saver) SaveObject(ctx context.Context, m memmap.Mappable, id memmap.MappingIdentity) (uint64, error) {
	return s.saveObject(ctx, objKey{m, id}, checkpoint.ObjectUse{})
}

func (s *Saver) saveObject(ctx context.Context, k objKey, use checkpoint.ObjectUse) (uint64, error) {
	if s.err != nil {
		return 0, s.err
	}
	if k.m == nil && k.id == nil {
		return 0, nil
	}
	oid, ok, err := s.lookupObject(k)
	if err != nil {
		s.err = err
		return 0, err
	}
	if ok {
		return oid, nil
	}
	oid = uint64(len(s.objects)) + 1
	s.objects[k] = oid
	e := s.w.Encoder()
	e.Uvarint(oid)
	if sm, ok := k.m.(*SpecialMappable); ok && (k.id == nil || k.id == memmap.MappingIdentity(sm)) {
		e.Byte(objSpecial)
		e.Bool(k.id != nil)
		e.String(sm.name)
		e.Uvarint(sm.fr.Length())
		// What Msync returns, as an errno (0: nil).
		var errno unix.Errno
		if sm.msyncErr != nil && !errors.As(sm.msyncErr, &errno) {
			errno = unix.EINVAL
		}
		e.Uvarint(uint64(errno))
		// What MADV_REMOVE gets, likewise (0: the default, EINVAL).
		var perrno unix.Errno
		if sm.punchErr != nil && !errors.As(sm.punchErr, &perrno) {
			perrno = unix.EINVAL
		}
		e.Uvarint(uint64(perrno))
		if err := s.w.Record(recObject, e.Bytes()); err != nil {
			s.err = err
			return 0, err
		}
		ps := s.w.Pages(sm.fr.Length())
		if err := ps.FileRange(0, sm.mf, sm.fr); err != nil {
			s.err = fmt.Errorf("mm: saving special mapping %q: %w", sm.name, err)
			return 0, s.err
		}
		if err := ps.End(); err != nil {
			s.err = err
			return 0, err
		}
		return oid, nil
	}
	if s.codec == nil {
		s.err = fmt.Errorf("mm: no codec to save an object of type (%T, %T)", k.m, k.id)
		return 0, s.err
	}
	e.Byte(objCodec)
	if err := s.w.Record(recObject, e.Bytes()); err != nil {
		s.err = err
		return 0, err
	}
	if err := s.codec.SaveObject(ctx, s.w, k.m, k.id, use); err != nil {
		s.err = fmt.Errorf("mm: saving object (%T, %T): %w", k.m, k.id, err)
		return 0, s.err
	}
	return oid, nil
}

// refsSet counts references per page of private memory (the type of
// privateRefs.refs).
type refsSet = segment.Set[uint64, int32, refsFunctions]

// addCount adds one to the count of every page of fr in set, creating
// counts of 1 where there were none.
func addCount(set *refsSet, fr memmap.FileRange) {
	sr := segment.Range[uint64](fr)
	pos := fr.Start
	for pos < fr.End {
		seg, gap := set.Find(pos)
		if gap.Ok() {
			end := min(gap.End(), fr.End)
			set.Insert(gap, segment.Range[uint64]{Start: pos, End: end}, 1)
			pos = end
			continue
		}
		seg = set.Isolate(seg, sr)
		*seg.ValuePtr()++
		pos = seg.End()
	}
	set.MergeRange(sr)
	set.MergeAdjacent(sr)
}

// familiesOf numbers the families of mms (distinct privateRefs) in order
// of first appearance: famOf maps each manager to its family's index in
// fams.
func familiesOf(mms []*MemoryManager) (fams []*privateRefs, famOf map[*MemoryManager]int) {
	famOf = map[*MemoryManager]int{}
	idx := map[*privateRefs]int{}
	for _, m := range mms {
		i, ok := idx[m.privateRefs]
		if !ok {
			i = len(fams)
			idx[m.privateRefs] = i
			fams = append(fams, m.privateRefs)
		}
		famOf[m] = i
	}
	return fams, famOf
}

// SaveManagers saves mms, in order: Restorer.Build returns them in the
// same order. It may be called once per Saver. Managers forked from one
// another should be saved together, so that the private pages they share
// are saved once and shared again after a restore.
func (s *Saver) SaveManagers(ctx context.Context, mms ...*MemoryManager) error {
	if s.err != nil {
		return s.err
	}
	if s.saved {
		return errors.New("mm: SaveManagers called twice")
	}
	s.saved = true
	seen := map[*MemoryManager]bool{}
	for _, m := range mms {
		if m == nil || seen[m] {
			s.err = errors.New("mm: SaveManagers: nil or repeated manager")
			return s.err
		}
		seen[m] = true
		if m.users.Load() <= 0 {
			s.err = errors.New("mm: SaveManagers: a manager has been released")
			return s.err
		}
	}
	// The managers' locks are taken class by class, as the lock order
	// says (all metadataMu, then all mappingMu, then all activeMu).
	tokens := make([]rtoken, len(mms))
	for _, m := range mms {
		m.metadataMu.Lock()
	}
	for _, m := range mms {
		m.mappingMu.RLock()
	}
	for i, m := range mms {
		tokens[i] = m.activeMu.RLock()
	}
	defer func() {
		for i := len(mms) - 1; i >= 0; i-- {
			mms[i].activeMu.RUnlock(tokens[i])
		}
		for i := len(mms) - 1; i >= 0; i-- {
			mms[i].mappingMu.RUnlock()
		}
		for i := len(mms) - 1; i >= 0; i-- {
			mms[i].metadataMu.Unlock()
		}
	}()
	if err := s.saveLocked(ctx, mms); err != nil {
		if s.err == nil {
			s.err = err
		}
		return err
	}
	return nil
}

// aioSnapshot is what is saved of an AIO context.
type aioSnapshot struct {
	ring    *SpecialMappable
	maxReqs uint32
	index   uint32
	addr    hostarch.Addr
}

// aioContextsLocked returns m's live AIO contexts, refusing contexts with
// requests in flight (their results are opaque to this package).
func aioContextsLocked(m *MemoryManager) ([]aioSnapshot, error) {
	m.aio.mu.Lock()
	defer m.aio.mu.Unlock()
	var out []aioSnapshot
	for ac := range m.aio.contexts {
		ac.mu.Lock()
		snap := aioSnapshot{ring: ac.ring, maxReqs: ac.maxReqs, index: ac.index, addr: ac.addr}
		busy, dead := ac.outstanding != 0 || len(ac.done) != 0, ac.dead
		ac.mu.Unlock()
		if dead {
			continue
		}
		if busy {
			return nil, fmt.Errorf("mm: the AIO context at %#x has requests in flight and cannot be saved", uint64(snap.addr))
		}
		out = append(out, snap)
	}
	// Map iteration order is random; save in address order.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].addr < out[j-1].addr; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out, nil
}

// saveLocked saves mms. Preconditions: every manager's metadataMu,
// mappingMu (read) and activeMu (read) held.
func (s *Saver) saveLocked(ctx context.Context, mms []*MemoryManager) error {
	for _, m := range mms {
		if err := m.uffdSaveCheckLocked(); err != nil {
			return err
		}
	}
	// Objects, in order of first appearance, with how they are used.
	var order []objKey
	uses := map[objKey]*checkpoint.ObjectUse{}
	note := func(k objKey, sharedWritable bool) error {
		if k.m == nil && k.id == nil {
			return nil
		}
		var u *checkpoint.ObjectUse
		var ok bool
		var err error
		func() {
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("mm: object (%T, %T) cannot be identified: %v", k.m, k.id, r)
				}
			}()
			u, ok = uses[k]
			if !ok {
				u = &checkpoint.ObjectUse{}
				uses[k] = u
			}
		}()
		if err != nil {
			return err
		}
		if !ok {
			order = append(order, k)
		}
		u.SharedWritable = u.SharedWritable || sharedWritable
		return nil
	}
	aios := make([][]aioSnapshot, len(mms))
	for i, m := range mms {
		if m.executable != nil {
			if err := note(objKey{nil, m.executable}, false); err != nil {
				return err
			}
		}
		for vseg := m.vmas.FirstSegment(); vseg.Ok(); vseg = vseg.NextSegment() {
			v := vseg.ValuePtr()
			if err := note(objKey{v.mappable, v.id}, v.canWriteMappable()); err != nil {
				return err
			}
		}
		var err error
		if aios[i], err = aioContextsLocked(m); err != nil {
			return err
		}
		for _, a := range aios[i] {
			if err := note(objKey{a.ring, a.ring}, false); err != nil {
				return err
			}
		}
	}
	for _, k := range order {
		if _, err := s.saveObject(ctx, k, *uses[k]); err != nil {
			return err
		}
	}

	// Private memory, per family.
	fams, famOf := familiesOf(mms)
	for fi := range fams {
		var counts refsSet
		var mf memmap.File
		for _, m := range mms {
			if famOf[m] != fi {
				continue
			}
			mf = m.mf
			for pseg := m.pmas.FirstSegment(); pseg.Ok(); pseg = pseg.NextSegment() {
				if p := pseg.ValuePtr(); p.private {
					addCount(&counts, pmaRef{pseg}.fileRange(hostarch.AddrRange(pseg.Range())))
				}
			}
		}
		if err := s.saveRuns(uint64(fi), mf, &counts); err != nil {
			return err
		}
	}

	for i, m := range mms {
		if err := s.saveManagerLocked(m, uint64(famOf[m]), aios[i]); err != nil {
			return err
		}
	}
	return nil
}

// saveRuns writes the private memory of family fam: maximal runs of
// contiguous counted pages (at most maxRunLength each), each with its
// counts and page stream.
func (s *Saver) saveRuns(fam uint64, mf memmap.File, counts *refsSet) error {
	seg := counts.FirstSegment()
	for seg.Ok() {
		// Gather contiguous segments up to maxRunLength.
		run := memmap.FileRange{Start: seg.Start(), End: seg.Start()}
		type piece struct {
			fr    memmap.FileRange
			count int32
		}
		var pieces []piece
		for seg.Ok() && seg.Start() == run.End && run.Length() < maxRunLength && len(pieces) < maxPerRecord {
			fr := memmap.FileRange(seg.Range())
			if room := maxRunLength - run.Length(); fr.Length() > room {
				// Split the segment at the run's limit.
				fr.End = fr.Start + room
				_, seg = counts.Split(seg, fr.End)
				pieces = append(pieces, piece{fr, seg.PrevSegment().Value()})
				run.End = fr.End
				break
			}
			pieces = append(pieces, piece{fr, seg.Value()})
			run.End = fr.End
			seg = seg.NextSegment()
		}
		e := s.w.Encoder()
		e.Uvarint(fam)
		e.Uvarint(run.Start)
		e.Uvarint(run.Length())
		e.Uvarint(uint64(len(pieces)))
		for _, p := range pieces {
			e.Uvarint(p.fr.Length() >> hostarch.PageShift)
			e.Uvarint(uint64(p.count))
		}
		if err := s.w.Record(recRun, e.Bytes()); err != nil {
			return err
		}
		ps := s.w.Pages(run.Length())
		if err := ps.FileRange(0, mf, run); err != nil {
			return fmt.Errorf("mm: saving private memory %v: %w", run, err)
		}
		if err := ps.End(); err != nil {
			return err
		}
	}
	return nil
}

// encodePerms encodes an AccessType in 3 bits.
func encodePerms(at hostarch.AccessType) byte {
	var b byte
	if at.Read {
		b |= 1
	}
	if at.Write {
		b |= 2
	}
	if at.Execute {
		b |= 4
	}
	return b
}

// decodePerms undoes encodePerms; ok is false for unknown bits.
func decodePerms(b byte) (hostarch.AccessType, bool) {
	return hostarch.AccessType{Read: b&1 != 0, Write: b&2 != 0, Execute: b&4 != 0}, b&^7 == 0
}

// objectIDLocked returns the saved id of k (0 for none).
func (s *Saver) objectIDLocked(k objKey) (uint64, error) {
	if k.m == nil && k.id == nil {
		return 0, nil
	}
	id, ok, err := s.lookupObject(k)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, fmt.Errorf("mm: object (%T, %T) was not saved", k.m, k.id)
	}
	return id, nil
}

// saveManagerLocked writes m. Preconditions: as saveLocked; m's objects
// saved.
func (s *Saver) saveManagerLocked(m *MemoryManager, fam uint64, aios []aioSnapshot) error {
	e := s.w.Encoder()
	e.Uvarint(fam)
	l := m.layout
	for _, a := range []hostarch.Addr{l.MinAddr, l.MaxAddr, l.BottomUpBase, l.TopDownBase} {
		e.Uvarint(uint64(a))
	}
	e.Uvarint(uint64(l.DefaultDirection))
	for _, a := range []hostarch.Addr{m.brk.Start, m.brk.End, m.dataSegment.Start, m.dataSegment.End} {
		e.Uvarint(uint64(a))
	}
	lim := m.limits
	for _, r := range []RLimit{lim.AS, lim.Data, lim.MemLock, lim.Stack} {
		e.Uvarint(r.Cur)
		e.Uvarint(r.Max)
	}
	e.Bool(lim.CapIPCLock)
	e.Bool(lim.CapSysRawIO)
	e.Bool(lim.NoZeroPage)
	e.Uvarint(uint64(lim.MinMmapAddr))
	e.Uvarint(uint64(lim.MaxMapCount))
	e.Uvarint(uint64(m.defMLockMode))
	e.Uvarint(m.peakAS)
	e.Uvarint(m.maxRSS)
	e.Uvarint(m.faults.Load())
	for _, a := range []hostarch.Addr{m.argv.Start, m.argv.End, m.envv.Start, m.envv.End} {
		e.Uvarint(uint64(a))
	}
	e.Uvarint(uint64(len(m.auxv)))
	for _, a := range m.auxv {
		e.Uvarint(a.Key)
		e.Uvarint(a.Value)
	}
	exe, err := s.objectIDLocked(objKey{nil, m.executable})
	if err != nil {
		return err
	}
	e.Uvarint(exe)
	e.Uvarint(uint64(m.dumpability))
	e.Uvarint(m.vdsoSigReturn)
	e.Uvarint(uint64(m.mdwe))
	e.Uvarint(uint64(m.vmas.Len()))
	e.Uvarint(uint64(m.pmas.Len()))
	if err := s.w.Record(recManager, e.Bytes()); err != nil {
		return err
	}

	// vmas, in chunks.
	var n int
	e = s.w.Encoder()
	flush := func(kind checkpoint.Kind, force bool) error {
		if n == 0 || (!force && n < maxPerRecord) {
			return nil
		}
		payload := append([]byte(nil), e.Bytes()...)
		var hdr checkpoint.Encoder
		hdr.Uvarint(uint64(n))
		hdr.Raw(payload)
		n = 0
		e.Reset()
		return s.w.Record(kind, hdr.Bytes())
	}
	for vseg := m.vmas.FirstSegment(); vseg.Ok(); vseg = vseg.NextSegment() {
		v := vseg.ValuePtr()
		oid, err := s.objectIDLocked(objKey{v.mappable, v.id})
		if err != nil {
			return err
		}
		e.Uvarint(uint64(vseg.Start()))
		e.Uvarint(uint64(vseg.End()))
		e.Uvarint(oid)
		e.Uvarint(v.off)
		e.Byte(encodePerms(v.realPerms))
		e.Byte(encodePerms(v.maxPerms))
		// Bit 32: the vma has an anon_vma; bit 33: its chain is not
		// singular.
		fl := uint64(v.flags)
		if v.written() {
			fl |= 1 << 32
		}
		if v.anonChained {
			fl |= 1 << 33
		}
		e.Uvarint(fl)
		e.Uvarint(uint64(v.mlockMode))
		e.Uvarint(uint64(uint32(v.numaPolicy)))
		e.Uvarint(v.numaNodemask)
		e.String(v.name)
		e.Uvarint(atomic.LoadUint64(&v.anonVMA))
		n++
		if err := flush(recVMAs, false); err != nil {
			return err
		}
	}
	if err := flush(recVMAs, true); err != nil {
		return err
	}

	// pmas.
	for pseg := m.pmas.FirstSegment(); pseg.Ok(); pseg = pseg.NextSegment() {
		p := pseg.ValuePtr()
		e.Uvarint(uint64(pseg.Start()))
		e.Uvarint(uint64(pseg.End()))
		var fl byte
		if p.private {
			fl |= pmaFlagPrivate
		}
		if p.needCOW {
			fl |= pmaFlagNeedCOW
		}
		if p.lazyFree {
			fl |= pmaFlagLazyFree
		}
		if p.isZero() {
			fl |= pmaFlagZero
		}
		e.Byte(fl)
		if p.private {
			e.Uvarint(p.off)
		} else {
			e.Byte(encodePerms(p.translatePerms))
		}
		e.Byte(encodePerms(p.effectivePerms))
		e.Byte(encodePerms(p.maxPerms))
		n++
		if err := flush(recPMAs, false); err != nil {
			return err
		}
	}
	if err := flush(recPMAs, true); err != nil {
		return err
	}

	// Guard regions.
	for g := m.guards.FirstSegment(); g.Ok(); g = g.NextSegment() {
		e.Uvarint(uint64(g.Start()))
		e.Uvarint(uint64(g.End()))
		n++
		if err := flush(recGuards, false); err != nil {
			return err
		}
	}
	if err := flush(recGuards, true); err != nil {
		return err
	}

	// AIO contexts.
	for _, a := range aios {
		oid, err := s.objectIDLocked(objKey{a.ring, a.ring})
		if err != nil {
			return err
		}
		e.Uvarint(oid)
		e.Uvarint(uint64(a.maxReqs))
		e.Uvarint(uint64(a.index))
		e.Uvarint(uint64(a.addr))
		n++
		if err := flush(recAIO, false); err != nil {
			return err
		}
	}
	if err := flush(recAIO, true); err != nil {
		return err
	}
	return s.w.Record(recManagerEnd, nil)
}
