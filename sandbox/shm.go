package sandbox

import (
	"context"

	"github.com/vmspace/vmspace/kernel"
	"golang.org/x/sys/unix"
)

// System V shared memory and AIO are package kernel's: the sandbox's
// processes share one kernel.ShmRegistry, and AIO requests run as
// injected system calls in the submitting thread (aioRunner).

// shmCall serves shmget, shmat, shmdt and shmctl.
func (s *Sandbox) shmCall(t *task, nr int, a [6]uint64) sysResult {
	p := t.p
	pid := int32(p.pid)
	switch nr {
	case unix.SYS_SHMGET:
		return retVal(s.shm.Shmget(s.ctx, pid, a[0], a[1], a[2]))
	case unix.SYS_SHMAT:
		addr, err := s.shm.Shmat(s.ctx, p.mm, pid, a[0], a[1], a[2])
		return retVal(uint64(addr), err)
	case unix.SYS_SHMDT:
		return retFrom(s.shm.Shmdt(s.ctx, p.mm, pid, a[0]))
	case unix.SYS_SHMCTL:
		return retVal(s.shm.Shmctl(s.ctx, p.mm, pid, a[0], a[1], a[2]))
	}
	return retErr(unix.ENOSYS)
}

// aioCall serves the AIO system calls.
func (s *Sandbox) aioCall(t *task, nr int, a [6]uint64) sysResult {
	m := t.p.mm
	switch nr {
	case unix.SYS_IO_SETUP:
		return retFrom(kernel.IoSetup(s.ctx, m, a[0], a[1]))
	case unix.SYS_IO_DESTROY:
		return retFrom(kernel.IoDestroy(s.ctx, m, a[0]))
	case unix.SYS_IO_SUBMIT:
		n, err := kernel.IoSubmit(s.ctx, m, aioRunner{s, t}, a[0], a[1], a[2])
		if t.dead() {
			return sysResult{act: actDone}
		}
		return retVal(n, err)
	case unix.SYS_IO_GETEVENTS, unix.SYS_IO_PGETEVENTS:
		return retVal(kernel.IoGetevents(s.ctx, m, a[0], a[1], a[2], a[3]))
	case unix.SYS_IO_CANCEL:
		return retFrom(kernel.IoCancel(s.ctx, m, a[0], a[1], a[2]))
	}
	return retErr(unix.ENOSYS)
}

// retVal returns v, or err's errno.
func retVal(v uint64, err error) sysResult {
	if err != nil {
		return retErr(errno(err))
	}
	return ret(uintptr(v))
}

// aioRunner runs AIO requests as system calls injected in task t, with
// their buffers mapped first as for the program's own calls.
type aioRunner struct {
	s *Sandbox
	t *task
}

// RunIO implements kernel.IORunner.RunIO.
func (r aioRunner) RunIO(_ context.Context, req kernel.IORequest) (int64, bool) {
	s, t := r.s, r.t
	fd, buf, n, off := uintptr(uint32(req.FD)), uintptr(req.Buf), uintptr(req.NBytes), uintptr(req.Offset)
	var res uintptr
	var err error
	switch req.Op {
	case kernel.IOPread:
		s.ensure(t, req.Buf, req.NBytes, true)
		res, err = s.inject(t, unix.SYS_PREAD64, fd, buf, n, off)
	case kernel.IOPwrite:
		s.ensure(t, req.Buf, req.NBytes, false)
		res, err = s.inject(t, unix.SYS_PWRITE64, fd, buf, n, off)
	case kernel.IOFsync:
		res, err = s.inject(t, unix.SYS_FSYNC, fd)
	case kernel.IOFdsync:
		res, err = s.inject(t, unix.SYS_FDATASYNC, fd)
	case kernel.IOPreadv:
		s.ensureIOV(t, req.Buf, req.NBytes, false, true, ^uint64(0))
		res, err = s.inject(t, unix.SYS_PREADV, fd, buf, n, off, 0)
	case kernel.IOPwritev:
		s.ensureIOV(t, req.Buf, req.NBytes, true, false, ^uint64(0))
		res, err = s.inject(t, unix.SYS_PWRITEV, fd, buf, n, off, 0)
	default:
		return -int64(unix.EINVAL), !t.dead()
	}
	if t.dead() {
		return 0, false
	}
	if err != nil {
		return -int64(unix.EIO), true
	}
	return int64(res), true
}
