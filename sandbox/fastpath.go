package sandbox

import (
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/internal/lockrank"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/pgalloc"
	"github.com/vmspace/vmspace/platform/ptrace"
	"golang.org/x/sys/unix"
)

// The fast path serves the hottest memory system calls (brk, anonymous
// mmap, munmap, mprotect, madvise) without a ptrace stop and without an
// injected call. It is on by default; VMSPACE_FASTPATH=0 turns it off
// (fastpathOn).
//
// A second seccomp filter (fastFilter), installed in the first process
// after the main one and inherited by all, returns SECCOMP_RET_USER_NOTIF
// for those calls when they are not made from the stub's code page; that
// action takes precedence over the main filter's SECCOMP_RET_TRACE, so the
// calling thread neither stops for the tracer nor runs the call: it waits
// in the kernel while a goroutine of vmspace (fastpath.serve), reading the
// filter's listener descriptor, runs the memory manager's call and answers
// with its result. The host mapping changes the manager makes meanwhile
// (stubAS's mmap and munmap, the opening of a mapped file...) are made by
// the process's helper thread: a thread vmspace starts in every program
// process (CLONE_UNTRACED, so never stopped by ptrace, with every signal
// blocked) that runs the stub's helper loop (ptrace.StubHelperCloneOff):
// it sleeps on a futex word of its comm area, in the page at scratchAddr,
// which is, with the fast path on, the process's own page of the memory
// file (fpHelper.page; vmspace maps it too) instead of the shared scratch
// page, read-only as that one, and makes the system call it finds there
// (fastpath.helperCall). It stores nothing: it reports the result by a
// second system call (ptrace.HelperReportNr) that this filter hands to
// vmspace too, its result as an argument; vmspace sets the helper's state
// word back to idle before it answers, and the helper, once answered,
// only reads that word and sleeps on it. So it is idle the moment vmspace
// has its result, never changes its page's protection (the program
// cannot write the page at any moment), and nothing it does can race
// with the program or the tracer running on. The comm area takes the
// page's last bytes; vmspace's writes of injected calls' arguments there
// end before it (writeMem). Nothing on the way stops a program thread.
//
// The tracer thread and the goroutine take turns: fastpath.mu is held by
// the tracer thread whenever it is not blocked in its main wait for the
// next report (loop.go), and by the goroutine from the moment it receives
// a notification to the moment it answers it. So the tracer's state (the
// tasks, processes and address spaces, the stubASes' records of host
// mappings, the pending unmaps and the held freed pages of the shootdown)
// is used by one of them at a time, as before, and the goroutine serves a
// call exactly as the tracer would (dispatch), then makes the shootdown.
// Because a notification is only received with mu held, the tracer never
// waits (holding mu) for a thread whose notification was received: such
// a thread is in a killable sleep that a PTRACE_INTERRUPT or SIGSTOP would
// not end (SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV). A thread whose
// notification was not received yet sleeps interruptibly: a signal ends
// its wait with ERESTARTSYS, and the tracer serves the call at the
// signal's stop (fastpath.restartable, as at a system call stop), so
// that the handler runs after the call has been made, as on Linux, whose
// memory calls are never interrupted. (Made again after the handler, a
// call would never be made while signals came faster than the server
// received it: a program with a 200 us interval timer spun for ever.)
//
// A fork child gets its own page and helper at its first stop, before it
// runs (fastpathFork); a new image gets them with its stub pages
// (shareStubPages). A helper ends with its process (exit_group, exec) or,
// when the process's last program thread exits alone, on request
// (taskExiting): else it would keep the process alive. Pages are recorded
// by process (fastpath.pages), not by pid, which a new process may reuse
// before vmspace has released the old one; a page is freed when no
// process's host address space maps it any more (a CLONE_VM sibling that
// shares it keeps it past its process's exit or exec).
//
// Limits: the fast path is off on kernels before 6.18, which could hand
// a call the server had answered back to the program as interrupted, to
// be served twice (fastpath_kernel.go); a process whose helper is gone (a CLONE_VM sibling that exec'd
// away with it) gets ENOMEM from the fast calls; a SIGSTOP that stops a
// helper holds the process's fast calls until SIGCONT.

// fastpathOn turns the fast path on for new sandboxes: on by default (on
// kernels where fastpath_kernel.go allows it), off with VMSPACE_FASTPATH=0.
//
// It was opt-in while a known bug stood: in two CI runs a program on the
// fast path died with SIGSEGV in a single-threaded loop of fast calls and
// faults (1 run in about 300 of such a loop, under a load of 10 to 45),
// because the fault's SIGSEGV reached vmspace with the siginfo the kernel
// makes up when it has lost a signal's own (si_code SI_USER, si_pid 0,
// si_addr 0), and vmspace delivered it as a SIGSEGV sent by kill(2). Such
// a SIGSEGV is now taken for a fault whose details were lost and the
// access made again (lostsiginfo.go, TestLostSiginfo). Soaked since with
// that (2026-12-08, load 9 to 12): the whole sandbox suite with -race on
// the fast path, and TestFastPath 340 times, without a failure.
var fastpathOn = os.Getenv("VMSPACE_FASTPATH") != "0"

// fastpath is a sandbox's fast path.
type fastpath struct {
	// s is the sandbox. Immutable.
	s *Sandbox
	// mu makes the tracer thread and the server take turns (see above):
	// the outermost lock of all (lockrank.FastPath).
	mu lockrank.Mutex[lockrank.FastPathTag]
	// held is set while the tracer thread holds mu. Used by the tracer
	// thread only.
	held bool
	// listener is the filter's notification descriptor; stopR and stopW
	// the pipe that ends the server. Immutable.
	listener, stopR, stopW int
	// done is closed when the server has returned.
	done chan struct{}
	// pages are the pages the processes map at scratchAddr (each with
	// its helper), by process: set when vmspace maps one (startHelper),
	// and passed on to the processes that still share the host address
	// space when the process leaves it (exec, release: handOff). A
	// process without an entry maps the page of a process of its address
	// space (a CLONE_VM child: pageOf), or the shared scratch page.
	// Protected by mu.
	pages map[*process]*fpHelper
	// live is the number of pages allocated and not yet freed.
	// Protected by mu.
	live int
	// cur is the helper of the call being served on the fast path, nil
	// while the tracer runs. Protected by mu.
	cur *fpHelper
	// kept are the notifications received while a helper's report was
	// awaited, to be answered next (drain). Protected by mu.
	kept []seccompNotif
}

// fpHelper is a page that host address spaces map at scratchAddr, and
// the helper thread that serves it.
type fpHelper struct {
	// proc is the process whose thread group holds the helper thread,
	// and tid the helper's: nil and 0 until it is started. Protected by
	// fastpath.mu.
	proc *process
	tid  int
	// page is the page. Immutable.
	page memmap.FileRange
	// mem is vmspace's mapping of page. Immutable until free.
	mem []byte
	// users is the number of entries of fastpath.pages naming it; the
	// page is freed when it drops to 0. Protected by fastpath.mu.
	users int
	// dead is set once the helper is known to be gone (or could not be
	// started). Protected by fastpath.mu.
	dead bool
}

// fastCalls are the system calls the fast path serves.
var fastCalls = []int{unix.SYS_BRK, unix.SYS_MMAP, unix.SYS_MUNMAP, unix.SYS_MPROTECT, unix.SYS_MADVISE}

// isFastCall reports whether nr is one of fastCalls.
func isFastCall(nr int) bool {
	for _, c := range fastCalls {
		if c == nr {
			return true
		}
	}
	return false
}

// fastFilter returns the fast path's filter: SECCOMP_RET_USER_NOTIF for
// brk, munmap, mprotect, madvise and mmap with MAP_ANONYMOUS made outside
// the stub's code page and the stub image's page (ptrace.StubLinkAddr),
// and for helpers' reports (ptrace.HelperReportNr made at
// ptrace.StubHelperReportIP), SECCOMP_RET_ALLOW for everything else
// (decided by the main filter).
func fastFilter() ([]unix.SockFilter, error) {
	b := newBPF()
	b.load(sdArch)
	b.jump(unix.BPF_JEQ, unix.AUDIT_ARCH_X86_64, "", "allow")
	b.load(sdNr)
	b.jump(unix.BPF_JEQ, ptrace.HelperReportNr, "report", "")
	for _, nr := range fastCalls {
		if nr == unix.SYS_MMAP {
			b.jump(unix.BPF_JEQ, uint32(nr), "anon", "")
			continue
		}
		b.jump(unix.BPF_JEQ, uint32(nr), "ip", "")
	}
	b.ja("allow")
	b.label("anon")
	b.load(sdArg0 + 8*3)
	b.jump(unix.BPF_JSET, unix.MAP_ANONYMOUS, "ip", "allow")
	b.label("ip")
	b.load(sdIPHigh)
	b.jump(unix.BPF_JEQ, 0, "low", "")
	b.inCodePage("", "notify", "allow")
	// The stub image's page, whose calls the tracer injects while
	// it prepares a new image, holding mu: left to the main filter
	// (as are a program's calls from code in that page, rare).
	b.label("low")
	b.load(sdIPLow)
	b.jump(unix.BPF_JGE, ptrace.StubLinkAddr, "", "notify")
	b.jump(unix.BPF_JGE, ptrace.StubLinkAddr+hostarch.PageSize, "notify", "allow")
	// A helper's report (ptrace.HelperReportNr at its address).
	b.label("report")
	b.load(sdIPHigh)
	b.jump(unix.BPF_JEQ, uint32(ptrace.StubHelperReportIP>>32), "", "allow")
	b.load(sdIPLow)
	b.jump(unix.BPF_JEQ, uint32(ptrace.StubHelperReportIP&0xffffffff), "notify", "allow")
	b.label("notify")
	b.ret(unix.SECCOMP_RET_USER_NOTIF)
	b.label("allow")
	b.ret(unix.SECCOMP_RET_ALLOW)
	return b.finish()
}

// fastpathInstall installs the fast path's filter in t's process (the
// first), after the main one, takes its listener and starts the server.
// It does nothing with the fast path off, or on a kernel that could
// answer one call twice (fastpath_kernel.go).
func (s *Sandbox) fastpathInstall(t *task) error {
	if !fastpathOn || !fastpathKernelOK() {
		return nil
	}
	f, err := fastFilter()
	if err != nil {
		return err
	}
	r, err := s.injectFilter(t, f, unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW|unix.SECCOMP_FILTER_FLAG_NEW_LISTENER|unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV)
	if err != nil {
		return fmt.Errorf("sandbox: installing the fast path's filter: %w", err)
	}
	pidfd, err := unix.PidfdOpen(t.p.pid, 0)
	if err != nil {
		return fmt.Errorf("sandbox: fast path: %w", err)
	}
	lfd, err := unix.PidfdGetfd(pidfd, int(r), 0)
	unix.Close(pidfd)
	if err != nil {
		s.inject(t, unix.SYS_CLOSE, r)
		return fmt.Errorf("sandbox: taking the fast path's listener: %w", err)
	}
	var pp [2]int
	if err := unix.Pipe2(pp[:], unix.O_CLOEXEC); err != nil {
		s.inject(t, unix.SYS_CLOSE, r)
		unix.Close(lfd)
		return fmt.Errorf("sandbox: fast path: %w", err)
	}
	fp := &fastpath{s: s, listener: lfd, stopR: pp[0], stopW: pp[1], done: make(chan struct{}),
		pages: make(map[*process]*fpHelper)}
	fp.lock()
	s.fp = fp
	// The server runs from here, so that shutdown ends it whatever
	// happens next (it serves nothing while the tracer holds mu).
	go fp.serve()
	// The first image's helper: its stub pages were shared before the
	// filter existed.
	if err := s.fastpathImage(t); err != nil {
		s.inject(t, unix.SYS_CLOSE, r)
		return err
	}
	// The listener's number in the program is closed by the helper:
	// no stop.
	if h := fp.pages[t.p]; h != nil {
		if res, err := fp.run(h, unix.SYS_CLOSE, r); err == nil && res == 0 {
			return nil
		}
	}
	s.inject(t, unix.SYS_CLOSE, r)
	return nil
}

// lock takes mu for the tracer thread (a no-op with the fast path off).
func (fp *fastpath) lock() {
	if fp != nil && !fp.held {
		fp.mu.Lock()
		fp.held = true
	}
}

// unlock lets the server run (the tracer thread is about to wait).
func (fp *fastpath) unlock() {
	if fp != nil && fp.held {
		fp.held = false
		fp.mu.Unlock()
	}
}

// serving returns the helper of the call served on the fast path, nil
// when the tracer runs.
func (fp *fastpath) serving() *fpHelper {
	if fp == nil {
		return nil
	}
	return fp.cur
}

// shutdown ends the server and releases the helpers' pages. Called by
// the tracer thread when the sandbox closes.
func (fp *fastpath) shutdown() {
	if fp == nil {
		return
	}
	fp.unlock()
	unix.Close(fp.stopW)
	<-fp.done
	unix.Close(fp.stopR)
	unix.Close(fp.listener)
	if fpShutdownHook != nil {
		fpShutdownHook(fp)
	}
	for p, h := range fp.pages {
		delete(fp.pages, p)
		fp.unref(h)
	}
}

// fpShutdownHook, if not nil, is called by shutdown before it frees the
// pages still recorded (tests: which processes were never released).
var fpShutdownHook func(fp *fastpath)

// seccompNotif is struct seccomp_notif.
type seccompNotif struct {
	id    uint64
	pid   uint32
	flags uint32
	nr    int32
	arch  uint32
	ip    uint64
	args  [6]uint64
}

// seccompNotifResp is struct seccomp_notif_resp.
type seccompNotifResp struct {
	id    uint64
	val   int64
	error int32
	flags uint32
}

// serve is the server: it answers the filter's notifications until
// shutdown.
func (fp *fastpath) serve() {
	defer close(fp.done)
	for {
		pfd := []unix.PollFd{{Fd: int32(fp.listener), Events: unix.POLLIN}, {Fd: int32(fp.stopR), Events: unix.POLLIN}}
		if _, err := unix.Poll(pfd, -1); err != nil {
			if err == unix.EINTR {
				continue
			}
			return
		}
		if pfd[1].Revents != 0 {
			return
		}
		if pfd[0].Revents&unix.POLLIN == 0 {
			if pfd[0].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0 {
				// No process uses the filter any more.
				pfd = pfd[1:]
				for {
					if _, err := unix.Poll(pfd, -1); err != unix.EINTR {
						return
					}
				}
			}
			continue
		}
		if serveHook != nil {
			serveHook()
		}
		fp.mu.Lock()
		fp.drain()
		fp.mu.Unlock()
	}
}

// serveHook, if not nil, is called by the server when the listener has
// a notification, before it takes mu to receive it (tests: a signal then
// interrupts the call before it is received).
var serveHook func()

// drain answers the notifications there are: those kept aside while a
// helper's report was awaited, then those the listener has. Called with
// mu held: whoever receives holds mu and receives only what poll says is
// there, so a receipt never blocks (a notification withdrawn meanwhile,
// its caller killed, fails the receipt with ENOENT).
func (fp *fastpath) drain() {
	for {
		var n seccompNotif
		if len(fp.kept) > 0 {
			n = fp.kept[0]
			fp.kept = fp.kept[1:]
		} else if !fp.readable(0) || !fp.recv(&n) {
			return
		}
		fp.answer(&n)
	}
}

// readable reports whether the listener has a notification, waiting for
// at most timeout milliseconds.
func (fp *fastpath) readable(timeout int) bool {
	pfd := []unix.PollFd{{Fd: int32(fp.listener), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(pfd, timeout)
		if err == unix.EINTR {
			continue
		}
		return err == nil && n > 0 && pfd[0].Revents&unix.POLLIN != 0
	}
}

// recv receives a notification into n, false if there was none after all
// (its caller was interrupted or killed).
func (fp *fastpath) recv(n *seccompNotif) bool {
	for {
		*n = seccompNotif{}
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fp.listener), unix.SECCOMP_IOCTL_NOTIF_RECV, uintptr(unsafe.Pointer(n)))
		if e != unix.EINTR {
			return e == 0
		}
	}
}

// send answers notification id with the raw result v.
func (fp *fastpath) send(id uint64, v uintptr) {
	resp := seccompNotifResp{id: id}
	if e, bad := errnoOf(v); bad {
		resp.error = -int32(e)
	} else {
		resp.val = int64(v)
	}
	// The send takes the filter's lock interruptibly: a signal of the Go
	// runtime (preemption) fails it with EINTR, and the caller would wait
	// for its answer for ever. ENOENT: the caller was killed meanwhile.
	for {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fp.listener), unix.SECCOMP_IOCTL_NOTIF_SEND, uintptr(unsafe.Pointer(&resp)))
		if e != unix.EINTR {
			break
		}
	}
}

// isReport reports whether n is a helper's report (or a program's jump
// to the instruction that makes one).
func isReport(n *seccompNotif) bool {
	return n.nr == ptrace.HelperReportNr && n.ip == ptrace.StubHelperReportIP
}

// answer serves notification n and answers it.
func (fp *fastpath) answer(n *seccompNotif) {
	if isReport(n) {
		// No report is awaited (a program that jumped into the code
		// page): what getppid would not say.
		fp.send(n.id, enosysResult)
		return
	}
	v := fp.call(n)
	if t := fp.s.tasks[int(n.pid)]; fp.s.uffd != nil && t != nil && fp.s.uffdFastEventWait(t, n.id, v) {
		// The answer waits for the program's reading of the
		// userfaultfd events the call raised.
		return
	}
	fp.send(n.id, v)
}

// call serves system call n, as the tracer would at its stop, and
// returns its raw result.
func (fp *fastpath) call(n *seccompNotif) uintptr {
	s := fp.s
	t := s.tasks[int(n.pid)]
	nr := int(n.nr)
	if t == nil || t.dead() || t.p.sp == nil || !isFastCall(nr) {
		// Not a task vmspace knows: one killed, or a new task of a
		// process being killed before its creator's event.
		return enomemResult
	}
	h := fp.helperOf(t.p.sp)
	if h == nil {
		if debug {
			fmt.Fprintf(os.Stderr, "vmspace-debug: fast path: no helper for task %d's call %d\n", t.tid, nr)
		}
		return enomemResult
	}
	s.stats.FastCalls++
	if debug {
		fmt.Fprintf(os.Stderr, "vmspace-debug: fast %d in %d %#x\n", nr, t.tid, n.args)
	}
	if fastHook != nil {
		fastHook(s, t, nr, n.args)
	}
	fp.cur = h
	t.callPC, t.callSP = n.ip, 0
	res := s.dispatch(t, nr, n.args)
	// Unmap what the manager freed before anything runs on.
	s.keepUnflushedKernelAreas()
	s.shootdown()
	fp.cur = nil
	if res.act != actReturn {
		return enosysResult
	}
	return res.val
}

// fastHook, if not nil, is called by the server before it serves each
// call, with its number and arguments (tests: the fast path's counterpart
// of stopHook).
var fastHook func(s *Sandbox, t *task, nr int, a [6]uint64)

// helperOf returns the live helper of sp's host address space, nil if
// there is none.
func (fp *fastpath) helperOf(sp *space) *fpHelper {
	if fp == nil || sp == nil {
		return nil
	}
	for p := range sp.procs {
		if h := fp.pages[p]; h != nil && h.tid != 0 && !h.dead {
			return h
		}
	}
	return nil
}

// pageOf returns the page p's host address space maps at scratchAddr if
// it is one of the fast path's: p's own, or that of a process sharing its
// address space; nil if it maps the shared scratch page.
func (fp *fastpath) pageOf(p *process) *fpHelper {
	if h := fp.pages[p]; h != nil {
		return h
	}
	if p.sp != nil {
		for q := range p.sp.procs {
			if h := fp.pages[q]; h != nil {
				return h
			}
		}
	}
	return nil
}

// set records that p's host address space maps h (replacing what it
// mapped).
func (fp *fastpath) set(p *process, h *fpHelper) {
	old := fp.pages[p]
	if old == h {
		return
	}
	h.users++
	fp.pages[p] = h
	if old != nil {
		fp.unref(old)
	}
}

// unref drops an entry naming h, freeing its page with the last.
func (fp *fastpath) unref(h *fpHelper) {
	h.users--
	if h.users <= 0 {
		fp.free(h)
	}
}

// handOff is called when p's host address space stops being the one
// whose page at scratchAddr is h (p exec'd or ended): the processes still
// sharing it (CLONE_VM children, recorded with p's address space) keep
// the page, and a helper in p's thread group is gone.
func (fp *fastpath) handOff(p *process, h *fpHelper) {
	if h.proc == p {
		h.dead = true
	}
	if p.sp == nil {
		return
	}
	for q := range p.sp.procs {
		if q != p && fp.pages[q] == nil {
			fp.set(q, h)
		}
	}
}

// anyTask returns a live task of sp for the host calls of its address
// space on the fast path (made by its helper: the task only names the
// process).
func (fp *fastpath) anyTask(sp *space) (*task, error) {
	if fp.helperOf(sp) != nil {
		for p := range sp.procs {
			for _, t := range p.tasks {
				if !t.dead() {
					return t, nil
				}
			}
		}
	}
	return nil, fmt.Errorf("sandbox: no helper thread for the address space: %w", errTaskDead)
}

// helperCall makes system call nr in t's process through the helper of
// its address space, and returns its raw result.
func (fp *fastpath) helperCall(t *task, nr uintptr, args ...uintptr) (uintptr, error) {
	h := fp.helperOf(t.p.sp)
	if h == nil {
		return 0, fmt.Errorf("sandbox: no helper thread in process %d: %w", t.p.pid, errTaskDead)
	}
	fp.s.stats.HelperCalls++
	if helperHook != nil {
		helperHook(nr)
	}
	r, err := fp.run(h, nr, args...)
	if debug {
		fmt.Fprintf(os.Stderr, "vmspace-debug:   helper %d %#x -> %#x %v\n", nr, args, r, err)
	}
	return r, err
}

// helperHook, if not nil, is called with the number of every system call
// a helper makes for the fast path (tests count them, as injectHook the
// injected).
var helperHook func(nr uintptr)

// word returns the helper comm area's word at off.
func (h *fpHelper) word(off uint64) *uint32 {
	return (*uint32)(unsafe.Pointer(&h.mem[ptrace.HelperCommOff+off]))
}

// quad returns the helper comm area's 64-bit word at off.
func (h *fpHelper) quad(off uint64) *uint64 {
	return (*uint64)(unsafe.Pointer(&h.mem[ptrace.HelperCommOff+off]))
}

// helperPoll is how long (ms) a wait for a helper's report lasts before
// checking that the helper lives.
const helperPoll = 20

// run makes h's helper run system call nr and waits for its report (a
// notification of the listener: ptrace.HelperReportNr), keeping the
// program's notifications that come first for drain. Called with mu
// held.
func (fp *fastpath) run(h *fpHelper, nr uintptr, args ...uintptr) (uintptr, error) {
	if h.dead {
		return 0, errTaskDead
	}
	var a [6]uintptr
	copy(a[:], args)
	atomic.StoreUint64(h.quad(ptrace.HelperNr), uint64(nr))
	for i, v := range a {
		atomic.StoreUint64(h.quad(ptrace.HelperArgs+8*uint64(i)), uint64(v))
	}
	state := h.word(ptrace.HelperState)
	atomic.StoreUint32(state, ptrace.HelperReq)
	futexWake(state)
	for {
		if !fp.readable(helperPoll) {
			if unix.Tgkill(h.proc.pid, h.tid, 0) == unix.ESRCH {
				h.dead = true
				return 0, errTaskDead
			}
			continue
		}
		var n seccompNotif
		if !fp.recv(&n) {
			continue
		}
		switch {
		case !isReport(&n):
			fp.kept = append(fp.kept, n)
		case int(n.pid) != h.tid:
			fp.send(n.id, enosysResult)
		default:
			// The helper waits for the answer: set its state
			// first, so that it sleeps when it reads it.
			atomic.StoreUint32(state, ptrace.HelperIdle)
			fp.send(n.id, 0)
			return uintptr(n.args[0]), nil
		}
	}
}

// futexWake wakes a waiter on the shared futex word w.
func futexWake(w *uint32) {
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(w)), 1 /* FUTEX_WAKE */, 1, 0, 0, 0)
}

// newPage allocates a page for a process to map at scratchAddr, and maps
// it in vmspace.
func (fp *fastpath) newPage() (*fpHelper, error) {
	s := fp.s
	fr, err := s.mf.Allocate(hostarch.PageSize, pgalloc.AllocOpts{Dir: pgalloc.BottomUp})
	if err != nil {
		return nil, fmt.Errorf("sandbox: allocating a helper page: %w", err)
	}
	mem, err := unix.Mmap(s.mf.FD(), int64(fr.Start), hostarch.PageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		s.mf.DecRef(fr)
		return nil, fmt.Errorf("sandbox: mapping a helper page: %w", err)
	}
	fp.live++
	return &fpHelper{page: fr, mem: mem}, nil
}

// free releases h's page (no process maps it any more, or the sandbox
// closes).
func (fp *fastpath) free(h *fpHelper) {
	if h.mem == nil {
		return
	}
	unix.Munmap(h.mem)
	h.mem = nil
	h.dead = true
	fp.s.mf.DecRef(h.page)
	fp.live--
}

// release is called when process p has ended (its host process too),
// before it leaves its address space.
func (fp *fastpath) release(p *process) {
	if fp == nil {
		return
	}
	h := fp.pages[p]
	if h == nil {
		return
	}
	fp.handOff(p, h)
	delete(fp.pages, p)
	fp.unref(h)
}

// scratchOff returns the offset in the memory file of the page p maps
// at scratchAddr (the shared scratch page, or its own with the fast
// path on).
func (s *Sandbox) scratchOff(p *process) uint64 {
	if h := s.fp.scratchPage(p); h != nil {
		return h.page.Start
	}
	return s.stubPages.Start
}

// scratchSize returns how many bytes of p's page at scratchAddr vmspace
// may use for the arguments of injected calls: all of the shared scratch
// page, but the helper's comm area of a page of the fast path.
func (s *Sandbox) scratchSize(p *process) uint64 {
	if s.fp.scratchPage(p) != nil {
		return ptrace.HelperCommOff
	}
	return hostarch.PageSize
}

// scratchPage returns p's page at scratchAddr if it is one of the fast
// path's (nil with the fast path off).
func (fp *fastpath) scratchPage(p *process) *fpHelper {
	if fp == nil {
		return nil
	}
	return fp.pageOf(p)
}

// fastpathImage gives t's process, whose stub pages were just mapped
// (start-up, exec), its own page at scratchAddr and a helper thread.
// The process has not left its former address space yet (exec).
func (s *Sandbox) fastpathImage(t *task) error {
	fp := s.fp
	if fp == nil {
		return nil
	}
	p := t.p
	if old := fp.pages[p]; old != nil {
		// The host exec ended the old image's helper.
		fp.handOff(p, old)
		delete(fp.pages, p)
		fp.unref(old)
	}
	return s.startHelper(t)
}

// fastpathFork gives the fork child of t (at its first stop, before it
// runs) its own page and helper: it inherited its parent's page.
func (s *Sandbox) fastpathFork(t *task) error {
	fp := s.fp
	if fp == nil {
		return nil
	}
	if fp.ownPage(t.p) {
		return nil
	}
	err := s.startHelper(t)
	if err != nil && t.p.mm != nil {
		// The caller kills the child before fixFork would activate its
		// manager, which its release deactivates.
		if aerr := s.activate(t.p.mm, t.p.as); aerr == nil {
			t.p.fixup = nil
		}
	}
	return err
}

// ownPage reports whether p maps a page of its own at scratchAddr (one
// that vmspace mapped in its process, even if its helper could not be
// started), not its parent's.
func (fp *fastpath) ownPage(p *process) bool {
	h := fp.pages[p]
	return h != nil && (h.proc == p || h.proc == nil)
}

// startHelperFault, if not nil, is called by startHelper before each of
// its steps in process p, and the step fails with the error it returns
// (tests).
var startHelperFault func(p *process, step string) error

// startHelper maps a new page of t's process at scratchAddr and starts
// its helper thread there. On failure the process is left without a
// helper (its fast calls fail with ENOMEM; the callers kill it), and the
// page is freed at once if the process does not map it, else when the
// process is released.
func (s *Sandbox) startHelper(t *task) error {
	fp := s.fp
	p := t.p
	fail := func(what string, err error) error {
		return fmt.Errorf("sandbox: starting the helper thread of process %d: %s: %w", p.pid, what, err)
	}
	step := func(what string) error {
		if startHelperFault != nil {
			return startHelperFault(p, what)
		}
		return nil
	}
	if err := step("page"); err != nil {
		return fail("page", err)
	}
	h, err := fp.newPage()
	if err != nil {
		return err
	}
	fd, err := s.stubFD(t)
	if err == nil {
		err = step("stubfd")
	}
	if err != nil {
		fp.free(h)
		return fail("the memory file", err)
	}
	var r uintptr
	if err = step("mmap"); err == nil {
		r, err = s.inject(t, unix.SYS_MMAP, uintptr(scratchAddr), hostarch.PageSize, unix.PROT_READ,
			unix.MAP_SHARED|unix.MAP_FIXED, uintptr(fd), uintptr(h.page.Start))
		if err == nil {
			if e, bad := errnoOf(r); bad {
				// Not mapped (a failed MAP_FIXED mmap leaves the
				// old mapping in place).
				fp.free(h)
				return fail("mmap", e)
			}
		}
	} else {
		fp.free(h)
		return fail("mmap", err)
	}
	// From here the process may map the page (an injection that failed
	// may have made the call): it is p's until p maps another or ends.
	fp.set(p, h)
	if err != nil {
		h.dead = true
		return fail("mmap", err)
	}
	// The helper is made with every signal blocked, which it keeps.
	mask, err := ptraceGetSigmask(t.tid)
	if err == nil {
		err = step("sigmask")
	}
	if err == nil {
		err = ptraceSetSigmask(t.tid, ^uint64(0))
	}
	if err != nil {
		h.dead = true
		return fail("signal mask", err)
	}
	ip := uint64(codeAddr) + ptrace.StubHelperCloneOff
	const flags = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND | unix.CLONE_THREAD |
		unix.CLONE_SYSVSEM | unix.CLONE_UNTRACED
	if err = step("clone"); err == nil {
		r, err = s.injectAt(t, ip, ip+ptrace.StubHelperTrapDelta, unix.SYS_CLONE, flags, 0, 0, 0, 0)
	}
	ptraceSetSigmask(t.tid, mask)
	if err == nil {
		if e, bad := errnoOf(r); bad {
			err = e
		}
	}
	if err != nil {
		h.dead = true
		return fail("clone", err)
	}
	h.proc, h.tid = p, int(r)
	return nil
}

// taskExiting is called at t's exit-stop: if t is the last task of its
// process, the helper is told to exit, which it would not otherwise do
// when the thread exits alone (exit, not exit_group).
func (fp *fastpath) taskExiting(t *task) {
	if fp == nil || len(t.p.tasks) != 1 {
		return
	}
	h := fp.pages[t.p]
	if h == nil || h.proc != t.p || h.dead {
		return
	}
	h.dead = true
	state := h.word(ptrace.HelperState)
	atomic.StoreUint32(state, ptrace.HelperExit)
	futexWake(state)
}

// restartable is called at a signal-delivery-stop of t: a fast call whose
// wait for the server the signal interrupted (ERESTARTSYS: the server had
// not received it) is served here, by the tracer, as at a system call
// stop, and returns its result when the signal has been handled: Linux's
// memory calls are not interrupted by signals, their handlers run after
// them. Were it made again after the handler instead, a call would never
// be made while signals came faster than the server took it (an interval
// timer of 200 us, with the tracer slowed down: the program spun). A call
// the tracer does not serve is made again after the handler
// (ERESTARTNOINTR, whatever the handler's SA_RESTART).
func (fp *fastpath) restartable(t *task) {
	if fp == nil || fp.s.fetchRegs(t) != nil {
		return
	}
	const erestartsys, erestartnointr = 512, 513
	nr := int(t.regs.Orig_rax)
	if !isFastCall(nr) || int64(t.regs.Rax) != -erestartsys {
		return
	}
	if interruptedHook != nil {
		interruptedHook(t, nr)
	}
	r := &t.regs
	a := [6]uint64{r.Rdi, r.Rsi, r.Rdx, r.R10, r.R8, r.R9}
	t.callPC, t.callSP = r.Rip, r.Rsp
	res := fp.s.dispatch(t, nr, a)
	if t.dead() {
		return
	}
	if res.act == actReturn {
		// Served: no restart, the handler returns to the result.
		t.regs.Orig_rax = ^uint64(0)
		t.regs.Rax = uint64(res.val)
	} else {
		t.regs.Rax = negErrno(erestartnointr)
	}
	if t.regState == regsRead {
		ptraceSetRegs(t.tid, &t.regs)
	}
}

// interruptedHook, if not nil, is called by the tracer with each fast call
// (its number) that a signal interrupted before the server received it,
// before it is served (tests).
var interruptedHook func(t *task, nr int)

// Raw results of failed calls.
var (
	enomemResult = uintptr(negErrno(uint64(unix.ENOMEM)))
	enosysResult = uintptr(negErrno(uint64(unix.ENOSYS)))
)

// negErrno returns the raw result of a call failing with errno e.
func negErrno(e uint64) uint64 { return -e }
