package ptrace

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The injector: a system call made by a stopped thread of a traced process
// on its tracer's behalf, through the stub's "syscall; int3" (see
// StubSyscallOff), with registers set for the call. It is the one way
// vmspace makes system calls in processes it traces: the start-up of this
// package's stubs (before their comm page exists), and every call the
// sandbox makes in a program's threads (mmap, munmap, the seccomp filter,
// opening files...). A stub of this package that is up runs its other
// loops (the comm page's inject and serve loops: see tracer), which need
// no registers set per call.
//
// The injector sets the registers and resumes the thread, then waits for
// its stops through a Waiter, which owns the wait: a tracer of many
// threads (the sandbox) keeps the reports of other threads that come
// first, and knows when the thread being used can no longer stop (its
// process being killed: see the sandbox's waitFor).

// Waiter waits for the reports of the thread an injected call runs in and
// decides about the stops that interrupt the call.
type Waiter interface {
	// Wait returns the thread's next report. An error ends the call
	// (returned as it is).
	Wait() (unix.WaitStatus, error)
	// Interrupted is called at a signal-delivery-stop of the thread
	// before the call ends (a signal that arrived meanwhile, with its
	// details in si), and at a ptrace event other than an exit-stop or a
	// seccomp stop (si nil). It returns the signal to resume the thread
	// with (0: none; the Waiter keeps the signal for later, or drops
	// it), or an error to give up the call with.
	Interrupted(ws unix.WaitStatus, si *Siginfo) (unix.Signal, error)
}

// ExitError is the error of an injected call whose thread began to exit
// (its exit-stop, PTRACE_EVENT_EXIT) or ended: Status is that report,
// which the caller may need to serve.
type ExitError struct {
	Status unix.WaitStatus
}

func (e *ExitError) Error() string {
	if e.Status.Stopped() {
		return "ptrace: the thread is exiting (exit-stop)"
	}
	return fmt.Sprintf("ptrace: the thread ended (status %#x)", uint32(e.Status))
}

// ErrInjectFault is wrapped by the error of an injected call whose thread
// faulted in the stub's code before the call ran (its code page, or
// memory the kernel accesses for the thread on the way, was missing).
var ErrInjectFault = fmt.Errorf("ptrace: fault during an injected system call: %w", unix.EFAULT)

// ErrInjectInterrupted is wrapped by the error of an injected call
// interrupted more than MaxInjectStops times.
var ErrInjectInterrupted = fmt.Errorf("ptrace: injected system call interrupted too often: %w", unix.EINTR)

// MaxInjectStops bounds the stops (signals arriving) that one injected
// system call may see before the injector gives up on it.
const MaxInjectStops = 1 << 16

// OpError is the error of a ptrace request for the thread that failed
// (ESRCH: it is no longer stopped, normally because it was killed).
type OpError struct {
	Op  string
	Err error
}

func (e *OpError) Error() string { return "ptrace: " + e.Op + ": " + e.Err.Error() }
func (e *OpError) Unwrap() error { return e.Err }

// Inject makes thread tid, stopped, run system call nr with args from the
// stub's "syscall; int3" at ip, and returns the raw result (a negative
// errno is a result, not an error). regs are the thread's registers; the
// call runs with them but for rip, rax, the argument registers, orig_rax
// and rflags, and the thread's registers are left clobbered: the caller
// restores them before the thread resumes its own code. The thread is left
// stopped at a signal-delivery-stop (the int3's SIGTRAP, suppressed on
// resumption unless the caller delivers a signal there), except after an
// ExitError.
//
// The error is the Waiter's, an *ExitError, an *OpError, or wraps
// ErrInjectFault or ErrInjectInterrupted; last is the last report seen.
func Inject(tid int, regs *unix.PtraceRegs, ip uint64, nr uintptr, args *[6]uintptr, w Waiter) (result uintptr, last unix.WaitStatus, err error) {
	return InjectAt(tid, regs, ip, ip+StubTrapDelta, nr, args, w)
}

// InjectAt is Inject from a syscall instruction at ip whose caller stops
// with rip at trap (the helper thread's clone: StubHelperCloneOff).
func InjectAt(tid int, regs *unix.PtraceRegs, ip, trap uint64, nr uintptr, args *[6]uintptr, w Waiter) (result uintptr, last unix.WaitStatus, err error) {
	r := *regs
	r.Rip = ip
	r.Rax = uint64(nr)
	r.Orig_rax = ^uint64(0)
	r.Rdi, r.Rsi, r.Rdx, r.R10, r.R8, r.R9 = uint64(args[0]), uint64(args[1]), uint64(args[2]), uint64(args[3]), uint64(args[4]), uint64(args[5])
	r.Eflags = 0x202 // IF, and the always-set bit 1
	if err := SetRegs(tid, &r); err != nil {
		return 0, 0, &OpError{"PTRACE_SETREGS", err}
	}
	if err := Cont(tid, 0); err != nil {
		return 0, 0, &OpError{"PTRACE_CONT", err}
	}
	for stops := 0; ; {
		ws, err := w.Wait()
		if err != nil {
			return 0, ws, err
		}
		if ws.Exited() || ws.Signaled() || Event(ws) == unix.PTRACE_EVENT_EXIT {
			return 0, ws, &ExitError{ws}
		}
		if !ws.Stopped() {
			continue
		}
		if Event(ws) == unix.PTRACE_EVENT_SECCOMP {
			// Made from outside the code page (at start-up, from the
			// image's page): let it through.
			if err := Cont(tid, 0); err != nil {
				return 0, ws, &OpError{"PTRACE_CONT", err}
			}
			continue
		}
		var si *Siginfo
		if Event(ws) == 0 {
			if ws.StopSignal() == unix.SIGTRAP {
				var rr unix.PtraceRegs
				if err := GetRegs(tid, &rr); err != nil {
					return 0, ws, &OpError{"PTRACE_GETREGS", err}
				}
				if rr.Rip == trap {
					return uintptr(rr.Rax), ws, nil
				}
			}
			si = new(Siginfo)
			if GetSiginfo(tid, si) != nil {
				si = nil // a group-stop
			}
		}
		if stops++; stops > MaxInjectStops {
			return 0, ws, fmt.Errorf("%w: system call %d in thread %d, %d stops", ErrInjectInterrupted, nr, tid, stops)
		}
		if si != nil && si.Synchronous(ws.StopSignal()) {
			// The thread faulted at the code page: going back to user
			// mode, the kernel could not write its rseq area, say.
			// Retrying would fault again forever. The signal is not
			// kept: the thread gets it again when it returns to its
			// own code, as it would on Linux.
			var rr unix.PtraceRegs
			if err := GetRegs(tid, &rr); err != nil {
				return 0, ws, &OpError{"PTRACE_GETREGS", err}
			}
			if rr.Rip == ip+StubSyscallLen {
				// After the system call: it ran.
				return uintptr(rr.Rax), ws, nil
			}
			return 0, ws, fmt.Errorf("%w: %v (code %d) in thread %d at %#x", ErrInjectFault, ws.StopSignal(), si.Code(), tid, rr.Rip)
		}
		sig, err := w.Interrupted(ws, si)
		if err != nil {
			return 0, ws, err
		}
		if err := Cont(tid, sig); err != nil {
			return 0, ws, &OpError{"PTRACE_CONT", err}
		}
	}
}

// IsExit reports whether err says the thread of an injected call exited.
func IsExit(err error) bool {
	var e *ExitError
	return errors.As(err, &e)
}

// Siginfo is a raw siginfo_t (128 bytes), as PTRACE_GETSIGINFO gives it.
type Siginfo [128]byte

// Signo returns si_signo.
func (s *Siginfo) Signo() int32 { return int32(le32(s[0:])) }

// Code returns si_code: > 0 for a signal the kernel raised (a fault),
// <= 0 for one sent (SI_USER, SI_TKILL, SI_QUEUE...).
func (s *Siginfo) Code() int32 { return int32(le32(s[8:])) }

// Addr returns si_addr for SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGTRAP
// (si_pid and si_uid for sent signals).
func (s *Siginfo) Addr() uint64 { return uint64(le32(s[16:])) | uint64(le32(s[20:]))<<32 }

// Pid returns si_pid for a signal sent by kill(2) and friends.
func (s *Siginfo) Pid() int32 { return int32(le32(s[16:])) }

// SetFault makes s a kernel-generated fault signal.
func (s *Siginfo) SetFault(sig unix.Signal, code int32, addr uint64) {
	*s = Siginfo{}
	put32(s[0:], uint32(sig))
	put32(s[8:], uint32(code))
	put32(s[16:], uint32(addr))
	put32(s[20:], uint32(addr>>32))
}

// Synchronous reports whether sig, with s, was raised by the kernel for
// what the thread was doing (a fault, a trap, a failed rseq update), not
// sent.
func (s *Siginfo) Synchronous(sig unix.Signal) bool {
	switch sig {
	case unix.SIGSEGV, unix.SIGBUS, unix.SIGILL, unix.SIGFPE, unix.SIGTRAP:
		return s.Code() > 0
	}
	return false
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func put32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}

// Thin wrappers of the ptrace requests the injector and its users make.
// Each must be called on the thread that traces tid.

// GetRegs is PTRACE_GETREGS.
func GetRegs(tid int, r *unix.PtraceRegs) error {
	return ptrace(unix.PTRACE_GETREGS, tid, 0, uintptr(unsafe.Pointer(r)))
}

// SetRegs is PTRACE_SETREGS.
func SetRegs(tid int, r *unix.PtraceRegs) error {
	return ptrace(unix.PTRACE_SETREGS, tid, 0, uintptr(unsafe.Pointer(r)))
}

// GetSiginfo is PTRACE_GETSIGINFO.
func GetSiginfo(tid int, si *Siginfo) error {
	return ptrace(unix.PTRACE_GETSIGINFO, tid, 0, uintptr(unsafe.Pointer(si)))
}

// SetSiginfo is PTRACE_SETSIGINFO.
func SetSiginfo(tid int, si *Siginfo) error {
	return ptrace(unix.PTRACE_SETSIGINFO, tid, 0, uintptr(unsafe.Pointer(si)))
}

// Cont is PTRACE_CONT delivering sig (0: none).
func Cont(tid int, sig unix.Signal) error { return ptrace(unix.PTRACE_CONT, tid, 0, uintptr(sig)) }

// Event returns the ptrace event of a stop status (PTRACE_EVENT_...), 0 if
// none.
func Event(ws unix.WaitStatus) int {
	if !ws.Stopped() || ws.StopSignal() != unix.SIGTRAP {
		return 0
	}
	return int(ws>>16) & 0xff
}

func ptrace(req, tid int, addr, data uintptr) error {
	_, _, e := unix.RawSyscall6(unix.SYS_PTRACE, uintptr(req), uintptr(tid), addr, data, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}
