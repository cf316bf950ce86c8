package sandbox

import (
	"fmt"
	"os"
	"sort"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/platform/ptrace"
	"golang.org/x/sys/unix"
)

// A heap shrink without an injected call.
//
// A brk that shrinks the heap frees its tail: the manager drops the pages
// and the host mapping of the tail must go before the program runs on,
// which costs an injected munmap after the stop (glibc trims its heap
// often, a page or a few at a time). Instead, the program's own stopped
// brk call is turned into the host call that unmaps the tail and returns
// what brk returns, the new break:
//
//	mmap(newBrk, tail, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED|MAP_NORESERVE, -1, 0)
//
// which replaces the tail by an inaccessible reservation (a "hole": no
// pages, no commit charge) and returns newBrk. The record of host
// mappings counts a hole as unmapped, as the manager does; an access
// there faults with SEGV_ACCERR rather than SEGV_MAPERR, which the fault
// path reads as "no mapping" where the record has none (fault.go), and
// every later host mapping there is a MAP_FIXED one that replaces it.
// Nothing the program can see changes: its maps, mincore, RSS and
// /proc views are the manager's, a later regrow gets new zeroed pages,
// and an access to the tail in between gets Linux's SIGSEGV.
//
// This is done only where it is safe without a stop after the call:
//   - the fast path is off: its helper makes its unmaps itself, and its
//     filter would take the rewritten call for the program's own mmap
//     (a notification served as one, a PROT_NONE vma in the manager);
//   - the new break is page-aligned, so that mmap's result is brk's;
//   - t is the only live task of its address space, so that no other
//     thread can touch the tail before t's own call, which runs first
//     when t resumes;
//   - no call was injected into t during this stop (a stop that injected
//     calls replays its system call from the instruction, which would be
//     the rewritten one, seen by the filter as the program's mmap).
//
// Otherwise the tail's unmap stays pending and is injected as before.
//
// The tail's pages, freed by the manager, stay in the memory file (no
// freed page is released: Sandbox.tailsHeld) until t stops at the exit
// of its call (resumed with PTRACE_SYSCALL) and the call's result shows
// the tail replaced; if the host refused it (ENOMEM past
// vm.max_map_count, which a program can arrange), the tail is unmapped
// there by an injected munmap and brk returns the new break all the
// same. A process that dies meanwhile keeps them held until its address
// space is released, after its host process has ended. Each hole counts
// against the host's vm.max_map_count, so the span of the holes is kept
// (stubAS.holes) and unmapped where the record shows nothing when the
// host refuses a mapping, before the retry that follows the manager's
// eviction of its host mappings (stubAS.MapFile).

// brkShrinkResult returns the result of a brk whose manager call moved the
// break from oldBrk to newBrk (with err), as a heap shrink whose host
// unmap the program's own call makes (brkTail), if it is one.
func (s *Sandbox) brkShrinkResult(t *task, oldBrk, newBrk hostarch.Addr, err error) (sysResult, bool) {
	if err != nil || newBrk >= oldBrk || !newBrk.IsPageAligned() || s.fp != nil || t.state != taskStopped {
		return sysResult{}, false
	}
	end, ok := oldBrk.RoundUp()
	if !ok || end <= newBrk {
		return sysResult{}, false
	}
	return sysResult{act: actBrkTail, val: uintptr(newBrk), tail: hostarch.AddrRange{Start: newBrk, End: end}}, true
}

// brkTailSafe reports whether t may make the host unmap of a heap tail
// itself (see above).
func (s *Sandbox) brkTailSafe(t *task) bool {
	p := t.p
	if t.dead() || t.regState == regsOwed || p.as == nil || p.sp == nil || len(p.sp.procs) != 1 || p.as.released {
		return false
	}
	for _, o := range p.tasks {
		if o != t && !o.dead() {
			return false
		}
	}
	return true
}

// brkTail finishes a heap shrink (res, from brkShrinkResult) at t's
// system call stop: it rewrites t's brk into the host call that unmaps
// the tail and returns the new break, and lets t run it to its exit
// (brkTailDone), or, where that is not safe, returns brk's plain result
// (the tail's unmap then stays pending, made by an injected call).
//
// The tail's pages, freed by the manager, may still be mapped by t's
// process until its call has been seen to succeed: until then no freed
// page is released (tailsHeld), whatever else is flushed meanwhile.
func (s *Sandbox) brkTail(t *task, res sysResult) sysResult {
	plain := ret(res.val)
	if !s.brkTailSafe(t) {
		return plain
	}
	as := t.p.as
	as.unpend(res.tail)
	s.tailsHeld[as] = struct{}{}
	// Every other deferred unmap is made now (the tail's pages stay
	// held: t's process maps them until its call has run).
	s.keepUnflushedKernelAreas()
	s.shootdown()
	if t.dead() {
		return sysResult{act: actDone}
	}
	if t.regState == regsOwed {
		// The flush injected calls into t: its stop is no longer the
		// system call's. Unmap the tail the ordinary way.
		if s.unmapTail(t, res.tail) {
			return plain
		}
		return sysResult{act: actDone}
	}
	r := &t.regs
	r.Orig_rax = unix.SYS_MMAP
	r.Rdi = uint64(res.tail.Start)
	r.Rsi = res.tail.Length()
	r.Rdx = unix.PROT_NONE
	r.R10 = unix.MAP_PRIVATE | unix.MAP_ANONYMOUS | unix.MAP_FIXED | unix.MAP_NORESERVE
	r.R8 = ^uint64(0)
	r.R9 = 0
	if brkTailHook != nil {
		brkTailHook(s, r)
	}
	if err := ptraceSetRegs(t.tid, r); err != nil {
		return sysResult{act: actDone}
	}
	prev := t.atExit
	t.atExit = func(t *task) {
		if prev != nil {
			prev(t)
		}
		s.brkTailDone(t, as, res)
	}
	s.resume(t, 0, nil)
	return sysResult{act: actDone}
}

// brkTailHook, if not nil, may change the registers of the host call that
// brkTail makes of a heap shrink (tests make it fail).
var brkTailHook func(s *Sandbox, r *unix.PtraceRegs)

// brkTailDone is called at the exit of the host call that brkTail made of
// t's brk, for the heap tail of res in as. If the call replaced the tail,
// its pages may be released and the hole is noted; if it failed (the
// host past vm.max_map_count, say), the tail is unmapped by an injected
// call and brk returns the new break all the same.
func (s *Sandbox) brkTailDone(t *task, as *stubAS, res sysResult) {
	if as.released || t.p.as != as || s.fetchRegs(t) != nil {
		// Gone: the pages stay held until the address space is
		// released (holdingTails).
		return
	}
	if t.regs.Rax == uint64(res.tail.Start) {
		delete(s.tailsHeld, as)
		as.addHole(res.tail)
		return
	}
	if debug {
		e, _ := errnoOf(uintptr(t.regs.Rax))
		fmt.Fprintf(os.Stderr, "vmspace-debug: pid %d: the heap tail %v stayed mapped (%v): unmapping it\n", t.p.pid, res.tail, e)
	}
	t.regs.Orig_rax = unix.SYS_BRK
	t.regs.Rax = uint64(res.val)
	if !s.unmapTail(t, res.tail) {
		return
	}
	if !t.dead() {
		t.regState = regsOwed
	}
}

// unmapTail unmaps a heap tail of t's address space whose pages are held
// (tailsHeld) with an injected munmap, and lets the pages go. It reports
// whether it did; otherwise t is dead or killed, and the pages stay held
// until its address space is released.
func (s *Sandbox) unmapTail(t *task, tail hostarch.AddrRange) bool {
	as := t.p.as
	r, err := s.inject(t, unix.SYS_MUNMAP, uintptr(tail.Start), uintptr(tail.Length()))
	if e, bad := errnoOf(r); err == nil && bad && e == unix.ENOMEM && as.holes.Length() > 0 {
		// The split the munmap needs is past vm.max_map_count.
		as.clearHoles()
		r, err = s.inject(t, unix.SYS_MUNMAP, uintptr(tail.Start), uintptr(tail.Length()))
	}
	if err != nil {
		return false
	}
	if e, bad := errnoOf(r); bad {
		s.killProcess(t.p, fmt.Sprintf("munmap(%v, %#x) failed: %v", tail.Start, tail.Length(), e))
		return false
	}
	delete(s.tailsHeld, as)
	return true
}

// holdingTails reports whether freed pages must stay held because a heap
// tail's host unmap is still under way (brkTail). Address spaces released
// meanwhile (their processes gone, and the host mappings with them) are
// forgotten.
func (s *Sandbox) holdingTails() bool {
	for as := range s.tailsHeld {
		if as.released {
			delete(s.tailsHeld, as)
		}
	}
	return len(s.tailsHeld) > 0
}

// addHole notes that the host has an inaccessible reservation at ar.
func (as *stubAS) addHole(ar hostarch.AddrRange) {
	if as.holes.Length() == 0 {
		as.holes = ar
		return
	}
	as.holes.Start = min(as.holes.Start, ar.Start)
	as.holes.End = max(as.holes.End, ar.End)
}

// clearHoles removes the host's reservations left by heap shrinks (each
// counts against vm.max_map_count): every piece of their span that the
// record shows unmapped (nor the host's vDSO) is unmapped. Pieces that
// cannot be unmapped now are left; the span is forgotten either way.
func (as *stubAS) clearHoles() {
	span := as.holes
	as.holes = hostarch.AddrRange{}
	if as.released || span.Length() == 0 {
		return
	}
	var busy []hostarch.AddrRange
	for _, pc := range as.h.PiecesIn([]hostarch.AddrRange{span}) {
		busy = append(busy, pc.Range)
	}
	for _, r := range as.s.hostVDSORanges(as.sp.mm) {
		if r.Overlaps(span) {
			busy = append(busy, r.Intersect(span))
		}
	}
	sort.Slice(busy, func(i, j int) bool { return busy[i].Start < busy[j].Start })
	c := injector{as: as}
	next := span.Start
	for _, b := range append(busy, hostarch.AddrRange{Start: span.End, End: span.End}) {
		if b.Start > next && !c.Unmap(hostarch.AddrRange{Start: next, End: b.Start}) {
			return
		}
		next = max(next, b.End)
	}
}

// hole reports whether the host's mapping at addr, if any, is not one the
// record shows: a fault there with SEGV_ACCERR hit a hole (an inaccessible
// reservation left by brkTail), not a mapping without the permission.
func (as *stubAS) hole(addr hostarch.Addr) bool {
	page := addr.RoundDown()
	if as.released || page >= ptrace.StubStart {
		return false
	}
	for _, r := range as.s.hostVDSORanges(as.sp.mm) {
		if r.Contains(page) {
			return false // the host's own vDSO
		}
	}
	return len(as.h.PiecesIn([]hostarch.AddrRange{{Start: page, End: page + hostarch.PageSize}})) == 0
}
