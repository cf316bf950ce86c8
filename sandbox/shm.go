package sandbox

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/hostfile"
	"github.com/vmspace/vmspace/mm"
	"golang.org/x/sys/unix"
)

// System V shared memory is emulated: segments live in the memory file
// (as memfd-like hostfile Files) and are visible to every process of the
// sandbox, not to host processes outside it. shmget, shmat, shmdt and
// shmctl (IPC_RMID, IPC_STAT, IPC_SET, SHM_LOCK, SHM_UNLOCK) are served;
// the manager maps the segments. SHM_LOCK counts a segment against
// RLIMIT_MEMLOCK (unless the caller has CAP_IPC_LOCK) in one count for the
// whole sandbox, where Linux keeps one per user, and a locked segment's
// count is returned at IPC_RMID, where Linux returns it when the segment
// is destroyed.

// Linux's limits and flags.
const (
	shmMax     = 1<<63 - 1<<24 // SHMMAX's default (ULONG_MAX - 2^24), as a signed size
	ipcPrivate = 0
	ipcCreat   = 0o1000
	ipcExcl    = 0o2000
	ipcRmid    = 0
	ipcSet     = 1
	ipcStat    = 2
	shmRdonly  = 0o10000
	shmRnd     = 0o20000
	shmRemap   = 0o40000
	shmExec    = 0o100000
	shmLock    = 11
	shmUnlock  = 12
	// shmLocked is the mode bit IPC_STAT shows for a locked segment.
	shmLocked = 0o2000
)

// shmSeg is one segment.
type shmSeg struct {
	id   int
	key  int32
	size uint64
	file *hostfile.File
	// mode are the permission bits.
	mode uint32
	// locked is set by SHM_LOCK (and counted in shmRegistry.lockedPages).
	locked bool
	// removed is set by IPC_RMID: the segment is gone once detached
	// everywhere (its File's last reference drops).
	removed             bool
	nattch              uint64
	cpid, lpid          int32
	atime, dtime, ctime int64
	uid, gid            uint32
}

// shmRegistry holds the segments.
type shmRegistry struct {
	byID  map[int]*shmSeg
	byKey map[int32]*shmSeg
	next  int
	// lockedPages is the size in pages of the SHM_LOCKed segments.
	lockedPages uint64
}

func (r *shmRegistry) init() {
	r.byID = make(map[int]*shmSeg)
	r.byKey = make(map[int32]*shmSeg)
}

// shmMapping is a segment as mm.ShmSegment: an open FD of its File and
// its size in pages.
type shmMapping struct {
	*hostfile.FD
	size uint64
}

// Size implements mm.ShmSegment.
func (m shmMapping) Size() uint64 { return m.size }

var _ mm.ShmSegment = shmMapping{}

// shmCall serves shmget, shmat, shmdt and shmctl.
func (s *Sandbox) shmCall(t *task, nr int, a [6]uint64) sysResult {
	p := t.p
	reg := &s.shm
	switch nr {
	case unix.SYS_SHMGET:
		key, size, flags := int32(a[0]), a[1], int(a[2])
		if key != ipcPrivate {
			if seg := reg.byKey[key]; seg != nil {
				if flags&ipcCreat != 0 && flags&ipcExcl != 0 {
					return retErr(unix.EEXIST)
				}
				if size > seg.size {
					return retErr(unix.EINVAL)
				}
				return ret(uintptr(seg.id))
			}
			if flags&ipcCreat == 0 {
				return retErr(unix.ENOENT)
			}
		}
		if size < 1 || size > shmMax {
			return retErr(unix.EINVAL)
		}
		f, err := hostfile.NewMemfd(s.mf, fmt.Sprintf("SYSV%08x", uint32(key)), pageUp(size))
		if err != nil {
			return retErr(unix.ENOMEM)
		}
		seg := &shmSeg{id: reg.next, key: key, size: size, file: f, mode: uint32(flags) & 0o777,
			cpid: int32(p.pid), ctime: time.Now().Unix(), uid: uint32(unix.Geteuid()), gid: uint32(unix.Getegid())}
		reg.next++
		reg.byID[seg.id] = seg
		if key != ipcPrivate {
			reg.byKey[key] = seg
		}
		return ret(uintptr(seg.id))
	case unix.SYS_SHMAT:
		seg := reg.byID[int(int32(a[0]))]
		if seg == nil || seg.removed && seg.nattch == 0 {
			return retErr(unix.EINVAL)
		}
		addr, flags := hostarch.Addr(a[1]), int(a[2])
		if flags&shmRnd != 0 {
			addr = addr.RoundDown()
		}
		if flags&shmRemap != 0 && addr == 0 {
			return retErr(unix.EINVAL)
		}
		fd, err := hostfile.NewFD(seg.file, true, flags&shmRdonly == 0)
		if err != nil {
			return retErr(errno(err))
		}
		defer fd.Close(s.ctx)
		got, err := p.mm.AttachShm(s.ctx, shmMapping{fd, pageUp(seg.size)}, addr, flags&shmRdonly != 0, flags&shmExec != 0)
		if err != nil {
			return retErr(errno(err))
		}
		seg.nattch++
		seg.lpid = int32(p.pid)
		seg.atime = time.Now().Unix()
		return retAddr(got)
	case unix.SYS_SHMDT:
		if err := p.mm.DetachShm(s.ctx, hostarch.Addr(a[0])); err != nil {
			return retErr(errno(err))
		}
		for _, seg := range reg.byID {
			if seg.nattch > 0 {
				seg.nattch--
				seg.lpid = int32(p.pid)
				seg.dtime = time.Now().Unix()
				break
			}
		}
		return ret(0)
	case unix.SYS_SHMCTL:
		id, cmd, buf := int(int32(a[0])), int(a[1])&^0x100 /* IPC_64 */, a[2]
		seg := reg.byID[id]
		if seg == nil {
			return retErr(unix.EINVAL)
		}
		switch cmd {
		case ipcRmid:
			if !seg.removed {
				if seg.locked {
					seg.locked = false
					reg.lockedPages -= pageUp(seg.size) >> hostarch.PageShift
				}
				seg.removed = true
				delete(reg.byID, id)
				if reg.byKey[seg.key] == seg {
					delete(reg.byKey, seg.key)
				}
				seg.file.DecRef(s.ctx)
			}
			return ret(0)
		case ipcStat:
			var b [112]byte
			le := binary.LittleEndian
			le.PutUint32(b[0:], uint32(seg.key))
			le.PutUint32(b[4:], seg.uid)
			le.PutUint32(b[8:], seg.gid)
			le.PutUint32(b[12:], seg.uid)
			le.PutUint32(b[16:], seg.gid)
			mode := seg.mode
			if seg.locked {
				mode |= shmLocked
			}
			le.PutUint16(b[20:], uint16(mode))
			le.PutUint64(b[48:], seg.size)
			le.PutUint64(b[56:], uint64(seg.atime))
			le.PutUint64(b[64:], uint64(seg.dtime))
			le.PutUint64(b[72:], uint64(seg.ctime))
			le.PutUint32(b[80:], uint32(seg.cpid))
			le.PutUint32(b[84:], uint32(seg.lpid))
			le.PutUint64(b[88:], seg.nattch)
			if _, err := p.mm.CopyOut(s.ctx, hostarch.Addr(buf), b[:], mm.IOOpts{}); err != nil {
				return retErr(unix.EFAULT)
			}
			return ret(0)
		case ipcSet:
			var b [48]byte
			if _, err := p.mm.CopyIn(s.ctx, hostarch.Addr(buf), b[:], mm.IOOpts{}); err != nil {
				return retErr(unix.EFAULT)
			}
			seg.mode = uint32(binary.LittleEndian.Uint16(b[20:])) & 0o777
			seg.ctime = time.Now().Unix()
			return ret(0)
		case shmLock, shmUnlock:
			// Linux's shmctl_do_lock and user_shm_lock; the
			// capability and limit are the process's now.
			lim := p.mm.Limits()
			if !lim.CapIPCLock && cmd == shmLock && lim.MemLock.Cur == 0 {
				return retErr(unix.EPERM)
			}
			pages := pageUp(seg.size) >> hostarch.PageShift
			switch {
			case cmd == shmLock && !seg.locked:
				limit := lim.MemLock.Cur
				if limit != mm.RLimInfinity {
					limit >>= hostarch.PageShift
				}
				if !lim.CapIPCLock && reg.lockedPages+pages > limit {
					return retErr(unix.ENOMEM)
				}
				reg.lockedPages += pages
				seg.locked = true
			case cmd == shmUnlock && seg.locked:
				reg.lockedPages -= pages
				seg.locked = false
			}
			return ret(0)
		}
		return retErr(unix.EINVAL)
	}
	return retErr(unix.ENOSYS)
}

// aioCall serves the AIO system calls. io_setup and io_destroy are the
// manager's (the ring is a special mapping); requests are run at once, as
// injected pread/pwrite/fsync system calls in the submitting thread, and
// their events kept in the context for io_getevents.
func (s *Sandbox) aioCall(t *task, nr int, a [6]uint64) sysResult {
	p := t.p
	m := p.mm
	switch nr {
	case unix.SYS_IO_SETUP:
		cur, ok := s.readWords(t, a[1], 1)
		if !ok {
			return retErr(unix.EFAULT)
		}
		if cur[0] != 0 || int32(a[0]) <= 0 {
			return retErr(unix.EINVAL)
		}
		id, err := m.NewAIOContext(s.ctx, uint32(a[0]))
		if err != nil {
			return retErr(errno(err))
		}
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], id)
		if _, err := m.CopyOut(s.ctx, hostarch.Addr(a[1]), b[:], mm.IOOpts{}); err != nil {
			m.DestroyAIOContext(s.ctx, id)
			return retErr(unix.EFAULT)
		}
		return ret(0)
	case unix.SYS_IO_DESTROY:
		if m.DestroyAIOContext(s.ctx, a[0]) == nil {
			return retErr(unix.EINVAL)
		}
		return ret(0)
	case unix.SYS_IO_SUBMIT:
		ac, ok := m.LookupAIOContext(s.ctx, a[0])
		if !ok {
			return retErr(unix.EINVAL)
		}
		n := int64(a[1])
		if n < 0 {
			return retErr(unix.EINVAL)
		}
		done := int64(0)
		for ; done < n; done++ {
			ptr, ok := s.readWords(t, a[2]+8*uint64(done), 1)
			if !ok {
				break
			}
			cb, ok := s.readWords(t, ptr[0], 8)
			if !ok {
				break
			}
			if !ac.Prepare() {
				if done == 0 {
					return retErr(unix.EAGAIN)
				}
				break
			}
			res := s.aioRun(t, cb)
			if t.dead() {
				return sysResult{act: actDone}
			}
			ac.FinishRequest([4]uint64{cb[0], ptr[0], uint64(res), 0})
		}
		if done == 0 && n > 0 {
			return retErr(unix.EFAULT)
		}
		return ret(uintptr(done))
	case unix.SYS_IO_GETEVENTS, unix.SYS_IO_PGETEVENTS:
		ac, ok := m.LookupAIOContext(s.ctx, a[0])
		if !ok {
			return retErr(unix.EINVAL)
		}
		max := int64(a[2])
		if int64(a[1]) < 0 || max < int64(a[1]) {
			return retErr(unix.EINVAL)
		}
		got := int64(0)
		for got < max {
			d, ok := ac.PopRequest()
			if !ok {
				break
			}
			ev := d.([4]uint64)
			var b [32]byte
			for i, v := range ev {
				binary.LittleEndian.PutUint64(b[8*i:], v)
			}
			if _, err := m.CopyOut(s.ctx, hostarch.Addr(a[3]+32*uint64(got)), b[:], mm.IOOpts{}); err != nil {
				if got == 0 {
					return retErr(unix.EFAULT)
				}
				break
			}
			got++
		}
		return ret(uintptr(got))
	case unix.SYS_IO_CANCEL:
		return retErr(unix.EINVAL)
	}
	return retErr(unix.ENOSYS)
}

// aioRun runs one iocb (as 8 words) in t and returns its result.
func (s *Sandbox) aioRun(t *task, cb []uint64) int64 {
	opcode := cb[2] & 0xffff
	fd := uintptr(uint32(cb[2] >> 32))
	buf, nbytes, off := cb[3], cb[4], cb[5]
	var r uintptr
	var err error
	switch opcode {
	case 0: // IOCB_CMD_PREAD
		s.ensure(t, buf, nbytes, true)
		r, err = s.inject(t, unix.SYS_PREAD64, fd, uintptr(buf), uintptr(nbytes), uintptr(off))
	case 1: // IOCB_CMD_PWRITE
		s.ensure(t, buf, nbytes, false)
		r, err = s.inject(t, unix.SYS_PWRITE64, fd, uintptr(buf), uintptr(nbytes), uintptr(off))
	case 2: // IOCB_CMD_FSYNC
		r, err = s.inject(t, unix.SYS_FSYNC, fd)
	case 3: // IOCB_CMD_FDSYNC
		r, err = s.inject(t, unix.SYS_FDATASYNC, fd)
	case 6: // IOCB_CMD_NOOP
		return 0
	case 7: // IOCB_CMD_PREADV
		s.ensureIOV(t, buf, nbytes, false, true, ^uint64(0))
		r, err = s.inject(t, unix.SYS_PREADV, fd, uintptr(buf), uintptr(nbytes), uintptr(off), 0)
	case 8: // IOCB_CMD_PWRITEV
		s.ensureIOV(t, buf, nbytes, true, false, ^uint64(0))
		r, err = s.inject(t, unix.SYS_PWRITEV, fd, uintptr(buf), uintptr(nbytes), uintptr(off), 0)
	default:
		return -int64(unix.EINVAL)
	}
	if err != nil {
		return -int64(unix.EIO)
	}
	return int64(r)
}
