package sandbox

import (
	"fmt"
	"os"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/mm"
	"github.com/vmspace/vmspace/pgalloc"
	"github.com/vmspace/vmspace/safemem"
	"golang.org/x/sys/unix"
)

// Reading the vDSO through the manager. Linux reads a program's [vdso]
// like any other page (process_vm_readv, /proc/PID/mem, core dumps, a
// system call's buffer) and none of [vvar] and [vvar_vclock] (VM_PFNMAP:
// EFAULT, or EIO through /proc/PID/mem); /proc/PID/mem may even write
// [vdso], breaking copy-on-write (FOLL_FORCE). Under vmspace the host's
// block is the program's vDSO, so:
//
//   - process_vm_readv/writev and /proc/PID/mem, which the sandbox serves
//     from the manager, access the host's block directly for the ranges
//     where a process has it (managedRead, managedWrite), with the host's
//     process_vm_readv/writev or its /proc/PID/mem: the host kernel gives
//     exactly Linux's answer, and a forced write lands in the program's
//     own page;
//   - everything else the manager reads (a core dump, an emulated system
//     call's buffer) is read from vdsoImage, the sandbox's copy of the
//     host's [vdso] image (the same pages in every process), which
//     hostSpecial.Translate gives for [vdso]; the data pages translate to
//     nothing. The manager never maps that copy in the host: the host
//     maps its own vDSO there (stubAS.MapFile skips it). A page the
//     program changed in its [vdso] (made writable with mprotect, or
//     written through /proc/PID/mem) reads there as the image.

// vdsoImage is the memory-file copy of the host's [vdso] pages. Its
// fields are immutable.
type vdsoImage struct {
	// mf holds the pages, fr.
	mf *pgalloc.MemoryFile
	fr memmap.FileRange
}

var _ memmap.File = (*vdsoImage)(nil)

// IncRef implements memmap.File.
func (f *vdsoImage) IncRef(fr memmap.FileRange) { f.mf.IncRef(fr) }

// DecRef implements memmap.File.
func (f *vdsoImage) DecRef(fr memmap.FileRange) { f.mf.DecRef(fr) }

// MapInternal implements memmap.File: read only.
func (f *vdsoImage) MapInternal(fr memmap.FileRange, at hostarch.AccessType) (safemem.BlockSeq, error) {
	if at.Write || !f.fr.IsSupersetOf(fr) {
		return safemem.BlockSeq{}, unix.EFAULT
	}
	return f.mf.MapInternal(fr, at)
}

// FD implements memmap.File.
func (f *vdsoImage) FD() int { return f.mf.FD() }

// imageFile returns the copy of the host's [vdso], made at first use
// from vmspace's own vDSO (the host kernel gives every 64-bit process the
// same image); nil if it cannot be made.
func (st *vdsoState) imageFile() *vdsoImage {
	if st.imageTried {
		return st.image
	}
	st.imageTried = true
	img, err := readSelfVDSO()
	if err != nil {
		return nil
	}
	mf := st.s.mf
	fr, err := mf.Allocate(uint64(len(img)), pgalloc.AllocOpts{})
	if err != nil {
		return nil
	}
	ims, err := mf.MapInternal(fr, hostarch.ReadWrite)
	if err == nil {
		_, err = safemem.CopySeq(ims, safemem.BlockSeqOf(safemem.BlockFromSafeSlice(img)))
	}
	if err != nil {
		mf.DecRef(fr)
		return nil
	}
	// The sandbox's reference lasts as long as its memory file.
	st.image = &vdsoImage{mf: mf, fr: fr}
	return st.image
}

// readSelfVDSO returns the contents of this process's [vdso].
func readSelfVDSO() ([]byte, error) {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return nil, err
	}
	pieces, _ := parseVDSOBlock(string(maps))
	for _, pc := range pieces {
		if pc.name != "[vdso]" {
			continue
		}
		f, err := os.Open("/proc/self/mem")
		if err != nil {
			return nil, err
		}
		defer f.Close()
		b := make([]byte, pc.size)
		if _, err := f.ReadAt(b, int64(pc.off)); err != nil {
			return nil, err
		}
		return b, nil
	}
	return nil, fmt.Errorf("sandbox: no [vdso] in this process")
}

// vdsoSplit returns the longest prefix of ar that lies wholly within one
// of m's vDSO pieces in the host (in is true) or wholly outside them.
func (s *Sandbox) vdsoSplit(m *mm.MemoryManager, ar hostarch.AddrRange) (prefix hostarch.AddrRange, in bool) {
	for _, r := range s.hostVDSORanges(m) {
		if r.Contains(ar.Start) {
			return ar.Intersect(r), true
		}
		if r.Start > ar.Start && r.Start < ar.End {
			ar.End = r.Start
		}
	}
	return ar, false
}

// hostPidOf returns the pid of a live process using m (whose host
// process holds m's vDSO block), or 0.
func (s *Sandbox) hostPidOf(m *mm.MemoryManager) int {
	best := 0
	for pid, p := range s.procs {
		if p.mm == m && (best == 0 || pid < best) {
			best = pid
		}
	}
	return best
}

// managedRead reads len(b) bytes at addr of m as m.CopyIn (forced:
// m.ForcedCopyIn) does, except that its vDSO pieces are read from the
// host. It returns the bytes read: a short count stops at the first byte
// that could not be read.
func (s *Sandbox) managedRead(m *mm.MemoryManager, addr hostarch.Addr, b []byte, forced bool) int {
	return s.managedIO(m, addr, b, false, forced)
}

// managedWrite writes b at addr of m as managedRead reads.
func (s *Sandbox) managedWrite(m *mm.MemoryManager, addr hostarch.Addr, b []byte, forced bool) int {
	return s.managedIO(m, addr, b, true, forced)
}

func (s *Sandbox) managedIO(m *mm.MemoryManager, addr hostarch.Addr, b []byte, write, forced bool) int {
	done := 0
	for done < len(b) {
		start := addr + hostarch.Addr(done)
		end := start + hostarch.Addr(len(b)-done)
		if end < start {
			end = ^hostarch.Addr(0)
		}
		ar, in := s.vdsoSplit(m, hostarch.AddrRange{Start: start, End: end})
		if ar.Length() == 0 {
			return done
		}
		part := b[done : done+int(ar.Length())]
		var n int
		switch {
		case in:
			n = s.hostVDSOIO(m, start, part, write, forced)
		case write && forced:
			n, _ = m.ForcedCopyOut(s.ctx, start, part)
		case write:
			n, _ = m.CopyOut(s.ctx, start, part, mm.IOOpts{})
		case forced:
			n, _ = m.ForcedCopyIn(s.ctx, start, part)
		default:
			n, _ = m.CopyIn(s.ctx, start, part, mm.IOOpts{})
		}
		done += n
		if n < len(part) {
			return done
		}
	}
	return done
}

// hostVDSOIO reads (writes) b at addr, within one of m's vDSO pieces, in
// the host: forced through the host's /proc/PID/mem, else with
// process_vm_readv (process_vm_writev). It returns the bytes done.
func (s *Sandbox) hostVDSOIO(m *mm.MemoryManager, addr hostarch.Addr, b []byte, write, forced bool) int {
	pid := s.hostPidOf(m)
	if pid == 0 || len(b) == 0 || int64(addr) < 0 {
		return 0
	}
	var n int
	var err error
	if forced {
		var f *os.File
		f, err = os.OpenFile(fmt.Sprintf("/proc/%d/mem", pid), os.O_RDWR, 0)
		if err != nil {
			return 0
		}
		defer f.Close()
		if write {
			n, err = f.WriteAt(b, int64(addr))
		} else {
			n, err = f.ReadAt(b, int64(addr))
		}
	} else {
		local := []unix.Iovec{{Base: &b[0]}}
		local[0].SetLen(len(b))
		remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(b)}}
		if write {
			n, err = unix.ProcessVMWritev(pid, local, remote, 0)
		} else {
			n, err = unix.ProcessVMReadv(pid, local, remote, 0)
		}
	}
	if err != nil && n <= 0 {
		return 0
	}
	return max(n, 0)
}
