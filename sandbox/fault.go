package sandbox

import (
	"errors"
	"fmt"
	"os"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/mm"
	"golang.org/x/sys/unix"
)

// Page faults arrive as SIGSEGV signal-delivery-stops. The host's si_code
// says whether the host had no mapping at the address (SEGV_MAPERR) or one
// without the needed permission (SEGV_ACCERR); ptrace does not say whether
// the access was a read, a write or an instruction fetch, so it is
// inferred:
//
//   - an address within the 16 bytes at rip (the longest instruction) is
//     an instruction fetch first;
//   - no host mapping: a read (a write to copy-on-write memory then faults
//     again, with SEGV_ACCERR), except in a shared writable mapping, where
//     it is served as a write, which Linux's read fault there does too
//     (the page is mapped writable: faultVMA), and in a range registered
//     with a userfaultfd, whose message tells the access: there the
//     faulting instruction is decoded (uffd_access.go);
//   - a host mapping without the permission: a write, since every mapping
//     vmspace makes is readable (but a hole, a reservation brk.go leaves
//     where the record has no mapping, is no mapping).
//
// The manager then maps the whole pma into the process. A fault that the
// manager refuses becomes the signal the program gets on Linux.
//
// A fault the manager serves without the host mapping changing at all
// faults again: the inferred access was wrong (a write taken for a read)
// or the host mapping cannot satisfy it. Linux never loops on a fault it
// serves, so vmspace must not either, yet a fault that simply happens
// again (the same instruction touching the same page after MADV_DONTNEED
// or munmap and mmap took it away) is progress and must be served as often
// as it comes. The two are told apart exactly by the address space's
// mapping generation (stubAS.generation): a repeat is the same fault (page,
// instruction, si_code) coming back with no host mapping made or removed
// in the address space since vmspace served it the last time. A repeat is
// retried as a write (the only access the inference can miss), and after
// maxFaultRepeats repeats the fault becomes the program's signal.

// faultKey identifies a fault, to notice one that repeats: the faulting
// page, the instruction pointer and the host's si_code.
type faultKey struct {
	page uint64
	ip   uint64
	code int32
}

// maxFaultRepeats is how often the same fault may repeat without any
// change to the host mappings before vmspace gives up and delivers the
// signal.
const maxFaultRepeats = 3

// fault serves a SIGSEGV or SIGBUS stop of t caused by an access.
func (s *Sandbox) fault(t *task, sig unix.Signal, si *siginfo) {
	p := t.p
	if sig != unix.SIGSEGV || p.mm == nil {
		s.resume(t, sig, si)
		return
	}
	if err := s.fetchRegs(t); err != nil {
		return
	}
	addr := si.addr()
	code := si.code()
	if code == segvAccErr && p.as != nil && p.as.hole(hostarch.Addr(addr)) {
		// A reservation the record counts as unmapped (brk.go).
		code = segvMapErr
	}
	key := faultKey{page: addr &^ (hostarch.PageSize - 1), ip: t.regs.Rip, code: code}
	if key == t.lastFault && p.as != nil && p.as.generation() == t.lastFaultGen {
		t.faultRepeats++
	} else {
		t.lastFault, t.faultRepeats = key, 0
	}
	near := addr >= t.regs.Rip && addr-t.regs.Rip < 16
	var tries []hostarch.AccessType
	switch {
	case t.faultRepeats >= maxFaultRepeats:
		// No progress.
	case code == segvMapErr && t.faultRepeats == 0:
		if near {
			tries = append(tries, hostarch.Execute)
		}
		shared, uffd := s.faultVMA(p, hostarch.Addr(addr))
		switch {
		case shared:
			// Served as a write: mapped writable at once, as Linux
			// maps a shared page at a read fault, so that the first
			// store costs one fault, not a read and a write fault.
			tries = append(tries, hostarch.Write, hostarch.Read)
		case uffd && !near && s.uffdFaultWrites(t, addr):
			// A userfaultfd's message says whether the access was
			// a write: the instruction tells (uffd_access.go).
			tries = append(tries, hostarch.Write)
		default:
			tries = append(tries, hostarch.Read)
		}
	case code == segvMapErr:
		// Mapped for reading, and faulting again as unmapped: try a
		// write (which remaps).
		tries = append(tries, hostarch.Write)
	default:
		if near {
			tries = append(tries, hostarch.Execute)
		}
		tries = append(tries, hostarch.Write)
	}
	var last error
	for _, at := range tries {
		err := p.mm.HandleUserFault(s.faultCtx(t), hostarch.Addr(addr), at, hostarch.Addr(t.regs.Rsp))
		if err == nil {
			if p.as != nil {
				t.lastFaultGen = p.as.generation()
			}
			s.resume(t, 0, nil)
			return
		}
		if t.dead() || s.parkUffd(t, err) {
			return
		}
		last = err
		var ae *mm.AccessError
		if errors.As(err, &ae) && ae.Signal == unix.SIGBUS {
			break
		}
	}
	t.lastFault, t.faultRepeats = faultKey{}, 0
	if debug {
		fmt.Fprintf(os.Stderr, "vmspace-debug: fault in %d at %#x (code %d, rip %#x, repeats %d): %v\n", t.tid, addr, code, t.regs.Rip, t.faultRepeats, last)
	}
	s.deliverFault(t, hostarch.Addr(addr), last)
}

// faultVMA looks at the vma at addr. writableShared reports whether it is
// a shared writable mapping whose fault, read or write, Linux serves by
// mapping the page writable (no copy-on-write, no dirty tracking the
// program can see): serving a read there as a write changes nothing but
// saves the write fault that would follow. uffd reports whether it is
// registered with a userfaultfd, whose handler is told the access type
// (such a range is never writableShared).
func (s *Sandbox) faultVMA(p *process, addr hostarch.Addr) (writableShared, uffd bool) {
	pg := addr.RoundDown()
	rs := p.mm.Regions(hostarch.AddrRange{Start: pg, End: pg + hostarch.PageSize})
	if len(rs) != 1 || !rs[0].Mapped {
		return false, false
	}
	for _, f := range rs[0].Flags {
		if f == "um" || f == "uw" || f == "ui" {
			return false, true
		}
	}
	return !rs[0].Private && len(rs[0].Perms) >= 2 && rs[0].Perms[1] == 'w', false
}

// deliverFault gives t the signal Linux would for a refused access at
// addr: the manager's SIGBUS or SIGSEGV, with SEGV_MAPERR if no vma
// covers addr, else SEGV_ACCERR. Like a fault's signal in Linux, it
// cannot be blocked or ignored: a blocked or ignored one kills.
func (s *Sandbox) deliverFault(t *task, addr hostarch.Addr, err error) {
	sig := unix.SIGSEGV
	var ae *mm.AccessError
	if errors.As(err, &ae) {
		sig = ae.Signal
	} else if err != nil && !errors.Is(err, errTaskDead) {
		fmt.Fprintf(s.stderr(), "vmspace: fault at %v in process %d: %v\n", addr, t.p.pid, err)
	}
	var si siginfo
	switch sig {
	case unix.SIGBUS:
		si.setFault(sig, busAdrErr, uint64(addr))
	default:
		code := int32(segvAccErr)
		if !s.hasVMA(t.p, addr) {
			code = segvMapErr
		}
		si.setFault(sig, code, uint64(addr))
	}
	s.force(t, sig)
	s.resume(t, sig, &si)
}

// hasVMA reports whether a vma of p covers addr.
func (s *Sandbox) hasVMA(p *process, addr hostarch.Addr) bool {
	if p.mm == nil {
		return false
	}
	pg := addr.RoundDown()
	rs := p.mm.Regions(hostarch.AddrRange{Start: pg, End: pg + hostarch.PageSize})
	return len(rs) > 0 && rs[0].Mapped
}

// force makes sig deliverable to t as Linux's force_sig_fault does: not
// blocked, and not ignored.
func (s *Sandbox) force(t *task, sig unix.Signal) {
	bit := uint64(1) << (uint(sig) - 1)
	if debug {
		m, err := ptraceGetSigmask(t.tid)
		fmt.Fprintf(os.Stderr, "vmspace-debug: force %v in %d: mask %#x (%v) ignored %v\n", sig, t.tid, m, err, ignored(t.p.pid, bit))
	}
	if m, err := ptraceGetSigmask(t.tid); err == nil && m&bit != 0 {
		ptraceSetSigmask(t.tid, m&^bit)
	}
	if ignored(t.p.pid, bit) {
		// rt_sigaction(sig, {SIG_DFL}, NULL, 8) with the action in the
		// scratch page.
		var act [32]byte
		if s.writeMem(t.p.pid, scratchAddr, act[:]) == nil {
			s.inject(t, unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(scratchAddr), 0, 8)
		}
	}
}

// ignored reports whether process pid ignores the signals in mask.
func ignored(pid int, mask uint64) bool {
	m, ok := statusSigMasks(pid, 0, "SigIgn")
	return ok && m[0]&mask != 0
}

// signalFrameSize is how much stack a signal frame may take below the
// stack pointer (the red zone, the siginfo and ucontext, and the largest
// XSAVE area).
const signalFrameSize = 16 << 10

// prepareSignalFrame makes sure that the host kernel can write the frame of
// a signal about to be delivered to t: the stack below its stack pointer
// and its alternate signal stack are mapped writable in the host. (If the
// kernel could not write the frame it would kill the program with SIGSEGV
// in place of the signal.) Stacks grow as they would on Linux.
func (s *Sandbox) prepareSignalFrame(t *task) {
	if err := s.fetchRegs(t); err != nil {
		return
	}
	p := t.p
	sp := hostarch.Addr(t.regs.Rsp)
	if as := t.altStack; as.Length() > 0 && !as.Contains(sp) {
		s.ensureStack(t, as)
	}
	low := sp - signalFrameSize
	if low > sp {
		low = 0
	}
	s.ensureStack(t, hostarch.AddrRange{Start: low.RoundDown(), End: sp.MustRoundUp()})
	// The kernel writes the frame once t runs, however late: until its
	// next stop, a fork keeps these pages writable (kernelWrites).
	t.kframe = append(t.kframe[:0], hostarch.AddrRange{Start: low, End: sp})
	if as := t.altStack; as.Length() > 0 && !as.Contains(sp) {
		t.kframe = append(t.kframe, hostarch.AddrRange{Start: max(as.Start, as.End-signalFrameSize), End: as.End})
	}
	if debug {
		fmt.Fprintf(os.Stderr, "vmspace-debug: signal frame for %d: sp %v alt %v covered %v/%v\n", t.tid, sp, t.altStack,
			p.as.covers(hostarch.AddrRange{Start: low.RoundDown(), End: sp.MustRoundUp()}, hostarch.Write), p.as.covers(t.altStack, hostarch.Write))
	}
}

// ensureStack maps ar (a stack, or part of one) writable in the host,
// faulting its pages in as writes from the top down, which grows a
// growsdown stack as Linux's kernel accesses do.
func (s *Sandbox) ensureStack(t *task, ar hostarch.AddrRange) {
	p := t.p
	if ar.Length() == 0 || p.as == nil || p.as.covers(ar, hostarch.Write) {
		return
	}
	for pg := ar.End - hostarch.PageSize; pg >= ar.Start && pg < ar.End; pg -= hostarch.PageSize {
		if p.as.covers(hostarch.AddrRange{Start: pg, End: pg + hostarch.PageSize}, hostarch.Write) {
			continue
		}
		if err := p.mm.HandleUserFault(s.ctx, pg, hostarch.Write, pg); err != nil {
			return
		}
	}
}
