package sandbox

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"golang.org/x/sys/unix"
)

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

// writeMem writes b into process pid's memory at addr, which must be
// writable there.
func (s *Sandbox) writeMem(pid int, addr hostarch.Addr, b []byte) error {
	if p := s.procs[pid]; p != nil && !p.stubPrivate && addr >= scratchAddr && addr < scratchAddr+hostarch.PageSize {
		// The scratch page, not writable in the process (or, with the
		// fast path, its own page, whose end is its helper's).
		off := uint64(addr - scratchAddr)
		if off+uint64(len(b)) > s.scratchSize(p) {
			return unix.EFAULT
		}
		n, err := unix.Pwrite(s.mf.FD(), b, int64(s.scratchOff(p)+off))
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
//     that the program never holds it. It is opened through the
//     descriptor's path in vmspace's /proc (/proc/<vmspace>/task/<keeper>/fd/N
//     for the descriptors hostfile keeps aside), or, where the program may not look into
//     vmspace's descriptors (it changed its user ids), by the file's path,
//     checked to be the same inode, or, if that is out of its reach too,
//     vmspace's own descriptor passed over a socket (passFD). A program
//     at its RLIMIT_NOFILE has the limit raised (by the process itself up
//     to its hard limit: roomForFDs) past the first free
//     descriptor for the moment of the open (beyond the hard limit only if vmspace has CAP_SYS_RESOURCE:
//     else the memory file's number is lent for the moment, openAtMemFD).
func (s *Sandbox) mapFD(t *task, f memmap.File, at hostarch.AccessType) (int, func(), error) {
	n := f.FD()
	if n == s.mf.FD() {
		fd, err := s.stubFD(t)
		return fd, nil, err
	}
	// A host file's descriptor may be vmspace's own or kept aside in
	// another file table (hostfile's keepers): its path says where.
	proc := ""
	if pf, ok := f.(interface{ Path() string }); ok {
		proc = pf.Path()
	} else if n >= 0 {
		proc = fmt.Sprintf("/proc/%d/fd/%d", s.selfPid, n)
	}
	if proc == "" {
		return -1, nil, fmt.Errorf("sandbox: mapping a closed file: %w", unix.EBADF)
	}
	s.outside.watch(proc) // truncations by other processes (outside.go)
	flags := unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOCTTY
	if at.Write {
		flags = unix.O_RDWR | unix.O_CLOEXEC | unix.O_NOCTTY
	}
	c := s.fdCache
	if c != nil && c.t == t {
		if fd, ok := c.fds[fdCacheKey{f, at.Write}]; ok {
			return fd, nil, nil
		}
	}
	if fd, ok := s.lentFD(t, proc, at.Write); ok {
		return fd, nil, nil
	}
	fd, err := s.openIn(t, proc, flags)
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
		var perr error
		fd, perr = s.openSameFile(t, proc, flags)
		if perr != nil {
			// Out of its reach: passed over a socket (fdpass.go).
			var serr error
			if fd, serr = s.passFD(t, proc, flags); serr != nil {
				err = fmt.Errorf("%w (by its path: %v; passed: %v)", err, perr, serr)
			} else {
				err = nil
			}
		} else {
			err = nil
		}
	}
	if err != nil {
		return -1, nil, err
	}
	if c != nil && c.t == t && !t.p.memFDLent {
		c.fds[fdCacheKey{f, at.Write}] = fd
		return fd, nil, nil
	}
	return fd, func() { s.closeIn(t, fd) }, nil
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

// openSameFile opens, in t's process, the file that vmspace's descriptor at
// proc (/proc/.../fd/N) refers to, by its path, and checks that the result
// is the same inode.
func (s *Sandbox) openSameFile(t *task, proc string, flags int) (int, error) {
	path, err := os.Readlink(proc)
	if err != nil {
		return -1, err
	}
	var st unix.Stat_t
	if !strings.HasPrefix(path, "/") || unix.Stat(proc, &st) != nil || st.Nlink == 0 {
		// Not a path, or no name left (st_nlink 0; the link's
		// " (deleted)" is for display, and may be a file's own name).
		return -1, fmt.Errorf("sandbox: %q cannot be opened by path: %w", path, unix.ENOENT)
	}
	fd, err := s.openIn(t, path, flags)
	if err != nil {
		return -1, err
	}
	var want, got unix.Stat_t
	same := false
	if hfd, err := s.getFD(t.p, fd); err == nil {
		same = unix.Fstat(hfd, &got) == nil && unix.Stat(proc, &want) == nil && got.Dev == want.Dev && got.Ino == want.Ino
		unix.Close(hfd)
	}
	if !same {
		s.closeIn(t, fd)
		return -1, fmt.Errorf("sandbox: %q is no longer the mapped file: %w", path, unix.ESTALE)
	}
	return fd, nil
}

// openIn opens path with flags in t's process (openat injected), raising
// its RLIMIT_NOFILE by one for the moment if it is used up, or, at a hard
// limit vmspace cannot raise, at the memory file's number, lent for the
// moment (closeIn gives it back).
func (s *Sandbox) openIn(t *task, path string, flags int) (int, error) {
	p := t.p
	cwd := unix.AT_FDCWD
	open := func() (uintptr, error) {
		// Written each time: raising the limit uses the scratch page.
		if err := s.writeMem(p.pid, scratchAddr, append([]byte(path), 0)); err != nil {
			return 0, err
		}
		return s.inject(t, unix.SYS_OPENAT, uintptr(cwd), uintptr(scratchAddr), uintptr(flags), 0)
	}
	r, err := open()
	if err != nil {
		return -1, err
	}
	if e, bad := errnoOf(r); bad && e == unix.EMFILE {
		// Up to the first free descriptor at or above the limit (the
		// memory file may sit right at it; fdpass.go).
		if restore, rerr := s.roomForFDs(t, 1); rerr == nil {
			r, err = open()
			restore()
			if err != nil {
				return -1, err
			}
		}
	}
	if e, bad := errnoOf(r); bad && e == unix.EMFILE && p.memFDOurs && !p.memFDLent {
		if r, err = s.openAtMemFD(t, open); err != nil {
			return -1, err
		}
	}
	if e, bad := errnoOf(r); bad {
		return -1, fmt.Errorf("sandbox: opening %s in process %d: %w", path, p.pid, e)
	}
	return int(r), nil
}

// openAtMemFD makes open, which failed for want of a free descriptor
// number in t's process, at the memory file's number, closed for the
// moment (and the soft RLIMIT_NOFILE raised past it if needed: it is below
// the hard limit). It returns open's result; closeIn puts the memory file
// back once the descriptor is closed.
func (s *Sandbox) openAtMemFD(t *task, open func() (uintptr, error)) (uintptr, error) {
	p := t.p
	if r, err := s.inject(t, unix.SYS_CLOSE, uintptr(p.memFD)); err != nil {
		return 0, err
	} else if _, bad := errnoOf(r); bad {
		return r, nil
	}
	p.memFDLent = true
	restore := roomAtMemFD(p)
	r, err := open()
	restore()
	if err != nil {
		return 0, err
	}
	if _, bad := errnoOf(r); bad || int(r) != p.memFD {
		// Failed, or not at the number (another thread took it): give
		// the number back.
		if !bad {
			s.inject(t, unix.SYS_CLOSE, r)
			emfile := int64(unix.EMFILE)
			r = uintptr(-emfile)
		}
		s.returnMemFD(t)
	}
	return r, nil
}

// roomAtMemFD raises p's soft RLIMIT_NOFILE past its memory file's number
// if needed (it is below the hard limit), and returns the function that
// puts the limit back.
func roomAtMemFD(p *process) func() {
	if undo, err := installAt(p.pid, p.memFD); err == nil {
		return undo
	}
	return func() {}
}

// closeIn closes descriptor fd that vmspace opened in t's process, and
// gives the memory file its number back if fd had it (openAtMemFD).
func (s *Sandbox) closeIn(t *task, fd int) {
	s.inject(t, unix.SYS_CLOSE, uintptr(fd))
	if t.p.memFDLent && fd == t.p.memFD {
		s.returnMemFD(t)
	}
}

// returnMemFD opens the memory file again at its number in t's process
// after openAtMemFD lent it.
func (s *Sandbox) returnMemFD(t *task) {
	p := t.p
	p.memFDLent = false
	restore := roomAtMemFD(p)
	defer restore()
	if err := s.reinstallMemFD(t); err != nil {
		s.killProcess(p, fmt.Sprintf("killed by the tracer: the memory file cannot be reinstalled: %v", err))
	}
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
