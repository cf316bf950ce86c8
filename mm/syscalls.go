package mm

import (
	"context"
	"errors"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"golang.org/x/sys/unix"
)

// MMap creates a mapping as mmap(2) does, after the system-call layer has
// checked the flags and the file (see DoMMap for the whole system call).
// It returns the mapping's address.
//
// Checks are made in Linux's order (do_mmap, mmap_region): zero length
// EINVAL; length overflow ENOMEM; offset overflow EOVERFLOW; map count
// ENOMEM; placement (ENOMEM, EINVAL, EPERM); MAP_FIXED_NOREPLACE EEXIST;
// mlock EPERM/EAGAIN; the file's checks; MDWE EACCES; seals EPERM;
// RLIMIT_AS and RLIMIT_DATA ENOMEM.
func (mm *MemoryManager) MMap(ctx context.Context, opts memmap.MMapOpts) (hostarch.Addr, error) {
	var pl placement
	if opts.Mappable == nil && opts.Private && !opts.Fixed && opts.Length%hugePageSize == 0 {
		pl.thp = true
	}
	return mm.mmapPlaced(ctx, opts, nil, 0, pl)
}

// mmap is MMap with extra vma flags and an optional configure step, called where Linux checks
// the file (after placement and mlock checks, before replacing anything):
// it may fail, or fill in opts.Mappable and opts.MappingIdentity.
func (mm *MemoryManager) mmap(ctx context.Context, opts memmap.MMapOpts, configure func(*memmap.MMapOpts) error, extra vmaFlags) (hostarch.Addr, error) {
	return mm.mmapPlaced(ctx, opts, configure, extra, placement{})
}

// mmapPlaced is mmap placing the mapping as pl says (without MAP_FIXED).
func (mm *MemoryManager) mmapPlaced(ctx context.Context, opts memmap.MMapOpts, configure func(*memmap.MMapOpts) error, extra vmaFlags, pl placement) (hostarch.Addr, error) {
	if opts.Length == 0 {
		return 0, unix.EINVAL
	}
	length, ok := hostarch.PageRoundUp(opts.Length)
	if !ok || length == 0 {
		return 0, unix.ENOMEM
	}
	opts.Length = length
	if opts.Mappable != nil || configure != nil {
		if !hostarch.IsPageAligned(opts.Offset) {
			return 0, unix.EINVAL
		}
		// Linux checks in pages: pgoff + pages wrapping.
		if pg := opts.Offset >> hostarch.PageShift; pg+length>>hostarch.PageShift < pg {
			return 0, unix.EOVERFLOW
		}
	}

	mm.mappingMu.Lock()
	defer mm.mappingMu.Unlock()
	if mm.vmas.Len() > mm.limits.MaxMapCount {
		return 0, unix.ENOMEM
	}
	addr, err := mm.findMMapAddrLocked(opts, pl)
	if err != nil {
		return 0, err
	}
	ar := hostarch.AddrRange{Start: addr, End: addr + hostarch.Addr(length)}
	if opts.Fixed && !opts.Unmap && !mm.vmas.IsEmptyRange(addrSegRange(ar)) {
		return 0, unix.EEXIST
	}
	mode := opts.MLockMode
	if mode != memmap.MLockNone && !mm.canDoMLockLocked() {
		return 0, unix.EPERM
	}
	if mode == memmap.MLockNone || mm.defMLockMode == memmap.MLockLazy {
		// mlockall(MCL_FUTURE) locks new mappings; its MCL_ONFAULT
		// (def_flags' VM_LOCKONFAULT) makes MAP_LOCKED lazy too.
		mode = mm.defMLockMode
	}
	if mode != memmap.MLockNone && !mm.mlockFutureOKLocked(length) {
		return 0, unix.EAGAIN
	}
	if extra&vmaUnlockable != 0 {
		// Special and droppable mappings are never locked (Linux's
		// mmap_region drops VM_LOCKED for VM_SPECIAL), though the limit
		// was checked.
		mode = memmap.MLockNone
	}
	opts.Addr = addr
	var lateErrno unix.Errno
	if configure != nil {
		// (Copies declared here, so that only mmaps with a configure pay
		// for their moving to the heap.)
		o := opts
		err := configure(&o)
		opts = o
		if err != nil {
			var late lateError
			if !errors.As(err, &late) {
				return 0, err
			}
			// Fails below.
			lateErrno = late.errno
		}
		if opts.MappingIdentity != nil {
			// configure's reference is ours to drop; the vma takes its
			// own.
			defer opts.MappingIdentity.DecRef(ctx)
		}
	}
	// MDWE is checked where Linux's mmap_region checks it: after the
	// file's checks, before anything is replaced or limits are counted.
	// (The main stack of an exec is set up without it, as Linux's
	// setup_arg_pages.)
	if extra&vmaStackMain == 0 && mm.denyWriteExecLocked(opts.Perms, opts.Perms) {
		return 0, unix.EACCES
	}
	v := vma{
		mappable:  opts.Mappable,
		off:       opts.Offset,
		realPerms: opts.Perms,
		maxPerms:  opts.MaxPerms,
		mlockMode: mode,
		id:        opts.MappingIdentity,
		name:      opts.Hint,
	}
	if opts.Mappable == nil {
		v.off = uint64(addr)
	}
	if opts.Private {
		v.flags |= vmaPrivate
	}
	if opts.GrowsDown {
		v.flags |= vmaGrowsDown
	}
	if opts.Stack {
		v.flags |= vmaNoHugePage
	}
	if opts.SharedAnonymous {
		v.flags |= vmaAnonShared
	}
	if opts.NoReserve {
		v.flags |= vmaNoReserve
	}
	v.flags |= extra
	if err := mm.mapRegionLocked(ctx, ar, &v, opts.Force, lateErrno); err != nil {
		return 0, err
	}

	// Populate as asked; failures do not fail the mmap.
	if mode == memmap.MLockEager || opts.PlatformEffect != memmap.MMapPlatformEffectDefault {
		mm.populateLocked(ctx, ar, true)
	}
	return addr, nil
}

// MUnmap removes the mappings in [addr, addr+length), as munmap(2).
func (mm *MemoryManager) MUnmap(ctx context.Context, addr hostarch.Addr, length uint64) error {
	if _, err := mm.unmapRange(addr, length); err != nil {
		return err
	}
	mm.mappingMu.Lock()
	defer mm.mappingMu.Unlock()
	return mm.munmapLocked(ctx, addr, length)
}

// unmapRange validates munmap's arguments: addr page-aligned, length
// non-zero, and the range within the user address space; EINVAL otherwise.
func (mm *MemoryManager) unmapRange(addr hostarch.Addr, length uint64) (hostarch.AddrRange, error) {
	maxAddr := mm.p.MaxUserAddress()
	if !addr.IsPageAligned() || addr > maxAddr || length > uint64(maxAddr-addr) {
		return hostarch.AddrRange{}, unix.EINVAL
	}
	la, ok := hostarch.PageRoundUp(length)
	if !ok || la == 0 {
		return hostarch.AddrRange{}, unix.EINVAL
	}
	return hostarch.AddrRange{Start: addr, End: addr + hostarch.Addr(la)}, nil
}

// MProtectOpts are mprotect's PROT_GROWSDOWN and PROT_GROWSUP.
type MProtectOpts struct {
	GrowsDown bool
	GrowsUp   bool
	// Refused says the call named a protection or a protection key that
	// Linux refuses once the range is checked (arch_validate_prot, a key
	// not allocated): EINVAL there.
	Refused bool
}

// MProtect changes the permissions of [addr, addr+length) to perms, as
// mprotect(2). Like Linux it changes vmas in address order and stops at the
// first failure, leaving earlier vmas changed.
func (mm *MemoryManager) MProtect(ctx context.Context, addr hostarch.Addr, length uint64, perms hostarch.AccessType, opts MProtectOpts) error {
	if opts.GrowsDown && opts.GrowsUp {
		return unix.EINVAL
	}
	if !addr.IsPageAligned() {
		return unix.EINVAL
	}
	if length == 0 {
		return nil
	}
	la, ok := hostarch.PageRoundUp(length)
	end := addr + hostarch.Addr(la)
	if !ok || end <= addr {
		return unix.ENOMEM
	}
	if opts.Refused {
		return unix.EINVAL
	}
	start := addr

	mm.mappingMu.Lock()
	defer mm.mappingMu.Unlock()
	vseg := mm.vmas.LowerBoundSegment(start)
	if !vseg.Ok() || vseg.Start() >= end {
		return unix.ENOMEM
	}
	if opts.GrowsDown {
		start = vseg.Start()
		if !vseg.ValuePtr().growsDown() {
			return unix.EINVAL
		}
	} else {
		if vseg.Start() > start {
			return unix.ENOMEM
		}
		if opts.GrowsUp {
			return unix.EINVAL
		}
	}
	nstart := start
	var err error
	var populate []hostarch.AddrRange
	var merges vmaMerges
	for nstart < end {
		// vseg is the vma that follows the last one changed (or the
		// first one).
		if !vseg.Ok() || vseg.Start() > nstart {
			// A hole: Linux stops here with ENOMEM.
			err = unix.ENOMEM
			break
		}
		v := vseg.ValuePtr()
		if !v.maxPerms.SupersetOf(perms) {
			err = unix.EACCES
			break
		}
		if mm.denyWriteExecLocked(v.realPerms, perms) {
			err = unix.EACCES
			break
		}
		segEnd := min(vseg.End(), end)
		r := hostarch.AddrRange{Start: nstart, End: segEnd}
		if nv := (vma{realPerms: perms, flags: v.flags}); nv.isData() && !v.isData() {
			// Turning into data: like mprotect_fixup, fail only when
			// RLIMIT_DATA refuses what RLIMIT_AS allows.
			pages := r.Length() >> hostarch.PageShift
			if mm.asOKLocked(pages) && !mm.dataOKLocked(pages) {
				err = unix.ENOMEM
				break
			}
		}
		if perms.Write && v.private() && !v.realPerms.Write && v.locked() {
			// A locked vma turning writable is populated
			// (mprotect_fixup), even if its mlock failed to.
			populate = append(populate, r)
		}
		account := perms.Write && v.private() && !v.flags.has(vmaAccount) && !v.realPerms.Write && !v.flags.has(vmaNoReserve)
		if account && !v.flags.has(vmaSealed) && !mm.enoughMemoryLocked(r.Length()) {
			// A private mapping turning writable commits its
			// memory (mprotect_fixup).
			err = unix.ENOMEM
			break
		}
		// Dropping write gives the commitment back only for anonymous
		// memory never faulted (no anon_vma yet), as mprotect_fixup.
		unaccount := !perms.Write && v.flags.has(vmaAccount) && v.isPrivateAnon() && !v.written()
		if vseg, err = mm.modifyVMAMergingLaterLocked(ctx, vseg, r, true, func(nv *vma) {
			nv.realPerms = perms
			if account {
				nv.flags |= vmaAccount
			}
			if unaccount {
				nv.flags &^= vmaAccount
			}
		}, &merges); err != nil {
			break
		}
		nstart = segEnd
		vseg = vseg.NextSegment()
	}
	mm.flushVMAMergesLocked(&merges)
	// The vmas of [start, nstart) changed: update their pmas at once.
	if changed := (hostarch.AddrRange{Start: start, End: nstart}); changed.Length() > 0 {
		mm.updatePMAPermsLocked(changed)
	}
	for _, r := range populate {
		if r.End <= nstart {
			mm.populateLocked(ctx, r, true)
		}
	}
	return err
}

// RemapFilePages is remap_file_pages(2) (whose prot the system-call layer
// checked), which Linux emulates with mmap: [start, start+size) (both
// rounded down to pages) must lie in contiguous shared writable mappings
// of one file with equal attributes (EINVAL otherwise), and is mapped
// again, with those attributes, at file page pgoff, populated unless
// nonBlock (MAP_NONBLOCK).
func (mm *MemoryManager) RemapFilePages(ctx context.Context, start hostarch.Addr, size, pgoff uint64, nonBlock bool) error {
	start = start.RoundDown()
	size &^= hostarch.PageSize - 1
	end := start + hostarch.Addr(size)
	if end <= start {
		return unix.EINVAL
	}
	if pgoff+size>>hostarch.PageShift < pgoff {
		return unix.EINVAL
	}
	mm.mappingMu.Lock()
	vseg := mm.vmas.FindSegment(start)
	if !vseg.Ok() || !vseg.ValuePtr().canWriteMappable() {
		mm.mappingMu.Unlock()
		return unix.EINVAL
	}
	v := vseg.Value()
	for prev := vseg; prev.End() < end; {
		next := prev.NextSegment()
		if !next.Ok() || next.Start() != prev.End() {
			mm.mappingMu.Unlock()
			return unix.EINVAL
		}
		n := next.ValuePtr()
		if n.mappable != v.mappable || n.flags != v.flags || n.realPerms != v.realPerms ||
			n.maxPerms != v.maxPerms || n.mlockMode != v.mlockMode {
			mm.mappingMu.Unlock()
			return unix.EINVAL
		}
		prev = next
	}
	if v.id != nil {
		v.id.IncRef()
		defer v.id.DecRef(ctx)
	}
	mm.mappingMu.Unlock()

	opts := memmap.MMapOpts{
		Length:          size,
		Addr:            start,
		Offset:          pgoff << hostarch.PageShift,
		Fixed:           true,
		Unmap:           true,
		Perms:           v.realPerms,
		MaxPerms:        v.maxPerms,
		SharedAnonymous: v.flags.has(vmaAnonShared),
		NoReserve:       v.flags.has(vmaNoReserve),
	}
	if !nonBlock {
		opts.PlatformEffect = memmap.MMapPopulate
	}
	if v.locked() {
		opts.MLockMode = memmap.MLockEager
	}
	_, err := mm.mmap(ctx, opts, func(o *memmap.MMapOpts) error {
		// Linux's file_mmap_ok.
		if pgoff > (maxLFSFileSize-size)>>hostarch.PageShift {
			return unix.EOVERFLOW
		}
		o.Mappable = v.mappable
		if v.id != nil {
			v.id.IncRef()
			o.MappingIdentity = v.id
		}
		return nil
	}, 0)
	return err
}

// checkRange validates the (addr, length) of madvise, mseal and
// PR_SET_VMA_ANON_NAME: addr page-aligned, and the rounded length neither
// wrapping to zero nor overflowing (EINVAL). An empty range is reported as
// ok with empty == true.
func checkRange(addr hostarch.Addr, length uint64) (ar hostarch.AddrRange, empty bool, err error) {
	if !addr.IsPageAligned() {
		return ar, false, unix.EINVAL
	}
	la, ok := hostarch.PageRoundUp(length)
	if length != 0 && (!ok || la == 0) {
		return ar, false, unix.EINVAL
	}
	end := addr + hostarch.Addr(la)
	if end < addr {
		return ar, false, unix.EINVAL
	}
	return hostarch.AddrRange{Start: addr, End: end}, end == addr, nil
}
