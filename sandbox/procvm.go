package sandbox

import (
	"encoding/binary"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/mm"
	"golang.org/x/sys/unix"
)

// process_vm_readv and process_vm_writev between the program's processes
// (or within one) are served through their memory managers, as Linux's
// process_vm_rw does with the pages it pins: the host kernel would see
// only what vmspace has mapped in the host, and would fail with EFAULT
// where the manager holds memory it has not mapped there (a page past the
// last one touched, shared memory of another process, a file page next to
// one past end-of-file). A target outside the program is left to the host
// kernel (the buffers of the caller are prevalidated as for any call).
//
// In Linux's order: flags (EINVAL); the local iovec array (more than
// IOV_MAX entries EINVAL, unreadable EFAULT, a negative length EINVAL; the
// total is cut to MAX_RW_COUNT), nothing to copy returns 0; the remote
// array likewise, with no page to touch returning 0; then the target
// (ESRCH) and the permission to attach to it (EPERM), which the host
// kernel decides (vmAccessProbe). Each remote vector is then taken in
// chunks of up to pvmChunkPages pages: the chunk's pages are faulted in
// the target (for writing with process_vm_writev), stopping at the first
// that cannot be, and then copied to or from the local vectors. The
// result is the number of bytes copied, or EFAULT if a fault stopped the
// copy before any byte.

const (
	// pvmChunkPages is how many remote pages Linux's process_vm_rw pins
	// at a time (two pages of page pointers).
	pvmChunkPages = 2 * hostarch.PageSize / 8
	// maxRWCount is MAX_RW_COUNT, the most one vectored call transfers.
	maxRWCount = 0x7ffff000
)

// iovec is one struct iovec.
type iovec struct {
	base, len uint64
}

// readIOVecs reads cnt struct iovecs at addr of process p, as Linux's
// iovec_from_user: EINVAL for more than IOV_MAX, EFAULT if unreadable,
// EINVAL for a length that is negative as a ssize_t.
func (s *Sandbox) readIOVecs(p *process, addr, cnt uint64) ([]iovec, unix.Errno) {
	if cnt == 0 {
		return nil, 0
	}
	if cnt > maxIOVecs {
		return nil, unix.EINVAL
	}
	buf := make([]byte, 16*cnt)
	n, _ := p.mm.CopyIn(s.ctx, hostarch.Addr(addr), buf, mm.IOOpts{})
	out := make([]iovec, 0, cnt)
	for i := 0; i < int(cnt); i++ {
		if 16*(i+1) > n {
			return nil, unix.EFAULT
		}
		v := iovec{base: binary.LittleEndian.Uint64(buf[16*i:]), len: binary.LittleEndian.Uint64(buf[16*i+8:])}
		if int64(v.len) < 0 {
			return nil, unix.EINVAL
		}
		out = append(out, v)
	}
	return out, 0
}

// importIOVecs reads an iovec array as Linux's import_iovec does
// (readIOVecs), cutting the lengths so that they total at most
// MAX_RW_COUNT, and returns the total.
func (s *Sandbox) importIOVecs(p *process, addr, cnt uint64) ([]iovec, uint64, unix.Errno) {
	vecs, e := s.readIOVecs(p, addr, cnt)
	var total uint64
	for i := range vecs {
		vecs[i].len = min(vecs[i].len, maxRWCount-total)
		total += vecs[i].len
	}
	return vecs, total, e
}

// sysProcessVM serves process_vm_readv and process_vm_writev.
func (s *Sandbox) sysProcessVM(t *task, nr int, a [6]uint64) sysResult {
	p := t.p
	if p.mm == nil {
		return pass()
	}
	write := nr == unix.SYS_PROCESS_VM_WRITEV
	pid := int32(a[0])
	var target *process
	if tt := s.tasks[int(pid)]; tt != nil && !tt.dead() {
		target = tt.p
	}
	if target == nil || target.mm == nil {
		// Not one of the program's processes: the host's business.
		return pass()
	}
	if a[5] != 0 {
		return retErr(unix.EINVAL)
	}
	local, total, e := s.importIOVecs(p, a[1], a[2])
	if e != 0 {
		return retErr(e)
	}
	if total == 0 {
		return ret(0)
	}
	remote, e := s.readIOVecs(p, a[3], a[4])
	if e != 0 {
		return retErr(e)
	}
	touches := false
	for _, v := range remote {
		touches = touches || v.len > 0
	}
	if !touches {
		return ret(0)
	}
	if target != p {
		if e := s.vmAccessProbe(t, pid); e != 0 {
			return retErr(e)
		}
		if target.mm == nil {
			return retErr(unix.ESRCH)
		}
	}
	lc := &iovCursor{vecs: local, left: total}
	var done uint64
	err := unix.Errno(0)
	for _, v := range remote {
		if lc.left == 0 || err != 0 {
			break
		}
		var n uint64
		n, err = s.pvmVec(p.mm, target.mm, v, lc, write)
		done += n
	}
	if done > 0 {
		return ret(uintptr(done))
	}
	return retFrom(errOrNil(err))
}

// errOrNil returns e as an error, nil for 0.
func errOrNil(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// iovCursor walks the local vectors of a transfer.
type iovCursor struct {
	vecs []iovec
	// i and off are the current vector and the offset in it.
	i   int
	off uint64
	// left is what the vectors have left.
	left uint64
}

// next returns the next piece of at most n bytes, advancing past it.
func (c *iovCursor) next(n uint64) (hostarch.Addr, uint64) {
	for c.i < len(c.vecs) && c.off == c.vecs[c.i].len {
		c.i, c.off = c.i+1, 0
	}
	if c.i == len(c.vecs) {
		return 0, 0
	}
	v := c.vecs[c.i]
	n = min(n, v.len-c.off)
	addr := hostarch.Addr(v.base + c.off)
	c.off += n
	c.left -= n
	return addr, n
}

// pvmVec transfers one remote vector v of target between it and the local
// vectors (lc) of local, a chunk of pages at a time, and returns the bytes
// transferred and EFAULT if a fault stopped it.
func (s *Sandbox) pvmVec(local, target *mm.MemoryManager, v iovec, lc *iovCursor, write bool) (uint64, unix.Errno) {
	if v.len == 0 {
		return 0, 0
	}
	addr, left := v.base, v.len
	if addr+left < addr {
		// Wraps: no page past the top can be pinned.
		left = -addr
		if left == 0 {
			return 0, unix.EFAULT
		}
	}
	var done uint64
	for left > 0 && lc.left > 0 {
		pageOff := addr % hostarch.PageSize
		chunk := min(left, pvmChunkPages*hostarch.PageSize-pageOff)
		var n uint64
		var e unix.Errno
		if write {
			n, e = s.pvmWrite(local, target, hostarch.Addr(addr), chunk, lc)
		} else {
			n, e = s.pvmRead(local, target, hostarch.Addr(addr), chunk, lc)
		}
		done += n
		if e != 0 {
			return done, e
		}
		addr += chunk
		left -= chunk
	}
	return done, 0
}

// pvmRead copies a chunk of the target's memory at addr (faulting in all
// of it first, as Linux's pinning does) to the local vectors.
func (s *Sandbox) pvmRead(local, target *mm.MemoryManager, addr hostarch.Addr, chunk uint64, lc *iovCursor) (uint64, unix.Errno) {
	buf := make([]byte, chunk)
	got := s.managedRead(target, addr, buf, false)
	// The manager's copies stop at the first page that cannot be
	// faulted in, as Linux's pinning does.
	pinned := uint64(got)
	if pinned == 0 {
		return 0, unix.EFAULT
	}
	var done uint64
	for done < pinned && lc.left > 0 {
		la, n := lc.next(pinned - done)
		if n == 0 {
			break
		}
		w, _ := local.CopyOut(s.ctx, la, buf[done:done+n], mm.IOOpts{})
		done += uint64(w)
		if uint64(w) < n {
			return done, unix.EFAULT
		}
	}
	if pinned < chunk {
		return done, unix.EFAULT
	}
	return done, 0
}

// pvmWrite copies the local vectors into a chunk of the target's memory
// at addr, and faults in the rest of the chunk for writing as Linux's
// pinning does before the copy.
func (s *Sandbox) pvmWrite(local, target *mm.MemoryManager, addr hostarch.Addr, chunk uint64, lc *iovCursor) (uint64, unix.Errno) {
	buf := make([]byte, 0, min(chunk, lc.left))
	localErr := false
	for uint64(len(buf)) < chunk && lc.left > 0 {
		la, n := lc.next(chunk - uint64(len(buf)))
		if n == 0 {
			break
		}
		start := len(buf)
		buf = buf[:start+int(n)]
		r, _ := local.CopyIn(s.ctx, la, buf[start:], mm.IOOpts{})
		if uint64(r) < n {
			buf = buf[:start+r]
			localErr = true
			break
		}
	}
	w := s.managedWrite(target, addr, buf, false)
	done := uint64(w)
	if done < uint64(len(buf)) {
		// The target page at addr+done could not be faulted in.
		return done, unix.EFAULT
	}
	if rest := chunk - done; rest > 0 {
		// Linux pinned the whole chunk before copying into it.
		start := (addr + hostarch.Addr(done)).MustRoundUp()
		if end := addr + hostarch.Addr(chunk); start < end {
			target.MAdvise(s.ctx, start, uint64(end-start), mm.AdvPopulateWrite)
		}
	}
	if localErr {
		return done, unix.EFAULT
	}
	return done, 0
}

// vmAccessProbe asks the host kernel whether t may access the memory of
// process pid with process_vm_readv (ESRCH, or EPERM without the right
// to attach to it): an injected process_vm_readv of one byte of pid's
// scratch page (mapped in every process of the program) into t's own
// scratch page, which t cannot write, so that a permitted call copies
// nothing and fails with EFAULT.
func (s *Sandbox) vmAccessProbe(t *task, pid int32) unix.Errno {
	var b [32]byte
	le := binary.LittleEndian
	le.PutUint64(b[0:], uint64(scratchAddr)) // local: read-only here
	le.PutUint64(b[8:], 1)
	le.PutUint64(b[16:], uint64(scratchAddr)) // remote: readable there
	le.PutUint64(b[24:], 1)
	if err := s.writeMem(t.p.pid, scratchAddr, b[:]); err != nil {
		return unix.EFAULT
	}
	r, err := s.inject(t, unix.SYS_PROCESS_VM_READV, uintptr(pid), uintptr(scratchAddr), 1, uintptr(scratchAddr)+16, 1, 0)
	if err != nil {
		return unix.ESRCH
	}
	e, bad := errnoOf(r)
	if !bad || e == unix.EFAULT {
		return 0
	}
	return e
}
