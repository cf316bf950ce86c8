package sandbox

import (
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

// Caps on how much of a buffer is populated for one call.
const (
	// maxIOVecs is IOV_MAX.
	maxIOVecs = 1024
	// streamCap bounds what is populated for a read from something other
	// than a regular file: a larger read from a pipe or socket would
	// return less anyway; if more arrives, the call returns short.
	streamCap = 4 << 20
	// smallCap is how much of a read buffer is populated without looking
	// at the file first.
	smallCap = 256 << 10
	// pathCap is how much of a path argument is made readable.
	pathCap = 256
)

// ensure makes [addr, addr+length) of t's process mapped in the host for
// reading (or writing if write), as far as the memory manager allows.
func (s *Sandbox) ensure(t *task, addr, length uint64, write bool) {
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
	p := t.p
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

// readU64s reads n 8-byte words at addr of t's address space.
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
// buffers it describes accessible, populating at most limit bytes of
// them.
func (s *Sandbox) ensureIOV(t *task, iov uint64, cnt uint64, write bool, limit uint64) {
	if cnt == 0 || cnt > maxIOVecs {
		return
	}
	s.ensure(t, iov, 16*cnt, false)
	w, ok := s.readWords(t, iov, int(2*cnt))
	if !ok {
		return
	}
	for i := 0; i < int(cnt) && limit > 0; i++ {
		n := min(w[2*i+1], limit)
		s.ensure(t, w[2*i], n, write)
		limit -= n
	}
}

// ensureMsghdr makes a struct msghdr and what it points to accessible
// (for recvmsg if write).
func (s *Sandbox) ensureMsghdr(t *task, msg uint64, write bool, limit uint64) {
	s.ensure(t, msg, 56, write)
	w, ok := s.readWords(t, msg, 6)
	if !ok {
		return
	}
	name, namelen, iov, iovlen, ctl, ctllen := w[0], w[1]&0xffffffff, w[2], w[3], w[4], w[5]
	s.ensure(t, name, namelen, write)
	s.ensure(t, ctl, ctllen, write)
	s.ensureIOV(t, iov, iovlen, write, limit)
}

// ensureSockaddr makes an address buffer whose length is at lenp
// accessible (written by the kernel).
func (s *Sandbox) ensureSockaddr(t *task, addr, lenp uint64) {
	if lenp == 0 {
		return
	}
	s.ensure(t, lenp, 4, true)
	if n, ok := s.readU32(t, lenp); ok {
		s.ensure(t, addr, uint64(n), true)
	}
}

// prevalidate maps the buffers of system call nr before the host runs it.
func (s *Sandbox) prevalidate(t *task, nr int, a [6]uint64) {
	if t.p.mm == nil {
		return
	}
	const rd, wr = false, true
	switch nr {
	case unix.SYS_READ, unix.SYS_PREAD64:
		s.ensure(t, a[1], s.readCap(t, int32(a[0]), a[2]), wr)
	case unix.SYS_WRITE, unix.SYS_PWRITE64:
		s.ensure(t, a[1], a[2], rd)
	case unix.SYS_READV, unix.SYS_PREADV, unix.SYS_PREADV2:
		s.ensureIOV(t, a[1], a[2], wr, s.readCap(t, int32(a[0]), ^uint64(0)>>1))
	case unix.SYS_WRITEV, unix.SYS_PWRITEV, unix.SYS_PWRITEV2:
		s.ensureIOV(t, a[1], a[2], rd, ^uint64(0))
	case unix.SYS_SENDTO:
		s.ensure(t, a[1], a[2], rd)
		s.ensure(t, a[4], a[5]&0xffffffff, rd)
	case unix.SYS_RECVFROM:
		s.ensure(t, a[1], min(a[2], streamCap), wr)
		s.ensureSockaddr(t, a[4], a[5])
	case unix.SYS_SENDMSG:
		s.ensureMsghdr(t, a[1], rd, ^uint64(0))
	case unix.SYS_RECVMSG:
		s.ensureMsghdr(t, a[1], wr, streamCap)
	case unix.SYS_SENDMMSG, unix.SYS_RECVMMSG:
		n := min(a[2]&0xffffffff, maxIOVecs)
		write := nr == unix.SYS_RECVMMSG
		s.ensure(t, a[1], 64*n, true)
		for i := uint64(0); i < n; i++ {
			s.ensureMsghdr(t, a[1]+64*i, write, streamCap)
		}
		if nr == unix.SYS_RECVMMSG {
			s.ensure(t, a[4], 16, rd)
		}
	case unix.SYS_GETDENTS, unix.SYS_GETDENTS64, unix.SYS_GETRANDOM:
		if nr == unix.SYS_GETRANDOM {
			s.ensure(t, a[0], a[1], wr)
		} else {
			s.ensure(t, a[1], a[2], wr)
		}
	case unix.SYS_STAT, unix.SYS_LSTAT:
		s.ensure(t, a[0], pathCap, rd)
		s.ensure(t, a[1], 144, wr)
	case unix.SYS_FSTAT:
		s.ensure(t, a[1], 144, wr)
	case unix.SYS_NEWFSTATAT:
		s.ensure(t, a[1], pathCap, rd)
		s.ensure(t, a[2], 144, wr)
	case unix.SYS_STATX:
		s.ensure(t, a[1], pathCap, rd)
		s.ensure(t, a[4], 256, wr)
	case unix.SYS_STATFS:
		s.ensure(t, a[0], pathCap, rd)
		s.ensure(t, a[1], 120, wr)
	case unix.SYS_FSTATFS:
		s.ensure(t, a[1], 120, wr)
	case unix.SYS_WAIT4:
		s.ensure(t, a[1], 4, wr)
		s.ensure(t, a[3], 144, wr)
	case unix.SYS_WAITID:
		s.ensure(t, a[2], 128, wr)
		s.ensure(t, a[4], 144, wr)
	case unix.SYS_PIPE, unix.SYS_PIPE2:
		s.ensure(t, a[0], 8, wr)
	case unix.SYS_SOCKETPAIR:
		s.ensure(t, a[3], 8, wr)
	case unix.SYS_READLINK:
		s.ensure(t, a[0], pathCap, rd)
		s.ensure(t, a[1], a[2], wr)
	case unix.SYS_READLINKAT:
		s.ensure(t, a[1], pathCap, rd)
		s.ensure(t, a[2], a[3], wr)
	case unix.SYS_GETCWD:
		s.ensure(t, a[0], a[1], wr)
	case unix.SYS_UNAME:
		s.ensure(t, a[0], 390, wr)
	case unix.SYS_SYSINFO:
		s.ensure(t, a[0], 112, wr)
	case unix.SYS_GETRUSAGE:
		s.ensure(t, a[1], 144, wr)
	case unix.SYS_TIMES:
		s.ensure(t, a[0], 32, wr)
	case unix.SYS_GETRLIMIT:
		s.ensure(t, a[1], 16, wr)
	case unix.SYS_SCHED_GETAFFINITY:
		s.ensure(t, a[2], a[1], wr)
	case unix.SYS_GETGROUPS:
		s.ensure(t, a[1], 4*(a[0]&0xffffffff), wr)
	case unix.SYS_GETRESUID, unix.SYS_GETRESGID:
		for i := 0; i < 3; i++ {
			s.ensure(t, a[i], 4, wr)
		}
	case unix.SYS_POLL, unix.SYS_PPOLL:
		s.ensure(t, a[0], 8*min(a[1], 1<<20), wr)
		if nr == unix.SYS_PPOLL {
			s.ensure(t, a[2], 16, rd)
			s.ensure(t, a[3], 8, rd)
		}
	case unix.SYS_SELECT, unix.SYS_PSELECT6:
		n := (min(a[0]&0xffffffff, 1<<20) + 63) / 64 * 8
		for i := 1; i <= 3; i++ {
			s.ensure(t, a[i], n, wr)
		}
		if nr == unix.SYS_SELECT {
			s.ensure(t, a[4], 16, wr)
		} else {
			s.ensure(t, a[4], 16, rd)
			s.ensure(t, a[5], 16, rd)
		}
	case unix.SYS_ACCEPT, unix.SYS_ACCEPT4, unix.SYS_GETSOCKNAME, unix.SYS_GETPEERNAME:
		s.ensureSockaddr(t, a[1], a[2])
	case unix.SYS_GETSOCKOPT:
		s.ensureSockaddr(t, a[3], a[4])
	case unix.SYS_PROCESS_VM_READV:
		s.ensureIOV(t, a[1], a[2], wr, ^uint64(0))
		s.ensure(t, a[3], 16*min(a[4], maxIOVecs), rd)
	case unix.SYS_PROCESS_VM_WRITEV:
		s.ensureIOV(t, a[1], a[2], rd, ^uint64(0))
		s.ensure(t, a[3], 16*min(a[4], maxIOVecs), rd)
	case unix.SYS_VMSPLICE:
		s.ensureIOV(t, a[1], a[2], wr, ^uint64(0))
	case unix.SYS_MSGRCV:
		s.ensure(t, a[1], 8+a[2], wr)
	case unix.SYS_MSGSND:
		s.ensure(t, a[1], 8+a[2], rd)
	case unix.SYS_GETXATTR, unix.SYS_LGETXATTR:
		s.ensure(t, a[0], pathCap, rd)
		s.ensure(t, a[1], pathCap, rd)
		s.ensure(t, a[2], a[3], wr)
	case unix.SYS_FGETXATTR:
		s.ensure(t, a[1], pathCap, rd)
		s.ensure(t, a[2], a[3], wr)
	case unix.SYS_LISTXATTR, unix.SYS_LLISTXATTR:
		s.ensure(t, a[0], pathCap, rd)
		s.ensure(t, a[1], a[2], wr)
	case unix.SYS_FLISTXATTR:
		s.ensure(t, a[1], a[2], wr)
	}
}
