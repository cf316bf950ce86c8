package sandbox

import (
	"fmt"

	"github.com/vmspace/vmspace/hostarch"
	"golang.org/x/sys/unix"
)

// task is one program thread.
type task struct {
	// tid is the thread id (it becomes the pid when a thread execs).
	tid int
	// p is the task's process (the same for its whole life).
	p *process
	// regs are the application's registers at the current stop, valid if
	// regsValid (reset at every stop).
	regs      unix.PtraceRegs
	regsValid bool
	// clobbered is true if the hardware registers are not regs (after an
	// injected system call).
	clobbered bool
	// changed is true if a handler changed regs for the host to run the
	// stopped system call with (without injecting anything).
	changed bool
	// sigStop is true if the current stop is a signal-delivery-stop, at
	// which a signal can be delivered on resumption.
	sigStop bool
	// ip is the address of the "syscall; int3" used to inject system
	// calls.
	ip uint64
	// fresh is true until the task's first stop has been seen.
	fresh bool
	// awaitExit is true while the task, stopped at a fork event, runs to
	// the exit of its fork system call (resumed with PTRACE_SYSCALL), where
	// its fork is finished (forkDone).
	awaitExit bool
	// atExit, if not nil, is to be called at the exit of the system call
	// the task is resumed into (resumed with PTRACE_SYSCALL), with the
	// task stopped there (truncate.go).
	atExit func(*task)
	// inKernel is true while the task is stopped inside a system call
	// (at a clone event), where no system call can be injected.
	inKernel bool
	// parked is true while the task is kept stopped at a fork event until
	// the child has copied its memory.
	parked bool
	// reown are the parent's private ranges that the child copied at the
	// last fork, which the parent takes back (forkDone).
	reown []hostarch.AddrRange
	// settid is the word saved at the entry of the task's clone with
	// CLONE_CHILD_SETTID (sysClone); settidFork is it, once the clone
	// event has shown that the clone made a child, to restore at
	// forkDone.
	settid, settidFork *settidSave
	// dead is true once it has exited, or has been given up for dead
	// while being killed with its process (its exit report, still to
	// come, is then served by the main loop).
	dead bool
	// stopKept is true while a stop of the task, taken by a wait for
	// another task, waits in Sandbox.deferred: the task is stopped, and
	// must stay so until the main loop serves that stop.
	stopKept bool
	// pending are signals that arrived while the sandbox was injecting
	// system calls, to deliver when the task resumes.
	pending []pendingSignal
	// expectStop counts SIGSTOPs the sandbox sent to stop the task, still
	// to be suppressed.
	expectStop int
	// altStack is the thread's alternate signal stack as the program set
	// it with sigaltstack (empty if none).
	altStack hostarch.AddrRange
	// lastFault describes the last page fault served, and lastFaultGen
	// the generation of the address space's host mappings right after it
	// was served, to detect one that repeats without progress (fault.go).
	lastFault    faultKey
	lastFaultGen uint64
	// faultRepeats counts consecutive repeats of lastFault without
	// progress.
	faultRepeats int
	// mapGen is 1 + its address space's stubAS.gen when the task was
	// last resumed with no unmap pending, or 0: a fork the task makes
	// while the count is unchanged gives the child exactly the mappings
	// the shadow shows.
	mapGen uint64
	// kareas are the areas the host kernel writes or reads on the
	// thread's behalf, kept mapped in the host (kareas.go).
	kareas kernelAreas
}

// errTaskDead is returned when a task dies while the sandbox uses it.
var errTaskDead = fmt.Errorf("sandbox: task died: %w", unix.ESRCH)

func (s *Sandbox) newTask(p *process, tid int) *task {
	t := &task{tid: tid, p: p, ip: uint64(codeAddr) + sysOff, fresh: true}
	p.tasks[tid] = t
	s.tasks[tid] = t
	return t
}
