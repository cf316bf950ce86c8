package mm

import (
	"context"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"golang.org/x/sys/unix"
)

// MRemapOpts are mremap(2)'s flags.
type MRemapOpts struct {
	// MayMove: MREMAP_MAYMOVE.
	MayMove bool
	// Fixed: MREMAP_FIXED; the mapping moves to NewAddr.
	Fixed bool
	// DontUnmap: MREMAP_DONTUNMAP; the old range stays mapped, empty.
	DontUnmap bool
	// NewAddr is the new address with Fixed, or a hint with DontUnmap.
	NewAddr hostarch.Addr
}

// MRemap implements mremap(2) with Linux's checks and errnos: it shrinks,
// grows in place or moves the mapping at oldAddr, and returns its new
// address.
func (mm *MemoryManager) MRemap(ctx context.Context, oldAddr hostarch.Addr, oldSize, newSize uint64, opts MRemapOpts) (hostarch.Addr, error) {
	// Linux's check_mremap_params, in its order. The new address matters
	// only for MREMAP_FIXED and MREMAP_DONTUNMAP.
	if !oldAddr.IsPageAligned() {
		return 0, unix.EINVAL
	}
	oldSize, _ = hostarch.PageRoundUp(oldSize) // wraps to 0 like PAGE_ALIGN
	newSize, _ = hostarch.PageRoundUp(newSize)
	if newSize == 0 {
		return 0, unix.EINVAL
	}
	taskSize := uint64(mm.p.MaxUserAddress())
	if newSize > taskSize {
		return 0, unix.EINVAL
	}
	impliesNewAddr := opts.Fixed || opts.DontUnmap
	if impliesNewAddr {
		if uint64(opts.NewAddr) > taskSize-newSize || !opts.NewAddr.IsPageAligned() || !opts.MayMove {
			return 0, unix.EINVAL
		}
		if opts.DontUnmap && oldSize != newSize {
			return 0, unix.EINVAL
		}
		// Overlap, with Linux's wrapping arithmetic.
		if uint64(oldAddr)+oldSize > uint64(opts.NewAddr) && uint64(opts.NewAddr)+newSize > uint64(oldAddr) {
			return 0, unix.EINVAL
		}
	}

	mm.mappingMu.Lock()
	defer mm.mappingMu.Unlock()
	// Linux looks up the vma at the old address, and checks its seal,
	// before anything else changes.
	if vseg := mm.vmas.FindSegment(oldAddr); !vseg.Ok() {
		return 0, unix.EFAULT
	} else if vseg.ValuePtr().flags.has(vmaSealed) {
		return 0, unix.EPERM
	}
	if impliesNewAddr {
		return mm.mremapToLocked(ctx, oldAddr, oldSize, newSize, opts)
	}
	if oldSize >= newSize {
		if oldSize == newSize {
			return oldAddr, nil
		}
		if err := mm.munmapLocked(ctx, oldAddr+hostarch.Addr(newSize), oldSize-newSize); err != nil {
			return 0, err
		}
		return oldAddr, nil
	}
	vseg, err := mm.vmaToResizeLocked(oldAddr, oldSize, newSize, opts)
	if err != nil {
		return 0, err
	}
	// Grow in place if the old range ends the vma and the space after it
	// is free.
	if oldAddr+hostarch.Addr(oldSize) == vseg.End() {
		delta := newSize - oldSize
		newEnd, ok := vseg.End().AddLength(delta)
		next := vseg.NextSegment()
		if ok && newEnd <= mm.layout.MaxAddr && (!next.Ok() || next.Start() >= newEnd) {
			v := vseg.ValuePtr()
			if v.mappable != nil {
				ar := hostarch.AddrRange{Start: vseg.End(), End: newEnd}
				if err := v.mappable.AddMapping(ctx, mm, ar, v.off+uint64(ar.Start-vseg.Start()), v.canWriteMappable()); err != nil {
					return 0, err
				}
			}
			mm.accountVMA(v, delta, +1)
			oldEnd := vseg.End()
			vseg.SetEndUnchecked(newEnd)
			mm.vmas.MergeAdjacent(addrSegRange(hostarch.AddrRange{Start: oldEnd, End: newEnd}))
			if v := mm.vmas.FindSegment(oldEnd).ValuePtr(); v.mlockMode == memmap.MLockEager {
				mm.populateLocked(ctx, hostarch.AddrRange{Start: oldEnd, End: newEnd}, true)
			}
			return oldAddr, nil
		}
	}
	if !opts.MayMove {
		return 0, unix.ENOMEM
	}
	newAddr, err := mm.findMMapAddrLocked(memmap.MMapOpts{Length: newSize}, remapPlacement(vseg.ValuePtr(), newSize))
	if err != nil {
		return 0, err
	}
	return mm.moveVMALocked(ctx, vseg, oldAddr, oldSize, newAddr, newSize, false)
}

// mremapToLocked is mremap with MREMAP_FIXED or MREMAP_DONTUNMAP (Linux's
// mremap_to): every check on the source comes before the destination is
// unmapped. Preconditions: mappingMu held for writing; a vma contains
// oldAddr and is not sealed.
func (mm *MemoryManager) mremapToLocked(ctx context.Context, oldAddr hostarch.Addr, oldSize, newSize uint64, opts MRemapOpts) (hostarch.Addr, error) {
	newAddr := opts.NewAddr
	first := mm.vmas.FindSegment(oldAddr)
	// Since Linux 6.17 a move that does not resize may span several vmas
	// and the gaps between them.
	if opts.Fixed && oldSize == newSize && oldSize != 0 && uint64(first.End()-oldAddr) < oldSize {
		return mm.moveVMAsLocked(ctx, oldAddr, oldSize, newAddr, opts)
	}
	// The source must fit its vma: the old range when growing, the new
	// one when shrinking (the rest of the old range is unmapped first).
	vseg, err := mm.vmaToResizeLocked(oldAddr, min(oldSize, newSize), newSize, opts)
	if err != nil {
		return 0, err
	}
	if mm.vmas.Len()+2 >= mm.limits.MaxMapCount-3 {
		return 0, unix.ENOMEM
	}
	if opts.Fixed {
		if err := mm.munmapLocked(ctx, newAddr, newSize); err != nil {
			return 0, err
		}
		// The destination's unmapping may have taken the source with
		// it (a destination overlapping the source's start): Linux then
		// finds no vma to move.
		if !mm.vmas.FindSegment(oldAddr).Ok() {
			return 0, unix.EFAULT
		}
	}
	if opts.DontUnmap {
		// The copy adds to the address space: checked once the
		// destination is free (it may have held part of the source).
		src := mm.vmas.FindSegment(oldAddr).ValuePtr()
		if err := mm.mayExpandLocked(src, oldSize, 0); err != nil {
			return 0, err
		}
		if src.flags.has(vmaAccount) && !mm.enoughMemoryLocked(newSize) {
			// The copy commits its whole length.
			return 0, unix.ENOMEM
		}
	}
	if oldSize > newSize {
		if err := mm.munmapLocked(ctx, oldAddr+hostarch.Addr(newSize), oldSize-newSize); err != nil {
			return 0, err
		}
		oldSize = newSize
	}
	// Like Linux, the destination's address is checked (mmap_min_addr)
	// only once both unmaps are done.
	if opts.Fixed && newAddr < mm.limits.MinMmapAddr && !mm.limits.CapSysRawIO {
		return 0, unix.EPERM
	}
	if !opts.Fixed {
		a, err := mm.findMMapAddrLocked(memmap.MMapOpts{Length: newSize, Addr: newAddr}, remapPlacement(mm.vmas.FindSegment(oldAddr).ValuePtr(), newSize))
		if err != nil {
			return 0, err
		}
		newAddr = a
	}
	// The destination's unmapping may have taken the source with it
	// (old size 0, destination at the same address): Linux then finds no
	// vma to move.
	vseg = mm.vmas.FindSegment(oldAddr)
	if !vseg.Ok() {
		return 0, unix.EFAULT
	}
	return mm.moveVMALocked(ctx, vseg, oldAddr, oldSize, newAddr, newSize, opts.DontUnmap)
}

// moveVMAsLocked moves every vma in [oldAddr, oldAddr+size) to the same
// offset from newAddr (a fixed address, or a hint with DONTUNMAP), keeping
// the gaps between them, as Linux 6.17 and later allow for moves that do
// not resize. Every vma is checked before anything changes.
// Preconditions: mappingMu held for writing; a vma contains oldAddr; the
// destination does not overlap the source.
func (mm *MemoryManager) moveVMAsLocked(ctx context.Context, oldAddr hostarch.Addr, size uint64, newAddr hostarch.Addr, opts MRemapOpts) (hostarch.Addr, error) {
	oldAR := hostarch.AddrRange{Start: oldAddr, End: oldAddr + hostarch.Addr(size)}
	var pieces []hostarch.AddrRange
	for vseg := range mm.vmas.Segments(addrSegRange(oldAR)) {
		pieces = append(pieces, hostarch.AddrRange(vseg.Range()).Intersect(oldAR))
	}
	if !opts.Fixed {
		a, err := mm.findMMapAddrLocked(memmap.MMapOpts{Length: size, Addr: newAddr}, remapPlacement(mm.vmas.FindSegment(oldAddr).ValuePtr(), size))
		if err != nil {
			return 0, err
		}
		newAddr = a
	}
	// Like Linux, each vma is checked and moved in turn: a vma that
	// cannot move (sealed, say) stops the call with the earlier ones
	// moved. Only each vma's own destination is unmapped, so what lies
	// opposite the gaps stays.
	for _, r := range pieces {
		// Linux refuses a multi-vma move over a vma whose file places
		// its own mappings (a SysV segment) or that is registered with a
		// userfaultfd (its events would need mappingMu dropped), before
		// moving it (vma_multi_allowed).
		if v := mm.vmas.FindSegment(r.Start).ValuePtr(); v.flags.has(vmaShm) || v.uffd != nil {
			return 0, unix.EFAULT
		}
		vseg, err := mm.vmaToResizeLocked(r.Start, r.Length(), r.Length(), opts)
		if err != nil {
			return 0, err
		}
		dst := newAddr + (r.Start - oldAddr)
		if opts.Fixed {
			if err := mm.munmapLocked(ctx, dst, r.Length()); err != nil {
				return 0, err
			}
			if dst < mm.limits.MinMmapAddr && !mm.limits.CapSysRawIO {
				return 0, unix.EPERM
			}
		}
		vseg = mm.vmas.FindSegment(r.Start)
		if !vseg.Ok() {
			return 0, unix.EFAULT
		}
		if opts.DontUnmap {
			if err := mm.mayExpandLocked(vseg.ValuePtr(), r.Length(), 0); err != nil {
				return 0, err
			}
		}
		if _, err := mm.moveVMALocked(ctx, vseg, r.Start, r.Length(), dst, r.Length(), opts.DontUnmap); err != nil {
			return 0, err
		}
	}
	return newAddr, nil
}

// vmaToResizeLocked is Linux's vma_to_resize: the vma at oldAddr, which
// must hold the whole old range, and the limits growing it must respect.
// Preconditions: mappingMu held.
func (mm *MemoryManager) vmaToResizeLocked(oldAddr hostarch.Addr, oldSize, newSize uint64, opts MRemapOpts) (vmaIterator, error) {
	vseg := mm.vmas.FindSegment(oldAddr)
	if !vseg.Ok() {
		return vseg, unix.EFAULT
	}
	v := vseg.ValuePtr()
	if v.flags.has(vmaSealed) {
		return vseg, unix.EPERM
	}
	if oldSize == 0 && v.private() {
		return vseg, unix.EINVAL
	}
	if opts.DontUnmap && v.flags.has(vmaDontExpand) {
		return vseg, unix.EINVAL
	}
	if oldSize > uint64(vseg.End()-oldAddr) {
		return vseg, unix.EFAULT
	}
	if newSize == oldSize {
		return vseg, nil
	}
	pgoff := v.off + uint64(oldAddr-vseg.Start())
	if pgoff+newSize < pgoff {
		return vseg, unix.EINVAL
	}
	if v.flags.has(vmaDontExpand) {
		return vseg, unix.EFAULT
	}
	if newSize > oldSize {
		if v.locked() && !mm.mlockFutureOKLocked(newSize-oldSize) {
			return vseg, unix.EAGAIN
		}
		if err := mm.mayExpandLocked(v, newSize-oldSize, 0); err != nil {
			return vseg, err
		}
		if v.flags.has(vmaAccount) && !opts.DontUnmap && !mm.enoughMemoryLocked(newSize-oldSize) {
			// An accounted vma commits what it grows by.
			return vseg, unix.ENOMEM
		}
	}
	return vseg, nil
}

// munmapLocked is MUnmap's work with mappingMu held for writing.
func (mm *MemoryManager) munmapLocked(ctx context.Context, addr hostarch.Addr, length uint64) error {
	ar, err := mm.unmapRange(addr, length)
	if err != nil {
		return err
	}
	if mm.vmas.IsEmptyRange(addrSegRange(ar)) {
		return nil
	}
	if err := mm.prepareUnmapLocked(ar); err != nil {
		return err
	}
	mm.uffdUnmapLocked(ar)
	mm.removeVMAsLocked(ctx, ar)
	return nil
}

// moveVMALocked moves [oldAddr, oldAddr+oldSize) of vseg's vma, with its
// pages, to [newAddr, newAddr+newSize), growing it if newSize > oldSize
// (Linux's move_vma). With dontUnmap the old range stays mapped, empty, and
// unlocked. Preconditions: mappingMu held for writing; the new range is
// free (or may be replaced: a fixed destination was unmapped already).
func (mm *MemoryManager) moveVMALocked(ctx context.Context, vseg vmaIterator, oldAddr hostarch.Addr, oldSize uint64, newAddr hostarch.Addr, newSize uint64, dontUnmap bool) (hostarch.Addr, error) {
	if mm.vmas.Len() >= mm.limits.MaxMapCount-3 {
		return 0, unix.ENOMEM
	}
	oldAR := hostarch.AddrRange{Start: oldAddr, End: oldAddr + hostarch.Addr(oldSize)}
	newAR := hostarch.AddrRange{Start: newAddr, End: newAddr + hostarch.Addr(newSize)}
	v := vseg.Value()
	off := v.off + uint64(oldAddr-vseg.Start())
	wholeVMA := hostarch.AddrRange(vseg.Range()) == oldAR
	nv := v
	nv.off = off
	if v.mappable == nil && !v.written() {
		// Like Linux's copy_vma: anonymous memory never faulted takes
		// the offset of its new place, so it can merge there.
		nv.off = uint64(newAddr)
	}
	if v.mappable != nil {
		if err := v.mappable.CopyMapping(ctx, mm, oldAR, newAR, off, v.canWriteMappable()); err != nil {
			return 0, err
		}
	}
	if nv.id != nil {
		nv.id.IncRef()
	}

	if oldSize == 0 {
		// Duplicating a shared mapping: nothing moves.
		gap := mm.removeVMAsLocked(ctx, newAR)
		mm.accountVMA(&nv, newAR.Length(), +1)
		mm.vmas.Insert(gap, addrSegRange(newAR), nv)
		return newAddr, nil
	}

	// Move the pmas and guard regions of the old range.
	mm.activeMu.Lock()
	type moved struct {
		r hostarch.AddrRange
		p pma
	}
	// A few pmas usually move: keep them on the stack (an append to a
	// nil slice allocated about twice a call of bench's mremap_grow).
	var msBuf [8]moved
	ms := msBuf[:0]
	for pseg := mm.pmas.LowerBoundSegment(oldAR.Start); pseg.Ok() && pseg.Start() < oldAR.End; {
		pseg = mm.pmas.Isolate(pseg, addrSegRange(oldAR))
		mp := pseg.Value()
		mp.mapped = 0 // the pages move to addresses nothing maps yet
		ms = append(ms, moved{hostarch.AddrRange(pseg.Range()), mp})
		pseg = mm.pmas.Remove(pseg).NextSegment()
	}
	if len(ms) > 0 {
		mm.unmapASLocked(oldAR)
	}
	mm.activeMu.Unlock()
	var guards []hostarch.AddrRange
	for g := range mm.guards.Segments(addrSegRange(oldAR)) {
		guards = append(guards, hostarch.AddrRange(g.Range().Intersect(addrSegRange(oldAR))))
	}

	// Remove the old range (its pmas are gone: nothing is released).
	mm.uffdRemapLocked(&v, &nv, oldAddr, newAddr, oldSize)
	if dontUnmap {
		if len(guards) > 0 {
			mm.guards.RemoveRange(addrSegRange(oldAR))
		}
	} else {
		mm.uffdUnmapLocked(oldAR)
		mm.removeVMAsLocked(ctx, oldAR)
	}

	// Insert the new vma (replacing anything in a fixed destination) and
	// its pmas.
	gap := mm.removeVMAsLocked(ctx, newAR)
	mm.accountVMA(&nv, newAR.Length(), +1)
	mm.vmas.Insert(gap, addrSegRange(newAR), nv)
	if dontUnmap {
		mm.dontUnmapCompleteLocked(oldAR, wholeVMA)
	}
	mm.activeMu.Lock()
	for _, m := range ms {
		r := hostarch.AddrRange{Start: m.r.Start - oldAddr + newAddr, End: m.r.End - oldAddr + newAddr}
		uffdMovedPMA(&nv, &m.p)
		mm.pmas.Insert(mm.pmas.FindGap(r.Start), addrSegRange(r), m.p)
	}
	if dontUnmap {
		// The pages left with the old range: account only the move.
	}
	mm.activeMu.Unlock()
	for _, g := range guards {
		mm.guards.Add(addrSegRange(hostarch.AddrRange{Start: g.Start - oldAddr + newAddr, End: g.End - oldAddr + newAddr}), struct{}{})
	}
	if nv.mlockMode == memmap.MLockEager && newSize > oldSize {
		mm.populateLocked(ctx, hostarch.AddrRange{Start: newAddr + hostarch.Addr(oldSize), End: newAR.End}, true)
	}
	return newAddr, nil
}

// dontUnmapCompleteLocked finishes an MREMAP_DONTUNMAP move of oldAR, as
// Linux 6.18's move_vma: the old vma (the whole vma around oldAR, which
// was not split) loses its lock but keeps VM_ACCOUNT (the copy is charged
// besides, and /proc/PID/smaps still says ac), and, when the move took the
// whole vma (wholeVMA) and the copy did not merge with it, its anon_vma
// (unlink_anon_vmas): pages it faults in afterwards are not copied by fork
// until it is written again. Preconditions: mappingMu held for writing.
func (mm *MemoryManager) dontUnmapCompleteLocked(oldAR hostarch.AddrRange, wholeVMA bool) {
	ov := mm.vmas.FindSegment(oldAR.Start)
	if !ov.Ok() {
		return
	}
	lv := ov.Value()
	unlink := wholeVMA && hostarch.AddrRange(ov.Range()) == oldAR && lv.anonVMA != 0
	if !lv.locked() && !unlink {
		return
	}
	lv.mlockMode = memmap.MLockNone
	if unlink {
		lv.anonVMA, lv.anonChained = 0, false
	}
	mm.setVMAValueLocked(ov, lv)
}

// remapPlacement is how Linux's mremap places a moved vma v of length
// bytes (get_unmapped_area with the vma's file and sharing): private
// anonymous memory is aligned for transparent huge pages like a new
// mapping, and private /dev/zero as its file.
func remapPlacement(v *vma, length uint64) placement {
	switch {
	case v.flags.has(vmaZeroFile):
		return placement{thp: true, file: true}
	case v.mappable == nil && v.private():
		return placement{thp: length%hugePageSize == 0}
	}
	return placement{}
}
