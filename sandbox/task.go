package sandbox

import (
	"fmt"

	"github.com/vmspace/vmspace/hostarch"
	"golang.org/x/sys/unix"
)

// task is one program thread. Like everything the Sandbox holds, it is used
// only by the tracer goroutine, locked to the tracer thread (see Sandbox):
// no field needs a lock.
type task struct {
	// tid is the thread id (it becomes the pid when a thread execs).
	tid int
	// p is the task's process (the same for its whole life).
	p *process
	// regs are the application's registers at the current stop, as
	// regState says (stale again at every stop). Tracer goroutine.
	regs unix.PtraceRegs
	// regState says what regs holds. Tracer goroutine.
	regState regState
	// callPC and callSP are the program counter (after the syscall
	// instruction) and stack pointer of the system call being served, for
	// the report's call sites; callSP is 0 where vmspace does not see the
	// registers (the fast path). Tracer goroutine.
	callPC, callSP uint64
	// state is where the task is in its life and what kind of stop it is
	// at (see taskState). Tracer goroutine.
	state taskState
	// ip is the address of the "syscall; int3" used to inject system
	// calls.
	ip uint64
	// atExit, if not nil, is to be called at the exit of the system call
	// the task is resumed into (resumed with PTRACE_SYSCALL), with the
	// task stopped there (truncate.go). Tracer goroutine.
	atExit func(*task)
	// forkShared are the private ranges the task's last fork made
	// copy-on-write, which it maps again read-only at the exit of its
	// fork (forkDone). Tracer goroutine.
	forkShared []hostarch.AddrRange
	// settid is the word saved at the entry of the task's clone with
	// CLONE_CHILD_SETTID (sysClone); settidFork is it, once the clone
	// event has shown that the clone made a child, to restore at
	// forkDone.
	settid, settidFork *settidSave
	// ptid is the word at the parent_tid address of the task's clone
	// with CLONE_PARENT_SETTID or CLONE_PIDFD, saved at its entry
	// (sysClone), which a refused fork puts back (failFork).
	ptid *settidSave
	// failedFork is the task's fork whose child the sandbox killed
	// unseen, until the exit of its fork system call (fork.go). Tracer
	// goroutine.
	failedFork *failedFork
	// stopKept is true while a stop of the task, taken by a wait for
	// another task, waits in Sandbox.deferred: the task is stopped, and
	// must stay so until the main loop serves that stop. It is not part
	// of state, which still describes the task before that stop (the
	// stop is not served yet). Tracer goroutine.
	stopKept bool
	// pending are signals that arrived while the sandbox was stopping
	// the task or injecting system calls, to deliver with their details
	// when it resumes, one per signal-delivery-stop (carryPending).
	// Tracer goroutine.
	pending []pendingSignal
	// expectStop counts SIGSTOPs the sandbox sent to stop the task, still
	// to be suppressed.
	expectStop int
	// takenSig is the signal of the task's signal-delivery-stop, not yet
	// served, that another thread took (waitDone): the stop is served
	// without it. Tracer goroutine.
	takenSig unix.Signal
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
	// lostAt is rip at the last SIGSEGV or SIGBUS stop whose siginfo the
	// kernel had lost, retried as a fault (lostsiginfo.go), 0 if none.
	// Used by the tracer thread only.
	lostAt uint64
	// lostStop is the value of stops at that stop; stops counts the
	// task's stops that handle or stopTask served. Tracer thread.
	lostStop, stops uint64
	// mapGen is 1 + the generation of its address space's host
	// mappings (stubAS.h) when the task was last resumed with no unmap
	// pending, or 0: a fork the task makes while the count is unchanged
	// gives the child exactly the mappings the record shows.
	mapGen uint64
	// kareas are the areas the host kernel writes or reads on the
	// thread's behalf, kept mapped in the host (kareas.go).
	kareas kernelAreas
	// kcall are the buffers the host kernel may write for the system
	// call the task last made through the host (recorded by ensure at
	// its seccomp stop, until the next), and kframe where it may write
	// the frame of the signal the task was last given (recorded by
	// prepareSignalFrame, until the task's next stop): a fork keeps them
	// writable in the parent (kernelWrites). Tracer goroutine.
	kcall, kframe []hostarch.AddrRange
	// vforkChild is the pid of the child t made with CLONE_VFORK (vfork,
	// posix_spawn), from t's clone event on: t waits in the host until
	// that child execs or exits, and no signal stops it meanwhile
	// (inVfork). Tracer goroutine.
	vforkChild int
}

// errTaskDead is returned when a task dies while the sandbox uses it.
var errTaskDead = fmt.Errorf("sandbox: task died: %w", unix.ESRCH)

func (s *Sandbox) newTask(p *process, tid int) *task {
	t := &task{tid: tid, p: p, ip: uint64(codeAddr) + sysOff, state: taskNew}
	p.tasks[tid] = t
	s.tasks[tid] = t
	return t
}

// taskState is where a task is in its life and, while it is stopped, what
// kind of ptrace stop holds it. The transitions:
//
//	taskNew ──first stop (handle, or startRoot)──▶ taskSignalStop
//	a stop served by handle ──▶ taskStopped (seccomp stop, the exit of a
//	    system call, the exec event, a group-stop), taskSignalStop (a
//	    signal-delivery-stop: a signal, a fault) or taskInKernel (a fork,
//	    vfork or clone event)
//	taskInKernel ──the parent waits for its child (cloneEvent)──▶ taskParked
//	taskParked ──unpark──▶ taskForkExit ──its syscall-exit-stop──▶
//	    taskStopped (forkDone)
//	taskStopped, taskSignalStop, taskInKernel ──resume──▶ taskRunning
//	    (with PTRACE_SYSCALL if atExit is set; taskForkExit stays: it
//	    runs on with PTRACE_SYSCALL)
//	taskRunning ──stopTask (its SIGSTOP, or a signal first)──▶ taskSignalStop
//	any but taskDead ──its exit-stop (exitStop)──▶ taskInKernel
//	any ──exit, or given up for dead while killed──▶ taskDead (final)
//
// An injected system call (inject, or the host exec of the stub image)
// starts from taskStopped or taskSignalStop and ends at taskSignalStop (the
// SIGTRAP after the call, or a fault) or, interrupted too often, at the
// kind of its last stop. A stop that a wait for another task takes is
// kept (task.stopKept) and changes the state only when handle serves it.
type taskState uint8

const (
	// taskNew: created (at its creator's clone event, or at start-up);
	// its first stop has not been seen.
	taskNew taskState = iota
	// taskRunning: resumed; its next stop has not been served.
	taskRunning
	// taskStopped: at a stop at which no signal can be delivered (a
	// seccomp stop, a syscall-exit-stop, the exec event, a group-stop).
	taskStopped
	// taskSignalStop: at a signal-delivery-stop, at which a signal can be
	// delivered on resumption.
	taskSignalStop
	// taskInKernel: stopped inside a system call (at a clone event, or at
	// its exit-stop), where no system call can be injected.
	taskInKernel
	// taskParked: inside its fork system call, kept stopped at the fork
	// event until the child has copied its memory (unpark); or at the
	// stop of a fault waiting on a userfaultfd (uffd.go: parkUffd).
	taskParked
	// taskForkExit: let go from its fork event, running to the exit of
	// its fork system call (resumed with PTRACE_SYSCALL), where its fork
	// is finished (forkDone); still inside the system call.
	taskForkExit
	// taskDead: it has exited, or has been given up for dead while being
	// killed with its process (its exit report, still to come, is then
	// served by the main loop). Final.
	taskDead
)

// dead reports whether t has exited or has been given up for dead.
func (t *task) dead() bool { return t.state == taskDead }

// sigStop reports whether t is at a signal-delivery-stop.
func (t *task) sigStop() bool { return t.state == taskSignalStop }

// inKernel reports whether t is inside a system call (stopped at an event
// there, parked, or running to its exit), where no system call can be
// injected.
func (t *task) inKernel() bool {
	return t.state == taskInKernel || t.state == taskParked || t.state == taskForkExit
}

// setSigStop records t's stop as a signal-delivery-stop or another stop.
func (t *task) setSigStop(yes bool) {
	if yes {
		t.state = taskSignalStop
	} else {
		t.state = taskStopped
	}
}

// regState says what task.regs holds.
type regState uint8

const (
	// regsStale: nothing yet at this stop (fetchRegs reads them).
	regsStale regState = iota
	// regsRead: the application's registers, as the task has them.
	regsRead
	// regsOwed: the application's registers, while the task has others
	// (an injected system call ran, or a new image's are to be set):
	// written back before the task runs on (resume).
	regsOwed
)
