package sandbox

import (
	"fmt"

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
//     thread can touch the tail between the release of its pages (the
//     shootdown, before t resumes) and t's own call, which runs first
//     when t resumes;
//   - no call was injected into t during this stop (a stop that injected
//     calls replays its system call from the instruction, which would be
//     the rewritten one, seen by the filter as the program's mmap).
//
// Otherwise the tail's unmap stays pending and is injected as before.

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
// the tail and returns the new break, and lets t run it (actDone), or,
// where that is not safe, returns brk's plain result (the tail's unmap
// then stays pending, made by an injected call).
func (s *Sandbox) brkTail(t *task, res sysResult) sysResult {
	plain := ret(res.val)
	if !s.brkTailSafe(t) {
		return plain
	}
	as := t.p.as
	as.unpend(res.tail)
	// Every other deferred unmap is made now, and the pages freed
	// (the tail's too: nothing but t, stopped, can reach them, and t's
	// first act is the call that unmaps them).
	s.keepUnflushedKernelAreas()
	s.shootdown()
	if t.dead() {
		return sysResult{act: actDone}
	}
	if t.regState == regsOwed {
		// The flush injected calls into t: its stop is no longer the
		// system call's. Unmap the tail the ordinary way.
		r, err := s.inject(t, unix.SYS_MUNMAP, uintptr(res.tail.Start), uintptr(res.tail.Length()))
		if err != nil {
			return sysResult{act: actDone}
		}
		if e, bad := errnoOf(r); bad {
			s.killProcess(t.p, fmt.Sprintf("munmap(%v, %#x) failed: %v", res.tail.Start, res.tail.Length(), e))
			return sysResult{act: actDone}
		}
		return plain
	}
	r := &t.regs
	r.Orig_rax = unix.SYS_MMAP
	r.Rdi = uint64(res.tail.Start)
	r.Rsi = res.tail.Length()
	r.Rdx = unix.PROT_NONE
	r.R10 = unix.MAP_PRIVATE | unix.MAP_ANONYMOUS | unix.MAP_FIXED | unix.MAP_NORESERVE
	r.R8 = ^uint64(0)
	r.R9 = 0
	if err := ptraceSetRegs(t.tid, r); err != nil {
		return sysResult{act: actDone}
	}
	s.resume(t, 0, nil)
	return sysResult{act: actDone}
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
