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
	"time"

	"github.com/vmspace/vmspace/hostfile"
	"github.com/vmspace/vmspace/kernel"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/mm"
	"github.com/vmspace/vmspace/pgalloc"
	"github.com/vmspace/vmspace/platform/ptrace"
	"github.com/vmspace/vmspace/report"
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
	// NoASLR gives every program Linux's layout with randomization off
	// (as setarch -R does), whatever kernel.randomize_va_space says.
	NoASLR bool
	// Report, if not nil, collects a report of the run (package report):
	// snapshots of the address spaces at forks, execs and exits, a
	// timeline of their figures, and the memory system calls' times.
	Report *report.Collector
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
	// Injected is the number of system calls vmspace injected into
	// program tasks (host mmap, munmap, mprotect...).
	Injected uint64
	// FastCalls is the number of memory system calls served on the fast
	// path (fastpath.go), without a stop; HelperCalls the host calls
	// its helper threads made for them.
	FastCalls, HelperCalls uint64
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
			s.fwd.start(opts.Signals, stop)
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
	// vdsoSt is the record of the host's vDSO blocks (vdso.go), made
	// on first use; nil without a vDSO. Used by the tracer thread only.
	vdsoSt *vdsoState
	// exe is the stub image.
	exe *ptrace.Exe
	// limits are the memory managers' initial limits.
	limits mm.Limits
	// fp is the fast path (fastpath.go), nil when off; set at start-up.
	// With it on, the tracer thread's state is shared with its server
	// under fp.mu.
	fp *fastpath
	// tasks are the live program tasks by thread id.
	tasks map[int]*task
	// procs are the live processes by pid.
	procs map[int]*process
	// early holds the first stop of tasks seen before their parent's
	// clone event.
	early map[int]unix.WaitStatus
	// earlyParent holds the parent process (pid) of each task of early,
	// as the host said at its first stop: a parent that dies without
	// reporting the clone event leaves it to be killed (dropEarly).
	// Tracer goroutine.
	earlyParent map[int]int
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
	// outside watches mapped host files for truncations by other
	// processes (outside.go; it has its own lock).
	outside outsideWatch
	// selfPid is vmspace's pid.
	selfPid int
	// uffd holds the program's userfaultfd contexts (uffd.go), nil
	// until it makes one. Tracer goroutine.
	uffd *uffdState
	// shm are the System V shared memory segments (the registry has its
	// own lock).
	shm *kernel.ShmRegistry
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
	// fdCache, while not nil, keeps the descriptors mapFD opens in one
	// task's process open for reuse (withFDCache).
	fdCache *fdCache
	// links are the paths through which execs name their threads
	// (comm.go). Tracer goroutine.
	links stubLinks
	// progFD, while not nil, is a program's descriptor that mapFD uses
	// for its file (withProgFD). Tracer goroutine.
	progFD *progFD
	// unflushed are the address spaces with pending unmaps (see
	// stubAS.pending), made before any task using them runs on.
	unflushed map[*stubAS]struct{}
	// tailsHeld are the address spaces whose freed heap tail a rewritten
	// brk is unmapping (brk.go): no freed page is released until it has.
	// Tracer goroutine.
	tailsHeld map[*stubAS]struct{}
	// views are the program's open /proc files that vmspace serves
	// (procview.go). Tracer goroutine.
	views procViews
}

func newSandbox(opts Options) (*Sandbox, error) {
	s := &Sandbox{
		opts:        opts,
		ctx:         context.Background(),
		tasks:       make(map[int]*task),
		procs:       make(map[int]*process),
		early:       make(map[int]unix.WaitStatus),
		earlyParent: make(map[int]int),
		selfPid:     unix.Getpid(),
		start:       time.Now(),
		debugCounts: make(map[int]int),
		unflushed:   make(map[*stubAS]struct{}),
		tailsHeld:   make(map[*stubAS]struct{}),
	}
	progLimits := ownLimits()
	var err error
	s.mf, err = pgalloc.New(pgalloc.Options{Name: "vmspace-memory", HoldFreed: true, DisableAsyncRelease: syncRelease, Windowed: addressSpaceBound()})
	if err != nil {
		return nil, err
	}
	s.files = hostfile.NewDirectTable(s.mf)
	s.shm = kernel.NewShmRegistry(s.mf)
	s.plat = &sbPlatform{minAddr: ptrace.MinUserAddress()}
	s.exe, err = ptrace.NewExe()
	if err != nil {
		s.mf.Destroy()
		return nil, err
	}
	s.stubPages, err = newStubPages(s.mf)
	if err != nil {
		s.exe.Close()
		s.mf.Destroy()
		return nil, err
	}
	s.limits = hostLimits()
	s.progLimits = progLimits
	s.limits.AS = mm.RLimit{Cur: progLimits[0].Cur, Max: progLimits[0].Max}
	s.limits.Data = mm.RLimit{Cur: progLimits[1].Cur, Max: progLimits[1].Max}
	return s, nil
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
	s.fp.shutdown()
	s.closeViews()
	s.exe.Close()
	s.removeStubLinks()
	s.mf.DecRef(s.stubPages)
	if s.imageFile != nil {
		s.imageFile.Close()
	}
	s.mf.Destroy()
	s.stats.Wall = time.Since(s.start)
}

// inject makes t, stopped, make system call nr from the code page and
// returns its raw result. t's application registers are kept in t.regs and
// restored when it resumes.
func (s *Sandbox) inject(t *task, nr uintptr, args ...uintptr) (uintptr, error) {
	if h := s.fp.serving(); h != nil {
		// Served on the fast path: the process's helper thread makes it.
		return s.fp.helperCall(t, nr, args...)
	}
	return s.injectAt(t, t.ip, t.ip+ptrace.StubTrapDelta, nr, args...)
}

// injectAt is inject from the syscall instruction at ip, whose caller
// stops with rip at trap (ptrace.InjectAt).
func (s *Sandbox) injectAt(t *task, ip, trap uint64, nr uintptr, args ...uintptr) (uintptr, error) {
	if t.dead() {
		return 0, errTaskDead
	}
	if t.inKernel() {
		return 0, fmt.Errorf("sandbox: cannot inject a system call into task %d inside a system call: %w", t.tid, unix.EBUSY)
	}
	if t.stopKept {
		return 0, s.keptStop(t)
	}
	if err := s.fetchRegs(t); err != nil {
		return 0, err
	}
	var a [6]uintptr
	copy(a[:], args)
	s.stats.Injected++
	if injectHook != nil {
		injectHook(nr)
	}
	t.regState = regsOwed
	r, ws, err := ptrace.InjectAt(t.tid, &t.regs, ip, trap, nr, &a, injectWaiter{s, t, nr})
	var exit *ptrace.ExitError
	var op *ptrace.OpError
	switch {
	case err == nil:
		t.state = taskSignalStop
		return r, nil
	case errors.As(err, &exit):
		// Killed: the main loop serves its exit-stop, or its end.
		s.keep(t.tid, exit.Status)
		t.state = taskDead
		return 0, errTaskDead
	case errors.As(err, &op):
		return 0, s.lost(t, op.Op, op.Err)
	case errors.Is(err, ptrace.ErrInjectFault):
		t.state = taskSignalStop
	case errors.Is(err, ptrace.ErrInjectInterrupted):
		t.setSigStop(event(ws) == 0)
	}
	return 0, err
}

// injectHook, if not nil, is called with the number of every system call
// injected (tests count them).
var injectHook func(nr uintptr)

// injectWaiter is the injector's Waiter for an injected call in a task:
// the sandbox's wait (waitFor), which keeps the reports of other tasks for
// the main loop, and its signal policy.
type injectWaiter struct {
	s  *Sandbox
	t  *task
	nr uintptr
}

// Wait implements ptrace.Waiter.
func (w injectWaiter) Wait() (unix.WaitStatus, error) {
	ws, err := w.s.waitFor(w.t)
	if debug && os.Getenv("VMSPACE_DEBUG") == "2" {
		fmt.Fprintf(os.Stderr, "vmspace-debug:   inject %d in %d: status %#x err %v\n", w.nr, w.t.tid, uint32(ws), err)
	}
	if err != nil {
		return ws, w.s.lost(w.t, "wait4", err)
	}
	return ws, nil
}

// Interrupted implements ptrace.Waiter: a signal that ends the process
// (SIGTERM, SIGINT... with no handler) is delivered at once, ending
// whatever the call was waiting for; any other is kept for the task's
// resumption.
func (w injectWaiter) Interrupted(ws unix.WaitStatus, si *ptrace.Siginfo) (unix.Signal, error) {
	sig := ws.StopSignal()
	if si != nil {
		if debug {
			var rr unix.PtraceRegs
			ptraceGetRegs(w.t.tid, &rr)
			fmt.Fprintf(os.Stderr, "vmspace-debug:   signal %v addr %#x code %d at rip %#x\n", sig, si.Addr(), si.Code(), rr.Rip)
		}
		if killsNow(w.t.p.pid, sig) {
			return sig, nil
		}
	}
	w.s.noteSignal(w.t, ws)
	return 0, nil
}

// waitFor waits for the next report of t, which the sandbox has just
// resumed, keeping every report of another task that comes first for the
// main loop (keep). It never waits for t alone: a thread-group leader
// killed with its process is reported only once every other thread of the
// process has been reaped, which only a wait for any task does; and no
// report of a task of t's process is left pending in a way that would hold
// t's back (see below).
func (s *Sandbox) waitFor(t *task) (unix.WaitStatus, error) {
	// A report of t kept earlier is its next one: waiting for another
	// would wait forever if it is t's exit-stop (t, resumed from it, dies
	// without stopping again, and if t leads its thread group its death
	// is reported only once its other threads are reaped).
	for i, wr := range s.deferred {
		if wr.tid == t.tid {
			s.deferred = slices.Delete(s.deferred, i, i+1)
			t.stopKept = false
			return wr.ws, nil
		}
	}
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
				// Its own exit: nothing needs doing at the stop
				// but handing its kept signals over.
				u.stopKept = false
				s.handOver(u)
				ptraceCont(wr.tid, 0)
				continue
			}
			// Its process is dying of a signal: so is t.
			t.state = taskDead
		}
		kept = append(kept, wr)
	}
	clear(s.deferred[len(kept):])
	s.deferred = kept
	for {
		if t.dead() {
			return 0, errTaskDead
		}
		wpid, ws, err := wait4(-1, 0)
		if err == unix.ECHILD {
			// Nothing left to wait for: t is gone.
			t.state = taskDead
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
				// doing at the stop but handing its kept signals
				// over (t is not the last task, so its process's
				// end is seen later).
				s.handOver(u)
				ptraceCont(wpid, 0)
				continue
			}
			// The process is dying of a signal (a core may be due:
			// the main loop serves the stop), so t is being killed
			// too: give it up for dead now. Its exit-stop or exit
			// is served by the main loop.
			s.keep(wpid, ws)
			t.state = taskDead
			return 0, errTaskDead
		}
		if u := s.tasks[wpid]; u != nil && ws.Stopped() && event(ws) == 0 && ws.StopSignal() == unix.SIGCONT {
			// Its SIGCONT discarded the SIGSTOP that t's stop may
			// wait for.
			s.contSeen(u.p)
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

// keptStop is the error for a use of t (an injected call, a stop) while
// its current stop waits in s.deferred, reported to a wait for another
// task: t cannot be used, since resuming it would lose that report. If it
// is an exit-stop (t was killed while the sandbox held it stopped), t is
// given up for dead; the main loop serves the stop.
func (s *Sandbox) keptStop(t *task) error {
	for _, wr := range s.deferred {
		if wr.tid == t.tid && (event(wr.ws) == unix.PTRACE_EVENT_EXIT || wr.ws.Exited() || wr.ws.Signaled()) {
			t.state = taskDead
			return errTaskDead
		}
	}
	return fmt.Errorf("sandbox: task %d has a stop to serve first: %w", t.tid, unix.EBUSY)
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
			u.state = taskDead
		case ws.Stopped():
			u.stopKept = true
		}
	}
}

// holder returns a stopped task using sp that the memory manager's
// platform calls can use: one the sandbox holds, or one it stops now
// (resumed after the current stop is served).
func (s *Sandbox) holder(sp *space) (*task, error) {
	var cands []*task
	for p := range sp.procs {
		if t := p.held; t != nil && !t.dead() && !t.inKernel() {
			return t, nil
		}
		for _, t := range p.tasks {
			// A task running to the exit of its fork would stop
			// there first (and may still be stopped at its event);
			// one waiting for its vfork child cannot stop until the
			// child execs or exits.
			if t.state != taskDead && t.state != taskNew && t.state != taskParked && t.state != taskForkExit && !t.stopKept && p.held != t && !s.inVfork(t) {
				cands = append(cands, t)
			}
		}
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].tid < cands[j].tid })
	if holderHook != nil {
		holderHook(cands)
	}
	for _, t := range cands {
		// Stopping an earlier candidate may have taken this one's
		// report (its exit-stop, if the process was being killed).
		if t.dead() || t.stopKept {
			continue
		}
		if err := s.stopTask(t); err != nil {
			continue
		}
		t.p.held = t
		s.borrowed = append(s.borrowed, t)
		return t, nil
	}
	return nil, fmt.Errorf("sandbox: no task of the address space can be stopped: %w", errTaskDead)
}

// holderHook, if not nil, is called by holder with the running tasks it
// is about to stop, in order (tests force races with it).
var holderHook func(cands []*task)

// stopTask stops a running task with a SIGSTOP of its own and waits for
// the stop (the SIGSTOP is suppressed when it arrives, if something else
// came first). A stop at an event that comes first is kept for the main
// loop, and the task is not usable (EBUSY).
func (s *Sandbox) stopTask(t *task) error {
	if t.stopKept {
		return s.keptStop(t)
	}
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
		t.regState = regsStale
		t.stops++
		var si siginfo
		if ws.StopSignal() == unix.SIGSTOP && event(ws) == 0 && ptraceGetSiginfo(t.tid, &si) == nil &&
			si.code() == siTkill && int(si.pid()) == s.selfPid {
			t.expectStop--
			t.state = taskSignalStop
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
		fault := false
		if (sig == unix.SIGSEGV || sig == unix.SIGBUS) && ptraceGetSiginfo(t.tid, &si) == nil {
			// A fault whose siginfo the kernel lost is one too
			// (lostsiginfo.go).
			fault = si.code() > 0 && si.code() != siKernel || s.lostFault(t, sig, &si)
		}
		if !fault {
			s.noteSignal(t, ws)
		}
		t.state = taskSignalStop
		return nil
	}
}
