package mm

import (
	"context"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/safemem"
	"golang.org/x/sys/unix"
)

// The ioctls that fill registered ranges (Linux's mfill_atomic and
// move_pages), write-protect them, and their results.
//
// Like Linux, Copy, ZeroPage, Continue, Poison and Move work page by page
// and stop at the first page they cannot fill: they return how many bytes
// they did, whether they got that far (ran: the arguments passed their
// checks, so the ioctl writes its result field), and the error that
// stopped them. UffdioResult turns that into what the ioctl returns.

// UffdioResult returns what a filling ioctl of length bytes that did n
// bytes and stopped with err reports: the value of its result field (n, or
// -errno if it did nothing) and its return value (nil when it did all,
// EAGAIN when it did part, else err).
func UffdioResult(n, length uint64, err error) (int64, error) {
	if n > 0 {
		if n == length {
			return int64(n), nil
		}
		return int64(n), unix.EAGAIN
	}
	if err == nil {
		err = unix.EINVAL
	}
	errno, ok := err.(unix.Errno)
	if !ok {
		errno = unix.EFAULT
	}
	return -int64(errno), errno
}

// fillMode is the kind of page a fill installs.
type fillMode int

const (
	fillCopy fillMode = iota
	fillZero
	fillContinue
	fillPoison
)

// Copy is UFFDIO_COPY: it fills the missing pages of [dst, dst+length)
// with length bytes copied from src in srcMM (the calling thread's address
// space), write-protected with UffdioCopyModeWP, and wakes the faults
// waiting there unless UffdioCopyModeDontWake. Errors, in Linux's order:
// EINVAL before UFFDIO_API, for a bad range or mode; ENOENT when dst is not
// within one registered vma; EINVAL for UffdioCopyModeWP in a vma not
// registered for write protection, or memory that is neither anonymous nor
// shmem; then, per page, EEXIST for a page already there and EFAULT if src
// cannot be read.
func (u *Userfaultfd) Copy(ctx context.Context, dst, src, length, mode uint64, srcMM *MemoryManager) (n uint64, ran bool, err error) {
	if !u.Initialized() {
		return 0, false, unix.EINVAL
	}
	if _, err := u.mm.validateUnalignedUffdRange(src, length); err != nil {
		return 0, false, err
	}
	dr, err := u.mm.validateUffdRange(dst, length)
	if err != nil {
		return 0, false, err
	}
	if mode&^(UffdioCopyModeDontWake|UffdioCopyModeWP) != 0 {
		return 0, false, unix.EINVAL
	}
	n, err = u.mm.mfill(ctx, dr, fillCopy, mode&UffdioCopyModeWP != 0, hostarch.Addr(src), srcMM)
	if n > 0 && mode&UffdioCopyModeDontWake == 0 {
		u.wake(hostarch.AddrRange{Start: dr.Start, End: dr.Start + hostarch.Addr(n)})
	}
	return n, true, err
}

// ZeroPage is UFFDIO_ZEROPAGE: Copy of zeros (mode UffdioZeropageModeDontWake
// only).
func (u *Userfaultfd) ZeroPage(ctx context.Context, start, length, mode uint64) (n uint64, ran bool, err error) {
	return u.fill(ctx, start, length, mode, UffdioZeropageModeDontWake, 0, fillZero)
}

// Continue is UFFDIO_CONTINUE: it maps the pages shmem already holds in a
// range registered for minor faults. EINVAL (after Copy's ENOENT checks)
// for memory that is not shmem.
func (u *Userfaultfd) Continue(ctx context.Context, start, length, mode uint64) (n uint64, ran bool, err error) {
	return u.fill(ctx, start, length, mode, UffdioContinueModeDontWake, UffdioContinueModeWP, fillContinue)
}

// Poison is UFFDIO_POISON: it marks the missing pages of the range
// poisoned, so that any access to them is SIGBUS (BUS_MCEERR_AR on Linux).
func (u *Userfaultfd) Poison(ctx context.Context, start, length, mode uint64) (n uint64, ran bool, err error) {
	return u.fill(ctx, start, length, mode, UffdioPoisonModeDontWake, 0, fillPoison)
}

// fill is the ioctl of a fill of mode fm other than a copy, whose modes are
// dontWake and wp (0 if it has none).
func (u *Userfaultfd) fill(ctx context.Context, start, length, mode, dontWake, wp uint64, fm fillMode) (n uint64, ran bool, err error) {
	ar, err := u.rangeOf(start, length)
	if err != nil {
		return 0, false, err
	}
	if mode&^(dontWake|wp) != 0 {
		return 0, false, unix.EINVAL
	}
	n, err = u.mm.mfill(ctx, ar, fm, mode&wp != 0, 0, nil)
	if n > 0 && mode&dontWake == 0 {
		u.wake(hostarch.AddrRange{Start: ar.Start, End: ar.Start + hostarch.Addr(n)})
	}
	return n, true, err
}

// mfill is Linux's mfill_atomic over dr. Copies read src from srcMM page by
// page before taking mm's locks for that page.
func (mm *MemoryManager) mfill(ctx context.Context, dr hostarch.AddrRange, mode fillMode, wp bool, src hostarch.Addr, srcMM *MemoryManager) (uint64, error) {
	var buf []byte
	if mode == fillCopy {
		buf = make([]byte, hostarch.PageSize)
	}
	var done uint64
	for pg := dr.Start; pg < dr.End; pg += hostarch.PageSize {
		if mode == fillCopy {
			// Linux copies the source with the destination's locks
			// dropped; a source in the destination range reads what
			// earlier pages installed.
			if _, err := srcMM.CopyIn(ctx, src+hostarch.Addr(done), buf, IOOpts{}); err != nil {
				if done == 0 {
					// The vma checks come first.
					if err := mm.mfillCheck(dr, mode, wp); err != nil {
						return 0, err
					}
				}
				return done, unix.EFAULT
			}
		}
		if err := mm.mfillPage(ctx, dr, pg, mode, wp, buf); err != nil {
			return done, err
		}
		done += hostarch.PageSize
	}
	return done, nil
}

// mfillCheck returns the error the vma checks of a fill of dr give.
func (mm *MemoryManager) mfillCheck(dr hostarch.AddrRange, mode fillMode, wp bool) error {
	mm.mappingMu.RLock()
	defer mm.mappingMu.RUnlock()
	_, err := mm.mfillVMALocked(dr, mode, wp)
	return err
}

// mfillVMALocked finds the vma a fill of dr works in and checks it: ENOENT
// unless dr lies within one registered vma; EINVAL for a write-protected
// fill in a vma not registered for write protection, memory neither
// anonymous nor shmem, or a continue outside shmem. Preconditions:
// mappingMu held.
func (mm *MemoryManager) mfillVMALocked(dr hostarch.AddrRange, mode fillMode, wp bool) (vmaIterator, error) {
	vseg := mm.vmas.FindSegment(dr.Start)
	if !vseg.Ok() || vseg.End() < dr.End || vseg.ValuePtr().uffd == nil {
		return vseg, unix.ENOENT
	}
	v := vseg.ValuePtr()
	if wp && !v.flags.has(vmaUffdWP) {
		return vseg, unix.EINVAL
	}
	if !v.isPrivateAnon() && !v.isShmem() {
		return vseg, unix.EINVAL
	}
	if mode == fillContinue && !v.isShmem() {
		return vseg, unix.EINVAL
	}
	return vseg, nil
}

// mfillPage fills the page pg of dr. Preconditions: no mm locks held.
func (mm *MemoryManager) mfillPage(ctx context.Context, dr hostarch.AddrRange, pg hostarch.Addr, mode fillMode, wp bool, data []byte) error {
	mm.mappingMu.RLock()
	defer mm.mappingMu.RUnlock()
	vseg, err := mm.mfillVMALocked(dr, mode, wp)
	if err != nil {
		return err
	}
	v := vseg.ValuePtr()
	if v.private() {
		// Linux's find_vma_and_prepare_anon.
		mm.prepareAnonVMA(vseg)
	}
	mm.activeMu.Lock()
	defer mm.activeMu.Unlock()
	pr := hostarch.AddrRange{Start: pg, End: pg + hostarch.PageSize}
	pseg, pgap := mm.pmas.Find(pg)
	if pseg.Ok() {
		return unix.EEXIST
	}
	if v.private() && mode == fillZero && !mm.limits.NoZeroPage {
		// The zero page, mapped read-only: a write replaces it.
		p := newZeroPMA(v, pg)
		p.uffdWP = wp
		p.effectivePerms = p.uffdPerms(p.effectivePerms)
		mm.pmas.Insert(pgap, addrSegRange(pr), p)
		mm.addRSSLocked(hostarch.PageSize)
		mm.clearUffdMarkersLocked(pr)
		return nil
	}
	if (v.private() && mode != fillContinue) || mode == fillPoison {
		fr, err := mm.allocatePrivate(hostarch.PageSize, false, false)
		if err != nil {
			return unix.ENOMEM
		}
		if mode == fillCopy {
			ims, err := mm.mf.MapInternal(fr, hostarch.ReadWrite)
			if err == nil {
				_, err = safemem.CopySeq(ims, safemem.BlockSeqOf(safemem.BlockFromSafeSlice(data)))
			}
			if err != nil {
				mm.privateRefs.decRef(mm.mf, fr)
				return unix.EFAULT
			}
		}
		p := mm.newPrivatePMA(v, fr.Start)
		p.uffdWP = wp
		p.poison = mode == fillPoison
		p.effectivePerms = p.uffdPerms(p.effectivePerms)
		mm.pmas.Insert(pgap, addrSegRange(pr), p)
		mm.addRSSLocked(hostarch.PageSize)
		mm.clearUffdMarkersLocked(pr)
		return nil
	}
	// shmem: through the file, which must not hold the page yet (for a
	// continue: must hold it).
	in, _ := shmemHolds(vseg, pg)
	switch {
	case mode == fillContinue && !in:
		return unix.EFAULT
	case mode != fillContinue && in:
		return unix.EEXIST
	}
	at := hostarch.Read
	if mode != fillContinue {
		at = hostarch.Write
	}
	pseg, err = mm.getPMAsLocked(context.WithValue(ctx, fillKey{}, true), vseg, pr, at)
	if err != nil {
		return unix.EFAULT
	}
	if mode != fillContinue {
		if _, err := mm.internalMappingsLocked(pseg); err != nil {
			return unix.EFAULT
		}
		ims := internalMappingsOf(pseg, pr)
		if mode == fillCopy {
			_, err = safemem.CopySeq(ims, safemem.BlockSeqOf(safemem.BlockFromSafeSlice(data)))
		} else {
			_, err = safemem.ZeroSeq(ims)
		}
		if err != nil {
			return unix.EFAULT
		}
	}
	if wp {
		mm.setUffdWPLocked(vseg, pr, true)
	}
	return nil
}

// WriteProtect is UFFDIO_WRITEPROTECT: with UffdioWriteprotectModeWP it
// write-protects the pages of [start, start+length), else it removes their
// protection and wakes the faults waiting there (unless
// UffdioWriteprotectModeDontWk). EINVAL before UFFDIO_API, for a bad
// range or mode (or WP with DONTWAKE); ENOENT if a vma in the range is not
// registered for write protection (or none is there).
func (u *Userfaultfd) WriteProtect(ctx context.Context, start, length, mode uint64) error {
	mm := u.mm
	ar, err := u.rangeOf(start, length)
	if err != nil {
		return err
	}
	if mode&^(UffdioWriteprotectModeWP|UffdioWriteprotectModeDontWk) != 0 {
		return unix.EINVAL
	}
	wp := mode&UffdioWriteprotectModeWP != 0
	if wp && mode&UffdioWriteprotectModeDontWk != 0 {
		return unix.EINVAL
	}
	mm.mappingMu.RLock()
	err = unix.ENOENT
	mm.activeMu.Lock()
	for vseg := mm.vmas.LowerBoundSegment(ar.Start); vseg.Ok() && vseg.Start() < ar.End; vseg = vseg.NextSegment() {
		if !vseg.ValuePtr().flags.has(vmaUffdWP) {
			err = unix.ENOENT
			break
		}
		r := hostarch.AddrRange(vseg.Range()).Intersect(ar)
		mm.setUffdWPLocked(vseg, r, wp)
		mm.setUffdMarkersLocked(vseg, r, wp)
		err = nil
	}
	mm.activeMu.Unlock()
	mm.mappingMu.RUnlock()
	if err != nil {
		return err
	}
	if !wp && mode&UffdioWriteprotectModeDontWk == 0 {
		u.wake(ar)
	}
	return nil
}

// Move is UFFDIO_MOVE: it moves the pages of [src, src+length) to the
// missing pages of [dst, dst+length), both in u's address space, which
// must be the caller's (callerMM; else EINVAL). Errors, in Linux's order:
// EINVAL before UFFDIO_API, for bad ranges or mode; ENOENT when either
// address has no vma; EINVAL when a range leaves its vma, either vma is
// shared, they differ in access or mlock, are not writable, not anonymous,
// or dst's is not registered with u; then, per page, EEXIST for a page at
// dst, ENOENT for a hole at src (skipped with
// UffdioMoveModeAllowSrcHoles), EBUSY for a page shared with a fork.
func (u *Userfaultfd) Move(ctx context.Context, dst, src, length, mode uint64, callerMM *MemoryManager) (n uint64, ran bool, err error) {
	if !u.Initialized() {
		return 0, false, unix.EINVAL
	}
	mm := u.mm
	if callerMM != mm {
		return 0, false, unix.EINVAL
	}
	dr, err := mm.validateUffdRange(dst, length)
	if err != nil {
		return 0, false, err
	}
	sr, err := mm.validateUffdRange(src, length)
	if err != nil {
		return 0, false, err
	}
	if mode&^(UffdioMoveModeDontWake|UffdioMoveModeAllowSrcHoles) != 0 {
		return 0, false, unix.EINVAL
	}
	n, err = mm.movePages(u, dr, sr, mode&UffdioMoveModeAllowSrcHoles != 0)
	if n > 0 && mode&UffdioMoveModeDontWake == 0 {
		u.wake(hostarch.AddrRange{Start: dr.Start, End: dr.Start + hostarch.Addr(n)})
	}
	return n, true, err
}

// movePages is Linux's move_pages.
func (mm *MemoryManager) movePages(u *Userfaultfd, dr, sr hostarch.AddrRange, holes bool) (uint64, error) {
	mm.mappingMu.RLock()
	defer mm.mappingMu.RUnlock()
	dseg := mm.vmas.FindSegment(dr.Start)
	if !dseg.Ok() {
		return 0, unix.ENOENT
	}
	if dseg.ValuePtr().private() {
		mm.prepareAnonVMA(dseg)
	}
	sseg := mm.vmas.FindSegment(sr.Start)
	if !sseg.Ok() {
		return 0, unix.ENOENT
	}
	sv, dv := sseg.ValuePtr(), dseg.ValuePtr()
	switch {
	case !sv.private() || sseg.End() < sr.End || !dv.private() || dseg.End() < dr.End:
		return 0, unix.EINVAL
	case sv.realPerms != dv.realPerms || sv.locked() != dv.locked() || !sv.realPerms.Write:
		return 0, unix.EINVAL
	case sv.pfnMap() || dv.pfnMap() || dv.uffd != u || !sv.isPrivateAnon() || !dv.isPrivateAnon():
		return 0, unix.EINVAL
	}
	mm.activeMu.Lock()
	defer mm.activeMu.Unlock()
	var done uint64
	for ; done < dr.Length(); done += hostarch.PageSize {
		d := dr.Start + hostarch.Addr(done)
		s := sr.Start + hostarch.Addr(done)
		if mm.pmas.FindSegment(d).Ok() {
			return done, unix.EEXIST
		}
		spr := hostarch.AddrRange{Start: s, End: s + hostarch.PageSize}
		pseg := mm.pmas.FindSegment(s)
		if !pseg.Ok() {
			if !holes {
				return done, unix.ENOENT
			}
			continue
		}
		p := pseg.ValuePtr()
		// The zero page moves too (Linux's move_zeropage_pte).
		if !p.isZero() && (!p.private || p.poison || !mm.privateRefs.soleOwner(pmaRef{pseg}.fileRange(spr))) {
			return done, unix.EBUSY
		}
		pseg = mm.pmas.Isolate(pseg, addrSegRange(spr))
		mp := pseg.Value()
		mm.unmapASLocked(spr)
		mm.pmas.Remove(pseg)
		mp.mapped = 0
		mp.im = safemem.Origin{}
		mp.needCOW, mp.lazyFree, mp.uffdWP = false, false, false
		mp.maxPerms = dv.maxPerms.Intersect(mp.translatePerms)
		mp.effectivePerms = dv.pmaPerms(mp.translatePerms, false, mp.private)
		dpr := hostarch.AddrRange{Start: d, End: d + hostarch.PageSize}
		mm.pmas.Insert(mm.pmas.FindGap(d), addrSegRange(dpr), mp)
	}
	return done, nil
}
