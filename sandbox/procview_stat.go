package sandbox

import (
	"strconv"
	"strings"
	"unsafe"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/mm"
	"golang.org/x/sys/unix"
)

// What a program learns of a view's descriptor other than its contents:
// fstat, newfstatat, statx and fstatfs of it, stat, statx and statfs of
// its /proc/PID/fd/N link (which the kernel follows to the file), and
// readlink of that link. Natively they describe the /proc file (a regular
// file of mode 0444, 0400 or 0600, size 0, on proc's device, and a link
// reading "/proc/PID/maps"); the host would describe the view's memfd. A
// view keeps the host's own /proc file open (procView.host, an O_PATH
// descriptor of what the program opened, taken before vmspace replaced
// it), and these calls are answered with the host's answer for that file,
// byte for byte (times, inode, mount id and all).
//
// These calls all have a buffer argument, so the filter stops them
// already (seccomp.go: a call with a pointer argument stops); they cost
// nothing more while no view is open. While one is, an fstat-like call
// costs the tracer one host stat of the descriptor's link (viewOf), and a
// path-based one whose last component is a number (an fd link) the
// resolution of the path (viewAtPath).

// atStatxSyncType are statx's sync flags (AT_STATX_SYNC_TYPE).
const atStatxSyncType = 0x6000

// Sizes of the structures the calls fill (x86-64).
const (
	statSize   = 144
	statxSize  = 256
	statfsSize = 120
)

// viewStatCall serves a stat-like call or a readlink that concerns a view;
// ok is false if the call does not.
func (s *Sandbox) viewStatCall(t *task, nr int, a [6]uint64) (res sysResult, ok bool) {
	switch nr {
	case unix.SYS_FSTAT:
		return s.viewFstat(t, s.viewOf(t, int32(a[0])), nr, a[1], 0, 0)
	case unix.SYS_FSTATFS:
		return s.viewFstat(t, s.viewOf(t, int32(a[0])), nr, a[1], 0, 0)
	case unix.SYS_STAT:
		return s.viewFstat(t, s.viewAtPath(t, unix.AT_FDCWD, a[0]), unix.SYS_FSTAT, a[1], 0, 0)
	case unix.SYS_STATFS:
		return s.viewFstat(t, s.viewAtPath(t, unix.AT_FDCWD, a[0]), unix.SYS_FSTATFS, a[1], 0, 0)
	case unix.SYS_NEWFSTATAT, unix.SYS_STATX:
		flags, buf := a[3], a[2]
		if nr == unix.SYS_STATX {
			flags, buf = a[2], a[4]
		}
		if flags&^(unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW|unix.AT_NO_AUTOMOUNT|atStatxSyncType) != 0 {
			return sysResult{}, false // the host's EINVAL
		}
		var v *procView
		if s.emptyPath(t, a[1]) {
			if flags&unix.AT_EMPTY_PATH == 0 {
				return sysResult{}, false
			}
			v = s.viewOf(t, int32(a[0]))
		} else {
			if flags&unix.AT_SYMLINK_NOFOLLOW != 0 {
				return sysResult{}, false // the link itself
			}
			v = s.viewAtPath(t, int32(a[0]), a[1])
		}
		if nr == unix.SYS_NEWFSTATAT {
			return s.viewFstat(t, v, unix.SYS_FSTAT, buf, 0, 0)
		}
		return s.viewFstat(t, v, nr, buf, flags&atStatxSyncType, a[3])
	case unix.SYS_READLINK:
		return s.viewReadlink(t, s.viewAtPath(t, unix.AT_FDCWD, a[0]), a[1], a[2])
	case unix.SYS_READLINKAT:
		return s.viewReadlink(t, s.viewAtPath(t, int32(a[0]), a[1]), a[2], a[3])
	}
	return sysResult{}, false
}

// viewFstat answers fstat, fstatfs or statx (nr, with statx's sync flags
// and mask) of view v into the program's buffer buf with the host's
// answer for the /proc file v shows.
func (s *Sandbox) viewFstat(t *task, v *procView, nr int, buf, flags, mask uint64) (sysResult, bool) {
	if v == nil || v.host < 0 {
		return sysResult{}, false
	}
	var out []byte
	var e unix.Errno
	switch nr {
	case unix.SYS_FSTAT:
		out = make([]byte, statSize)
		_, _, e = unix.Syscall(unix.SYS_FSTAT, uintptr(v.host), uintptr(unsafe.Pointer(&out[0])), 0)
	case unix.SYS_FSTATFS:
		out = make([]byte, statfsSize)
		_, _, e = unix.Syscall(unix.SYS_FSTATFS, uintptr(v.host), uintptr(unsafe.Pointer(&out[0])), 0)
	case unix.SYS_STATX:
		out = make([]byte, statxSize)
		empty := [1]byte{}
		_, _, e = unix.Syscall6(unix.SYS_STATX, uintptr(v.host), uintptr(unsafe.Pointer(&empty[0])),
			uintptr(unix.AT_EMPTY_PATH|flags), uintptr(uint32(mask)), uintptr(unsafe.Pointer(&out[0])), 0)
	}
	if e != 0 {
		return retErr(e), true
	}
	if c, err := t.p.mm.CopyOut(s.ctx, hostarch.Addr(buf), out, mm.IOOpts{}); err != nil || c != len(out) {
		return retErr(unix.EFAULT), true
	}
	return ret(0), true
}

// viewReadlink answers readlink of a view's descriptor link: the path of
// the /proc file it shows, cut to the buffer's size as readlink does.
func (s *Sandbox) viewReadlink(t *task, v *procView, buf, size uint64) (sysResult, bool) {
	if v == nil || v.path == "" || int32(size) <= 0 {
		return sysResult{}, false
	}
	out := []byte(v.path)[:min(uint64(len(v.path)), uint64(int32(size)))]
	if c, err := t.p.mm.CopyOut(s.ctx, hostarch.Addr(buf), out, mm.IOOpts{}); err != nil || c != len(out) {
		return retErr(unix.EFAULT), true
	}
	return ret(uintptr(len(out))), true
}

// emptyPath reports whether the path argument at p is NULL or "" (which
// AT_EMPTY_PATH makes the descriptor itself).
func (s *Sandbox) emptyPath(t *task, p uint64) bool {
	if p == 0 {
		return true
	}
	var b [1]byte
	n, _ := t.p.mm.CopyIn(s.ctx, hostarch.Addr(p), b[:], mm.IOOpts{})
	return n == 1 && b[0] == 0
}

// viewAtPath returns the view that the path at p (relative to dfd) of t
// names through a descriptor link (/proc/self/fd/N, /dev/fd/N, N relative
// to an open /proc/PID/fd, ...), or nil: the file a stat that follows the
// link describes, and the one whose path a readlink of it gives.
func (s *Sandbox) viewAtPath(t *task, dfd int32, p uint64) *procView {
	if len(s.views.byFile) == 0 || p == 0 {
		return nil
	}
	name, e := s.readString(t, p, unix.PathMax)
	if e != 0 || name == "" {
		return nil
	}
	// Only a descriptor link can lead to a view: its name is a number.
	if !isDecimal(name[strings.LastIndexByte(name, '/')+1:]) {
		return nil
	}
	hp := s.hostPath(t.p, name, dfd)
	var lst unix.Stat_t
	if unix.Lstat(hp, &lst) != nil || lst.Mode&unix.S_IFMT != unix.S_IFLNK {
		return nil
	}
	var st unix.Stat_t
	if unix.Stat(hp, &st) != nil {
		return nil
	}
	v := s.views.byFile[viewKey{uint64(st.Dev), st.Ino}]
	if v == nil || v.host < 0 {
		return nil
	}
	// The link must be one of proc's (a program's own symbolic link to
	// a view's link reads as what it holds).
	var hst unix.Stat_t
	if unix.Fstat(v.host, &hst) != nil || hst.Dev != lst.Dev {
		return nil
	}
	return v
}

// isDecimal reports whether name is a descriptor number.
func isDecimal(name string) bool {
	_, err := strconv.ParseUint(name, 10, 31)
	return err == nil
}

// openViewHost opens, in vmspace, the host file that the program's
// descriptor link names (O_PATH: it is never read), for a view's host.
func openViewHost(link string) int {
	fd, err := unix.Open(link, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return fd
}

// forget closes what a view holds.
func (v *procView) forget() {
	if v.host >= 0 {
		unix.Close(v.host)
		v.host = -1
	}
}

// closeViews forgets every view (the sandbox ends).
func (s *Sandbox) closeViews() {
	for k, v := range s.views.byFile {
		v.forget()
		delete(s.views.byFile, k)
	}
}
