package sandbox

import (
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/mm"
	"golang.org/x/sys/unix"
)

// Page faults reach vmspace as SIGSEGVs, which Linux forces on the
// faulting thread: if SIGSEGV is blocked when the fault happens, the kernel
// resets its action to the default (and unblocks it) before vmspace even
// sees the fault. A fault that vmspace serves transparently would then
// have silently destroyed the program's SIGSEGV handler (the JVM's, Go's,
// any program's that catches SIGSEGV), and the program would die at its
// next real SIGSEGV. So vmspace keeps SIGSEGV from ever being blocked in
// the host:
//
//   - rt_sigprocmask that would block it blocks the rest only;
//   - rt_sigaction installs actions whose sa_mask does not hold it, and
//     SIGSEGV's own action gets SA_NODEFER (the kernel blocks a signal
//     during its handler otherwise).
//
// The program can notice only by asking for its mask or action back.

// segvBit is SIGSEGV's bit in a sigset.
const segvBit = uint64(1) << (unix.SIGSEGV - 1)

// saNoDefer is SA_NODEFER.
const saNoDefer = 0x40000000

// sysSigaction serves rt_sigaction(sig, act, oldact, sigsetsize) with an
// action to install.
func (s *Sandbox) sysSigaction(t *task, a [6]uint64) sysResult {
	sig, act, old, size := int(int32(a[0])), a[1], a[2], a[3]
	if act == 0 || size != 8 || t.p.mm == nil {
		return pass()
	}
	var b [32]byte
	if _, err := t.p.mm.CopyIn(s.ctx, hostarch.Addr(act), b[:], mm.IOOpts{}); err != nil {
		return pass() // the host fails it with EFAULT
	}
	le := binary.LittleEndian
	flags, mask := le.Uint64(b[8:]), le.Uint64(b[24:])
	nflags, nmask := flags, mask&^segvBit
	if sig == int(unix.SIGSEGV) {
		nflags |= saNoDefer
	}
	s.ensure(t, old, 32, true)
	if nflags == flags && nmask == mask {
		return pass()
	}
	le.PutUint64(b[8:], nflags)
	le.PutUint64(b[24:], nmask)
	if s.writeMem(t.p.pid, scratchAddr, b[:]) != nil {
		return pass()
	}
	r, err := s.inject(t, unix.SYS_RT_SIGACTION, uintptr(a[0]), uintptr(scratchAddr), uintptr(old), 8)
	if err != nil {
		return sysResult{act: actDone}
	}
	return ret(r)
}

// sysSigprocmask serves rt_sigprocmask(how, set, oldset, sigsetsize) that
// may block signals.
func (s *Sandbox) sysSigprocmask(t *task, a [6]uint64) sysResult {
	how, set, old, size := int(int32(a[0])), a[1], a[2], a[3]
	if set == 0 || size != 8 || t.p.mm == nil || how == unix.SIG_UNBLOCK {
		return pass()
	}
	s.ensure(t, old, 8, true)
	var b [8]byte
	if _, err := t.p.mm.CopyIn(s.ctx, hostarch.Addr(set), b[:], mm.IOOpts{}); err != nil {
		return pass()
	}
	m := binary.LittleEndian.Uint64(b[:])
	if m&segvBit == 0 {
		return pass()
	}
	binary.LittleEndian.PutUint64(b[:], m&^segvBit)
	if s.writeMem(t.p.pid, scratchAddr, b[:]) != nil {
		return pass()
	}
	r, err := s.inject(t, unix.SYS_RT_SIGPROCMASK, uintptr(a[0]), uintptr(scratchAddr), uintptr(old), 8)
	if err != nil {
		return sysResult{act: actDone}
	}
	return ret(r)
}

// unblockSEGV makes sure SIGSEGV is not blocked in t (at start-up).
func (s *Sandbox) unblockSEGV(t *task) {
	if m, err := ptraceGetSigmask(t.tid); err == nil && m&segvBit != 0 {
		ptraceSetSigmask(t.tid, m&^segvBit)
	}
}

// forwarder passes signals sent to vmspace on to every process of the
// program (Options.Signals). The tracer keeps its set of processes up to
// date; the forwarding goroutine reads it.
//
// A signal sent to a whole process group that holds vmspace and some of
// the program's processes (a terminal's SIGINT, SIGQUIT and SIGHUP to its
// foreground group, si_code SI_KERNEL; kill(-pgid) or a shell's kill
// -SIG -PGID, SI_USER with the sender's pid) reaches those processes
// itself: they must not get vmspace's copy as well. The kernel queues
// every copy of such a signal in one call, before any is delivered, so
// when the forwarder reads vmspace's copy (its sender from the ring that
// sigRecorder fills), each process in vmspace's group has its own copy
// from the same sender either still pending, or taken at a
// signal-delivery-stop. The two sides are matched per process and signal:
//
//   - A copy from another sender seen at a process's signal-delivery-stop
//     leaves a token naming its sender, which vmspace's copy from the same
//     sender takes instead of being passed on. The token is certain if
//     vmspace's own copy was visible then (pending in vmspace, or in the
//     ring not yet read); otherwise vmspace's copy may have been taken by
//     one of its threads and not yet recorded, or there is none (the
//     process alone was sent the signal), and the token holds for
//     matchWindow only.
//   - vmspace's copy that finds the process's copy still pending sends
//     nothing (the kernel would have merged it anyway) and marks the
//     process, so that the stop taking its copy leaves no token.
//   - Otherwise vmspace's copy is sent and remembered with its sender: if
//     a copy from that sender then reaches a stop of the process before
//     the forwarded one (it was taken before the forwarder looked, its
//     stop not yet served), the forwarded copy is dropped at its own stop.
//
// A signal whose sender is unknown (not recorded: another sandbox in the
// same process holds the ring, or more than sigRingSize deliveries came
// between two reads) is passed on to every process.
type forwarder struct {
	// mu protects the fields below.
	mu sync.Mutex
	// pids are the program's live processes.
	pids map[int]struct{}
	// match holds the matching state of each process and signal with
	// any (see forwarder); an entry whose state is all zero is deleted.
	match map[procSig]*matchState
	// rec reads the ring of vmspace's deliveries, nil if forwarding
	// without it (no Options.Signals, or another sandbox holds it).
	rec *recorder
	// self is vmspace's pid.
	self int
}

// procSig names a standard signal of one process.
type procSig struct {
	pid int
	sig unix.Signal
}

// matchState is what the forwarder knows about one process's copies of
// one signal.
type matchState struct {
	// token is set when the process took a copy from token.from that
	// vmspace's copy from the same sender is yet to match.
	token *token
	// pending is set when vmspace's copy found the process's pending and
	// was not sent: the stop that takes the process's copy leaves no
	// token.
	pending bool
	// sent is set when vmspace's copy from sentFrom was sent to the
	// process; drop when a copy from sentFrom reached a stop of the
	// process first, so that the forwarded one is not delivered.
	sent     bool
	sentFrom sender
	drop     bool
}

// token is a process's copy of a signal that vmspace's may match.
type token struct {
	from    sender
	certain bool
	at      time.Time
}

// matchWindow is how long a token left while vmspace's copy was not
// visible waits for it: the time between a thread of vmspace taking a
// signal and its handler recording it, stretched by any load.
const matchWindow = 2 * time.Second

// recordedSignals are the signals whose sender vmspace records: those a
// terminal or another process may send to a whole process group and that
// vmspace passes on (cmd/vmspace's list).
var recordedSignals = []unix.Signal{
	unix.SIGHUP, unix.SIGINT, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGALRM, unix.SIGTERM,
}

// add records a new process of the program.
func (f *forwarder) add(pid int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pids == nil {
		f.pids = make(map[int]struct{})
		f.match = make(map[procSig]*matchState)
		f.self = unix.Getpid()
	}
	f.pids[pid] = struct{}{}
}

// remove forgets an ended process.
func (f *forwarder) remove(pid int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.pids, pid)
	for k := range f.match {
		if k.pid == pid {
			delete(f.match, k)
		}
	}
}

// start begins forwarding the signals of sigs (sent to vmspace, as
// os/signal delivers them) until stop is closed: it starts recording
// their senders, then forwards from a goroutine of its own.
func (f *forwarder) start(sigs <-chan os.Signal, stop <-chan struct{}) {
	rec := startRecorder(recordedSignals)
	f.mu.Lock()
	if f.pids == nil {
		f.pids = make(map[int]struct{})
		f.match = make(map[procSig]*matchState)
		f.self = unix.Getpid()
	}
	f.rec = rec
	f.mu.Unlock()
	go f.forward(sigs, stop)
}

// forward sends each signal from sigs on to the program's processes,
// until stop is closed.
func (f *forwarder) forward(sigs <-chan os.Signal, stop <-chan struct{}) {
	defer func() {
		f.mu.Lock()
		if f.rec != nil {
			f.rec.stop()
			f.rec = nil
		}
		f.mu.Unlock()
	}()
	for {
		select {
		case <-stop:
			return
		case sig := <-sigs:
			n, ok := sig.(syscall.Signal)
			if !ok {
				continue
			}
			f.mu.Lock()
			f.received(unix.Signal(n))
			f.mu.Unlock()
		}
	}
}

// received passes on the signals vmspace got, once os/signal said sig
// came: every recorded one, in the order they came (sig's own record, or
// records, came before os/signal heard of it), or sig to every process if
// its sender is unknown. Preconditions: mu held.
func (f *forwarder) received(sig unix.Signal) {
	if f.rec == nil || f.rec.wrapped&(1<<sig) == 0 {
		f.sendAll(sig)
		return
	}
	recs, lost := f.rec.take()
	for _, r := range recs {
		f.pass(r)
	}
	if lost {
		f.sendAll(sig)
	}
}

// sendAll sends sig to every process. Preconditions: mu held.
func (f *forwarder) sendAll(sig unix.Signal) {
	for pid := range f.pids {
		unix.Kill(pid, sig)
	}
}

// groupSender reports whether a signal from from may have been sent to a
// whole process group by someone else than vmspace.
func (f *forwarder) groupSender(from sender) bool {
	return from.code == siKernel || from.code == siUser && int(from.pid) != f.self
}

// state returns the matching state of k, made if need be. Preconditions:
// mu held.
func (f *forwarder) state(k procSig) *matchState {
	m := f.match[k]
	if m == nil {
		m = new(matchState)
		f.match[k] = m
	}
	return m
}

// tidy deletes k's state if it holds nothing. Preconditions: mu held.
func (f *forwarder) tidy(k procSig) {
	if m := f.match[k]; m != nil && *m == (matchState{}) {
		delete(f.match, k)
	}
}

// pass passes on vmspace's copy r to every process that did not get its
// own (see forwarder). Preconditions: mu held.
func (f *forwarder) pass(r sigRecord) {
	group := f.groupSender(r.from) && r.sig < sigRTMin
	for pid := range f.pids {
		if !group || !f.sameGroup(pid) {
			unix.Kill(pid, r.sig)
			continue
		}
		k := procSig{pid, r.sig}
		m := f.state(k)
		switch tk := m.token; {
		case tk != nil && tk.from == r.from && (tk.certain || time.Since(tk.at) < matchWindow):
			m.token = nil
		case signalPending(pid, r.sig):
			m.token = nil
			m.pending = true
		default:
			m.token = nil
			m.sent, m.sentFrom, m.drop = true, r.from, false
			unix.Kill(pid, r.sig)
		}
		f.tidy(k)
	}
}

// sameGroup reports whether process pid is in vmspace's process group
// (where a signal sent to the group reaches both).
func (f *forwarder) sameGroup(pid int) bool {
	pg, err := unix.Getpgid(pid)
	return err == nil && pg == unix.Getpgrp()
}

// delivering is called at a signal-delivery-stop of process pid for sig
// with si, and reports whether the signal is a forwarded copy of one the
// process already had from its sender, not to be delivered (see
// forwarder).
func (f *forwarder) delivering(pid int, sig unix.Signal, si *siginfo) bool {
	if sig >= sigRTMin || sig <= 0 {
		return false
	}
	from := sender{si.code(), si.pid()}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.pids[pid]; !ok {
		return false
	}
	k := procSig{pid, sig}
	m := f.match[k]
	if from.code == siUser && int(from.pid) == f.self {
		// A forwarded copy (or another signal vmspace sent).
		if m == nil {
			return false
		}
		drop := m.drop
		m.sent, m.sentFrom, m.drop = false, sender{}, false
		f.tidy(k)
		return drop
	}
	if m != nil && m.pending {
		// The copy vmspace's found pending.
		m.pending = false
		f.tidy(k)
		return false
	}
	if !f.groupSender(from) || !f.sameGroup(pid) {
		return false
	}
	m = f.state(k)
	if m.sent && m.sentFrom == from {
		// vmspace's copy was sent before this one's stop was served.
		m.drop = true
		return false
	}
	certain := signalPending(f.self, sig) || f.rec != nil && f.rec.has(sig, from)
	m.token = &token{from: from, certain: certain, at: time.Now()}
	return false
}

// signalPending reports whether sig is pending in process pid (for the
// process or its thread-group leader).
func signalPending(pid int, sig unix.Signal) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "SigPnd" && k != "ShdPnd") {
			continue
		}
		if m, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64); err == nil && m&(1<<(sig-1)) != 0 {
			return true
		}
	}
	return false
}
