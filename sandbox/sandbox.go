package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/hostfile"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/mm"
	"github.com/vmspace/vmspace/pgalloc"
	"github.com/vmspace/vmspace/platform/ptrace"
	"golang.org/x/sys/unix"
)

// Options configure Run.
type Options struct {
	// Argv is the program and its arguments. Argv[0] is looked up in the
	// PATH of Env if it has no slash. Required.
	Argv []string
	// Env is the program's environment; nil means os.Environ().
	Env []string
	// Stdin, Stdout and Stderr become the program's descriptors 0, 1 and
	// 2; nil means vmspace's own.
	Stdin, Stdout, Stderr *os.File
	// Trace, if not nil, receives a line for each memory system call
	// served (like strace's).
	Trace io.Writer
	// Maps, if not nil, receives the /proc/PID/maps text of each address
	// space as vmspace holds it when its process exits or execs.
	Maps io.Writer
	// Dir is the program's working directory; "" means vmspace's.
	Dir string
	// Signals, if not nil, are signals sent to vmspace to pass on to the
	// program: each is sent to every process of the program (as a
	// terminal sends its signals to every process of its foreground
	// process group), until Run returns.
	Signals <-chan os.Signal
	// Started, if not nil, is called with the pid of the first process
	// once it exists (for example to forward signals to it).
	Started func(pid int)
	// Image, if not nil, is an ELF executable to run instead of a file
	// (the built-in demonstration): it is written to a memfd first.
	Image []byte
	// CoreFile, if not "", is the file that receives an ELF core dump of
	// the first process that dies of a core-dumping signal (SIGSEGV,
	// SIGABRT, SIGBUS, SIGQUIT, ...), with the registers of the thread
	// that took it. It is opened only then (created with mode 0600, or
	// truncated if it is a regular file; a device is written as it is)
	// and never removed; in a regular file the pages the process never
	// touched are holes. Stats.CoreErr reports a failure to write it.
	CoreFile string
}

// Stats are the figures of one Run.
type Stats struct {
	// PeakRSS is the largest resident set (VmHWM) any address space had.
	PeakRSS uint64
	// Faults is the number of page faults the memory managers served.
	Faults uint64
	// MemCalls is the number of memory system calls served.
	MemCalls uint64
	// Stops is the number of system call stops (memory calls, buffer
	// checks, process calls).
	Stops uint64
	// Processes is the number of processes (the first and its forks).
	Processes int
	// Execs is the number of program images loaded.
	Execs int
	// ManagerTime is the time spent serving stops (memory managers,
	// faults, injected system calls).
	ManagerTime time.Duration
	// Wall is the run's wall time.
	Wall time.Duration
	// CoreDumped is set if a core dump was written whole to
	// Options.CoreFile; CoreErr is why one was not (or only in part), if
	// a process died of a core-dumping signal. The exit status is the
	// program's either way, as Linux's is whether or not it dumped.
	CoreDumped bool
	CoreErr    error
}

// memFDConst is the descriptor at which every program process holds the
// memory file when the program's limit of descriptors is large (see
// vmspaceFDSlot; the run's number is Sandbox.memFDNum). It is not
// close-on-exec, so that it survives vmspace's own host execs. The seccomp
// filter stops every call that names it, and vmspace refuses them as if it
// were closed.
const memFDConst = 1023

// maxFDSlot bounds the descriptor numbers vmspace uses in program
// processes (the kernel sizes a process's descriptor table by its highest
// descriptor, and copies it at every fork).
const maxFDSlot = 1 << 16

// vmspaceFDSlot is where vmspace keeps a descriptor of its own in the
// program's processes, given the program's RLIMIT_NOFILE (lim) and whether
// vmspace may raise a process's hard limit (CAP_SYS_RESOURCE): at the
// program's soft limit, where it cannot open anything without raising its
// limit (installed by raising the soft limit, and the hard one if needed,
// for a moment); failing that, memFDConst in a large range, or the top of
// a small one. It is the one place that decides such numbers.
func vmspaceFDSlot(lim unix.Rlimit, canRaiseHard bool) int {
	switch {
	case lim.Cur < 3:
		// Never over standard input, output or error.
	case lim.Cur < lim.Max && lim.Cur <= maxFDSlot:
		return int(lim.Cur)
	case lim.Cur <= maxFDSlot && canRaiseHard:
		return int(lim.Cur)
	case lim.Cur > memFDConst:
		return memFDConst
	case lim.Cur > 3:
		return int(lim.Cur) - 1
	}
	return 3
}

// installAt sets process pid's RLIMIT_NOFILE so that descriptor fd can be
// made, and returns a function putting the limit back.
func installAt(pid, fd int) (func(), error) {
	var lim unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &lim); err != nil {
		return nil, err
	}
	if uint64(fd) < lim.Cur {
		return func() {}, nil
	}
	nl := lim
	nl.Cur = uint64(fd) + 1
	if nl.Max < nl.Cur {
		nl.Max = nl.Cur
	}
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &nl, nil); err != nil {
		return nil, err
	}
	return func() { unix.Prlimit(pid, unix.RLIMIT_NOFILE, &lim, nil) }, nil
}

// ErrNoProgram is returned when Options.Argv is empty.
var ErrNoProgram = errors.New("sandbox: no program to run")

// Result is how a run ended.
type Result struct {
	// Status is the wait status of the program's first process, as its
	// parent (vmspace) saw it: its exit code, or the signal that killed
	// it.
	Status unix.WaitStatus
	// Stats are the run's figures.
	Stats Stats
}

// ExitCode returns Status as a shell shows it: the exit code, or 128 + the
// number of the signal that killed the process.
func (r Result) ExitCode() int {
	if r.Status.Signaled() {
		return 128 + int(r.Status.Signal())
	}
	return r.Status.ExitStatus()
}

// Run runs the program and returns how its first process ended, once
// every process it started has ended. The Result's Stats are valid even
// with an error, as far as the run went.
func Run(opts Options) (Result, error) {
	if len(opts.Argv) == 0 && opts.Image == nil {
		return Result{}, ErrNoProgram
	}
	type result struct {
		status unix.WaitStatus
		stats  Stats
		err    error
	}
	noStopSignals()
	if path := os.Getenv("VMSPACE_CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil {
			pprof.StartCPUProfile(f)
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	ch := make(chan result, 1)
	go func() {
		// Every ptrace request comes from this thread, the tracer of
		// every program task; it is never unlocked, so the thread dies
		// with the goroutine (and PTRACE_O_EXITKILL kills any task
		// left).
		runtime.LockOSThread()
		s, err := newSandbox(opts)
		if err != nil {
			ch <- result{err: err}
			return
		}
		if opts.Signals != nil {
			stop := make(chan struct{})
			defer close(stop)
			go s.fwd.forward(opts.Signals, stop)
		}
		st, err := s.run()
		tc := time.Now()
		s.close()
		if debug {
			fmt.Fprintf(os.Stderr, "vmspace-debug: run %v, close %v, stops by nr %v\n", tc.Sub(s.start), time.Since(tc), s.debugCounts)
		}
		ch <- result{st, s.stats, err}
	}()
	r := <-ch
	return Result{Status: r.status, Stats: r.stats}, r.err
}

// noStopSignals makes the kernel stop sending vmspace a SIGCHLD for every
// ptrace stop of its tracees (SA_NOCLDSTOP on the Go runtime's own
// handler), which would otherwise cost a signal delivery per stop. Exits
// still signal; nothing in vmspace waits for SIGCHLD anyway.
func noStopSignals() {
	const saNoCldStop = 1
	var act [4]uint64 // handler, flags, restorer, mask
	_, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(unix.SIGCHLD), 0, uintptr(unsafe.Pointer(&act)), 8, 0, 0)
	if e != 0 || act[0] == 0 || act[0] == 1 || act[1]&saNoCldStop != 0 {
		return // default or ignored (nothing to save), or done already
	}
	act[1] |= saNoCldStop
	unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(unix.SIGCHLD), uintptr(unsafe.Pointer(&act)), 0, 8, 0, 0)
}

// Sandbox runs one program and its descendants. It, and everything it
// holds (processes, tasks, address spaces), is used only by the tracer
// goroutine, locked to the tracer thread: nothing needs a lock.
type Sandbox struct {
	// opts are Run's options. Immutable.
	opts Options
	// ctx is the context of memory manager calls. Immutable.
	ctx context.Context
	// mf is the memory file of every address space.
	mf *pgalloc.MemoryFile
	// files is the page cache of every host file the program maps.
	files *hostfile.Table
	// plat is the memory managers' platform.
	plat *sbPlatform
	// exe is the stub image.
	exe *stubExe
	// limits are the memory managers' initial limits.
	limits mm.Limits
	// tasks are the live program tasks by thread id.
	tasks map[int]*task
	// procs are the live processes by pid.
	procs map[int]*process
	// early holds the first stop of tasks seen before their parent's
	// clone event.
	early map[int]unix.WaitStatus
	// deferred are wait results to handle before waiting again.
	deferred []waitResult
	// borrowed are tasks stopped to serve another process's request,
	// to be resumed once the current stop is handled.
	borrowed []*task
	// root is the pid of the first process; rootStatus its wait status,
	// valid once rootDone.
	root       int
	rootStatus unix.WaitStatus
	rootDone   bool
	// fwd passes the signals of Options.Signals on to the program's
	// processes (it has its own lock).
	fwd forwarder
	// selfPid is vmspace's pid.
	selfPid int
	// shm are the System V shared memory segments.
	shm shmRegistry
	// stats are the running figures.
	stats Stats
	// coreDone is set once a core dump has been attempted
	// (Options.CoreFile); its outcome is in stats. Used by the tracer
	// goroutine only, like the rest of the run's state.
	coreDone bool
	// start is when Run started.
	start time.Time
	// imageFile holds Options.Image, if any.
	imageFile *os.File
	// progLimits are the program's RLIMIT_AS and RLIMIT_DATA (see
	// ownLimits). Immutable.
	progLimits [2]unix.Rlimit
	// memFDNum is the descriptor of the memory file in every program
	// process (vmspaceFDSlot), set when the first process starts.
	memFDNum int
	// debugCounts counts system call stops by number (VMSPACE_DEBUG).
	debugCounts map[int]int
	// stubPages are the memory-file pages every process maps at
	// scratchAddr and codeAddr (stub.go). Immutable.
	stubPages memmap.FileRange
	// exiting are the ended processes whose host processes may still be
	// exiting (let go at their exit-stops), to release once their pidfds
	// say they have exited (releaseExiting).
	exiting []*process
	// unflushed are the address spaces with pending unmaps (see
	// stubAS.pending), made before any task using them runs on.
	unflushed map[*stubAS]struct{}
}

// waitResult is one state change from wait4.
type waitResult struct {
	// tid is the task that changed state; ws how.
	tid int
	ws  unix.WaitStatus
}

// process is one program process (thread group).
type process struct {
	// pid is the thread group id.
	pid int
	// sp is the address space, nil before the first program is loaded;
	// mm and as are sp's (nil with it).
	sp *space
	mm *mm.MemoryManager
	as *stubAS
	// tasks are the live threads.
	tasks map[int]*task
	// held is the task the sandbox holds stopped for this process while
	// it serves a stop, or nil.
	held *task
	// memFD is the process's descriptor of the memory file; memFDOurs is
	// true while it is the run's memFDNum (guarded by the seccomp filter).
	memFD     int
	memFDOurs bool
	// exe is the host path of the program image (for /proc/PID/exe and
	// messages); name is the path as the program gave it.
	exe, name string
	// pidfd is a pidfd of the process, or -1 until needed.
	pidfd int
	// letGo is true once the process's last task has been detached at
	// its exit-stop (exitStop): the host process may still be exiting.
	letGo bool
	// fixup, if not nil, is the work to do at the first stop of a new
	// fork child; forkParent is the parent's forking task, parked until
	// then.
	fixup      *forkFixup
	forkParent *task
	// memCalls counts the memory system calls served for the process.
	memCalls uint64
	// stubPrivate is true while the process's stub pages are private
	// writable ones (while freshImage prepares the process, or if the
	// shared ones could not be mapped): the scratch page is then
	// written with process_vm_writev, not through the memory file.
	stubPrivate bool
}

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

// pendingSignal is a signal to deliver later: its number and details.
type pendingSignal struct {
	sig unix.Signal
	si  siginfo
}

// errTaskDead is returned when a task dies while the sandbox uses it.
var errTaskDead = fmt.Errorf("sandbox: task died: %w", unix.ESRCH)

func newSandbox(opts Options) (*Sandbox, error) {
	s := &Sandbox{
		opts:        opts,
		ctx:         context.Background(),
		tasks:       make(map[int]*task),
		procs:       make(map[int]*process),
		early:       make(map[int]unix.WaitStatus),
		selfPid:     unix.Getpid(),
		start:       time.Now(),
		debugCounts: make(map[int]int),
		unflushed:   make(map[*stubAS]struct{}),
	}
	s.shm.init()
	progLimits := ownLimits()
	var err error
	s.mf, err = pgalloc.New(pgalloc.Options{Name: "vmspace-memory", HoldFreed: true, DisableAsyncRelease: syncRelease})
	if err != nil {
		return nil, err
	}
	s.files = hostfile.NewDirectTable(s.mf)
	pp, err := ptrace.New()
	if err != nil {
		s.mf.Destroy()
		return nil, err
	}
	s.plat = &sbPlatform{Platform: pp}
	s.exe, err = newStubExe()
	if err != nil {
		pp.Close()
		s.mf.Destroy()
		return nil, err
	}
	s.stubPages, err = newStubPages(s.mf)
	if err != nil {
		s.exe.close()
		pp.Close()
		s.mf.Destroy()
		return nil, err
	}
	s.limits = hostLimits()
	s.progLimits = progLimits
	s.limits.AS = mm.RLimit{Cur: progLimits[0].Cur, Max: progLimits[0].Max}
	s.limits.Data = mm.RLimit{Cur: progLimits[1].Cur, Max: progLimits[1].Max}
	return s, nil
}

// spaceLimits are the limits on address space that vmspace takes for its
// own process (its memory file's mappings, the Go runtime) but gives the
// program as they were: RLIMIT_AS and RLIMIT_DATA.
var spaceLimits = [2]int{unix.RLIMIT_AS, unix.RLIMIT_DATA}

var (
	ownLimitsOnce sync.Once
	ownLimitsOrig [2]unix.Rlimit
)

// ownLimits returns the address-space limits vmspace was started with (the
// program's: see spaceLimits), raising vmspace's own soft limits to the
// hard ones the first time: vmspace's reservations must not be charged to
// the program. The program's processes get them back (restoreLimits).
func ownLimits() [2]unix.Rlimit {
	ownLimitsOnce.Do(func() {
		for i, res := range spaceLimits {
			var l unix.Rlimit
			if unix.Prlimit(0, res, nil, &l) != nil {
				l = unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}
			}
			ownLimitsOrig[i] = l
			if l.Cur < l.Max {
				raised := unix.Rlimit{Cur: l.Max, Max: l.Max}
				unix.Prlimit(0, res, &raised, nil)
			}
		}
	})
	return ownLimitsOrig
}

// restoreLimits gives the first program process the address-space limits
// vmspace was started with.
func (s *Sandbox) restoreLimits(pid int) error {
	for i, res := range spaceLimits {
		l := s.progLimits[i]
		var cur unix.Rlimit
		if err := unix.Prlimit(pid, res, nil, &cur); err != nil {
			return err
		}
		if cur == l {
			continue
		}
		if err := unix.Prlimit(pid, res, &l, nil); err != nil {
			return err
		}
	}
	return nil
}

// hostLimits returns the limits of a process started by vmspace, with the
// privileges vmspace has.
func hostLimits() mm.Limits {
	l := mm.HostLimits()
	if caps, ok := effectiveCaps("/proc/self/status"); ok {
		setCaps(&l, caps)
	}
	return l
}

// setCaps sets the privileges of l from effective capabilities caps.
func setCaps(l *mm.Limits, caps uint64) {
	l.CapIPCLock = caps&(1<<unix.CAP_IPC_LOCK) != 0
	l.CapSysRawIO = caps&(1<<unix.CAP_SYS_RAWIO) != 0
}

// effectiveCaps returns the effective capabilities in the status file at
// path (/proc/.../status).
func effectiveCaps(path string) (uint64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			var c uint64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%x", &c); err == nil {
				return c, true
			}
		}
	}
	return 0, false
}

// close releases what the sandbox holds.
func (s *Sandbox) close() {
	for _, p := range s.procs {
		s.leaveSpace(p, "kill")
		if p.pidfd >= 0 {
			unix.Close(p.pidfd)
		}
	}
	for _, p := range s.exiting {
		s.releaseProcess(p)
	}
	s.exiting = nil
	s.exe.close()
	s.mf.DecRef(s.stubPages)
	s.plat.Close()
	if s.imageFile != nil {
		s.imageFile.Close()
	}
	s.mf.Destroy()
	s.stats.Wall = time.Since(s.start)
}

// run starts the program and serves its tasks until all have ended.
func (s *Sandbox) run() (unix.WaitStatus, error) {
	if err := s.startRoot(); err != nil {
		return 0, err
	}
	for len(s.tasks) > 0 {
		var wr waitResult
		if n := len(s.deferred); n > 0 {
			wr = s.deferred[0]
			s.deferred = s.deferred[1:]
			if t := s.tasks[wr.tid]; t != nil {
				t.stopKept = false
			}
		} else {
			tid, ws, err := wait4(-1, 0)
			if err != nil {
				if err == unix.ECHILD {
					break
				}
				return 0, fmt.Errorf("sandbox: wait4: %w", err)
			}
			wr = waitResult{tid, ws}
		}
		t0 := time.Now()
		s.handle(wr.tid, wr.ws)
		// Another address space may have lost pages (a file hole
		// punched through a shared mapping): unmap them before its
		// tasks touch them again.
		s.keepUnflushedKernelAreas()
		s.shootdown()
		if checkShadow != nil {
			s.verifyShadows()
		}
		if len(s.exiting) > 0 {
			s.releaseExiting(false)
		}
		for len(s.borrowed) > 0 {
			t := s.borrowed[0]
			s.borrowed = s.borrowed[1:]
			if !t.dead && t.p.held == t {
				s.resume(t, 0, nil)
			}
		}
		s.stats.ManagerTime += time.Since(t0)
	}
	s.releaseExiting(true)
	if !s.rootDone {
		return 0, errors.New("sandbox: lost track of the program")
	}
	return s.rootStatus, nil
}

// debug enables a log of every stop on stderr (VMSPACE_DEBUG=1).
var debug = os.Getenv("VMSPACE_DEBUG") != ""

// handle serves one state change of a task.
func (s *Sandbox) handle(tid int, ws unix.WaitStatus) {
	t := s.tasks[tid]
	if debug && os.Getenv("VMSPACE_DEBUG") == "2" {
		var rip, orax uint64
		var r unix.PtraceRegs
		if ws.Stopped() && ptraceGetRegs(tid, &r) == nil {
			rip, orax = r.Rip, r.Orig_rax
		}
		fmt.Fprintf(os.Stderr, "vmspace-debug: tid %d known=%v status %#x (stop %v event %d exited %v signaled %v) rip %#x orig_rax %d\n",
			tid, t != nil, uint32(ws), ws.StopSignal(), event(ws), ws.Exited(), ws.Signaled(), rip, int64(orax))
	}
	if t == nil {
		switch {
		case event(ws) == unix.PTRACE_EVENT_EXIT:
			// A new task killed before its creator's clone event
			// was served (the creator, killed with it, may never
			// report it): let it die; its exit report ends it.
			ptraceCont(tid, 0)
		case ws.Stopped():
			// A new task whose parent's clone event has not been
			// seen yet.
			s.early[tid] = ws
		default:
			delete(s.early, tid)
		}
		return
	}
	if ws.Exited() || ws.Signaled() {
		s.taskExited(t, ws)
		return
	}
	if !ws.Stopped() {
		return
	}
	if event(ws) == unix.PTRACE_EVENT_EXIT {
		s.exitStop(t)
		return
	}
	if t.dead {
		// Given up for dead while being killed: let it go on dying.
		ptraceCont(tid, 0)
		return
	}
	t.regsValid = false
	t.clobbered = false
	t.changed = false
	t.inKernel = false
	t.p.held = t
	defer func() {
		if t.p.held == t && !t.dead {
			// A handler that did not resume the task: resume it as
			// it is.
			s.resume(t, 0, nil)
		}
	}()
	if t.fresh {
		t.fresh = false
		t.sigStop = true
		s.firstStop(t, ws)
		return
	}
	switch event(ws) {
	case eventSeccomp:
		t.sigStop = false
		s.stats.Stops++
		if debug {
			var r unix.PtraceRegs
			ptraceGetRegs(t.tid, &r)
			s.debugCounts[int(r.Orig_rax)]++
		}
		s.syscall(t)
		return
	case eventFork, eventVfork, eventClone:
		t.sigStop = false
		t.inKernel = true
		s.cloneEvent(t, event(ws))
		return
	case eventExec:
		// Only vmspace's own exec of the stub image execs, and it
		// waits for this itself.
		t.sigStop = false
		s.killProcess(t.p, "exec'd behind vmspace's back")
		return
	}
	sig := ws.StopSignal()
	if sig == sysStopSig {
		t.sigStop = false
		if t.awaitExit {
			t.awaitExit = false
			s.forkDone(t)
		}
		s.resume(t, 0, nil)
		return
	}
	t.sigStop = true
	var si siginfo
	if err := ptraceGetSiginfo(tid, &si); err != nil {
		// A group-stop (job control). vmspace does not support
		// stopping the program: let it go on.
		t.sigStop = false
		s.resume(t, 0, nil)
		return
	}
	if sig == unix.SIGSTOP && t.expectStop > 0 && si.code() == siTkill && int(si.pid()) == s.selfPid {
		t.expectStop--
		s.resume(t, 0, nil)
		return
	}
	if (sig == unix.SIGSEGV || sig == unix.SIGBUS) && si.code() > 0 && si.code() != siKernel {
		s.fault(t, sig, &si)
		return
	}
	s.resume(t, sig, &si)
}

// fetchRegs makes t.regs hold the application's registers.
func (s *Sandbox) fetchRegs(t *task) error {
	if t.regsValid {
		return nil
	}
	if err := ptraceGetRegs(t.tid, &t.regs); err != nil {
		return s.lost(t, "PTRACE_GETREGS", err)
	}
	t.regsValid = true
	return nil
}

// lost handles a ptrace request that failed for t: normally t was killed
// (ESRCH); it is reaped when its exit is reported.
func (s *Sandbox) lost(t *task, op string, err error) error {
	if err == unix.ESRCH {
		return errTaskDead
	}
	return fmt.Errorf("sandbox: %s of task %d: %w", op, t.tid, err)
}

// resume restores t's application registers and lets it run, delivering
// sig (with si, if not nil) or else one of its pending signals.
func (s *Sandbox) resume(t *task, sig unix.Signal, si *siginfo) {
	if sig == 0 && len(t.pending) > 0 && t.sigStop {
		ps := t.pending[0]
		t.pending = t.pending[1:]
		sig, si = ps.sig, &ps.si
	}
	if sig != 0 && t.sigStop && !t.dead && !t.inKernel && t.p.as != nil {
		if t.p.held == nil {
			t.p.held = t
		}
		s.prepareSignalFrame(t)
	}
	if as := t.p.as; as != nil && !t.dead && !t.inKernel {
		if t.p.held == nil {
			t.p.held = t
		}
		// Every address space loses the pages the manager unmapped
		// before t runs on: t's own, and those of the processes
		// sharing memory with it, which must not see t's next writes
		// to that memory in their stale pages. Pages the kernel writes
		// for a thread are replaced in the host first, never left
		// unmapped (kareas.go).
		s.keepUnflushedKernelAreas()
		s.shootdown()
		t.mapGen = 0
		if len(as.pending) == 0 {
			t.mapGen = as.gen + 1
		}
	} else if len(s.unflushed) > 0 {
		s.keepUnflushedKernelAreas()
		s.shootdown()
	}
	if t.p.held == t {
		t.p.held = nil
	}
	if t.dead {
		return
	}
	if t.clobbered {
		if err := ptraceSetRegs(t.tid, &t.regs); err != nil {
			return
		}
		t.clobbered = false
	}
	if sig != 0 && si != nil && t.sigStop {
		ptraceSetSiginfo(t.tid, si)
	}
	if t.awaitExit {
		ptraceSyscall(t.tid, sig)
	} else {
		ptraceCont(t.tid, sig)
	}
	t.regsValid = false
	for _, ps := range t.pending {
		// Only one signal can be delivered at a stop; send the others
		// again (their sender's details are lost).
		unix.Tgkill(t.p.pid, t.tid, ps.sig)
	}
	t.pending = nil
	if afterResume != nil {
		afterResume()
	}
}

// afterResume, if not nil, is called after every resumption of a task
// (tests widen race windows with it).
var afterResume func()

// inject makes t, stopped, make system call nr from the code page and
// returns its raw result. t's application registers are kept in t.regs and
// restored when it resumes.
func (s *Sandbox) inject(t *task, nr uintptr, args ...uintptr) (uintptr, error) {
	if t.dead {
		return 0, errTaskDead
	}
	if t.inKernel {
		return 0, fmt.Errorf("sandbox: cannot inject a system call into task %d inside a system call: %w", t.tid, unix.EBUSY)
	}
	if err := s.fetchRegs(t); err != nil {
		return 0, err
	}
	r := t.regs
	var a [6]uintptr
	copy(a[:], args)
	r.Rip = t.ip
	r.Rax = uint64(nr)
	r.Orig_rax = ^uint64(0)
	r.Rdi, r.Rsi, r.Rdx, r.R10, r.R8, r.R9 = uint64(a[0]), uint64(a[1]), uint64(a[2]), uint64(a[3]), uint64(a[4]), uint64(a[5])
	r.Eflags = 0x202
	if err := ptraceSetRegs(t.tid, &r); err != nil {
		return 0, s.lost(t, "PTRACE_SETREGS", err)
	}
	t.clobbered = true
	if err := ptraceCont(t.tid, 0); err != nil {
		return 0, s.lost(t, "PTRACE_CONT", err)
	}
	stops := 0
	for {
		ws, err := s.waitFor(t)
		if debug && os.Getenv("VMSPACE_DEBUG") == "2" {
			fmt.Fprintf(os.Stderr, "vmspace-debug:   inject %d in %d: status %#x err %v\n", nr, t.tid, uint32(ws), err)
		}
		if err != nil {
			return 0, s.lost(t, "wait4", err)
		}
		if ws.Exited() || ws.Signaled() {
			s.keep(t.tid, ws)
			return 0, errTaskDead
		}
		if !ws.Stopped() {
			continue
		}
		if event(ws) == unix.PTRACE_EVENT_EXIT {
			// Killed: the main loop serves its exit-stop.
			s.keep(t.tid, ws)
			t.dead = true
			return 0, errTaskDead
		}
		if event(ws) == eventSeccomp {
			// Made from outside the code page (at start-up, from the
			// stub image): let it through.
			if err := ptraceCont(t.tid, 0); err != nil {
				return 0, s.lost(t, "PTRACE_CONT", err)
			}
			continue
		}
		if ws.StopSignal() == unix.SIGTRAP && event(ws) == 0 {
			var rr unix.PtraceRegs
			if err := ptraceGetRegs(t.tid, &rr); err != nil {
				return 0, s.lost(t, "PTRACE_GETREGS", err)
			}
			if rr.Rip == t.ip+3 {
				t.sigStop = true
				return uintptr(rr.Rax), nil
			}
			if debug {
				fmt.Fprintf(os.Stderr, "vmspace-debug:   unexpected SIGTRAP at %#x (ip %#x) rax %#x\n", rr.Rip, t.ip, rr.Rax)
			}
		}
		if stops++; stops > maxInjectStops {
			t.sigStop = event(ws) == 0
			return 0, fmt.Errorf("sandbox: system call %d in task %d interrupted %d times: %w", nr, t.tid, stops, unix.EINTR)
		}
		var si siginfo
		sig := ws.StopSignal()
		if event(ws) == 0 && ptraceGetSiginfo(t.tid, &si) == nil {
			if debug {
				var rr unix.PtraceRegs
				ptraceGetRegs(t.tid, &rr)
				fmt.Fprintf(os.Stderr, "vmspace-debug:   signal %v addr %#x code %d at rip %#x\n", sig, si.addr(), si.code(), rr.Rip)
			}
			if syncSignal(sig, &si) {
				// The thread faulted at the code page: going back to
				// user mode, the kernel could not write its rseq
				// area, say. Retrying would fault again forever. The
				// signal is not kept: the thread gets it again when
				// it returns to its own code, as it would on Linux.
				t.sigStop = true
				var rr unix.PtraceRegs
				if err := ptraceGetRegs(t.tid, &rr); err != nil {
					return 0, s.lost(t, "PTRACE_GETREGS", err)
				}
				if rr.Rip == t.ip+2 {
					// After the system call: it ran.
					return uintptr(rr.Rax), nil
				}
				return 0, fmt.Errorf("%w: %v (code %d) in task %d at %#x", errInjectFault, sig, si.code(), t.tid, rr.Rip)
			}
			if killsNow(t.p.pid, sig) {
				// A signal that ends the process (SIGTERM, SIGINT...
				// with no handler): deliver it now, ending whatever
				// the call was waiting for.
				if err := ptraceCont(t.tid, sig); err != nil {
					return 0, s.lost(t, "PTRACE_CONT", err)
				}
				continue
			}
		}
		s.noteSignal(t, ws)
		if err := ptraceCont(t.tid, 0); err != nil {
			return 0, s.lost(t, "PTRACE_CONT", err)
		}
	}
}

// waitFor waits for the next report of t, which the sandbox has just
// resumed, keeping every report of another task that comes first for the
// main loop (keep). It never waits for t alone: a thread-group leader
// killed with its process is reported only once every other thread of the
// process has been reaped, which only a wait for any task does; and no
// report of a task of t's process is left pending in a way that would hold
// t's back (see below).
func (s *Sandbox) waitFor(t *task) (unix.WaitStatus, error) {
	// Exit-stops of t's process kept earlier (by a wait for another
	// process's task) would hold t's report back just the same.
	kept := s.deferred[:0]
	for _, wr := range s.deferred {
		if s.tasks[wr.tid] == nil && event(wr.ws) == unix.PTRACE_EVENT_EXIT {
			// A new task killed before its creator's clone event
			// (see handle): it may be a thread of t's process.
			ptraceCont(wr.tid, 0)
			continue
		}
		if u := s.tasks[wr.tid]; u != nil && u != t && u.p == t.p && event(wr.ws) == unix.PTRACE_EVENT_EXIT {
			if !s.diesOfSignal(wr.tid) {
				// Its own exit: nothing needs doing at the stop.
				u.stopKept = false
				ptraceCont(wr.tid, 0)
				continue
			}
			// Its process is dying of a signal: so is t.
			t.dead = true
		}
		kept = append(kept, wr)
	}
	clear(s.deferred[len(kept):])
	s.deferred = kept
	for {
		if t.dead {
			return 0, errTaskDead
		}
		wpid, ws, err := wait4(-1, 0)
		if err == unix.ECHILD {
			// Nothing left to wait for: t is gone.
			t.dead = true
			return 0, errTaskDead
		}
		if err != nil {
			return 0, err
		}
		if wpid == t.tid {
			return ws, nil
		}
		if s.tasks[wpid] == nil && event(ws) == unix.PTRACE_EVENT_EXIT {
			// A new task killed before its creator's clone event
			// (see handle), maybe a thread of t's process, held
			// back by nothing else: let it die.
			ptraceCont(wpid, 0)
			continue
		}
		if u := s.tasks[wpid]; u != nil && u.p == t.p && event(ws) == unix.PTRACE_EVENT_EXIT {
			// Another thread of t's process is exiting: held
			// stopped, it would hold back t's report if t is the
			// leader and is being killed with it.
			if !s.diesOfSignal(wpid) {
				// Its own exit, or an exit_group: nothing needs
				// doing at the stop (t is not the last task, so
				// its process's end is seen later).
				ptraceCont(wpid, 0)
				continue
			}
			// The process is dying of a signal (a core may be due:
			// the main loop serves the stop), so t is being killed
			// too: give it up for dead now. Its exit-stop or exit
			// is served by the main loop.
			s.keep(wpid, ws)
			t.dead = true
			return 0, errTaskDead
		}
		s.keep(wpid, ws)
	}
}

// diesOfSignal reports whether tid, at its exit-stop, is dying of a
// signal, hence with its whole process (a core may be due at the stop).
func (s *Sandbox) diesOfSignal(tid int) bool {
	msg, err := ptraceEventMsg(tid)
	return err == nil && unix.WaitStatus(msg).Signaled()
}

// keep records a report taken while waiting for another task, for the main
// loop to serve in order. A task whose exit is kept is dead from now on
// (reaped); one whose stop is kept stays stopped until the main loop serves
// it (stopKept).
func (s *Sandbox) keep(tid int, ws unix.WaitStatus) {
	s.deferred = append(s.deferred, waitResult{tid, ws})
	if u := s.tasks[tid]; u != nil {
		switch {
		case ws.Exited() || ws.Signaled():
			u.dead = true
		case ws.Stopped():
			u.stopKept = true
		}
	}
}

// maxInjectStops bounds the stops (signals arriving) that one injected
// system call may see before vmspace gives up on it.
const maxInjectStops = 1 << 16

// errInjectFault is returned when a thread faults while running an
// injected system call (its code page, or memory the kernel accesses for
// the thread on the way back to user mode, is not there).
var errInjectFault = fmt.Errorf("sandbox: fault during an injected system call: %w", unix.EFAULT)

// syncSignal reports whether sig, with si, was raised by the kernel for
// what the thread was doing (a fault, a trap, a failed rseq update), not
// sent.
func syncSignal(sig unix.Signal, si *siginfo) bool {
	switch sig {
	case unix.SIGSEGV, unix.SIGBUS, unix.SIGILL, unix.SIGFPE, unix.SIGTRAP:
		return si.code() > 0
	}
	return false
}

// killsNow reports whether delivering sig to process pid ends it: its
// default action terminates, and the process neither catches nor ignores
// it.
func killsNow(pid int, sig unix.Signal) bool {
	switch sig {
	case unix.SIGCHLD, unix.SIGCONT, unix.SIGURG, unix.SIGWINCH,
		unix.SIGSTOP, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU:
		return false
	}
	if sig <= 0 || sig > 64 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	bit := uint64(1) << (uint(sig) - 1)
	for _, line := range strings.Split(string(b), "\n") {
		for _, field := range []string{"SigCgt:", "SigIgn:"} {
			if v, ok := strings.CutPrefix(line, field); ok {
				m, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
				if err != nil || m&bit != 0 {
					return false
				}
			}
		}
	}
	return true
}

// noteSignal records the signal of a stop that interrupted vmspace's use of
// t, to deliver it later.
func (s *Sandbox) noteSignal(t *task, ws unix.WaitStatus) {
	if event(ws) != 0 {
		return
	}
	var si siginfo
	if err := ptraceGetSiginfo(t.tid, &si); err != nil {
		return // group-stop
	}
	sig := ws.StopSignal()
	if sig == unix.SIGSTOP && t.expectStop > 0 && si.code() == siTkill && int(si.pid()) == s.selfPid {
		t.expectStop--
		return
	}
	if len(t.pending) >= maxPendingSignals {
		return
	}
	if sig < sigRTMin {
		// A standard signal already pending is not queued twice (as
		// in Linux).
		for _, ps := range t.pending {
			if ps.sig == sig {
				return
			}
		}
	}
	t.pending = append(t.pending, pendingSignal{sig, si})
}

// sigRTMin is the first real-time signal (queued, unlike the others).
const sigRTMin = 32

// maxPendingSignals bounds the signals kept for one task while vmspace
// uses it.
const maxPendingSignals = 1024

// holder returns a stopped task using sp that the memory manager's
// platform calls can use: one the sandbox holds, or one it stops now
// (resumed after the current stop is served).
func (s *Sandbox) holder(sp *space) (*task, error) {
	var cands []*task
	for p := range sp.procs {
		if t := p.held; t != nil && !t.dead && !t.inKernel {
			return t, nil
		}
		for _, t := range p.tasks {
			if !t.dead && !t.fresh && !t.parked && !t.stopKept && p.held != t {
				cands = append(cands, t)
			}
		}
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].tid < cands[j].tid })
	for _, t := range cands {
		if err := s.stopTask(t); err != nil {
			continue
		}
		t.p.held = t
		s.borrowed = append(s.borrowed, t)
		return t, nil
	}
	return nil, fmt.Errorf("sandbox: no task of the address space can be stopped: %w", errTaskDead)
}

// stopTask stops a running task with a SIGSTOP of its own and waits for
// the stop (the SIGSTOP is suppressed when it arrives, if something else
// came first). A stop at an event that comes first is kept for the main
// loop, and the task is not usable (EBUSY).
func (s *Sandbox) stopTask(t *task) error {
	if err := unix.Tgkill(t.p.pid, t.tid, unix.SIGSTOP); err != nil {
		return err
	}
	t.expectStop++
	for {
		ws, err := s.waitFor(t)
		if err != nil {
			return err
		}
		if ws.Exited() || ws.Signaled() {
			s.keep(t.tid, ws)
			return errTaskDead
		}
		if !ws.Stopped() {
			continue
		}
		t.regsValid, t.clobbered = false, false
		var si siginfo
		if ws.StopSignal() == unix.SIGSTOP && event(ws) == 0 && ptraceGetSiginfo(t.tid, &si) == nil &&
			si.code() == siTkill && int(si.pid()) == s.selfPid {
			t.expectStop--
			t.sigStop = true
			return nil
		}
		if event(ws) != 0 || ws.StopSignal() == sysStopSig {
			// Stopped at a system call or another event first: the
			// main loop serves it; an injected call would replace
			// it, so the task cannot be used.
			s.keep(t.tid, ws)
			return fmt.Errorf("sandbox: task %d stopped at an event: %w", t.tid, unix.EBUSY)
		}
		// A signal came first: usable. A fault is dropped (the
		// instruction faults again when the task resumes); another
		// signal is delivered when the task resumes.
		sig := ws.StopSignal()
		if !((sig == unix.SIGSEGV || sig == unix.SIGBUS) && ptraceGetSiginfo(t.tid, &si) == nil && si.code() > 0 && si.code() != siKernel) {
			s.noteSignal(t, ws)
		}
		t.sigStop = true
		return nil
	}
}

// exitStop serves t's exit-stop (PTRACE_EVENT_EXIT), where it has begun
// to exit. The core dump is taken there, if one is due (coreOnExit). Then
// vmspace lets the task go (PTRACE_DETACH): a task still traced when it
// becomes a zombie is waitable by its real parent only once its tracer
// has reaped it, whereas the parent's pidfd says "exited" at once, and a
// parent that trusts it (waitpid WNOHANG after poll) would find its child
// not waitable. The first process's leader, whose parent is vmspace, is
// kept: its exit report is the status Run returns.
func (s *Sandbox) exitStop(t *task) {
	t.sigStop = false
	t.inKernel = true
	p := t.p
	if !t.dead {
		s.coreOnExit(t)
	}
	if p.pid == s.root && t.tid == p.pid {
		if p.held == t {
			p.held = nil
		}
		ptraceCont(t.tid, 0)
		return
	}
	var ws unix.WaitStatus
	if msg, err := ptraceEventMsg(t.tid); err == nil {
		ws = unix.WaitStatus(msg)
	}
	if len(p.tasks) == 1 && p.pidfd < 0 {
		// The process ends with t: its host memory is released when
		// it has (see processExited), which its pidfd tells.
		fd, err := unix.PidfdOpen(p.pid, 0)
		if err != nil {
			ptraceCont(t.tid, 0)
			return
		}
		p.pidfd = fd
	}
	if err := ptraceDetach(t.tid); err != nil {
		// Not stopped any more (killed again): its exit is reported.
		ptraceCont(t.tid, 0)
		return
	}
	p.letGo = len(p.tasks) == 1
	s.taskExited(t, ws)
}

// taskExited records the end of a task, and of its process with the last
// one.
func (s *Sandbox) taskExited(t *task, ws unix.WaitStatus) {
	t.dead = true
	delete(s.tasks, t.tid)
	p := t.p
	delete(p.tasks, t.tid)
	if p.held == t {
		p.held = nil
	}
	if t.tid == p.pid && p.pid == s.root {
		s.rootDone = true
		s.rootStatus = ws
	}
	if len(p.tasks) == 0 {
		s.processExited(p)
	}
}

// processExited forgets a process whose tasks have all ended, and releases
// it (releaseProcess) once its host process has ended too.
func (s *Sandbox) processExited(p *process) {
	delete(s.procs, p.pid)
	s.fwd.remove(p.pid)
	if par := p.forkParent; par != nil {
		// Died before its first stop: the parent need not wait.
		p.forkParent = nil
		s.unpark(par)
	}
	if p.letGo && !pidfdReadable(p.pidfd, 0) {
		// Its last task was let go at its exit-stop and is still
		// exiting: until its host mappings are gone (the kernel still
		// writes into them: clear_child_tid, the robust futex list),
		// the memory they map must not be reused.
		s.exiting = append(s.exiting, p)
		return
	}
	s.releaseProcess(p)
}

// releaseProcess releases what the sandbox holds for an ended process.
func (s *Sandbox) releaseProcess(p *process) {
	t0 := time.Now()
	s.leaveSpace(p, "exit")
	if debug {
		fmt.Fprintf(os.Stderr, "vmspace-debug: process %d released in %v\n", p.pid, time.Since(t0))
	}
	if p.pidfd >= 0 {
		unix.Close(p.pidfd)
		p.pidfd = -1
	}
}

// releaseExiting releases the processes of s.exiting whose host processes
// have ended; if wait, it waits for all of them.
func (s *Sandbox) releaseExiting(wait bool) {
	for len(s.exiting) > 0 {
		fds := make([]unix.PollFd, len(s.exiting))
		for i, p := range s.exiting {
			fds[i] = unix.PollFd{Fd: int32(p.pidfd), Events: unix.POLLIN}
		}
		timeout := 0
		if wait {
			timeout = -1
		}
		n, err := unix.Poll(fds, timeout)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			return
		}
		left := s.exiting[:0]
		for i, p := range s.exiting {
			if fds[i].Revents != 0 {
				s.releaseProcess(p)
			} else {
				left = append(left, p)
			}
		}
		clear(s.exiting[len(left):])
		s.exiting = left
		if !wait {
			return
		}
	}
}

// pidfdReadable reports whether pidfd says its process has exited, waiting
// for at most timeout milliseconds (-1: no limit).
func pidfdReadable(pidfd, timeout int) bool {
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, timeout)
		if err == unix.EINTR {
			continue
		}
		return err == nil && n > 0
	}
}

// joinSpace makes sp p's address space.
func (s *Sandbox) joinSpace(p *process, sp *space) {
	p.sp, p.mm, p.as = sp, sp.mm, sp.as
	sp.procs[p] = struct{}{}
}

// newSpace makes an address space served by m, used by nobody yet.
func (s *Sandbox) newSpace(m *mm.MemoryManager) *space {
	sp := &space{mm: m, procs: make(map[*process]struct{})}
	sp.as = &stubAS{s: s, sp: sp}
	return sp
}

// leaveSpace takes p out of its address space, releasing the space (and
// printing its maps, if asked) when p was its last user.
func (s *Sandbox) leaveSpace(p *process, why string) {
	sp := p.sp
	if sp == nil {
		return
	}
	p.sp, p.mm, p.as = nil, nil, nil
	delete(sp.procs, p)
	if len(sp.procs) > 0 {
		return
	}
	m := sp.mm
	s.noteStats(m)
	if s.opts.Maps != nil {
		fmt.Fprintf(s.opts.Maps, "=== /proc/%d/maps of %s at %s ===\n%s", p.pid, p.name, why, m.MapsText(s.ctx))
	}
	sp.as.Release()
	m.Deactivate()
	m.DecUsers(s.ctx)
}

// noteStats adds a manager's figures to the run's.
func (s *Sandbox) noteStats(m *mm.MemoryManager) {
	s.stats.Faults += m.Faults()
	if r := m.MaxResidentSetSize(); r > s.stats.PeakRSS {
		s.stats.PeakRSS = r
	}
}

// killProcess kills a process that vmspace cannot serve correctly, saying
// why on the program's standard error.
func (s *Sandbox) killProcess(p *process, why string) {
	fmt.Fprintf(s.stderr(), "vmspace: killing process %d (%s): %s\n", p.pid, p.name, why)
	unix.Kill(p.pid, unix.SIGKILL)
	for _, t := range p.tasks {
		if p.held == t {
			p.held = nil
		}
	}
}

func (s *Sandbox) stderr() io.Writer {
	if s.opts.Stderr != nil {
		return s.opts.Stderr
	}
	return os.Stderr
}

// newManager returns an empty memory manager for a program image.
func (s *Sandbox) newManager() *mm.MemoryManager {
	lim := s.limits
	m := mm.New(mm.Options{Platform: s.plat, MemoryFile: s.mf, Limits: &lim})
	mk := hostfile.SharedAnonFactory(s.mf)
	m.SetSharedAnonFactory(func(ctx context.Context, n uint64) (mm.MappableFile, error) {
		return mk(ctx, n)
	})
	return m
}

// activate makes as the AddressSpace of m.
func (s *Sandbox) activate(m *mm.MemoryManager, as *stubAS) error {
	s.plat.next = as
	err := m.Activate(s.ctx)
	s.plat.next = nil
	return err
}

// startRoot starts the first process: the stub image, traced, then the
// program loaded into it.
func (s *Sandbox) startRoot() error {
	stdio := []*os.File{s.opts.Stdin, s.opts.Stdout, s.opts.Stderr}
	def := []*os.File{os.Stdin, os.Stdout, os.Stderr}
	files := make([]uintptr, 3, 4)
	for i := range stdio {
		f := stdio[i]
		if f == nil {
			f = def[i]
		}
		files[i] = ^uintptr(0)
		if f != nil {
			if _, err := unix.FcntlInt(f.Fd(), unix.F_GETFD, 0); err == nil {
				files[i] = f.Fd()
			}
		}
	}
	// The descriptors vmspace inherited for the program (not
	// close-on-exec, as a shell's redirections) stay where they are; the
	// memory file comes in at the first number after 2 that none of them
	// holds (the child's rearrangement of descriptors would move or close
	// the ones it is given, and cannot place any above the limit).
	inherited := inheritedFDs()
	for slices.Contains(inherited, len(files)) {
		files = append(files, uintptr(len(files)))
	}
	memSlot := len(files)
	files = append(files, uintptr(s.mf.FD()))
	// The stub image through vmspace's own descriptor table, which the
	// child's rearrangement of descriptors does not touch.
	pid, err := syscall.ForkExec(s.exe.path, []string{"vmspace-stub"}, &syscall.ProcAttr{
		Dir:   s.opts.Dir,
		Env:   []string{},
		Files: files,
		Sys: &syscall.SysProcAttr{
			Ptrace:    true,
			Pdeathsig: syscall.SIGKILL,
		},
	})
	if err != nil {
		return fmt.Errorf("sandbox: starting the first process: %w", err)
	}
	s.root = pid
	if s.opts.Started != nil {
		s.opts.Started(pid)
	}
	_, ws, err := wait4(pid, 0)
	if err != nil || !ws.Stopped() || ws.StopSignal() != unix.SIGTRAP {
		unix.Kill(pid, unix.SIGKILL)
		return fmt.Errorf("sandbox: the first process did not stop at exec (%v, %v)", ws, err)
	}
	if err := s.restoreLimits(pid); err != nil {
		unix.Kill(pid, unix.SIGKILL)
		return fmt.Errorf("sandbox: limits of the first process: %w", err)
	}
	// The memory file's number, from the program's own limit (the one
	// vmspace was started with, which the child has).
	var lim unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &lim); err != nil {
		unix.Kill(pid, unix.SIGKILL)
		return fmt.Errorf("sandbox: RLIMIT_NOFILE of the first process: %w", err)
	}
	caps, _ := effectiveCaps("/proc/self/status")
	s.memFDNum = vmspaceFDSlot(lim, caps&(1<<unix.CAP_SYS_RESOURCE) != 0)
	for slices.Contains(inherited, s.memFDNum) {
		s.memFDNum++
	}
	p := s.newProcess(pid)
	t := s.newTask(p, pid)
	t.fresh = false
	s.stats.Processes++
	if err := unix.PtraceSetOptions(pid, traceOptions); err != nil {
		unix.Kill(pid, unix.SIGKILL)
		return fmt.Errorf("sandbox: PTRACE_SETOPTIONS: %w", err)
	}
	p.held = t
	t.sigStop = true
	if err := s.freshImage(t, memSlot); err != nil {
		unix.Kill(pid, unix.SIGKILL)
		return err
	}
	if err := s.installFilter(t); err != nil {
		unix.Kill(pid, unix.SIGKILL)
		return err
	}
	s.unblockSEGV(t)
	argv := s.opts.Argv
	env := s.opts.Env
	if env == nil {
		env = os.Environ()
	}
	var path, execFn string
	if s.opts.Image != nil {
		f, err := imageFile(s.opts.Image)
		if err != nil {
			unix.Kill(pid, unix.SIGKILL)
			return err
		}
		s.imageFile = f
		path = f.Name()
		if len(argv) == 0 {
			argv = []string{"vmspace-demo"}
		}
		execFn = argv[0]
	} else {
		path, err = lookPath(argv[0], env)
		if err != nil {
			unix.Kill(pid, unix.SIGKILL)
			return fmt.Errorf("sandbox: %s: %w", argv[0], err)
		}
		execFn = path
		if !strings.HasPrefix(path, "/") {
			path = s.hostPath(p, path, unix.AT_FDCWD)
		}
	}
	tl := time.Now()
	img, errno := s.prepareExec(p, path, execFn, argv, env)
	if errno != 0 {
		unix.Kill(pid, unix.SIGKILL)
		return fmt.Errorf("sandbox: cannot execute %s: %w", argv[0], errno)
	}
	tc := time.Now()
	if err := s.commitExec(t, img); err != nil {
		unix.Kill(pid, unix.SIGKILL)
		return err
	}
	if debug {
		fmt.Fprintf(os.Stderr, "vmspace-debug: start: stub %v, load %v, commit %v\n", tl.Sub(s.start), tc.Sub(tl), time.Since(tc))
	}
	s.resume(t, 0, nil)
	return nil
}

// inheritedFDs returns vmspace's descriptors above 2 that are not
// close-on-exec: those a shell opened for the program.
func inheritedFDs() []int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 {
			continue
		}
		if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil && fl&unix.FD_CLOEXEC == 0 {
			out = append(out, fd)
		}
	}
	sort.Ints(out)
	return out
}

// imageFile writes an executable image to a memfd and returns it open
// (its /proc/self/fd path is its name).
func imageFile(b []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate("vmspace-demo", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if _, err := unix.Pwrite(fd, b, 0); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), fmt.Sprintf("/proc/%d/fd/%d", unix.Getpid(), fd)), nil
}

// lookPath finds a program the way execvp does, in the PATH of env.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	path := "/usr/local/bin:/usr/bin:/bin"
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path = v
		}
	}
	var firstErr error = unix.ENOENT
	for _, dir := range strings.Split(path, ":") {
		if dir == "" {
			dir = "."
		}
		p := dir + "/" + name
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
			continue
		}
		if err := unix.Access(p, unix.X_OK); err != nil {
			firstErr = err
			continue
		}
		return p, nil
	}
	return "", firstErr
}

func (s *Sandbox) newProcess(pid int) *process {
	p := &process{pid: pid, tasks: make(map[int]*task), memFD: s.memFDNum, memFDOurs: true, pidfd: -1}
	s.procs[pid] = p
	s.fwd.add(pid)
	return p
}

func (s *Sandbox) newTask(p *process, tid int) *task {
	t := &task{tid: tid, p: p, ip: uint64(codeAddr) + sysOff, fresh: true}
	p.tasks[tid] = t
	s.tasks[tid] = t
	return t
}

// freshImage prepares a process that has just executed the stub image
// (stopped at the exec): the code and scratch pages at the top of the
// range, nothing else mapped, the memory file at memFDNum (moved from
// inheritedFD if that is not -1).
func (s *Sandbox) freshImage(t *task, inheritedFD int) error {
	fail := func(what string, err error) error {
		return fmt.Errorf("sandbox: preparing process %d: %s: %w", t.p.pid, what, err)
	}
	t.regsValid = false
	if err := s.fetchRegs(t); err != nil {
		return fail("registers", err)
	}
	t.ip = stubLinkAddr + sysOff
	t.p.stubPrivate = true
	call := func(what string, nr uintptr, args ...uintptr) error {
		r, err := s.inject(t, nr, args...)
		if err != nil {
			return fail(what, err)
		}
		if e, bad := errnoOf(r); bad {
			return fail(what, e)
		}
		return nil
	}
	if err := call("mmap", unix.SYS_MMAP, uintptr(scratchAddr), 2*hostarch.PageSize,
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED, ^uintptr(0), 0); err != nil {
		return err
	}
	if err := s.writeMem(t.p.pid, codeAddr, codePage()); err != nil {
		return fail("writing the code page", err)
	}
	if err := call("mprotect", unix.SYS_MPROTECT, uintptr(codeAddr), hostarch.PageSize, unix.PROT_READ|unix.PROT_EXEC); err != nil {
		return err
	}
	t.ip = uint64(codeAddr) + sysOff
	// The host exec ended the rseq registration, clear_child_tid and the
	// robust list.
	t.kareas = kernelAreas{}
	if err := call("munmap", unix.SYS_MUNMAP, 0, uintptr(ptrace.StubStart)); err != nil {
		return err
	}
	if inheritedFD >= 0 {
		restore, err := installAt(t.p.pid, s.memFDNum)
		if err != nil {
			return fail("RLIMIT_NOFILE", err)
		}
		err = call("dup3", unix.SYS_DUP3, uintptr(inheritedFD), uintptr(s.memFDNum), 0)
		restore()
		if err != nil {
			return err
		}
		if err := call("close", unix.SYS_CLOSE, uintptr(inheritedFD)); err != nil {
			return err
		}
		t.p.memFD, t.p.memFDOurs = s.memFDNum, true
	}
	fd, err := s.stubFD(t)
	if err != nil {
		return fail("the memory file", err)
	}
	if err := s.shareStubPages(t, fd); err != nil {
		return fail("sharing the stub pages", err)
	}
	return nil
}

// installFilter installs the seccomp filter in t's process (inherited by
// everything it starts).
func (s *Sandbox) installFilter(t *task) error {
	f, err := seccompFilter(s.memFDNum)
	if err != nil {
		return err
	}
	prog := filterBytes(f)
	// struct sock_fprog and the program, in memory mapped for the
	// moment (the filter is larger than the scratch page).
	size := pageUp(uint64(16 + len(prog)))
	r, err := s.inject(t, unix.SYS_MMAP, 0, uintptr(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uintptr(0), 0)
	if err != nil {
		return err
	}
	if e, bad := errnoOf(r); bad {
		return fmt.Errorf("sandbox: mapping memory for the seccomp filter: %w", e)
	}
	at := r
	defer s.inject(t, unix.SYS_MUNMAP, at, uintptr(size))
	buf := make([]byte, 16+len(prog))
	buf[0] = byte(len(f))
	buf[1] = byte(len(f) >> 8)
	progAddr := uint64(at) + 16
	for i := 0; i < 8; i++ {
		buf[8+i] = byte(progAddr >> (8 * i))
	}
	copy(buf[16:], prog)
	if err := s.writeMem(t.p.pid, hostarch.Addr(at), buf); err != nil {
		return fmt.Errorf("sandbox: writing the seccomp filter: %w", err)
	}
	install := func() (uintptr, error) {
		return s.inject(t, unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW, at)
	}
	r, err = install()
	if err != nil {
		return err
	}
	if e, bad := errnoOf(r); bad && e == unix.EACCES {
		// Without CAP_SYS_ADMIN, a filter needs no_new_privs.
		if _, err := s.inject(t, unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return err
		}
		if r, err = install(); err != nil {
			return err
		}
	}
	if e, bad := errnoOf(r); bad {
		return fmt.Errorf("sandbox: installing the seccomp filter: %w", e)
	}
	return nil
}

// writeMem writes b into process pid's memory at addr, which must be
// writable there.
func (s *Sandbox) writeMem(pid int, addr hostarch.Addr, b []byte) error {
	if p := s.procs[pid]; p != nil && !p.stubPrivate && addr >= scratchAddr && addr < scratchAddr+hostarch.PageSize {
		// The shared scratch page, read-only in the process.
		off := uint64(addr - scratchAddr)
		if off+uint64(len(b)) > hostarch.PageSize {
			return unix.EFAULT
		}
		n, err := unix.Pwrite(s.mf.FD(), b, int64(s.stubPages.Start+off))
		if err != nil {
			return err
		}
		if n != len(b) {
			return unix.EIO
		}
		return nil
	}
	local := []unix.Iovec{{Base: &b[0]}}
	local[0].SetLen(len(b))
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(b)}}
	n, err := unix.ProcessVMWritev(pid, local, remote, 0)
	if err != nil {
		return err
	}
	if n != len(b) {
		return unix.EFAULT
	}
	return nil
}

// mapFD returns the descriptor through which t's process maps f for access
// at, and, if not nil, a function that closes it once the mappings are
// made. It is the one place that chooses the descriptors vmspace uses in a
// program process:
//
//   - the memory file: the process's memFD (stubFD);
//   - a host file mapped directly (a hostfile.File of a direct Table): a
//     descriptor opened for the moment, read-only or read-write for a
//     writable mapping, and closed again before the program runs on, so
//     that the program never holds it. It is opened through
//     /proc/<vmspace>/fd/N, or, where the program may not look into
//     vmspace's descriptors (it changed its user ids), by the file's path,
//     checked to be the same inode. A program at its RLIMIT_NOFILE has the
//     limit raised past the first free descriptor for the moment of the
//     open (beyond the hard limit only if vmspace has CAP_SYS_RESOURCE:
//     else such a mapping cannot be made, and the access faults).
func (s *Sandbox) mapFD(t *task, f memmap.File, at hostarch.AccessType) (int, func(), error) {
	n := f.FD()
	if n == s.mf.FD() {
		fd, err := s.stubFD(t)
		return fd, nil, err
	}
	if n < 0 {
		return -1, nil, fmt.Errorf("sandbox: mapping a closed file: %w", unix.EBADF)
	}
	flags := unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOCTTY
	if at.Write {
		flags = unix.O_RDWR | unix.O_CLOEXEC | unix.O_NOCTTY
	}
	proc := fmt.Sprintf("/proc/%d/fd/%d", s.selfPid, n)
	fd, err := s.openIn(t, proc, flags)
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
		var perr error
		fd, perr = s.openSameFile(t, n, flags)
		if perr != nil {
			err = fmt.Errorf("%w (by its path: %v)", err, perr)
		} else {
			err = nil
		}
	}
	if err != nil {
		return -1, nil, err
	}
	return fd, func() { s.inject(t, unix.SYS_CLOSE, uintptr(fd)) }, nil
}

// firstFreeFD returns the lowest descriptor number at or above from that p
// does not use.
func (s *Sandbox) firstFreeFD(p *process, from int) int {
	used, _ := usedFDs(p)
	for used[from] {
		from++
	}
	return from
}

// usedFDs returns the descriptors p has open, and whether they could be
// listed.
func usedFDs(p *process) (map[int]bool, bool) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.pid))
	if err != nil {
		return nil, false
	}
	used := make(map[int]bool, len(ents))
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			used[n] = true
		}
	}
	return used, true
}

// openSameFile opens, in t's process, the file that vmspace's descriptor n
// refers to, by its path, and checks that the result is the same inode.
func (s *Sandbox) openSameFile(t *task, n, flags int) (int, error) {
	path, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", n))
	if err != nil {
		return -1, err
	}
	if !strings.HasPrefix(path, "/") || strings.HasSuffix(path, " (deleted)") {
		return -1, fmt.Errorf("sandbox: %q cannot be opened by path: %w", path, unix.ENOENT)
	}
	fd, err := s.openIn(t, path, flags)
	if err != nil {
		return -1, err
	}
	var want, got unix.Stat_t
	same := false
	if hfd, err := s.getFD(t.p, fd); err == nil {
		same = unix.Fstat(hfd, &got) == nil && unix.Fstat(n, &want) == nil && got.Dev == want.Dev && got.Ino == want.Ino
		unix.Close(hfd)
	}
	if !same {
		s.inject(t, unix.SYS_CLOSE, uintptr(fd))
		return -1, fmt.Errorf("sandbox: %q is no longer the mapped file: %w", path, unix.ESTALE)
	}
	return fd, nil
}

// openIn opens path with flags in t's process (openat injected), raising
// its RLIMIT_NOFILE by one for the moment if it is used up.
func (s *Sandbox) openIn(t *task, path string, flags int) (int, error) {
	p := t.p
	if err := s.writeMem(p.pid, scratchAddr, append([]byte(path), 0)); err != nil {
		return -1, err
	}
	cwd := unix.AT_FDCWD
	open := func() (uintptr, error) {
		return s.inject(t, unix.SYS_OPENAT, uintptr(cwd), uintptr(scratchAddr), uintptr(flags), 0)
	}
	r, err := open()
	if err != nil {
		return -1, err
	}
	if e, bad := errnoOf(r); bad && e == unix.EMFILE {
		var lim unix.Rlimit
		if unix.Prlimit(p.pid, unix.RLIMIT_NOFILE, nil, &lim) == nil {
			// Up to the first free descriptor at or above the limit
			// (the memory file may sit right at it).
			nl := lim
			nl.Cur = uint64(s.firstFreeFD(p, int(min(lim.Cur, 1<<20)))) + 1
			nl.Max = max(nl.Max, nl.Cur) // possible if vmspace is privileged
			if unix.Prlimit(p.pid, unix.RLIMIT_NOFILE, &nl, nil) == nil {
				r, err = open()
				unix.Prlimit(p.pid, unix.RLIMIT_NOFILE, &lim, nil)
				if err != nil {
					return -1, err
				}
			}
		}
	}
	if e, bad := errnoOf(r); bad {
		return -1, fmt.Errorf("sandbox: opening %s in process %d: %w", path, p.pid, e)
	}
	return int(r), nil
}

// stubFD returns the descriptor of the memory file in t's process,
// installing it if the program took the usual one away.
func (s *Sandbox) stubFD(t *task) (int, error) {
	p := t.p
	if p.memFDOurs {
		return p.memFD, nil
	}
	// Not guarded by the filter: check that it is still the memory file.
	if p.memFD >= 0 && s.isMemFD(p, p.memFD) {
		return p.memFD, nil
	}
	if err := s.reinstallMemFD(t); err != nil {
		return -1, err
	}
	return p.memFD, nil
}

// isMemFD reports whether descriptor fd of p is the memory file.
func (s *Sandbox) isMemFD(p *process, fd int) bool {
	var st, mst unix.Stat_t
	if unix.Stat(fmt.Sprintf("/proc/%d/fd/%d", p.pid, fd), &st) != nil || unix.Fstat(s.mf.FD(), &mst) != nil {
		return false
	}
	return st.Dev == mst.Dev && st.Ino == mst.Ino
}

// reinstallMemFD opens the memory file again in t's process, at a free
// descriptor as high as possible.
func (s *Sandbox) reinstallMemFD(t *task) error {
	p := t.p
	path := fmt.Sprintf("/proc/%d/fd/%d\x00", s.selfPid, s.mf.FD())
	if err := s.writeMem(p.pid, scratchAddr, []byte(path)); err != nil {
		return err
	}
	cwd := unix.AT_FDCWD
	r, err := s.inject(t, unix.SYS_OPENAT, uintptr(cwd), uintptr(scratchAddr), unix.O_RDWR, 0)
	if err != nil {
		return err
	}
	if e, bad := errnoOf(r); bad {
		return fmt.Errorf("sandbox: reopening the memory file in process %d: %w", p.pid, e)
	}
	fd := int(r)
	target := s.freeFD(p, fd)
	if target != fd {
		r, err := s.inject(t, unix.SYS_DUP3, uintptr(fd), uintptr(target), 0)
		if err != nil {
			return err
		}
		if _, bad := errnoOf(r); !bad {
			s.inject(t, unix.SYS_CLOSE, uintptr(fd))
			fd = target
		}
	}
	p.memFD = fd
	p.memFDOurs = fd == s.memFDNum
	return nil
}

// freeFD returns the highest free descriptor of p at or below memFDNum,
// or def if none can be found.
func (s *Sandbox) freeFD(p *process, def int) int {
	used, ok := usedFDs(p)
	if !ok {
		return def
	}
	for fd := s.memFDNum; fd > 2; fd-- {
		if !used[fd] {
			return fd
		}
	}
	return def
}
