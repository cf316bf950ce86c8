package sandbox

import (
	"encoding/binary"
	"fmt"
	"os"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/mm"
	"golang.org/x/sys/unix"
)

// /proc/PID/mem and /proc/PID/pagemap, served by vmspace (see procview.go).

// taskSize is the end of the user address range of an x86-64 process
// (Linux's TASK_SIZE with 4-level page tables), where pagemap ends.
const taskSize = 0x7ffffffff000

// Bits of a pagemap entry.
const (
	pmPFNMask   = 1<<55 - 1
	pmExclusive = 1 << 56
	pmUffdWP    = 1 << 57
	pmGuard     = 1 << 58
	pmFile      = 1 << 61
	pmSwap      = 1 << 62
	pmPresent   = 1 << 63
	// pmGuardFrame is the frame field of a guard region's entry as Linux
	// shows it to who may see frames: the marker's swap type (31) and
	// offset (the guard marker, 4).
	pmGuardFrame = 0x1f | 4<<5
	// pmUffdWPFrame is the frame field of a userfaultfd write-protect
	// marker's entry (the marker of an unpopulated page: offset 1).
	pmUffdWPFrame = 0x1f | 1<<5
)

// viewIO serves a read or write of a binary view (mem, pagemap).
func (s *Sandbox) viewIO(t *task, nr int, a [6]uint64, v *procView) sysResult {
	hfd, fl, e := s.viewFD(t, a[0])
	if e != 0 {
		return retErr(e)
	}
	defer unix.Close(hfd)
	var err error
	write := false
	positional := false
	var pos int64
	var segs []hostarch.AddrRange
	switch nr {
	case unix.SYS_WRITE, unix.SYS_PWRITE64, unix.SYS_WRITEV, unix.SYS_PWRITEV, unix.SYS_PWRITEV2:
		write = true
	}
	switch nr {
	case unix.SYS_READ, unix.SYS_WRITE, unix.SYS_PREAD64, unix.SYS_PWRITE64:
		segs = []hostarch.AddrRange{{Start: hostarch.Addr(a[1]), End: hostarch.Addr(a[1] + min(a[2], maxRWCount))}}
		positional = nr == unix.SYS_PREAD64 || nr == unix.SYS_PWRITE64
	default:
		if segs, e = s.readIOVs(t, a[1], a[2]); e != 0 {
			return retErr(e)
		}
		positional = nr == unix.SYS_PREADV || nr == unix.SYS_PWRITEV ||
			((nr == unix.SYS_PREADV2 || nr == unix.SYS_PWRITEV2) && int64(a[3]) != -1)
	}
	acc := fl & unix.O_ACCMODE
	if (write && acc == unix.O_RDONLY) || (!write && acc == unix.O_WRONLY) || (write && v.kind == viewPagemap) {
		return retErr(unix.EBADF)
	}
	if positional {
		pos = int64(a[3])
		if pos < 0 && v.kind == viewPagemap {
			return retErr(unix.EINVAL)
		}
	} else if pos, err = unix.Seek(hfd, 0, unix.SEEK_CUR); err != nil {
		return retErr(errno(err))
	}
	var total uint64
	for _, seg := range segs {
		if seg.End < seg.Start {
			return retErr(unix.EFAULT)
		}
		n, e := s.viewRW(t, v, seg, uint64(pos)+total, write)
		total += n
		if e != 0 {
			if total == 0 {
				return retErr(e)
			}
			break
		}
		if n < seg.Length() {
			break
		}
	}
	if !positional && total > 0 {
		unix.Seek(hfd, pos+int64(total), unix.SEEK_SET)
	}
	return ret(uintptr(total))
}

// viewFD returns a duplicate, in vmspace, of t's descriptor fd (a view),
// which the caller closes, and its file status flags.
func (s *Sandbox) viewFD(t *task, fd uint64) (int, int, unix.Errno) {
	hfd, err := s.getFD(t.p, int(int32(fd)))
	if err != nil {
		return -1, 0, errno(err)
	}
	fl, err := unix.FcntlInt(uintptr(hfd), unix.F_GETFL, 0)
	if err != nil {
		unix.Close(hfd)
		return -1, 0, errno(err)
	}
	return hfd, fl, 0
}

// readIOVs reads an iovec array of cnt entries at iov in t's memory.
func (s *Sandbox) readIOVs(t *task, iov, cnt uint64) ([]hostarch.AddrRange, unix.Errno) {
	if cnt > 1024 {
		return nil, unix.EINVAL
	}
	w, ok := s.readWords(t, iov, int(2*cnt))
	if !ok {
		return nil, unix.EFAULT
	}
	out := make([]hostarch.AddrRange, 0, cnt)
	var total uint64
	for i := 0; i < int(cnt); i++ {
		base, n := w[2*i], w[2*i+1]
		if int64(n) < 0 {
			return nil, unix.EINVAL
		}
		n = min(n, maxRWCount-total)
		total += n
		out = append(out, hostarch.AddrRange{Start: hostarch.Addr(base), End: hostarch.Addr(base + n)})
	}
	return out, 0
}

// viewRW reads (or writes) the program buffer seg from (to) view v at
// offset off, as Linux's mem_rw and pagemap_read do, and returns the bytes
// done, or an errno if none could be.
func (s *Sandbox) viewRW(t *task, v *procView, seg hostarch.AddrRange, off uint64, write bool) (uint64, unix.Errno) {
	if v.m.Users() == 0 {
		// The address space is gone (exec, exit).
		return 0, 0
	}
	if v.kind == viewPagemap {
		return s.pagemapRead(t, v, seg, off)
	}
	caller := t.p.mm
	buf := make([]byte, hostarch.PageSize)
	var done uint64
	for done < seg.Length() {
		chunk := buf[:min(uint64(len(buf)), seg.Length()-done)]
		addr := hostarch.Addr(off + done)
		var n int
		if write {
			if c, err := caller.CopyIn(s.ctx, seg.Start+hostarch.Addr(done), chunk, mm.IOOpts{}); err != nil || c != len(chunk) {
				return 0, unix.EFAULT
			}
			n = s.managedWrite(v.m, addr, chunk, true)
		} else {
			n = s.managedRead(v.m, addr, chunk, true)
			if n > 0 {
				if c, err := caller.CopyOut(s.ctx, seg.Start+hostarch.Addr(done), chunk[:n], mm.IOOpts{}); err != nil || c != n {
					return 0, unix.EFAULT
				}
			}
		}
		if n == 0 {
			if done == 0 {
				return 0, unix.EIO
			}
			break
		}
		done += uint64(n)
		if n < len(chunk) {
			break
		}
	}
	return done, 0
}

// pagemapChunk is how many pagemap entries are made at a time.
const pagemapChunk = 4096

// pagemapRead serves a read of /proc/PID/pagemap at offset off into the
// program buffer seg.
func (s *Sandbox) pagemapRead(t *task, v *procView, seg hostarch.AddrRange, off uint64) (uint64, unix.Errno) {
	if off%8 != 0 || seg.Length()%8 != 0 {
		return 0, unix.EINVAL
	}
	start := uint64(taskSize)
	if svpfn := off / 8; svpfn <= uint64(taskSize)/hostarch.PageSize {
		start = svpfn * hostarch.PageSize
	}
	var done uint64
	for done < seg.Length() && start < taskSize {
		n := min((seg.Length()-done)/8, pagemapChunk, (taskSize-start)/hostarch.PageSize)
		ar := hostarch.AddrRange{Start: hostarch.Addr(start), End: hostarch.Addr(start + n*hostarch.PageSize)}
		ents := s.pagemapEntries(v, ar)
		b := make([]byte, 8*len(ents))
		for i, e := range ents {
			binary.LittleEndian.PutUint64(b[8*i:], e)
		}
		if c, err := t.p.mm.CopyOut(s.ctx, seg.Start+hostarch.Addr(done), b, mm.IOOpts{}); err != nil || c != len(b) {
			return 0, unix.EFAULT
		}
		done += uint64(len(b))
		start = uint64(ar.End)
	}
	return done, 0
}

// pagemapEntries returns the pagemap entries of ar in v's address space.
// Frame numbers (for an opener that may see them), and whether a host
// file's page is mapped only once, are the host's, from the host's
// pagemap of the process.
func (s *Sandbox) pagemapEntries(v *procView, ar hostarch.AddrRange) []uint64 {
	states := v.m.PageStates(ar)
	out := make([]uint64, len(states))
	var host []byte
	hostRead := false
	hostEntry := func(i int) uint64 {
		if !hostRead {
			hostRead = true
			host = make([]byte, 8*len(states))
			if f, err := os.Open(fmt.Sprintf("/proc/%d/pagemap", v.pid)); err == nil {
				n, _ := f.ReadAt(host, int64(uint64(ar.Start)/hostarch.PageSize*8))
				host = host[:n]
				f.Close()
			} else {
				host = nil
			}
		}
		if 8*i+8 > len(host) {
			return 0
		}
		return binary.LittleEndian.Uint64(host[8*i:])
	}
	for i, st := range states {
		var e uint64
		switch {
		case st&mm.PagePresent != 0:
			e = pmPresent
			if st&mm.PageFile != 0 {
				e |= pmFile
			}
			if st&mm.PageExclusive != 0 {
				e |= pmExclusive
			}
			if st&mm.PageUffdWP != 0 {
				e |= pmUffdWP
			}
			if st&mm.PageHostFile != 0 || v.showPFN {
				h := hostEntry(i)
				if h&pmPresent != 0 {
					if st&mm.PageHostFile != 0 {
						e = e&^pmExclusive | h&pmExclusive
					}
					if v.showPFN {
						e |= h & pmPFNMask
					}
				}
			}
		case st&mm.PageGuard != 0:
			e = pmSwap | pmGuard
			if v.showPFN {
				e |= pmGuardFrame
			}
		case st&mm.PageUffdWP != 0:
			e = pmSwap | pmUffdWP
			if v.showPFN {
				e |= pmUffdWPFrame
			}
		}
		out[i] = e
	}
	return out
}
