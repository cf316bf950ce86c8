package sandbox

import (
	"encoding/binary"
	"slices"
	"sort"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/mm"
	"github.com/vmspace/vmspace/platform/ptrace"
	"golang.org/x/sys/unix"
)

// The host kernel writes into a thread's memory by itself, at moments the
// program does not choose: the rseq area (registered with rseq(2)) on every
// return to user mode after a preemption, a migration or a signal; the
// clear_child_tid word (CLONE_CHILD_CLEARTID, set_tid_address(2)) when the
// thread exits, before it wakes the futex waiters there (pthread_join);
// and it reads the robust futex list head (set_robust_list(2)) at thread
// exit. On Linux such an access faults the page in like the thread's own.
// Under vmspace the host kernel sees only the host mappings: a page the
// memory manager has not mapped in the host, or has mapped read-only, makes
// the rseq update fail (the kernel kills the thread with SIGSEGV, and would
// do so at every injected system call as well), the clear_child_tid write
// be dropped (pthread_join waits forever), the robust list be skipped.
//
// So vmspace tracks these areas per thread (the system calls that set them
// stop, and clone's flags are seen at the clone event) and keeps them
// mapped in the host with the access the kernel needs, as far as the
// memory manager allows (keepKernelAreas): when they are set (and at a
// new task's first stop), after every memory system call, at a fork
// (whose copy-on-write makes private memory read-only in the host, but
// for what the kernel may write for the parent's threads, these areas
// among them, which the child gets copies of: kernelWrites, fork.go), and
// before every deferred host unmap is made (so that a page taken away
// by MADV_DONTNEED, an mmap over it or a copy-on-write break is replaced in
// the host at once, never left unmapped while the thread runs). Where the
// manager refuses (the program unmapped the area or made it read-only),
// the host kernel fails as Linux's would.
//
// At a thread's exit the kernel also walks its robust list and marks the
// futex word of each mutex the thread still holds FUTEX_OWNER_DIED. Those
// words lie wherever the program put its mutexes, often in private memory
// that a fork has since made read-only in the host; the kernel's write
// would then be dropped, and the next locker would wait for a dead owner
// instead of getting EOWNERDEAD. A mutex's word is written when it is
// locked, which breaks copy-on-write, so only a fork can make the word of
// a held mutex read-only: at the exit of a fork, the parent's threads'
// robust lists are walked as the kernel will walk them and the words they
// hold made private and writable (keepRobustLists). (A fork child's only
// thread holds no mutex of its own: the words its list inherited name the
// parent's thread, and the kernel leaves them alone.)
//
// A word can also be out of the kernel's reach for other reasons: the
// manager dropped every host mapping after the host refused one (past
// vm.max_map_count), or the thread exits between the moment a fork makes
// the parent's private memory read-only and the end of the fork. So after such an
// eviction (stubAS.evicted) the lists are walked again before any task
// runs on (keepUnflushedKernelAreas), and at a thread's exit stop served
// by the main loop, which comes before the kernel walks its list, the walk
// is made again (keepRobustAtExit; a sibling's exit stop that a wait for
// an injected call takes is let go at once: waitFor): the entries are
// mapped readable and the words the thread holds writable, through another
// thread of the address space that can take an injected call; where none
// can (the whole process is exiting), the words the host still cannot
// write are marked FUTEX_OWNER_DIED through the manager, as the kernel
// would mark them (with no futex wake: no thread of the process waits,
// and a process-shared mutex's word is in shared memory, which is
// writable in the host wherever it was locked unless evicted).

// kernelAreas are the memory areas the host kernel accesses on behalf of a
// task.
type kernelAreas struct {
	// rseq is the registered rseq area, empty if none.
	rseq hostarch.AddrRange
	// ctid is the clear_child_tid address, 0 if none.
	ctid hostarch.Addr
	// robust is the robust list head, empty if none.
	robust hostarch.AddrRange
}

// robustListHeadSize is sizeof(struct robust_list_head).
const robustListHeadSize = 24

// areaRange returns [addr, addr+n), or an empty range if it wraps.
func areaRange(addr, n uint64) hostarch.AddrRange {
	end, ok := hostarch.Addr(addr).AddLength(n)
	if !ok || n == 0 {
		return hostarch.AddrRange{}
	}
	return hostarch.AddrRange{Start: hostarch.Addr(addr), End: end}
}

// inheritKernelAreas sets the areas of child, a task made by parent's
// clone with flags, as the kernel does: the clear_child_tid address comes
// from CLONE_CHILD_CLEARTID, the rseq registration is kept by a fork
// child (a thread, or a CLONE_VM child, starts without one), the robust
// list head is never inherited.
func (s *Sandbox) inheritKernelAreas(parent, child *task, flags uint64) {
	child.kareas = kernelAreas{}
	if flags&unix.CLONE_CHILD_CLEARTID != 0 && parent.regs.Orig_rax == unix.SYS_CLONE {
		child.kareas.ctid = hostarch.Addr(parent.regs.R10)
	}
	if flags&unix.CLONE_VM == 0 {
		child.kareas.rseq = parent.kareas.rseq
	}
}

// sysRseq serves rseq(area, len, flags, sig): the area is mapped for the
// kernel's first update, the call is made, and the registration recorded.
func (s *Sandbox) sysRseq(t *task, a [6]uint64) sysResult {
	const unregister = 1
	ar := areaRange(a[0], uint64(uint32(a[1])))
	if a[2]&unregister == 0 && ar.Length() > 0 {
		s.keepArea(t.p, ar, hostarch.Write)
	}
	r, err := s.inject(t, unix.SYS_RSEQ, uintptr(a[0]), uintptr(a[1]), uintptr(a[2]), uintptr(a[3]))
	if err != nil {
		return sysResult{act: actDone}
	}
	if r == 0 {
		if a[2]&unregister != 0 {
			t.kareas.rseq = hostarch.AddrRange{}
		} else {
			t.kareas.rseq = ar
		}
	}
	return ret(r)
}

// sysSetTidAddress notes set_tid_address(tidptr), which the host runs,
// and maps the word for the kernel's write at the thread's exit.
func (s *Sandbox) sysSetTidAddress(t *task, a [6]uint64) sysResult {
	t.kareas.ctid = hostarch.Addr(a[0])
	s.keepTaskAreas(t)
	return pass()
}

// sysSetRobustList notes set_robust_list(head, len), which the host runs
// (and fails with EINVAL unless len is the size of the head), and maps
// the head for the kernel's read at the thread's exit.
func (s *Sandbox) sysSetRobustList(t *task, a [6]uint64) sysResult {
	if a[1] == robustListHeadSize {
		t.kareas.robust = areaRange(a[0], robustListHeadSize)
		s.keepTaskAreas(t)
	}
	return pass()
}

// keepUnflushedKernelAreas keeps the kernel areas of the address spaces
// with host unmaps pending, before they are made (shootdown).
func (s *Sandbox) keepUnflushedKernelAreas() {
	for as := range s.unflushed {
		s.keepKernelAreas(as.sp)
		if as.evicted {
			// The manager dropped every host mapping: the robust
			// futex words its threads hold are mapped again, so
			// that the kernel can mark them at a thread's exit.
			as.evicted = false
			s.keepRobustLists(as.sp)
		}
	}
}

// keepKernelAreas maps, as far as the memory manager allows, the kernel
// areas of every live task using sp with the access the host kernel needs.
func (s *Sandbox) keepKernelAreas(sp *space) {
	if sp == nil || sp.as == nil || sp.as.released {
		return
	}
	for p := range sp.procs {
		for _, t := range p.tasks {
			s.keepTaskAreas(t)
		}
	}
}

// keepRobustLists makes writable, as far as the memory manager allows, the
// futex words held by the robust lists of every live task using sp
// (keepRobustWords).
func (s *Sandbox) keepRobustLists(sp *space) {
	if sp == nil || sp.as == nil || sp.as.released {
		return
	}
	for p := range sp.procs {
		for _, t := range p.tasks {
			if !t.dead() {
				s.keepRobustWords(t)
			}
		}
	}
}

// keepTaskAreas maps, as far as the memory manager allows, the kernel
// areas of t with the access the host kernel needs: writable ones are
// made private (copy-on-write broken) and writable.
func (s *Sandbox) keepTaskAreas(t *task) {
	if t.dead() {
		return
	}
	p, ka := t.p, t.kareas
	s.keepArea(p, ka.rseq, hostarch.Write)
	if ka.ctid != 0 {
		s.keepArea(p, areaRange(uint64(ka.ctid), 4), hostarch.Write)
	}
	s.keepArea(p, ka.robust, hostarch.Read)
}

// keepArea maps the pages of ar that the host does not map with at, by
// faulting them in as accesses of that kind. Errors are left to the host
// kernel's access, which fails as Linux's would.
func (s *Sandbox) keepArea(p *process, ar hostarch.AddrRange, at hostarch.AccessType) {
	as := p.as
	if ar.Length() == 0 || as == nil || p.mm == nil || as.released || as.covers(ar, at) {
		return
	}
	start, end := ar.Start.RoundDown(), ar.End
	for pg := start; pg < end && pg >= start; pg += hostarch.PageSize {
		page := hostarch.AddrRange{Start: pg, End: pg + hostarch.PageSize}
		if pg >= codeAddr-hostarch.PageSize || as.covers(page, at) {
			continue
		}
		p.mm.HandleUserFault(s.ctx, pg, at, pg)
	}
}

// Robust futex constants (linux/futex.h).
const (
	futexTIDMask = 0x3fffffff
	// robustListLimit is the kernel's ROBUST_LIST_LIMIT: it walks at
	// most that many entries.
	robustListLimit = 2048
)

// keepRobustAtExit serves t's robust list at its exit stop, before the
// kernel walks it (see the top of this file).
func (s *Sandbox) keepRobustAtExit(t *task) {
	s.walkRobustList(t, true)
}

// keepRobustWords makes writable, as far as the memory manager allows, the
// futex words that the host kernel will mark FUTEX_OWNER_DIED when t
// exits: it walks t's robust list as the kernel's exit_robust_list does
// (the entries, then the pending one; at most robustListLimit, each word
// at its entry plus the head's futex_offset, 4-byte aligned) and keeps
// every word whose owner is t, the words the kernel writes. The entries
// are kept readable for the kernel's walk.
func (s *Sandbox) keepRobustWords(t *task) {
	s.walkRobustList(t, false)
}

// walkRobustList is keepRobustWords; at t's exit (exiting), a word the
// host still cannot write is marked FUTEX_OWNER_DIED through the manager
// as the kernel would (keepRobustAtExit).
func (s *Sandbox) walkRobustList(t *task, exiting bool) {
	p, head := t.p, t.kareas.robust
	if head.Length() == 0 || p.mm == nil || p.as == nil || p.as.released {
		return
	}
	read := func(addr uint64, b []byte) bool {
		n, err := p.mm.CopyIn(s.ctx, hostarch.Addr(addr), b, mm.IOOpts{})
		return err == nil && n == len(b)
	}
	var h [robustListHeadSize]byte
	if !read(uint64(head.Start), h[:]) {
		return
	}
	next := binary.LittleEndian.Uint64(h[0:]) &^ 1
	off := binary.LittleEndian.Uint64(h[8:])
	pending := binary.LittleEndian.Uint64(h[16:]) &^ 1
	word := func(entry uint64) {
		addr := entry + off // the kernel's arithmetic wraps too
		var w [4]byte
		if addr%4 != 0 || !read(addr, w[:]) || binary.LittleEndian.Uint32(w[:])&futexTIDMask != uint32(t.tid) {
			return
		}
		ar := areaRange(addr, 4)
		s.keepArea(p, ar, hostarch.Write)
		if exiting && p.as != nil && !p.as.released && !p.as.covers(ar, hostarch.Write) {
			s.markOwnerDied(t, hostarch.Addr(addr), binary.LittleEndian.Uint32(w[:]))
		}
	}
	var b [8]byte
	for i := 0; next != uint64(head.Start) && i < robustListLimit; i++ {
		s.keepArea(p, areaRange(next, 8), hostarch.Read)
		ok := read(next, b[:])
		if next != pending {
			word(next)
		}
		if !ok {
			break
		}
		next = binary.LittleEndian.Uint64(b[:]) &^ 1
	}
	if pending != 0 {
		word(pending)
	}
}

// Futex word bits (linux/futex.h).
const (
	futexWaiters    = 0x80000000
	futexOwnerDied  = 0x40000000
	maxOwnerDiedCAS = 16
)

// markOwnerDied makes what the kernel's exit_robust_list makes of the
// futex word at addr, which held old and names t as its owner: the owner
// cleared, FUTEX_OWNER_DIED set, FUTEX_WAITERS kept; the word is changed
// only while it still names t (compare-and-swap, retried a few times if
// another process changes it meanwhile).
func (s *Sandbox) markOwnerDied(t *task, addr hostarch.Addr, old uint32) {
	m := t.p.mm
	for i := 0; i < maxOwnerDiedCAS && old&futexTIDMask == uint32(t.tid); i++ {
		prev, err := m.CompareAndSwapUint32(s.ctx, addr, old, old&futexWaiters|futexOwnerDied, mm.IOOpts{})
		if err != nil || prev == old {
			return
		}
		old = prev
	}
}

// maxKernelWrites bounds the ranges recorded for one system call.
// Recorded ranges are whole pages (a fork pins pages), and a new range
// is merged with those it overlaps or touches (a recvmmsg's msghdrs lie
// inside its mmsghdr vector, a buffer's pages are often its
// neighbour's), so the bound is reached only by that many separate runs
// of pages; beyond it the two ranges closest together are joined, with
// the pages between them: nothing the kernel may write is ever dropped
// (at worst a fork copies a few more pages for the child).
const maxKernelWrites = 2 * maxIOVecs

// noteKernelWrite records [addr, addr+length) as a buffer the host kernel
// may write for t's system call in flight (task.kcall, kept sorted and
// disjoint, page-aligned).
func (t *task) noteKernelWrite(addr, length uint64) {
	if ar, ok := userPages(addr, length); ok {
		t.kcall = addPageRange(t.kcall, ar, maxKernelWrites)
	}
}

// userPages returns the pages of [addr, addr+length) below vmspace's own
// (ptrace.StubStart), and whether there are any.
func userPages(addr, length uint64) (hostarch.AddrRange, bool) {
	ar := areaRange(addr, length)
	if ar.Length() == 0 || ar.Start >= ptrace.StubStart {
		return hostarch.AddrRange{}, false
	}
	return hostarch.AddrRange{Start: ar.Start.RoundDown(), End: min(ar.End, ptrace.StubStart).MustRoundUp()}, true
}

// addPageRange returns rs (sorted, disjoint, none touching another) with
// ar added: merged with the ranges it overlaps or touches, and if that
// makes more than limit ranges, the two with the smallest gap between
// them joined into one.
func addPageRange(rs []hostarch.AddrRange, ar hostarch.AddrRange, limit int) []hostarch.AddrRange {
	// i is the first range that ends at or after ar.Start (may touch it),
	// j the first that starts after ar.End (cannot touch it).
	i := sort.Search(len(rs), func(k int) bool { return rs[k].End >= ar.Start })
	j := i
	for j < len(rs) && rs[j].Start <= ar.End {
		ar.Start = min(ar.Start, rs[j].Start)
		ar.End = max(ar.End, rs[j].End)
		j++
	}
	rs = slices.Replace(rs, i, j, ar)
	if len(rs) > limit && len(rs) > 1 {
		best := 0
		for k := 1; k+1 < len(rs); k++ {
			if rs[k+1].Start-rs[k].End < rs[best+1].Start-rs[best].End {
				best = k
			}
		}
		rs[best].End = rs[best+1].End
		rs = slices.Delete(rs, best+1, best+2)
	}
	return rs
}

// kernelWrites returns the memory that the host kernel may write on behalf
// of a task using sp at any moment from now on, without the tracer seeing
// the task stop first: every live task's kernel areas that it writes
// (rseq, clear_child_tid), the frame of a signal it was given and may not
// have written yet, and the buffers of the system call it made through
// the host (which may be blocked in it), except those of forker, whose
// call is the fork being served. A fork keeps these pages writable in the
// parent, and gives the child copies of them (mm.ForkPinned): made
// read-only, a host write to them would fail where Linux's would break
// copy-on-write, killing the thread (rseq, a signal frame) or failing
// its call with EFAULT. (Reads need nothing: the parent's pages stay
// mapped, read-only.)
func (s *Sandbox) kernelWrites(sp *space, forker *task) []hostarch.AddrRange {
	var out []hostarch.AddrRange
	for p := range sp.procs {
		for _, t := range p.tasks {
			if t.dead() {
				continue
			}
			if r := t.kareas.rseq; r.Length() > 0 {
				out = append(out, r)
			}
			if t.kareas.ctid != 0 {
				out = append(out, areaRange(uint64(t.kareas.ctid), 4))
			}
			out = append(out, t.kframe...)
			if t != forker {
				out = append(out, t.kcall...)
			}
		}
	}
	return out
}
