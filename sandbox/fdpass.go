package sandbox

import (
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/vmspace/vmspace/hostarch"
	"golang.org/x/sys/unix"
)

// passFD gives t's process, for the moment of a host mapping, a descriptor
// of the file that vmspace's descriptor at proc (/proc/.../fd/N) refers
// to, opened with flags, when the process can open neither that path (a
// program that changed its user ids may not look into vmspace's
// descriptors) nor the file's own (out of its reach, or gone): vmspace
// opens the file itself and sends the descriptor over a socket pair that
// the process makes, as SCM_RIGHTS, which no permission of the receiver
// bounds. A page of private memory mapped for the moment (outside the
// memory manager's ranges, like the seccomp filter's at start-up) holds
// what the process's calls write. It returns the descriptor in t's
// process, which the caller closes.
//
// The process holds two descriptors at once on the way (the socket's
// receiving end and the descriptor it receives): a process with fewer
// free numbers below its RLIMIT_NOFILE has the limit raised for the
// moment (roomForFDs), as openIn does for one.
func (s *Sandbox) passFD(t *task, proc string, flags int) (fd int, err error) {
	p := t.p
	f, err := unix.Open(proc, flags, 0)
	if err != nil {
		return -1, fmt.Errorf("sandbox: opening %s: %w", proc, err)
	}
	defer unix.Close(f)
	restore, err := s.roomForFDs(t, passFDNeeds)
	if err != nil {
		return -1, fmt.Errorf("sandbox: passing a descriptor to process %d: no room for its descriptors: %w", p.pid, err)
	}
	defer restore()
	call := func(what string, nr uintptr, args ...uintptr) (uintptr, error) {
		r, err := s.inject(t, nr, args...)
		if err != nil {
			return 0, err
		}
		if e, bad := errnoOf(r); bad {
			return 0, fmt.Errorf("sandbox: passing a descriptor to process %d: %s: %w", p.pid, what, e)
		}
		return r, nil
	}
	page, err := call("mmap", unix.SYS_MMAP, 0, hostarch.PageSize, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uintptr(0), 0)
	if err != nil {
		return -1, err
	}
	defer s.inject(t, unix.SYS_MUNMAP, page, hostarch.PageSize)
	if _, err := call("socketpair", unix.SYS_SOCKETPAIR, unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0, page); err != nil {
		return -1, err
	}
	var sv [8]byte
	if err := readMem(p.pid, hostarch.Addr(page), sv[:]); err != nil {
		return -1, err
	}
	send, recv := int(int32(binary.LittleEndian.Uint32(sv[:]))), int(int32(binary.LittleEndian.Uint32(sv[4:])))
	defer s.inject(t, unix.SYS_CLOSE, uintptr(recv))
	ours, err := s.getFD(p, send)
	s.inject(t, unix.SYS_CLOSE, uintptr(send))
	if err != nil {
		return -1, err
	}
	err = unix.Sendmsg(ours, []byte{0}, unix.UnixRights(f), nil, 0)
	unix.Close(ours)
	if err != nil {
		return -1, fmt.Errorf("sandbox: sending a descriptor to process %d: %w", p.pid, err)
	}
	// struct msghdr at 0, its iovec at 64, the control buffer at 128, the
	// byte at 256.
	const iovOff, ctlOff, byteOff, ctlLen = 64, 128, 256, 64
	var msg [byteOff]byte
	le := binary.LittleEndian
	le.PutUint64(msg[16:], uint64(page)+iovOff)      // msg_iov
	le.PutUint64(msg[24:], 1)                        // msg_iovlen
	le.PutUint64(msg[32:], uint64(page)+ctlOff)      // msg_control
	le.PutUint64(msg[40:], ctlLen)                   // msg_controllen
	le.PutUint64(msg[iovOff:], uint64(page)+byteOff) // iov_base
	le.PutUint64(msg[iovOff+8:], 1)                  // iov_len
	if err := s.writeMem(p.pid, hostarch.Addr(page), msg[:]); err != nil {
		return -1, err
	}
	if _, err := call("recvmsg", unix.SYS_RECVMSG, uintptr(recv), page, unix.MSG_CMSG_CLOEXEC); err != nil {
		return -1, err
	}
	var ctl [ctlLen]byte
	if err := readMem(p.pid, hostarch.Addr(page)+ctlOff, ctl[:]); err != nil {
		return -1, err
	}
	// struct cmsghdr: u64 len, i32 level, i32 type, then the descriptor.
	if le.Uint64(ctl[:]) < 20 || int32(le.Uint32(ctl[8:])) != unix.SOL_SOCKET || int32(le.Uint32(ctl[12:])) != unix.SCM_RIGHTS {
		return -1, fmt.Errorf("sandbox: process %d received no descriptor: %w", p.pid, unix.EIO)
	}
	return int(int32(le.Uint32(ctl[16:]))), nil
}

// passFDNeeds is how many descriptors passFD's calls hold at once in the
// process: the socket pair's two ends, then the receiving end and the
// descriptor received (the sending end is closed first).
const passFDNeeds = 2

// roomForFDs makes sure t's process has n free descriptor numbers below
// its soft RLIMIT_NOFILE, raising the limit just enough if it has fewer,
// and returns the function that puts the limit back. Descriptors opened
// meanwhile stay valid above the restored limit, as they do on Linux when
// a process lowers its own. The soft limit is raised by the process
// itself (an injected prlimit64: a process that changed its user ids may
// be out of vmspace's reach for prlimit, but may always raise its own
// soft limit up to the hard one); past the hard limit, by vmspace, which
// needs CAP_SYS_RESOURCE.
func (s *Sandbox) roomForFDs(t *task, n int) (func(), error) {
	pid := t.p.pid
	soft, hard, err := nofileLimits(pid)
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil, err
	}
	used := make(map[uint64]bool, len(ents))
	for _, e := range ents {
		if fd, err := strconv.ParseUint(e.Name(), 10, 32); err == nil {
			used[fd] = true
		}
	}
	// The lowest limit with n free numbers below it (at most
	// len(ents)+n).
	end := uint64(0)
	for free := 0; free < n; end++ {
		if !used[end] {
			free++
		}
	}
	if end <= soft {
		return func() {}, nil
	}
	if end <= hard {
		set := func(cur uint64) error {
			var b [16]byte
			binary.LittleEndian.PutUint64(b[:], cur)
			binary.LittleEndian.PutUint64(b[8:], hard)
			if err := s.writeMem(pid, scratchAddr, b[:]); err != nil {
				return err
			}
			r, err := s.inject(t, unix.SYS_PRLIMIT64, 0, unix.RLIMIT_NOFILE, uintptr(scratchAddr), 0)
			if err != nil {
				return err
			}
			if e, bad := errnoOf(r); bad {
				return e
			}
			return nil
		}
		if err := set(end); err != nil {
			return nil, err
		}
		return func() { set(soft) }, nil
	}
	lim := unix.Rlimit{Cur: soft, Max: hard}
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: end, Max: end}, nil); err != nil {
		return nil, fmt.Errorf("%d free descriptor numbers need a limit of %d, past the hard limit %d: %w", n, end, hard, unix.EMFILE)
	}
	return func() { unix.Prlimit(pid, unix.RLIMIT_NOFILE, &lim, nil) }, nil
}

// nofileLimits returns process pid's soft and hard RLIMIT_NOFILE, from
// /proc/PID/limits (which anyone may read, unlike prlimit's answer).
func nofileLimits(pid int) (soft, hard uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "Max open files")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 2 {
			break
		}
		if soft, err = strconv.ParseUint(f[0], 10, 64); err == nil {
			hard, err = strconv.ParseUint(f[1], 10, 64)
		}
		return soft, hard, err
	}
	return 0, 0, fmt.Errorf("sandbox: no RLIMIT_NOFILE in /proc/%d/limits: %w", pid, unix.EIO)
}

// readMem reads process pid's memory at addr into b.
func readMem(pid int, addr hostarch.Addr, b []byte) error {
	local := []unix.Iovec{{Base: &b[0]}}
	local[0].SetLen(len(b))
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(b)}}
	n, err := unix.ProcessVMReadv(pid, local, remote, 0)
	if err != nil {
		return err
	}
	if n != len(b) {
		return unix.EFAULT
	}
	return nil
}
