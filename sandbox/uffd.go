package sandbox

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/mm"
	"github.com/vmspace/vmspace/platform/ptrace"
	"golang.org/x/sys/unix"
)

// userfaultfd for managed memory.
//
// The userfaultfd system call and /dev/userfaultfd's USERFAULTFD_IOC_NEW
// stop (userfaultfd is trapped; the ioctl stops for its command, see
// seccomp.go). vmspace first makes the host's own call in the program
// process and closes what it made, so that the program gets the host's
// errno (EPERM without CAP_SYS_PTRACE or UFFD_USER_MODE_ONLY where
// vm.unprivileged_userfaultfd is 0, EINVAL for bad flags, EMFILE); then
// it makes an mm.Userfaultfd of the process's manager, and gives the
// program the read end of a pipe whose write end vmspace keeps (opened in
// the program through /proc/<vmspace>/fd/N with the call's O_CLOEXEC and
// O_NONBLOCK): read, poll, select and epoll on it are the host's, and
// vmspace writes the context's struct uffd_msg messages into the pipe
// (never blocking: what the pipe cannot take waits for the next turn of
// the main loop). The ioctls on the descriptor (command type 0xAA, which
// carry a pointer and stop) are served by the context (uffdIoctl): the
// pipe is recognised by its inode. The context is released (mm.Userfaultfd
// Release) when the program has closed every read end: the write end then
// polls POLLERR.
//
// A thread whose fault the manager answers with a userfault is not
// resumed (parkUffd: it stays at its SIGSEGV stop, in state taskParked,
// which nothing else resumes or borrows) until the context wakes the
// fault (a COPY, ZEROPAGE, WAKE, ... by another thread, or the release);
// then it runs on from the faulting instruction, which faults again and
// is served. The main loop checks the parked threads and flushes the
// messages after every stop it serves (uffdService).
//
// Fork events: the child's context gets its descriptor in the parent
// process at the exit of its fork (uffdForkDone), before its FORK message
// (which carries the number) is written.
//
// The access type of a fault on a page never mapped, which ptrace does not
// tell, is found by decoding the faulting instruction (uffd_access.go), so
// that a missing fault's message carries UFFD_PAGEFAULT_FLAG_WRITE as on
// Linux.
//
// A system call passed to the host whose buffer lies in a page that would
// wait on a context made without UFFD_USER_MODE_ONLY (Linux's kernel
// accesses wait there; with the flag they fail with EFAULT, as here) is
// held at its entry: prevalidate's ensure finds the page
// (uffdKernelFault), the fault is raised with the kernel's access (a
// write for a buffer the call fills), the thread is parked, and once the
// fault is woken the call runs again from its syscall instruction
// (uffdParkSyscall), meeting the buffer's next such page if any.
//
// Events wait for their reading, as Linux's userfaultfd_event_wait_completion
// makes them: the thread whose system call raised a REMOVE, REMAP or UNMAP
// event is kept stopped with its result set (uffdEventWait) until the
// program has read the message from the pipe (the pipe's bytes read so
// far, written minus FIONREAD, reach it) or the context is released;
// meanwhile the ioctls that fill pages fail with EAGAIN (Linux's
// mmap_changing, uffdChanging) and the thread's /proc status says disk
// sleep. A read makes no stop: a goroutine watches the pipes and
// interrupts the main loop's wait (outsideWatch.kick).
//
// What differs from Linux: a system call waits for its buffer before it
// starts, where Linux's waits when it reaches the buffer (a read from an
// empty pipe raises the fault before data arrives, not after), and a call
// vmspace serves itself fails with EFAULT there; a parked thread takes
// signals only once woken; the fork event's descriptor number is chosen
// at the fork, not at the read, and a fork does not wait for its FORK
// event's reading; a madvise waits for its REMOVE event after dropping
// the pages, where Linux's waits before; without inotify (no kick) a
// waiting thread is let go only at the program's next stop; a call the
// fast path serves waits for its events in the host kernel, its answer
// held back (uffdFastEventWait), so the host shows it sleeping where the
// /proc views show disk sleep.

// uffdState is the sandbox's userfaultfd contexts and parked threads. Like
// everything the Sandbox holds, it is used by the tracer goroutine, or by
// the fast path's server in its turn (fastpath.mu).
type uffdState struct {
	// files are the contexts, by the inode of their pipe.
	files map[uffdKey]*uffdFile
	// parked are the threads waiting on a userfault.
	parked map[*task]*uffdPark
	// sysFaults are the userfaults the buffers of the system calls
	// being prevalidated met (uffdKernelFault), at most one a thread,
	// for which the call waits (uffdParkSyscall).
	sysFaults map[*task]*mm.Userfault
	// evWait are the threads whose system call raised events they wait
	// to see read (uffdEventWait), with the state of their stop.
	evWait map[*task]taskState
	// fastWait are the threads whose call, served on the fast path,
	// raised events they wait to see read (uffdFastEventWait), with the
	// answer their notification gets then: they wait in the host kernel
	// for it, not at a stop.
	fastWait map[*task]fastAnswer
	// waker stops the goroutine that watches the pipes for the reads
	// evWait waits for (uffdWatchReads), nil if none runs; wakerFor is
	// what it watches.
	waker    chan struct{}
	wakerFor []uffdReadWatch
}

// fastAnswer is the answer a fast-path notification waits for.
type fastAnswer struct {
	id  uint64
	val uintptr
}

// uffdReadWatch is a pipe whose reading a waiting event needs: the
// program has read it when written minus the bytes in the pipe reaches
// need.
type uffdReadWatch struct {
	fd            int
	written, need uint64
}

// uffdPark is a thread waiting on a userfault.
type uffdPark struct {
	f *mm.Userfault
	// syscall is true for a system call waiting for its buffer, which
	// runs again once woken; state is its stop's taskState.
	syscall bool
	state   taskState
}

// uffdKey identifies a pipe.
type uffdKey struct{ dev, ino uint64 }

// uffdFile is one context and its pipe.
type uffdFile struct {
	u *mm.Userfaultfd
	// w is vmspace's descriptor of the pipe's write end (non-blocking).
	w int
	// flags are the userfaultfd(2) flags it was made with.
	flags int
	// pend are the messages not yet written, in order.
	pend []uffdPending
	// written counts the bytes written into the pipe.
	written uint64
	// awaits are the written events whose thread waits for their reading,
	// in order.
	awaits []uffdAwait
}

// uffdAwait is a written event whose thread t waits until the program has
// read the pipe up to end (counted as written).
type uffdAwait struct {
	end uint64
	t   *task
}

// changing reports whether an event of f waits for its reading, during
// which the filling ioctls fail with EAGAIN (Linux's mmap_changing).
func (f *uffdFile) changing() bool { return f.waitsFor(nil) }

// waitsFor reports whether an event of f that t waits for (any, if t is
// nil) is not read yet.
func (f *uffdFile) waitsFor(t *task) bool {
	for _, a := range f.awaits {
		if t == nil || a.t == t {
			return true
		}
	}
	for _, pm := range f.pend {
		if pm.waiter != nil && (t == nil || pm.waiter == t) {
			return true
		}
	}
	return false
}

// uffdPending is a message waiting to be written; a fork event's waits
// for its descriptor (fd, ready).
type uffdPending struct {
	m     mm.UffdMsg
	fd    int32
	ready bool
	// waiter is the thread that waits for the event's reading, if any.
	waiter *task
}

// The userfaultfd ioctls (linux/userfaultfd.h).
const (
	uffdIocNew          = 0xAA00
	uffdioAPI           = 0xC018AA3F
	uffdioRegister      = 0xC020AA00
	uffdioUnregister    = 0x8010AA01
	uffdioWake          = 0x8010AA02
	uffdioCopy          = 0xC028AA03
	uffdioZeropage      = 0xC020AA04
	uffdioMove          = 0xC028AA05
	uffdioWriteprotect  = 0xC018AA06
	uffdioContinue      = 0xC020AA07
	uffdioPoison        = 0xC020AA08
	uffdSharedFcntlMask = unix.O_CLOEXEC | unix.O_NONBLOCK
)

// uffdOn returns the sandbox's userfaultfd state, made on first use.
func (s *Sandbox) uffdOn() *uffdState {
	if s.uffd == nil {
		s.uffd = &uffdState{files: map[uffdKey]*uffdFile{}, parked: map[*task]*uffdPark{}, sysFaults: map[*task]*mm.Userfault{}, evWait: map[*task]taskState{}, fastWait: map[*task]fastAnswer{}}
	}
	return s.uffd
}

// sysUserfaultfd serves userfaultfd(2).
func (s *Sandbox) sysUserfaultfd(t *task, a [6]uint64) sysResult {
	return s.newUffdCall(t, int(int32(a[0])), func() (uintptr, error) {
		return s.inject(t, unix.SYS_USERFAULTFD, uintptr(a[0]))
	})
}

// newUffdCall makes a context for t's process after probe, the host's own
// call, says the host would have made one (its descriptor is closed).
func (s *Sandbox) newUffdCall(t *task, flags int, probe func() (uintptr, error)) sysResult {
	if t.p.mm == nil {
		return pass()
	}
	r, err := probe()
	if err != nil {
		return retErr(unix.EFAULT)
	}
	if e, bad := errnoOf(r); bad {
		return retErr(e)
	}
	s.inject(t, unix.SYS_CLOSE, r)
	u, err := mm.NewUserfaultfd(t.p.mm, flags)
	if err != nil {
		return retErr(errno(err))
	}
	fd, err := s.newUffdFile(t, u, flags, unix.O_RDONLY)
	if err != nil {
		var e unix.Errno
		if !errors.As(err, &e) {
			e = unix.ENOMEM
		}
		return retErr(e)
	}
	return ret(uintptr(fd))
}

// newUffdFile gives u a pipe, whose read end it opens in t's process with
// mode and flags' O_CLOEXEC and O_NONBLOCK, and returns that descriptor.
func (s *Sandbox) newUffdFile(t *task, u *mm.Userfaultfd, flags, mode int) (int, error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return -1, err
	}
	defer unix.Close(p[0])
	path := fmt.Sprintf("/proc/%d/fd/%d", s.selfPid, p[0])
	var fd uintptr
	cwd := unix.AT_FDCWD
	err := s.writeMem(t.p.pid, scratchAddr, append([]byte(path), 0))
	if err == nil {
		fd, err = s.inject(t, unix.SYS_OPENAT, uintptr(cwd), uintptr(scratchAddr), uintptr(mode|flags&uffdSharedFcntlMask), 0)
	}
	if err == nil {
		if e, bad := errnoOf(fd); bad {
			err = e
		}
	}
	var st unix.Stat_t
	if err == nil {
		err = unix.Fstat(p[1], &st)
	}
	if err != nil {
		unix.Close(p[1])
		return -1, err
	}
	s.uffdOn().files[uffdKey{st.Dev, st.Ino}] = &uffdFile{u: u, w: p[1], flags: flags}
	return int(fd), nil
}

// uffdFileOf returns the context whose pipe descriptor fd of p is, or nil.
func (s *Sandbox) uffdFileOf(p *process, fd int32) *uffdFile {
	if s.uffd == nil || fd < 0 {
		return nil
	}
	var st unix.Stat_t
	if unix.Stat(fmt.Sprintf("/proc/%d/fd/%d", p.pid, fd), &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return nil
	}
	return s.uffd.files[uffdKey{st.Dev, st.Ino}]
}

// uffdIoctl serves an ioctl with a userfaultfd command: USERFAULTFD_IOC_NEW
// on /dev/userfaultfd, and the UFFDIO ones on a context's descriptor. It
// reports false for others, which the host runs.
func (s *Sandbox) uffdIoctl(t *task, a [6]uint64) (sysResult, bool) {
	cmd := uint32(a[1])
	if cmd>>8&0xff != 0xAA || t.p.mm == nil {
		return sysResult{}, false
	}
	fd := int32(a[0])
	if cmd == uffdIocNew {
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", t.p.pid, fd)); err != nil || l != "/dev/userfaultfd" {
			return sysResult{}, false
		}
		return s.newUffdCall(t, int(int32(a[2])), func() (uintptr, error) {
			return s.inject(t, unix.SYS_IOCTL, uintptr(fd), uintptr(cmd), uintptr(a[2]))
		}), true
	}
	f := s.uffdFileOf(t.p, fd)
	if f == nil {
		return sysResult{}, false
	}
	if res, ok := s.uffdChanging(t, f, cmd, hostarch.Addr(a[2])); ok {
		return res, true
	}
	return s.serveUffdio(t, f.u, cmd, hostarch.Addr(a[2])), true
}

// uffdChanging fails the ioctls that change pages with EAGAIN while an
// event of f waits for its reading, as Linux's do while mmap_changing is
// set: first of all their checks but the context's initialization, with
// the result field (where the command has one) set to -EAGAIN.
func (s *Sandbox) uffdChanging(t *task, f *uffdFile, cmd uint32, arg hostarch.Addr) (sysResult, bool) {
	off, ok := map[uint32]int{uffdioCopy: 32, uffdioZeropage: 24, uffdioMove: 32, uffdioContinue: 24, uffdioPoison: 24, uffdioWriteprotect: -1}[cmd]
	if !ok || !f.u.Initialized() || !f.changing() {
		return sysResult{}, false
	}
	if off >= 0 {
		var b [8]byte
		eagain := -int64(unix.EAGAIN)
		binary.LittleEndian.PutUint64(b[:], uint64(eagain))
		if _, err := t.p.mm.CopyOut(s.ctx, arg+hostarch.Addr(off), b[:], mm.IOOpts{}); err != nil {
			return retErr(unix.EFAULT), true
		}
	}
	return retErr(unix.EAGAIN), true
}

// serveUffdio serves UFFDIO command cmd on u with its argument at arg.
func (s *Sandbox) serveUffdio(t *task, u *mm.Userfaultfd, cmd uint32, arg hostarch.Addr) sysResult {
	if cmd != uffdioAPI && !u.Initialized() {
		return retErr(unix.EINVAL)
	}
	size := map[uint32]int{
		uffdioAPI: 24, uffdioRegister: 24, uffdioUnregister: 16, uffdioWake: 16, uffdioCopy: 32,
		uffdioZeropage: 24, uffdioMove: 32, uffdioWriteprotect: 24, uffdioContinue: 24, uffdioPoison: 24,
	}[cmd]
	if size == 0 {
		return retErr(unix.EINVAL)
	}
	m := t.p.mm
	buf := make([]byte, size)
	if _, err := m.CopyIn(s.ctx, arg, buf, mm.IOOpts{}); err != nil {
		return retErr(unix.EFAULT)
	}
	w := func(i int) uint64 { return binary.LittleEndian.Uint64(buf[8*i:]) }
	put := func(off int, v ...uint64) error {
		b := make([]byte, 8*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint64(b[8*i:], x)
		}
		_, err := m.CopyOut(s.ctx, arg+hostarch.Addr(off), b, mm.IOOpts{})
		return err
	}
	// fill finishes a filling ioctl whose result field is at off.
	fill := func(off int, length, n uint64, ran bool, err error) sysResult {
		if !ran {
			return retErr(errno(err))
		}
		v, rerr := mm.UffdioResult(n, length, err)
		if put(off, uint64(v)) != nil {
			return retErr(unix.EFAULT)
		}
		return retFrom(rerr)
	}
	switch cmd {
	case uffdioAPI:
		caps, _ := effectiveCaps(fmt.Sprintf("/proc/%d/status", t.tid))
		feat, ioctls, err := u.API(w(0), w(1), caps&(1<<unix.CAP_SYS_PTRACE) != 0)
		api := w(0)
		if err != nil {
			api = 0
		}
		if put(0, api, feat, ioctls) != nil {
			return retErr(unix.EFAULT)
		}
		return retFrom(err)
	case uffdioRegister:
		ioctls, err := u.Register(s.ctx, w(0), w(1), w(2))
		if err == nil && put(24, ioctls) != nil {
			return retErr(unix.EFAULT)
		}
		return retFrom(err)
	case uffdioUnregister:
		return retFrom(u.Unregister(s.ctx, w(0), w(1)))
	case uffdioWake:
		return retFrom(u.Wake(w(0), w(1)))
	case uffdioCopy:
		n, ran, err := u.Copy(s.ctx, w(0), w(1), w(2), w(3), m)
		return fill(32, w(2), n, ran, err)
	case uffdioZeropage:
		n, ran, err := u.ZeroPage(s.ctx, w(0), w(1), w(2))
		return fill(24, w(1), n, ran, err)
	case uffdioMove:
		n, ran, err := u.Move(s.ctx, w(0), w(1), w(2), w(3), m)
		return fill(32, w(2), n, ran, err)
	case uffdioWriteprotect:
		return retFrom(u.WriteProtect(s.ctx, w(0), w(1), w(2)))
	case uffdioContinue:
		n, ran, err := u.Continue(s.ctx, w(0), w(1), w(2))
		return fill(24, w(1), n, ran, err)
	case uffdioPoison:
		n, ran, err := u.Poison(s.ctx, w(0), w(1), w(2))
		return fill(24, w(1), n, ran, err)
	}
	return retErr(unix.EINVAL)
}

// faultCtx returns the context of t's page faults: it names the thread
// for UFFD_FEATURE_THREAD_ID once the program has a userfaultfd.
func (s *Sandbox) faultCtx(t *task) context.Context {
	if s.uffd == nil {
		return s.ctx
	}
	return mm.WithFaultingThread(s.ctx, int32(t.tid))
}

// parkUffd keeps t, at the stop of a fault that err says waits on a
// userfault, stopped until the fault is woken; it reports whether it did.
func (s *Sandbox) parkUffd(t *task, err error) bool {
	var ue *mm.UserfaultError
	if !errors.As(err, &ue) || ue.Fault == nil {
		return false
	}
	s.uffdOn().parked[t] = &uffdPark{f: ue.Fault}
	s.park(t)
	return true
}

// park keeps t stopped as taskParked.
func (s *Sandbox) park(t *task) {
	t.lastFault, t.faultRepeats = faultKey{}, 0
	if t.p.held == t {
		t.p.held = nil
	}
	t.state = taskParked
}

// uffdKernelFault is called for a buffer [addr, addr+length) that the host
// kernel will read (or write if write) in the system call t is about to
// make, once prevalidate has faulted in what the manager allows: if the
// kernel's access would wait on a userfaultfd there (mm.KernelUserfault),
// the fault is raised (its message queued) as the kernel's access raises
// it, and the call waits for it (uffdParkSyscall). Only the first such
// fault of a call is raised; the call meets the next one when it runs
// again.
func (s *Sandbox) uffdKernelFault(t *task, addr, length uint64, write bool) {
	st := s.uffd
	if st == nil || t.p.mm == nil || st.sysFaults[t] != nil || t.atExit != nil || length == 0 {
		return
	}
	// The buffer, up to the stub (an overflowing one too).
	ar := hostarch.AddrRange{Start: hostarch.Addr(addr), End: ptrace.StubStart}
	if e := hostarch.Addr(addr + length); e > ar.Start && e < ar.End {
		ar.End = e
	}
	if ar.Start >= ar.End {
		return
	}
	at := hostarch.AccessType{Read: !write, Write: write}
	if t.p.as != nil && t.p.as.covers(hostarch.AddrRange{Start: ar.Start.RoundDown(), End: ar.End.MustRoundUp()}, at) {
		return
	}
	a, ok := t.p.mm.KernelUserfault(s.ctx, ar, at)
	if !ok {
		return
	}
	var ue *mm.UserfaultError
	if err := t.p.mm.HandleUserFault(s.faultCtx(t), a, at, hostarch.Addr(t.regs.Rsp)); errors.As(err, &ue) && ue.Fault != nil {
		st.sysFaults[t] = ue.Fault
	}
}

// uffdParkSyscall is called at the entry of every system call once it is
// dispatched: if the call is passed to the host (pass) and a buffer of it
// met a userfault (uffdKernelFault), it keeps t stopped until the fault
// is woken, and the call then runs again from its syscall instruction. It
// reports whether t waits. (A call that vmspace serves itself fails with
// EFAULT there, as if the context were UFFD_USER_MODE_ONLY.)
func (s *Sandbox) uffdParkSyscall(t *task, pass bool) bool {
	st := s.uffd
	if st == nil {
		return false
	}
	f := st.sysFaults[t]
	if f == nil {
		return false
	}
	delete(st.sysFaults, t)
	if !pass || t.dead() {
		f.Cancel()
		return false
	}
	st.parked[t] = &uffdPark{f: f, syscall: true, state: t.state}
	s.park(t)
	return true
}

// uffdService runs after every stop the main loop serves: it lets go the
// parked threads whose fault was woken (and forgets those gone), writes
// the contexts' messages into their pipes, and releases the contexts
// whose read ends are all closed.
func (s *Sandbox) uffdService() {
	st := s.uffd
	if st == nil {
		return
	}
	if len(st.files) > 0 {
		fds := make([]unix.PollFd, 0, len(st.files))
		keys := make([]uffdKey, 0, len(st.files))
		for k, f := range st.files {
			s.uffdFlush(f)
			fds = append(fds, unix.PollFd{Fd: int32(f.w), Events: unix.POLLOUT})
			keys = append(keys, k)
		}
		if _, err := unix.Poll(fds, 0); err == nil {
			for i, pfd := range fds {
				if pfd.Revents&unix.POLLERR != 0 {
					f := st.files[keys[i]]
					f.u.Release(s.ctx)
					unix.Close(f.w)
					delete(st.files, keys[i])
				}
			}
		}
	}
	for t, f := range st.sysFaults {
		if t.dead() || s.tasks[t.tid] != t {
			f.Cancel()
			delete(st.sysFaults, t)
		}
	}
	s.uffdEventsRead()
	for t, pk := range st.parked {
		switch {
		case t.dead() || s.tasks[t.tid] != t:
			pk.f.Cancel()
			delete(st.parked, t)
		case pk.f.Woken() && pk.syscall:
			// Run the call again: skip this entry, back to its
			// syscall instruction with its number in rax.
			delete(st.parked, t)
			t.state = pk.state
			t.regs.Rax = t.regs.Orig_rax
			t.regs.Orig_rax = ^uint64(0)
			t.regs.Rip -= 2
			t.regState = regsOwed
			s.resume(t, 0, nil)
		case pk.f.Woken():
			delete(st.parked, t)
			t.state = taskSignalStop
			s.resume(t, 0, nil)
		}
	}
}

// uffdFlush writes f's messages into its pipe, as far as it takes them and
// up to a fork event whose descriptor is not made yet.
func (s *Sandbox) uffdFlush(f *uffdFile) {
	for _, m := range f.u.Messages() {
		f.pend = append(f.pend, uffdPending{m: m, ready: m.Event != mm.UffdEventFork})
	}
	n := 0
	for _, pm := range f.pend {
		if !pm.ready {
			break
		}
		b := pm.m.Marshal(pm.fd)
		if _, err := unix.Write(f.w, b[:]); err != nil {
			break
		}
		f.written += uint64(len(b))
		if pm.waiter != nil {
			f.awaits = append(f.awaits, uffdAwait{end: f.written, t: pm.waiter})
		}
		n++
	}
	f.pend = f.pend[n:]
}

// uffdForkDone gives the child contexts of the fork t just finished their
// descriptors in t's process (the parent), so that the FORK messages can
// be written.
func (s *Sandbox) uffdForkDone(t *task) {
	if s.uffd == nil || t.p.mm == nil {
		return
	}
	for _, f := range s.uffd.files {
		if f.u.MemoryManager() != t.p.mm {
			continue
		}
		for _, m := range f.u.Messages() {
			f.pend = append(f.pend, uffdPending{m: m, ready: m.Event != mm.UffdEventFork})
		}
		for i := range f.pend {
			pm := &f.pend[i]
			if pm.ready || pm.m.Child == nil {
				continue
			}
			fd, err := s.newUffdFile(t, pm.m.Child, f.flags, unix.O_RDWR)
			if err != nil {
				// No descriptor for it: the child's context goes.
				pm.m.Child.Release(s.ctx)
				fd = -int(errno(err))
			}
			pm.fd, pm.ready = int32(fd), true
		}
		s.uffdFlush(f)
	}
}

// uffdEventWait is called when t's system call has its result: if the call
// raised events that make their thread wait (a madvise's REMOVE, an
// mremap's REMAP, an unmapping's UNMAP), t is kept stopped, its result set,
// until the program has read them from their pipes, or the contexts are
// released, as Linux's userfaultfd_event_wait_completion keeps it
// (uffdEventsRead lets it go). Its /proc status shows it in disk sleep, as
// Linux's TASK_KILLABLE wait does. A fork's FORK event does not wait here.
func (s *Sandbox) uffdEventWait(t *task) bool {
	if !s.uffdCollectEvents(t) || t.dead() {
		return false
	}
	s.uffd.evWait[t] = t.state
	s.park(t)
	return true
}

// uffdFastEventWait is uffdEventWait for t's call served on the fast path
// (notification id, result val): if the call raised events that make
// their thread wait, the answer is held back, and t waits in the host
// kernel for it, until the program has read them (uffdEventsRead sends
// it). It runs on the fast path's server, which makes no ptrace call: the
// messages are written and the pipes watched from here, the answer sent
// from the tracer's loop.
func (s *Sandbox) uffdFastEventWait(t *task, id uint64, val uintptr) bool {
	if !s.uffdCollectEvents(t) || t.dead() {
		return false
	}
	st := s.uffd
	st.fastWait[t] = fastAnswer{id: id, val: val}
	for _, f := range st.files {
		s.uffdFlush(f)
	}
	s.uffdWatchReads()
	return true
}

// uffdCollectEvents moves the messages the contexts hold to their pending
// lists, marking the events that make t wait for their reading (a
// madvise's REMOVE, an mremap's REMAP, an unmapping's UNMAP), and reports
// whether there are any.
func (s *Sandbox) uffdCollectEvents(t *task) bool {
	st := s.uffd
	waits := false
	for _, f := range st.files {
		for _, m := range f.u.Messages() {
			pm := uffdPending{m: m, ready: m.Event != mm.UffdEventFork}
			switch m.Event {
			case mm.UffdEventRemove, mm.UffdEventRemap, mm.UffdEventUnmap:
				pm.waiter = t
				waits = true
			}
			f.pend = append(f.pend, pm)
		}
	}
	return waits
}

// uffdEventsRead drops the written events the program has read (its
// pipe's bytes read so far, written minus what the pipe holds, reach
// them), lets go the threads that no longer wait for any, and keeps a
// goroutine watching the pipes while some still wait.
func (s *Sandbox) uffdEventsRead() {
	st := s.uffd
	for _, f := range st.files {
		if len(f.awaits) == 0 {
			continue
		}
		inPipe, err := pipeHolds(f.w)
		if err != nil {
			continue
		}
		read := f.written - uint64(inPipe)
		n := 0
		for n < len(f.awaits) && f.awaits[n].end <= read {
			n++
		}
		f.awaits = f.awaits[n:]
	}
	still := func(t *task) bool {
		for _, f := range st.files {
			if f.waitsFor(t) {
				return true
			}
		}
		return false
	}
	for t, state := range st.evWait {
		if t.dead() || s.tasks[t.tid] != t {
			delete(st.evWait, t)
			continue
		}
		if !still(t) {
			delete(st.evWait, t)
			t.state = state
			s.resume(t, 0, nil)
		}
	}
	for t, a := range st.fastWait {
		// A dead caller's notification is gone: its answer fails.
		if t.dead() || s.tasks[t.tid] != t || !still(t) {
			delete(st.fastWait, t)
			if s.fp != nil {
				s.fp.send(a.id, a.val)
			}
		}
	}
	s.uffdWatchReads()
}

// uffdWatchReads keeps a goroutine that interrupts the main loop's wait
// once the program has read what a waiting thread needs (a read makes no
// stop), while threads wait; it is replaced when what to watch changes.
func (s *Sandbox) uffdWatchReads() {
	st := s.uffd
	var watch []uffdReadWatch
	if len(st.evWait) > 0 || len(st.fastWait) > 0 {
		for _, f := range st.files {
			need := uint64(0)
			switch {
			case len(f.awaits) > 0:
				need = f.awaits[0].end
			case f.changing():
				// Unwritten (the pipe is full): any read makes room.
				inPipe, err := pipeHolds(f.w)
				if err != nil {
					continue
				}
				need = f.written - uint64(inPipe) + 1
			default:
				continue
			}
			watch = append(watch, uffdReadWatch{fd: f.w, written: f.written, need: need})
		}
	}
	if slices.Equal(watch, st.wakerFor) && (st.waker != nil) == (len(watch) > 0) {
		return
	}
	if st.waker != nil {
		close(st.waker)
		st.waker = nil
	}
	st.wakerFor = watch
	if len(watch) == 0 {
		return
	}
	stop := make(chan struct{})
	st.waker = stop
	w := &s.outside
	go func() {
		for pause := 100 * time.Microsecond; ; pause = min(2*pause, 20*time.Millisecond) {
			select {
			case <-stop:
				return
			case <-time.After(pause):
			}
			for _, x := range watch {
				inPipe, err := pipeHolds(x.fd)
				if err == nil && x.written-uint64(inPipe) < x.need {
					continue
				}
				if !w.kick() {
					return
				}
				break
			}
		}
	}()
}

// uffdTaskState is the State line of t's /proc status while vmspace keeps
// it waiting on a userfaultfd ("" otherwise): disk sleep for an event's
// reading, sleeping for a fault, as Linux's TASK_KILLABLE and
// TASK_INTERRUPTIBLE waits show; the host would show a tracing stop.
func (s *Sandbox) uffdTaskState(t *task) string {
	st := s.uffd
	if st == nil {
		return ""
	}
	if _, ok := st.fastWait[t]; ok {
		return "D (disk sleep)"
	}
	if t.state != taskParked {
		return ""
	}
	if _, ok := st.evWait[t]; ok {
		return "D (disk sleep)"
	}
	if _, ok := st.parked[t]; ok {
		return "S (sleeping)"
	}
	return ""
}

// pipeHolds returns how many bytes the pipe of fd holds (FIONREAD, which
// either end answers).
func pipeHolds(fd int) (int, error) { return unix.IoctlGetInt(fd, unix.TIOCINQ) }
