package sandbox

import (
	"unsafe"

	"github.com/vmspace/vmspace/platform/ptrace"
	"golang.org/x/sys/unix"
)

// Thin wrappers of the ptrace requests and waits the tracer makes (those
// the injector makes too are the ptrace platform's). All must be called on
// the tracer thread.

// siginfo is a raw siginfo_t, decoded by ptrace.Siginfo.
type siginfo ptrace.Siginfo

func (s *siginfo) signo() int32 { return (*ptrace.Siginfo)(s).Signo() }
func (s *siginfo) code() int32  { return (*ptrace.Siginfo)(s).Code() }

// addr is si_addr for SIGSEGV and SIGBUS, si_pid|si_uid for others.
func (s *siginfo) addr() uint64 { return (*ptrace.Siginfo)(s).Addr() }

// pid is si_pid for signals sent by kill(2) and friends.
func (s *siginfo) pid() int32 { return (*ptrace.Siginfo)(s).Pid() }

// setFault makes s a kernel-generated fault signal.
func (s *siginfo) setFault(sig unix.Signal, code int32, addr uint64) {
	(*ptrace.Siginfo)(s).SetFault(sig, code, addr)
}

// Signal codes (si_code).
const (
	siUser     = 0
	siKernel   = 0x80
	siTkill    = -6
	segvMapErr = 1
	segvAccErr = 2
	busAdrErr  = 2
)

func ptraceGetSiginfo(tid int, si *siginfo) error {
	return ptrace.GetSiginfo(tid, (*ptrace.Siginfo)(si))
}

func ptraceSetSiginfo(tid int, si *siginfo) error {
	return ptrace.SetSiginfo(tid, (*ptrace.Siginfo)(si))
}

func ptraceGetRegs(tid int, r *unix.PtraceRegs) error { return ptrace.GetRegs(tid, r) }

func ptraceSetRegs(tid int, r *unix.PtraceRegs) error { return ptrace.SetRegs(tid, r) }

func ptraceCont(tid int, sig unix.Signal) error { return ptrace.Cont(tid, sig) }

// ptraceDetach lets tid go on untraced.
func ptraceDetach(tid int) error {
	_, _, e := unix.RawSyscall6(unix.SYS_PTRACE, unix.PTRACE_DETACH, uintptr(tid), 0, 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

func ptraceEventMsg(tid int) (uint64, error) {
	var msg uint64
	_, _, e := unix.RawSyscall6(unix.SYS_PTRACE, unix.PTRACE_GETEVENTMSG, uintptr(tid), 0, uintptr(unsafe.Pointer(&msg)), 0, 0)
	if e != 0 {
		return 0, e
	}
	return msg, nil
}

// ptracePeekSharedSiginfo copies the siginfo of the signals queued for
// the whole process of stopped tracee tid (PTRACE_PEEKSIGINFO with
// PTRACE_PEEKSIGINFO_SHARED), the oldest first, into sis, and returns how
// many it copied.
func ptracePeekSharedSiginfo(tid int, sis []siginfo) (int, error) {
	const peekSiginfo, peekShared = 0x4209, 1
	if len(sis) == 0 {
		return 0, nil
	}
	args := struct {
		off   uint64
		flags uint32
		nr    int32
	}{0, peekShared, int32(len(sis))}
	n, _, e := unix.RawSyscall6(unix.SYS_PTRACE, peekSiginfo, uintptr(tid),
		uintptr(unsafe.Pointer(&args)), uintptr(unsafe.Pointer(&sis[0])), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func ptraceGetSigmask(tid int) (uint64, error) {
	var m uint64
	_, _, e := unix.RawSyscall6(unix.SYS_PTRACE, unix.PTRACE_GETSIGMASK, uintptr(tid), 8, uintptr(unsafe.Pointer(&m)), 0, 0)
	if e != 0 {
		return 0, e
	}
	return m, nil
}

func ptraceSetSigmask(tid int, m uint64) error {
	_, _, e := unix.RawSyscall6(unix.SYS_PTRACE, unix.PTRACE_SETSIGMASK, uintptr(tid), 8, uintptr(unsafe.Pointer(&m)), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// wait4 waits for a state change of pid (-1: any) with __WALL, retrying on
// EINTR. With __WNOTHREAD: only the tracer thread's own tracees and
// children, never those of another thread of vmspace (another Run's, or a
// child the embedding program started and waits for itself).
func wait4(pid int, flags int) (int, unix.WaitStatus, error) {
	var ws unix.WaitStatus
	for {
		wpid, err := unix.Wait4(pid, &ws, flags|unix.WALL|unix.WNOTHREAD, nil)
		if err == unix.EINTR {
			continue
		}
		return wpid, ws, err
	}
}

// ptrace events (status >> 16 of a SIGTRAP stop).
const (
	eventFork    = unix.PTRACE_EVENT_FORK
	eventVfork   = unix.PTRACE_EVENT_VFORK
	eventClone   = unix.PTRACE_EVENT_CLONE
	eventExec    = unix.PTRACE_EVENT_EXEC
	eventSeccomp = unix.PTRACE_EVENT_SECCOMP
)

// event returns the ptrace event of a stop status, 0 if none.
func event(ws unix.WaitStatus) int { return ptrace.Event(ws) }

// traceOptions are the ptrace options of every program task.
const traceOptions = unix.PTRACE_O_TRACESECCOMP | unix.PTRACE_O_TRACECLONE | unix.PTRACE_O_TRACEFORK |
	unix.PTRACE_O_TRACEVFORK | unix.PTRACE_O_TRACEEXEC | unix.PTRACE_O_EXITKILL | unix.PTRACE_O_TRACESYSGOOD |
	unix.PTRACE_O_TRACEEXIT

// sysStopSig is the stop signal of a syscall-stop (PTRACE_O_TRACESYSGOOD).
const sysStopSig = unix.SIGTRAP | 0x80

// ptraceSyscall resumes tid until its next syscall-stop (from inside a
// system call, as at a ptrace event: the system call's exit).
func ptraceSyscall(tid int, sig unix.Signal) error {
	_, _, e := unix.RawSyscall6(unix.SYS_PTRACE, unix.PTRACE_SYSCALL, uintptr(tid), 0, uintptr(sig), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}
