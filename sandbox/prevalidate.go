package sandbox

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/mm"
	"github.com/vmspace/vmspace/platform/ptrace"
	"golang.org/x/sys/unix"
)

// The host kernel reads and writes the program's buffers during the system
// calls it runs for it. A buffer in memory the manager has not mapped into
// the host process (never touched, or made read-only by a fork's
// copy-on-write) would make such a call fail with EFAULT where Linux would
// have faulted the page in. So the system calls that carry buffers stop at
// entry (see seccomp.go), and prevalidate makes sure their buffers are
// mapped in the host with the access the kernel needs, asking the memory
// manager to fault them in (MADV_POPULATE_READ/WRITE) when the shadow of
// host mappings says they are not. A buffer the manager cannot fault in is
// left alone: the host kernel then fails the call with EFAULT, as Linux
// would.

// Caps on how much of a buffer is populated for one call. They do not
// bound what is recorded as the call's kernel writes (noteKernelWrite):
// a fork while the call is blocked keeps the whole buffer writable in the
// parent, as the host kernel may write any of it (a recv(MSG_WAITALL)
// fills all), which costs the fork a copy for the child of the pages of
// the buffer holding data (mm.ForkPinned copies only those; a buffer
// never touched costs nothing).
const (
	// maxIOVecs is IOV_MAX.
	maxIOVecs = 1024
	// streamCap bounds what is populated for a read from something other
	// than a regular file: a larger read from a pipe or socket would
	// return less anyway; if more arrives, the call returns short. Not
	// for a receive with MSG_WAITALL, which fills its buffer (waitAll).
	streamCap = 4 << 20
	// smallCap is how much of a read buffer is populated without looking
	// at the file first.
	smallCap = 256 << 10
	// pathCap is how much of a path argument is made readable.
	pathCap = 256
)

// waitAll reports whether receive call nr with arguments a has
// MSG_WAITALL: on a stream it returns only once the whole buffer is
// filled (or the peer is done), so streamCap's "a larger read returns
// short anyway" does not hold, and the host would fail the copy past the
// populated part with EFAULT, returning short where Linux fills it.
func waitAll(nr int, a [6]uint64) bool {
	switch nr {
	case unix.SYS_RECVFROM, unix.SYS_RECVMMSG:
		return a[3]&unix.MSG_WAITALL != 0
	case unix.SYS_RECVMSG:
		return a[2]&unix.MSG_WAITALL != 0
	}
	return false
}

// msgCap returns how much of the buffers of a message of call nr to
// populate: streamCap, or all of them with MSG_WAITALL.
func msgCap(nr int, a [6]uint64) uint64 {
	if waitAll(nr, a) {
		return ^uint64(0)
	}
	return streamCap
}

// ensure makes [addr, addr+length) of t's process mapped in the host for
// reading (or writing if write), as far as the memory manager allows.
func (s *Sandbox) ensure(t *task, addr, length uint64, write bool) {
	if write {
		t.noteKernelWrite(addr, length)
	}
	s.ensureProc(t.p, addr, length, write)
	if s.uffd != nil {
		s.uffdKernelFault(t, addr, length, write)
	}
}

// ensureProc is ensure for process p.
func (s *Sandbox) ensureProc(p *process, addr, length uint64, write bool) {
	if addr == 0 || length == 0 {
		return
	}
	end := addr + length
	if end < addr || end > uint64(ptrace.StubStart) {
		end = uint64(ptrace.StubStart)
	}
	if addr >= end {
		return
	}
	ar := hostarch.AddrRange{Start: hostarch.Addr(addr).RoundDown(), End: hostarch.Addr(end).MustRoundUp()}
	at := hostarch.Read
	if write {
		at = hostarch.Write
	}
	if p.as == nil || p.as.covers(ar, at) {
		return
	}
	s.populate(p, ar, write)
}

// readCap returns how much of a read of length bytes from descriptor fd
// to populate.
func (s *Sandbox) readCap(t *task, fd int32, length uint64) uint64 {
	if length <= smallCap {
		return length
	}
	var st unix.Stat_t
	if fd >= 0 && unix.Stat(fmt.Sprintf("/proc/%d/fd/%d", t.p.pid, fd), &st) == nil &&
		st.Mode&unix.S_IFMT == unix.S_IFREG {
		return min(length, max(uint64(st.Size), smallCap))
	}
	return min(length, streamCap)
}

// readWords reads n 8-byte words at addr of t's address space.
func (s *Sandbox) readWords(t *task, addr uint64, n int) ([]uint64, bool) {
	if n <= 0 {
		return nil, true
	}
	buf := make([]byte, 8*n)
	if _, err := t.p.mm.CopyIn(s.ctx, hostarch.Addr(addr), buf, mm.IOOpts{}); err != nil {
		return nil, false
	}
	w := make([]uint64, n)
	for i := range w {
		w[i] = binary.LittleEndian.Uint64(buf[8*i:])
	}
	return w, true
}

// readU32 reads a 4-byte word at addr.
func (s *Sandbox) readU32(t *task, addr uint64) (uint32, bool) {
	var b [4]byte
	if addr == 0 {
		return 0, false
	}
	if _, err := t.p.mm.CopyIn(s.ctx, hostarch.Addr(addr), b[:], mm.IOOpts{}); err != nil {
		return 0, false
	}
	return binary.LittleEndian.Uint32(b[:]), true
}

// ensureIOV makes the iovec array at iov (cnt entries) readable and the
// buffers it describes accessible (read by the kernel if in, written if
// out), populating at most limit bytes of them.
func (s *Sandbox) ensureIOV(t *task, iov uint64, cnt uint64, in, out bool, limit uint64) {
	if cnt == 0 || cnt > maxIOVecs {
		return
	}
	s.ensure(t, iov, 16*cnt, false)
	w, ok := s.readWords(t, iov, int(2*cnt))
	if !ok {
		return
	}
	for i := 0; i < int(cnt); i++ {
		if out {
			// All of it may be written, what is populated or not.
			t.noteKernelWrite(w[2*i], w[2*i+1])
		}
		n := min(w[2*i+1], limit)
		s.ensureBuf(t, w[2*i], n, in, out)
		limit -= n
	}
}

// ensureMsghdr makes a struct msghdr and what it points to accessible
// (for recvmsg if write).
func (s *Sandbox) ensureMsghdr(t *task, msg uint64, write bool, limit uint64) {
	s.ensureBuf(t, msg, 56, true, write) // recvmsg writes msg_namelen, msg_controllen, msg_flags
	w, ok := s.readWords(t, msg, 6)
	if !ok {
		return
	}
	name, namelen, iov, iovlen, ctl, ctllen := w[0], w[1]&0xffffffff, w[2], w[3], w[4], w[5]
	s.ensureBuf(t, name, namelen, !write, write)
	s.ensureBuf(t, ctl, ctllen, !write, write)
	s.ensureIOV(t, iov, iovlen, !write, write, limit)
}

// prevalidate maps the buffers of system call nr, which the host is about
// to run, as its spec (sysargs.go) describes them. It returns EFAULT, and
// maps nothing, if the call is to fail as Linux fails it for a buffer at
// an address the program does not have (inStub).
func (s *Sandbox) prevalidate(t *task, nr int, a [6]uint64) unix.Errno {
	if t.p.mm == nil {
		return 0
	}
	sp, ok := specs[nr]
	if !ok {
		return 0
	}
	if (s.readsStub(t, sp, a) || s.vmRWStub(t, nr, a)) && s.fdReads(t, sp, a) {
		return unix.EFAULT
	}
	special := false
	for i, as := range sp {
		addr := a[i]
		switch as.kind {
		case argPath:
			s.ensureString(t, addr)
		case argBuf:
			s.ensureBuf(t, addr, s.bufSize(t, as.size, a), as.in, as.out)
		case argRead:
			n := s.bufSize(t, as.size, a)
			t.noteKernelWrite(addr, n) // all of it may be written
			limit := s.readCap(t, int32(a[0]), n)
			if waitAll(nr, a) {
				limit = n
			}
			s.ensure(t, addr, limit, true)
		case argIOV, argIOVRd:
			limit := ^uint64(0)
			if as.kind == argIOVRd {
				limit = s.readCap(t, int32(a[0]), ^uint64(0)>>1)
			}
			s.ensureIOV(t, addr, a[as.size.arg], as.in, as.out, limit)
		case argMsg:
			s.ensureMsghdr(t, addr, as.out, msgCap(nr, a))
		case argMMsg:
			n := min(a[as.size.arg]&0xffffffff, maxIOVecs)
			s.ensureBuf(t, addr, 64*n, true, true) // msg_len is written
			for i := uint64(0); i < n; i++ {
				s.ensureMsghdr(t, addr+64*i, as.out, msgCap(nr, a))
			}
		case argFDSet:
			n := (min(a[as.size.arg]&0xffffffff, 1<<20) + 63) / 64 * 8
			s.ensureBuf(t, addr, n, true, true)
		case argSpecial:
			special = true
		}
	}
	if special {
		s.prevalidateSpecial(t, nr, a)
	}
	s.exposeHeld(t, nr, a)
	s.sharedFutex(t, nr, a)
	return 0
}

// inStub reports whether addr is in vmspace's own pages at the top of
// every process, [StubStart, TASK_SIZE) (stub.go): natively nothing is
// mapped there.
func inStub(addr uint64) bool {
	return addr >= uint64(ptrace.StubStart) && addr < uint64(hostarch.MaxUserAddress)
}

// readsStub reports whether a call with spec sp and arguments a has the
// host kernel read memory that starts in vmspace's pages: a path there, a
// buffer there that the kernel reads (not empty), the iovec array or
// message header the kernel reads first, or the first buffer of the iovec
// array or message it sends (iovReadsStub). On Linux the address is not
// mapped and the call fails with EFAULT; in the host the kernel would read
// vmspace's pages and go on. (A buffer the kernel only writes needs
// nothing: the pages are read-only, so the host fails the write with
// EFAULT as Linux does.) Only where a buffer starts is looked at: one that
// starts below and runs into the pages is copied in part natively as in
// the host (until the write side fails, or in full for a read), as are
// the iovecs after the first. The arguments of the calls whose buffers depend on another
// argument (ioctl, fcntl, prctl, futex...: argSpecial) are not looked at.
// Linux may fail such a call with another error first (EINVAL for a bad
// flag, say); vmspace then gives EFAULT (but see fdReads).
func (s *Sandbox) readsStub(t *task, sp sysSpec, a [6]uint64) bool {
	for i, as := range sp {
		if !as.pointer() {
			continue
		}
		if !inStub(a[i]) {
			if s.iovReadsStub(t, as, a[i], a) {
				return true
			}
			continue
		}
		switch as.kind {
		case argPath, argMsg:
			return true
		case argBuf:
			if as.in && s.bufSize(t, as.size, a) > 0 {
				return true
			}
		case argIOV, argIOVRd:
			// More than IOV_MAX entries is EINVAL first.
			if n := a[as.size.arg]; n > 0 && n <= maxIOVecs {
				return true
			}
		case argMMsg:
			if uint32(a[as.size.arg]) > 0 {
				return true
			}
		case argFDSet:
			// A negative count is EINVAL first.
			if int32(a[as.size.arg]) > 0 {
				return true
			}
		}
	}
	return false
}

// fdReads reports whether a call with spec sp and arguments a, which
// would read a buffer in vmspace's pages, reads it natively given its
// descriptor argument (if any): a descriptor that is not open fails the
// call with EBADF first (the host does the same), and a write to
// /dev/null or /dev/zero reads nothing (the host's write of vmspace's
// pages does nothing either).
func (s *Sandbox) fdReads(t *task, sp sysSpec, a [6]uint64) bool {
	for i, as := range sp {
		if as.kind != argFD {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(fmt.Sprintf("/proc/%d/fd/%d", t.p.pid, int32(a[i])), &st) != nil {
			return false
		}
		if st.Mode&unix.S_IFMT == unix.S_IFCHR && unix.Major(st.Rdev) == 1 && (unix.Minor(st.Rdev) == 3 || unix.Minor(st.Rdev) == 5) {
			return false
		}
		break
	}
	return true
}

// iovReadsStub reports whether the iovec array (of a call that reads its
// buffers) or the message header to be sent, at addr and outside
// vmspace's pages, has the kernel read first from a buffer in them: the
// first iovec that is not empty, or the message's address. Linux fails
// the call with EFAULT, having sent nothing.
func (s *Sandbox) iovReadsStub(t *task, as argSpec, addr uint64, a [6]uint64) bool {
	if !as.in || addr == 0 {
		return false
	}
	var iov, cnt uint64
	switch as.kind {
	case argIOV:
		iov, cnt = addr, a[as.size.arg]
	case argMsg:
		w, ok := s.readWords(t, addr, 4)
		if !ok {
			return false
		}
		if uint32(w[1]) > 0 && inStub(w[0]) {
			return true
		}
		iov, cnt = w[2], w[3]
		if inStub(iov) && cnt > 0 && cnt <= maxIOVecs {
			return true
		}
	default:
		return false
	}
	if cnt == 0 || cnt > maxIOVecs {
		return false
	}
	w, ok := s.readWords(t, iov, int(2*cnt))
	if !ok {
		return false
	}
	for i := 0; i < len(w); i += 2 {
		if w[i+1] != 0 {
			return inStub(w[i])
		}
	}
	return false
}

// vmRWStub reports whether process_vm_readv or process_vm_writev (nr)
// with arguments a, which moves bytes (its local iovecs are not all
// empty), starts with memory in vmspace's pages on either side: the
// remote iovec array, the first remote buffer that is not empty (of a
// process of the program), or the first local buffer that is not empty
// (for process_vm_writev, which reads it: the host's write side fails
// as Linux's does). Linux fails such a call with EFAULT, having moved
// nothing.
func (s *Sandbox) vmRWStub(t *task, nr int, a [6]uint64) bool {
	if nr != unix.SYS_PROCESS_VM_READV && nr != unix.SYS_PROCESS_VM_WRITEV || a[5] != 0 {
		return false
	}
	lcnt, rcnt := a[2], a[4]
	if lcnt == 0 || lcnt > maxIOVecs || rcnt > maxIOVecs {
		return false
	}
	local, ok := s.readWords(t, a[1], int(2*lcnt))
	if !ok {
		return false
	}
	first := func(iov []uint64) (uint64, bool) {
		for i := 0; i+1 < len(iov); i += 2 {
			if iov[i+1] != 0 {
				return iov[i], true
			}
		}
		return 0, false
	}
	lbase, ok := first(local)
	if !ok {
		// Nothing to move: Linux returns 0 before reading the remote
		// array.
		return false
	}
	if rcnt > 0 && inStub(a[3]) {
		return true
	}
	if nr == unix.SYS_PROCESS_VM_WRITEV && inStub(lbase) {
		return true
	}
	if pt := s.tasks[int(int32(a[0]))]; pt == nil || pt.p == nil {
		return false
	}
	remote, ok := s.readWords(t, a[3], int(2*rcnt))
	if !ok {
		return false
	}
	rbase, ok := first(remote)
	return ok && inStub(rbase)
}

// bufSize returns the size of a buffer by its rule.
func (s *Sandbox) bufSize(t *task, r sizeRule, a [6]uint64) uint64 {
	if r.arg < 0 {
		return r.fixed
	}
	v := a[r.arg]
	switch {
	case r.lenPtr:
		n, ok := s.readU32(t, v)
		if !ok {
			return 0
		}
		return uint64(n)
	case r.bits:
		return (min(v, 1<<32) + 63) / 64 * 8
	}
	if r.mul > 1 && v > ^uint64(0)/r.mul {
		return ^uint64(0)
	}
	n := v * r.mul
	if n+r.add < n {
		return ^uint64(0)
	}
	return n + r.add
}

// ensureBuf makes a buffer that the kernel reads (in) and/or writes (out)
// accessible as the memory manager allows: writable if it may be written
// there, else readable if it may be read.
func (s *Sandbox) ensureBuf(t *task, addr, length uint64, in, out bool) {
	if out {
		s.ensure(t, addr, length, true)
	}
	if in {
		s.ensure(t, addr, length, false)
	}
}

// ensureString makes the NUL-terminated string at addr readable, page by
// page up to its end (at most PATH_MAX bytes, what the kernel reads of a
// path).
func (s *Sandbox) ensureString(t *task, addr uint64) {
	const pathMax = 4096
	if addr == 0 {
		return
	}
	buf := make([]byte, hostarch.PageSize)
	for a, left := addr, uint64(pathMax); left > 0; {
		n := min(hostarch.PageSize-a%hostarch.PageSize, left)
		s.ensure(t, a, n, false)
		c, err := t.p.mm.CopyIn(s.ctx, hostarch.Addr(a), buf[:n], mm.IOOpts{})
		if err != nil || bytes.IndexByte(buf[:c], 0) >= 0 {
			return
		}
		a += n
		left -= n
	}
}

// ioctlSizes are the sizes of the arguments of the common ioctls whose
// number does not encode it: the terminal ones and FIONREAD/FIONBIO.
var ioctlSizes = map[uint32]struct {
	size    uint64
	in, out bool
}{
	unix.TCGETS: {36, false, true}, unix.TCSETS: {36, true, false}, unix.TCSETSW: {36, true, false},
	unix.TCSETSF: {36, true, false}, unix.TIOCGWINSZ: {8, false, true}, unix.TIOCSWINSZ: {8, true, false},
	0x541b: {4, false, true}, unix.TIOCOUTQ: {4, false, true}, unix.TIOCGPGRP: {4, false, true},
	unix.TIOCSPGRP: {4, true, false}, 0x5421: {4, true, false}, 0x5452: {4, true, false},
	unix.TIOCGSID: {4, false, true}, unix.TIOCSTI: {1, true, false}, unix.TIOCMGET: {4, false, true},
	unix.TIOCGETD: {4, false, true}, unix.TIOCSETD: {4, true, false}, 0x5460 /* FIOQSIZE */ : {8, false, true},
	unix.SIOCGSTAMP: {16, false, true}, unix.SIOCGSTAMPNS: {16, false, true},
	0x2 /* FIGETBSZ */ : {4, false, true}, 0x1 /* FIBMAP */ : {4, true, true},
}

// prevalidateSpecial maps the buffers of the arguments whose meaning
// depends on another one.
func (s *Sandbox) prevalidateSpecial(t *task, nr int, a [6]uint64) {
	switch nr {
	case unix.SYS_IOCTL:
		cmd := uint32(a[1])
		if sz, ok := ioctlSizes[cmd]; ok {
			s.ensureBuf(t, a[2], sz.size, sz.in, sz.out)
			return
		}
		if cmd>>8&0xff == 0x89 { // socket ioctls: a struct ifreq
			s.ensureBuf(t, a[2], 40, true, true)
			return
		}
		// _IOC(dir, type, nr, size): dir 1 is "write" (the kernel
		// reads), 2 "read" (the kernel writes).
		dir, size := cmd>>30, uint64(cmd>>16&0x3fff)
		s.ensureBuf(t, a[2], size, dir&1 != 0, dir&2 != 0)
	case unix.SYS_FCNTL:
		switch a[1] {
		case unix.F_GETLK, unix.F_OFD_GETLK:
			s.ensureBuf(t, a[2], 32, true, true)
		case unix.F_SETLK, unix.F_SETLKW, unix.F_OFD_SETLK, unix.F_OFD_SETLKW:
			s.ensureBuf(t, a[2], 32, true, false)
		case unix.F_GETOWN_EX, 1035, 1037: // F_GET_RW_HINT, F_GET_FILE_RW_HINT
			s.ensureBuf(t, a[2], 8, false, true)
		case unix.F_SETOWN_EX, 1036, 1038:
			s.ensureBuf(t, a[2], 8, true, false)
		}
	case unix.SYS_PRCTL:
		switch a[0] {
		case unix.PR_GET_PDEATHSIG, unix.PR_GET_UNALIGN, unix.PR_GET_FPEMU, unix.PR_GET_FPEXC,
			unix.PR_GET_ENDIAN, unix.PR_GET_TSC, unix.PR_GET_CHILD_SUBREAPER:
			s.ensureBuf(t, a[1], 4, false, true)
		case unix.PR_GET_TID_ADDRESS:
			s.ensureBuf(t, a[1], 8, false, true)
		case unix.PR_GET_NAME:
			s.ensureBuf(t, a[1], 16, false, true)
		case unix.PR_SET_NAME:
			s.ensureBuf(t, a[1], 16, true, false)
		case unix.PR_SET_VMA:
			s.ensureString(t, a[4])
		case unix.PR_SET_SECCOMP:
			s.ensureBuf(t, a[2], 16, true, false)
		case 0x41555856: // PR_GET_AUXV
			s.ensureBuf(t, a[1], a[2], false, true)
		}
	case unix.SYS_ARCH_PRCTL:
		for _, c := range archPrctlPointerCodes {
			if uint32(a[0]) == c {
				s.ensureBuf(t, a[1], 8, false, true)
			}
		}
	case unix.SYS_FUTEX:
		op := a[1] & 0x7f
		word := func(addr uint64, write bool) { s.ensureBuf(t, addr, 4, true, write) }
		switch op {
		case futexWAIT, futexWAIT_BITSET:
			word(a[0], false)
			s.ensureBuf(t, a[3], 16, true, false)
		case futexWAKE, futexWAKE_BITSET:
			word(a[0], false)
		case futexREQUEUE, futexCMP_REQUEUE:
			word(a[0], false)
			word(a[4], false)
		case futexWAKE_OP:
			word(a[0], false)
			word(a[4], true)
		case futexLOCK_PI, futexLOCK_PI2, futexTRYLOCK_PI, futexUNLOCK_PI:
			word(a[0], true)
			if op != futexUNLOCK_PI {
				s.ensureBuf(t, a[3], 16, true, false)
			}
		case futexWAIT_REQUEUE_PI, futexCMP_REQUEUE_PI:
			word(a[0], false)
			word(a[4], true)
			if op == futexWAIT_REQUEUE_PI {
				s.ensureBuf(t, a[3], 16, true, false)
			}
		}
	case unix.SYS_SEMCTL:
		switch a[2] &^ 0x100 { // IPC_64
		case unix.IPC_STAT, 18, 20: // SEM_STAT, SEM_STAT_ANY
			s.ensureBuf(t, a[3], 104, false, true)
		case unix.IPC_SET:
			s.ensureBuf(t, a[3], 104, true, false)
		case 3, 19: // SEM_INFO
			s.ensureBuf(t, a[3], 40, false, true)
		}
	case unix.SYS_MSGCTL:
		switch a[1] &^ 0x100 {
		case unix.IPC_STAT, 11, 14: // MSG_STAT, MSG_STAT_ANY
			s.ensureBuf(t, a[2], 120, false, true)
		case unix.IPC_SET:
			s.ensureBuf(t, a[2], 120, true, false)
		case 3, 12: // MSG_INFO
			s.ensureBuf(t, a[2], 32, false, true)
		}
	case unix.SYS_PROCESS_VM_READV, unix.SYS_PROCESS_VM_WRITEV:
		s.ensureRemoteIOV(t, int(int32(a[0])), a[3], a[4], nr == unix.SYS_PROCESS_VM_WRITEV)
	}
}

// ensureRemoteIOV makes the buffers of a remote iovec array (in t's
// memory) accessible in process pid's memory if it is one of the
// program's: process_vm_readv reads them, process_vm_writev writes them.
func (s *Sandbox) ensureRemoteIOV(t *task, pid int, iov, cnt uint64, write bool) {
	if cnt == 0 || cnt > maxIOVecs {
		return
	}
	s.ensure(t, iov, 16*cnt, false)
	var p *process
	if pt := s.tasks[pid]; pt != nil {
		p = pt.p
	}
	if p == nil || p.mm == nil {
		return
	}
	w, ok := s.readWords(t, iov, int(2*cnt))
	if !ok {
		return
	}
	for i := 0; i < int(cnt); i++ {
		s.ensureProc(p, w[2*i], w[2*i+1], write)
	}
}
