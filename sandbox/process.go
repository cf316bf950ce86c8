package sandbox

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/vmspace/vmspace/hostfile"
	"github.com/vmspace/vmspace/mm"
	"golang.org/x/sys/unix"
)

// process is one program process (thread group). Like task, it is used
// only by the tracer goroutine: no field needs a lock.
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
	// hiddenExits are the exit signals of fork children killed unseen
	// (fork.go: failedFork) that may still reach the process, and must
	// not.
	hiddenExits []hiddenExit
	// memFD is the process's descriptor of the memory file; memFDOurs is
	// true while it is the run's memFDNum (guarded by the seccomp filter).
	memFD     int
	memFDOurs bool
	// memFDLent is true while the memory file's descriptor number holds
	// a host file that vmspace opened for a mapping in a process with no
	// other free number (openIn); closeIn gives it back.
	memFDLent bool
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
	// forkers maps the pid of each child the process forked, until the
	// child's exit signal is seen, to the thread that forked it, which
	// the kernel sends that signal to first (childSignal).
	forkers map[int]int
	// memCalls counts the memory system calls served for the process.
	memCalls uint64
	// stubPrivate is true while the process's stub pages are private
	// writable ones (while freshImage prepares the process, or if the
	// shared ones could not be mapped): the scratch page is then
	// written with process_vm_writev, not through the memory file.
	stubPrivate bool
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
	if !t.dead() {
		t.state = taskInKernel
	}
	p := t.p
	if !t.dead() {
		s.keepRobustAtExit(t)
		s.coreOnExit(t)
		if len(t.pending) > 0 && !s.diesOfSignal(t.tid) {
			s.handOver(t)
		}
	}
	s.fp.taskExiting(t)
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

// reapExited reaps every task of the program that has ended as a zombie
// still traced, keeping its exit for the main loop. It is called at the
// entry of every wait of the program (wait4, waitid): a traced zombie can
// be waited for by its real parent only once its tracer has reaped it,
// while its pidfd says it has ended as soon as it is one (and its parent
// may have been told so). Tasks end traced when they leave their
// exit-stop unseen: a SIGKILL that wakes a task from a stop the sandbox
// holds it at takes it to its exit-stop, from which the sandbox's
// resumption of the stop it served then lets it go on. A wait cannot
// leave ptrace stops pending while taking exits (ptrace stops are
// reported whatever the options), so the stops it takes are kept for the
// main loop too.
func (s *Sandbox) reapExited() {
	for {
		wpid, ws, err := wait4(-1, unix.WNOHANG)
		if err != nil || wpid <= 0 {
			return
		}
		s.keep(wpid, ws)
	}
}

// taskExited records the end of a task, and of its process with the last
// one.
func (s *Sandbox) taskExited(t *task, ws unix.WaitStatus) {
	t.state = taskDead
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
		s.reportExit(p, ws)
		s.processExited(p)
	}
}

// processExited forgets a process whose tasks have all ended, and releases
// it (releaseProcess) once its host process has ended too.
func (s *Sandbox) processExited(p *process) {
	delete(s.procs, p.pid)
	s.fwd.remove(p.pid)
	s.dropEarly(p)
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
	s.fp.release(p)
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
	s.reportEnd(p, m, why)
	if s.opts.Maps != nil {
		fmt.Fprintf(s.opts.Maps, "=== /proc/%d/maps of %s at %s ===\n%s", p.pid, p.name, why, m.MapsText(s.ctx))
	}
	sp.as.Release()
	if sp.active {
		m.Deactivate()
	}
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

// testCommit, if not nil, is the commitment accounting of every manager
// (tests set it: the host's overcommit policy cannot be changed here).
var testCommit *mm.Commit

// newManager returns an empty memory manager for a program image.
func (s *Sandbox) newManager() *mm.MemoryManager {
	lim := s.limits
	m := mm.New(mm.Options{Platform: s.plat, MemoryFile: s.mf, Limits: &lim})
	if testCommit != nil {
		m.SetCommit(testCommit)
	}
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
	if err == nil {
		as.sp.active = true
	}
	return err
}

func (s *Sandbox) newProcess(pid int) *process {
	p := &process{pid: pid, tasks: make(map[int]*task), memFD: s.memFDNum, memFDOurs: true, pidfd: -1}
	s.procs[pid] = p
	s.fwd.add(pid)
	return p
}
