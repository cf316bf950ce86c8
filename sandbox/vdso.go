package sandbox

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/mm"
	"github.com/vmspace/vmspace/platform/ptrace"
	"golang.org/x/sys/unix"
)

// The vDSO. Every program gets the host kernel's own vDSO, so that
// clock_gettime and the like run without a system call as natively: the
// host process has one from its exec of the stub image ([vvar],
// [vvar_vclock] and [vdso], one block of pages the host kernel manages),
// which freshImage leaves mapped. The loader maps three vmas of the same
// sizes and names where Linux would put the block (after the interpreter,
// top-down), whose address becomes AT_SYSINFO_EHDR, and commitExec moves
// the host's block there with mremap (the host kernel follows a moved
// vDSO).
//
// The vmas are special mappings to the manager (MapHostSpecial: never
// expanded, locked or merged; [vvar] and [vvar_vclock] VM_PFNMAP, VM_IO
// and VM_DONTDUMP), and it never maps them in the host: their Mappable
// (hostSpecial) translates [vdso] to a copy of the host's image that
// stubAS.MapFile does not map, and the data pages to nothing (how the
// vDSO is read, through the manager or the host: vdso_io.go). What the
// program does to them is done to the host's block too, as the manager
// tells the Mappable: an unmapping (munmap, a mapping placed over them)
// unmaps it in the host at once, before anything new is mapped there, and
// an mremap moves it (vdsoState.removed, moved). mprotect is repeated in
// the host, and, as Linux refuses to split a special mapping, a munmap,
// mprotect, mremap or madvise (one that would change the flags of part of
// a piece: vdso_advise.go) that covers only part of one fails with EINVAL
// (growing one with mremap fails with EFAULT). A fork child keeps its
// inherited block (fixFork).

// vdsoPiece is one mapping of the host's vDSO block.
type vdsoPiece struct {
	// name is its /proc/PID/maps name.
	name string
	// off is its offset in the block; size its length.
	off, size uint64
	// perms are its permissions; maxPerms what mprotect may give it.
	perms, maxPerms hostarch.AccessType
}

// vdsoLayout is the host's vDSO block, as this process has it: the pieces
// in address order (nil if the host gives no vDSO, or one vmspace does
// not recognize).
var vdsoLayout = sync.OnceValue(func() []vdsoPiece {
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return nil
	}
	pieces, start := parseVDSOBlock(string(b))
	for i := range pieces {
		pieces[i].off -= uint64(start)
	}
	return pieces
})

// parseVDSOBlock finds the vDSO block in the text of a /proc/PID/maps:
// its pieces (offsets are addresses) and its start, or nil if it has none
// or its pieces are not contiguous.
func parseVDSOBlock(maps string) ([]vdsoPiece, hostarch.Addr) {
	var pieces []vdsoPiece
	for _, l := range strings.Split(maps, "\n") {
		f := strings.Fields(l)
		if len(f) < 6 {
			continue
		}
		name := f[5]
		if name != "[vvar]" && name != "[vvar_vclock]" && name != "[vdso]" {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if !ok || err1 != nil || err2 != nil || end <= start || len(f[1]) != 4 {
			return nil, 0
		}
		pc := vdsoPiece{name: name, off: start, size: end - start}
		pc.perms = hostarch.AccessType{Read: f[1][0] == 'r', Write: f[1][1] == 'w', Execute: f[1][2] == 'x'}
		// Linux: [vdso] may be made writable (VM_MAYWRITE, for
		// debuggers); [vvar] and [vvar_vclock] only read.
		pc.maxPerms = hostarch.Read
		if name == "[vdso]" {
			pc.maxPerms = hostarch.AnyAccess
		}
		pieces = append(pieces, pc)
	}
	if len(pieces) == 0 {
		return nil, 0
	}
	for i := 1; i < len(pieces); i++ {
		if pieces[i].off != pieces[i-1].off+pieces[i-1].size {
			return nil, 0
		}
	}
	if pieces[len(pieces)-1].name != "[vdso]" {
		return nil, 0
	}
	return pieces, hostarch.Addr(pieces[0].off)
}

// vdsoState is the sandbox's record of the host's vDSO blocks. All of it
// is used by the tracer thread only (the memory managers call the
// Mappables on the thread that calls them, the tracer).
type vdsoState struct {
	s *Sandbox
	// pieces are the Mappables of vdsoLayout's pieces.
	pieces []*hostSpecial
	// host maps each memory manager to the ranges where its process's
	// host mappings of the pieces are (for a manager whose host block
	// is placed).
	host map[*mm.MemoryManager][]hostarch.AddrRange
	// fresh maps a process that has just executed the stub image to
	// where the host put its block (freshImage), until commitExec moves
	// it.
	fresh map[*process]hostarch.Addr
	// serving is the manager whose process's memory call is being
	// served, and task the task making it: only its changes are made in
	// the host at once.
	serving *mm.MemoryManager
	task    *task
	// image is the copy of the host's [vdso] that the manager reads
	// (imageFile), made at first use; imageTried is set once it was
	// tried.
	image      *vdsoImage
	imageTried bool
}

// vdso returns the sandbox's vDSO state, nil if the host has no vDSO.
func (s *Sandbox) vdso() *vdsoState {
	if s.vdsoSt != nil {
		return s.vdsoSt
	}
	layout := vdsoLayout()
	if layout == nil {
		return nil
	}
	st := &vdsoState{s: s, host: make(map[*mm.MemoryManager][]hostarch.AddrRange), fresh: make(map[*process]hostarch.Addr)}
	for i := range layout {
		st.pieces = append(st.pieces, &hostSpecial{st: st, piece: layout[i]})
	}
	s.vdsoSt = st
	return st
}

// keepVDSO unmaps everything below StubStart in t's process, which has
// just executed the stub image, but the host's vDSO block, and notes where
// that is; call makes an injected call.
func (s *Sandbox) keepVDSO(t *task, call func(what string, nr uintptr, args ...uintptr) error) error {
	st := s.vdso()
	var block hostarch.AddrRange
	if st != nil {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", t.p.pid))
		if err == nil {
			if pieces, start := parseVDSOBlock(string(b)); len(pieces) == len(st.pieces) {
				last := pieces[len(pieces)-1]
				block = hostarch.AddrRange{Start: start, End: hostarch.Addr(last.off + last.size)}
			}
		}
	}
	if block.Length() == 0 || block.End > ptrace.StubStart {
		if st != nil {
			delete(st.fresh, t.p)
		}
		return call("munmap", unix.SYS_MUNMAP, 0, uintptr(ptrace.StubStart))
	}
	if err := call("munmap", unix.SYS_MUNMAP, 0, uintptr(block.Start)); err != nil {
		return err
	}
	if err := call("munmap", unix.SYS_MUNMAP, uintptr(block.End), uintptr(ptrace.StubStart-block.End)); err != nil {
		return err
	}
	st.fresh[t.p] = block.Start
	return nil
}

// mapVDSO maps the vDSO block's vmas in m as Linux's exec does (where mmap
// would put the block, after the program and interpreter), for the
// loader's Options.VDSO, and returns the address of [vdso].
func (s *Sandbox) mapVDSO(ctx context.Context, m *mm.MemoryManager) (hostarch.Addr, error) {
	st := s.vdso()
	if st == nil {
		return 0, nil
	}
	var total uint64
	for _, h := range st.pieces {
		total = max(total, h.piece.off+h.piece.size)
	}
	var base, vdso hostarch.Addr
	for i, h := range st.pieces {
		opts := memmap.MMapOpts{
			Length:   h.piece.size,
			Addr:     base + hostarch.Addr(h.piece.off),
			Fixed:    i > 0,
			Unmap:    i > 0,
			Private:  true,
			Perms:    h.piece.perms,
			MaxPerms: h.piece.maxPerms,
			Mappable: h,
			Hint:     h.piece.name,
			Force:    true,
		}
		if i == 0 {
			// The whole block's room first.
			opts.Length = total
		}
		addr, err := m.MapHostSpecial(ctx, opts)
		if err != nil {
			return 0, err
		}
		if i == 0 {
			base = addr
			if h.piece.size < total {
				if err := m.MUnmap(ctx, addr+hostarch.Addr(h.piece.size), total-h.piece.size); err != nil {
					return 0, err
				}
			}
		}
		if h.piece.name == "[vdso]" {
			vdso = addr
		}
	}
	return vdso, nil
}

// placeVDSO moves the host's vDSO block of t's process (fresh from the
// stub image's exec) to where its new manager m has it, before anything
// else is mapped in the host.
func (s *Sandbox) placeVDSO(t *task, m *mm.MemoryManager) error {
	st := s.vdso()
	if st == nil {
		return nil
	}
	from, ok := st.fresh[t.p]
	delete(st.fresh, t.p)
	to := st.placement(m)
	if !ok || len(to) != len(st.pieces) {
		if ok {
			// The manager has no vDSO: neither has the host.
			last := st.pieces[len(st.pieces)-1].piece
			s.inject(t, unix.SYS_MUNMAP, uintptr(from), uintptr(last.off+last.size))
		}
		return nil
	}
	size := to[len(to)-1].End - to[0].Start
	src := hostarch.AddrRange{Start: from, End: from + size}
	dst := hostarch.AddrRange{Start: to[0].Start, End: to[0].Start + size}
	move := func(a, b hostarch.Addr) error {
		if a == b {
			return nil
		}
		for _, h := range st.pieces {
			o := hostarch.Addr(h.piece.off)
			r, err := s.inject(t, unix.SYS_MREMAP, uintptr(a+o), uintptr(h.piece.size), uintptr(h.piece.size),
				unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED, uintptr(b+o))
			if err != nil {
				return err
			}
			if r != uintptr(b+o) {
				return fmt.Errorf("sandbox: moving the vDSO's %s from %v to %v: %#x", h.piece.name, a+o, b+o, r)
			}
		}
		return nil
	}
	if src.Overlaps(dst) && src != dst {
		// Through a place below both (nothing else is mapped yet).
		tmp := min(src.Start, dst.Start) - hostarch.Addr(size)
		if err := move(src.Start, tmp); err != nil {
			return err
		}
		src.Start = tmp
	}
	if err := move(src.Start, dst.Start); err != nil {
		return err
	}
	st.host[m] = to
	return nil
}

// placement returns where m has the pieces (in st.pieces' order), or nil
// if it has not all of them, each whole.
func (st *vdsoState) placement(m *mm.MemoryManager) []hostarch.AddrRange {
	var out []hostarch.AddrRange
	for _, v := range m.VMAs(st.s.ctx) {
		for i, h := range st.pieces {
			if v.Name == h.piece.name && v.Kind == mm.VMASpecial && v.Range.Length() == h.piece.size && len(out) == i {
				out = append(out, v.Range)
			}
		}
	}
	if len(out) != len(st.pieces) {
		return nil
	}
	return out
}

// withVDSO returns pieces and the host ranges of m's vDSO pieces, in
// address order (for fixFork, which unmaps everything else).
func (s *Sandbox) withVDSO(pieces []shadowPiece, m *mm.MemoryManager) []shadowPiece {
	out := append([]shadowPiece(nil), pieces...)
	for _, r := range s.hostVDSORanges(m) {
		out = append(out, shadowPiece{ar: r})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ar.Start < out[j].ar.Start })
	return out
}

// hostVDSORanges returns the host ranges of m's vDSO pieces.
func (s *Sandbox) hostVDSORanges(m *mm.MemoryManager) []hostarch.AddrRange {
	if s.vdsoSt == nil {
		return nil
	}
	return s.vdsoSt.host[m]
}

// vdsoCall checks a memory call of t against the host's vDSO pieces
// before the manager sees it: Linux does not split special mappings
// (EINVAL) nor grow them (EFAULT). done is false if the call goes on.
func (s *Sandbox) vdsoCall(t *task, nr int, a [6]uint64) (res sysResult, done bool) {
	ranges := s.hostVDSORanges(t.p.mm)
	if len(ranges) == 0 {
		return sysResult{}, false
	}
	rangeOf := func(addr, length uint64) (hostarch.AddrRange, bool) {
		if addr%hostarch.PageSize != 0 {
			return hostarch.AddrRange{}, false
		}
		end, ok := hostarch.Addr(addr).AddLength(pageUp(length))
		return hostarch.AddrRange{Start: hostarch.Addr(addr), End: end}, ok
	}
	// partial reports whether ar covers part of a piece but not all.
	partial := func(ar hostarch.AddrRange) bool {
		for _, r := range ranges {
			if (ar.Start > r.Start && ar.Start < r.End) || (ar.End > r.Start && ar.End < r.End) {
				return true
			}
		}
		return false
	}
	switch nr {
	case unix.SYS_MADVISE:
		return s.vdsoAdvise(t, a, ranges)
	case unix.SYS_MUNMAP, unix.SYS_MPROTECT, unix.SYS_PKEY_MPROTECT:
		if ar, ok := rangeOf(a[0], a[1]); ok && partial(ar) {
			return retErr(unix.EINVAL), true
		}
	case unix.SYS_MMAP:
		// A fixed mapping unmaps what it replaces first.
		const mapFixedNoReplace = 0x100000
		if a[3]&unix.MAP_FIXED != 0 && a[3]&mapFixedNoReplace == 0 {
			if ar, ok := rangeOf(a[0], a[1]); ok && partial(ar) {
				return retErr(unix.EINVAL), true
			}
		}
	case unix.SYS_MREMAP:
		old, ok := rangeOf(a[0], a[1])
		if !ok {
			return sysResult{}, false
		}
		for _, r := range ranges {
			if !r.Overlaps(old) {
				continue
			}
			switch {
			case old != r:
				return retErr(unix.EINVAL), true
			case a[2] > a[1]:
				return retErr(unix.EFAULT), true
			case a[2] < a[1]:
				return retErr(unix.EINVAL), true
			}
		}
		if a[3]&unix.MREMAP_FIXED != 0 {
			if dst, ok := rangeOf(a[4], a[2]); ok && partial(dst) {
				return retErr(unix.EINVAL), true
			}
		}
	}
	return sysResult{}, false
}

// serveVDSO marks t's process's manager as the one whose changes to the
// vDSO pieces are made in the host at once, until the returned function
// is called.
func (s *Sandbox) serveVDSO(t *task) func() {
	st := s.vdsoSt
	if st == nil || len(st.host[t.p.mm]) == 0 {
		return func() {}
	}
	st.serving, st.task = t.p.mm, t
	return func() { st.serving, st.task = nil, nil }
}

// syncVDSOPerms repeats in the host an mprotect of t's process over ar
// for the vDSO pieces it covers.
func (s *Sandbox) syncVDSOPerms(t *task, ar hostarch.AddrRange) {
	m := t.p.mm
	for _, r := range s.hostVDSORanges(m) {
		if !r.Overlaps(ar) {
			continue
		}
		regs := m.Regions(r)
		if len(regs) != 1 || !regs[0].Mapped {
			continue
		}
		p := regs[0].Perms
		prot := 0
		if p[0] == 'r' {
			prot |= unix.PROT_READ
		}
		if p[1] == 'w' {
			prot |= unix.PROT_WRITE
		}
		if p[2] == 'x' {
			prot |= unix.PROT_EXEC
		}
		s.inject(t, unix.SYS_MPROTECT, uintptr(r.Start), uintptr(r.Length()), uintptr(prot))
	}
}

// removed notes that m no longer maps ar of a piece: if m's process is
// being served, its host mapping there goes at once.
func (st *vdsoState) removed(m *mm.MemoryManager, ar hostarch.AddrRange) {
	rs := st.host[m]
	for i, r := range rs {
		if r != ar {
			continue
		}
		if st.serving == m && st.task != nil {
			st.s.inject(st.task, unix.SYS_MUNMAP, uintptr(ar.Start), uintptr(ar.Length()))
		}
		rs = append(rs[:i:i], rs[i+1:]...)
		break
	}
	if len(rs) == 0 {
		delete(st.host, m)
		return
	}
	st.host[m] = rs
}

// moved notes that m maps a piece at dst as it did at src: a fork child's
// copy (src == dst, in a new manager, whose host process inherited it),
// or an mremap, which moves the host mapping at once.
func (st *vdsoState) moved(m *mm.MemoryManager, src, dst hostarch.AddrRange) {
	if src == dst {
		st.host[m] = append(st.host[m], dst)
		return
	}
	rs := st.host[m]
	for i, r := range rs {
		if r != src {
			continue
		}
		if st.serving == m && st.task != nil {
			t := st.task
			st.s.inject(t, unix.SYS_MREMAP, uintptr(src.Start), uintptr(src.Length()), uintptr(dst.Length()),
				unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED, uintptr(dst.Start))
			// The host's mappings at dst are replaced: their
			// deferred unmapping would remove the piece.
			if as := t.p.as; as != nil {
				as.unpend(dst)
			}
		}
		rs[i] = dst
		return
	}
}

// hostSpecial is the Mappable of one piece of the vDSO block in every
// manager: it translates nothing (the host maps the pages), and follows
// where each manager maps the piece.
type hostSpecial struct {
	st    *vdsoState
	piece vdsoPiece
}

var _ memmap.Mappable = (*hostSpecial)(nil)

// AddMapping implements memmap.Mappable: a new mapping is placed in the
// host by placeVDSO.
func (h *hostSpecial) AddMapping(context.Context, memmap.MappingSpace, hostarch.AddrRange, uint64, bool) error {
	return nil
}

// RemoveMapping implements memmap.Mappable.
func (h *hostSpecial) RemoveMapping(_ context.Context, ms memmap.MappingSpace, ar hostarch.AddrRange, _ uint64, _ bool) {
	if m, ok := ms.(*mm.MemoryManager); ok {
		h.st.removed(m, ar)
	}
}

// CopyMapping implements memmap.Mappable.
func (h *hostSpecial) CopyMapping(_ context.Context, ms memmap.MappingSpace, srcAR, dstAR hostarch.AddrRange, _ uint64, _ bool) error {
	if m, ok := ms.(*mm.MemoryManager); ok {
		h.st.moved(m, srcAR, dstAR)
	}
	return nil
}

// Translate implements memmap.Mappable: for [vdso], the sandbox's copy of
// the host's image (vdsoImage), so that the manager reads it as Linux
// reads the vDSO's pages (a core dump, a system call's buffer); nothing
// for the data pages, which Linux maps VM_PFNMAP and nothing reads.
func (h *hostSpecial) Translate(_ context.Context, required, optional memmap.MappableRange, _ hostarch.AccessType) ([]memmap.Translation, error) {
	img := h.st.imageFile()
	whole := memmap.MappableRange{Start: 0, End: h.piece.size}
	if h.piece.name != "[vdso]" || img == nil || img.fr.Length() != h.piece.size || !whole.IsSupersetOf(required) {
		return nil, unix.EFAULT
	}
	r := optional.Intersect(whole)
	if !r.IsSupersetOf(required) {
		r = required
	}
	return []memmap.Translation{{Source: r, File: img, Offset: img.fr.Start + r.Start, Perms: hostarch.ReadExecute}}, nil
}

// PFNMap implements mm.PFNMapper: the vDSO's data pages are VM_PFNMAP.
func (h *hostSpecial) PFNMap() bool { return strings.HasPrefix(h.piece.name, "[vvar") }

// InvalidateUnsavable implements memmap.Mappable.
func (h *hostSpecial) InvalidateUnsavable(context.Context) error { return nil }
