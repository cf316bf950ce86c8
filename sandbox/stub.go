package sandbox

import (
	"encoding/binary"
	"fmt"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/pgalloc"
	"github.com/vmspace/vmspace/platform/ptrace"
	"golang.org/x/sys/unix"
)

// Every process of a sandboxed program is a host process whose address
// space below ptrace.StubStart belongs to the program and whose two top
// pages belong to vmspace, as in the ptrace platform:
//
//	scratchAddr = ptrace.StubComm  scratch page, r--s: arguments of the
//	                               system calls vmspace injects (paths,
//	                               the seccomp program)
//	codeAddr    = ptrace.StubCode  code page, r-xs: "syscall; int3"
//
// A host process is made (or remade, at exec) by executing the stub image:
// a tiny static ELF whose only page holds the same code at the same offset,
// linked at stubLinkAddr. Right after the host exec, vmspace maps the code
// page at codeAddr and the scratch page, and unmaps everything else below
// StubStart (the image, its stack, the vDSO).
//
// The two pages are out of the program's reach. They are shared mappings
// of two pages of the memory file (Sandbox.stubPages, the same for every
// process) without write permission: the program cannot write them
// directly (SIGSEGV), with process_vm_writev (EFAULT), nor through
// /proc/self/mem (EIO: a forced write goes only into a private mapping),
// so it cannot make the code vmspace runs in it loop or trap, nor change
// the arguments of an injected call. vmspace writes the scratch page
// through the memory file (writeMem). The memory manager's range ends at
// StubStart, and the memory system calls treat [StubStart, TASK_SIZE) as
// a hole (stubHole): munmap there succeeds, mprotect, madvise, mlock,
// munlock and msync fail with ENOMEM after doing their work below, as
// Linux's do for unmapped addresses. A mapping cannot be placed there
// (Linux would allow one).
const (
	scratchAddr = ptrace.StubComm
	codeAddr    = ptrace.StubCode
	// stubLinkAddr is where the stub image is linked and loaded by the
	// host kernel.
	stubLinkAddr = 0x400000
	// codeOff is the offset of the code in its page (after the ELF
	// headers in the image).
	codeOff = 0x100
)

// Offsets of the stub code within its page.
const (
	// entryOff: exit_group(0) (the image's ELF entry; never run unless
	// something went wrong).
	entryOff = codeOff
	// sysOff: "syscall; int3": a system call with the registers vmspace
	// set, then a stop.
	sysOff = codeOff + 16
	// sysTrapOff is rip at the stop after sysOff's system call.
	sysTrapOff = sysOff + 3
)

// stubCode returns the code bytes placed at codeOff.
func stubCode() []byte {
	c := make([]byte, 32)
	for i := range c {
		c[i] = 0xcc // int3 padding
	}
	// entry: mov eax, 231 (exit_group); xor edi, edi; syscall; ud2
	copy(c[0:], []byte{0xb8, 0xe7, 0x00, 0x00, 0x00, 0x31, 0xff, 0x0f, 0x05, 0x0f, 0x0b})
	// sys: syscall; int3; ud2
	copy(c[sysOff-codeOff:], []byte{0x0f, 0x05, 0xcc, 0x0f, 0x0b})
	return c
}

// stubImage returns the stub executable: an ELF header, a PT_LOAD of its
// only (partial) page at stubLinkAddr, read-execute, and a PT_GNU_STACK
// asking for a non-executable stack. The code page at codeAddr is the same
// bytes, so that code offsets agree.
func stubImage() []byte {
	const (
		ehdrSize = 64
		phdrSize = 56
		phnum    = 2
	)
	code := stubCode()
	b := make([]byte, codeOff+len(code))
	le := binary.LittleEndian
	copy(b[0:], []byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0})
	le.PutUint16(b[16:], 2)                     // ET_EXEC
	le.PutUint16(b[18:], 62)                    // EM_X86_64
	le.PutUint32(b[20:], 1)                     // EV_CURRENT
	le.PutUint64(b[24:], stubLinkAddr+entryOff) // e_entry
	le.PutUint64(b[32:], ehdrSize)              // e_phoff
	le.PutUint16(b[52:], ehdrSize)              // e_ehsize
	le.PutUint16(b[54:], phdrSize)              // e_phentsize
	le.PutUint16(b[56:], phnum)                 // e_phnum
	le.PutUint16(b[58:], 64)                    // e_shentsize
	ph := b[ehdrSize:]                          // PT_LOAD
	le.PutUint32(ph[0:], 1)                     // PT_LOAD
	le.PutUint32(ph[4:], 5)                     // PF_R|PF_X
	le.PutUint64(ph[16:], stubLinkAddr)         // p_vaddr
	le.PutUint64(ph[24:], stubLinkAddr)         // p_paddr
	le.PutUint64(ph[32:], uint64(len(b)))       // p_filesz
	le.PutUint64(ph[40:], uint64(len(b)))       // p_memsz
	le.PutUint64(ph[48:], hostarch.PageSize)    // p_align
	ph = b[ehdrSize+phdrSize:]                  // PT_GNU_STACK
	le.PutUint32(ph[0:], 0x6474e551)            // PT_GNU_STACK
	le.PutUint32(ph[4:], 6)                     // PF_R|PF_W
	le.PutUint64(ph[48:], 16)                   // p_align
	copy(b[codeOff:], code)
	return b
}

// codePage returns the contents of the code page at codeAddr.
func codePage() []byte {
	p := make([]byte, hostarch.PageSize)
	copy(p, stubImage())
	return p
}

// stubPagesSize is the size of vmspace's pages at the top of every
// process: the scratch page, then the code page.
const stubPagesSize = 2 * hostarch.PageSize

// newStubPages allocates the memory-file pages that every process maps at
// scratchAddr and codeAddr, and writes the code.
func newStubPages(mf *pgalloc.MemoryFile) (memmap.FileRange, error) {
	fr, err := mf.Allocate(stubPagesSize, pgalloc.AllocOpts{Dir: pgalloc.BottomUp})
	if err != nil {
		return memmap.FileRange{}, fmt.Errorf("sandbox: allocating the stub pages: %w", err)
	}
	code := codePage()
	if n, err := unix.Pwrite(mf.FD(), code, int64(fr.Start+hostarch.PageSize)); err != nil || n != len(code) {
		mf.DecRef(fr)
		if err == nil {
			err = unix.EIO
		}
		return memmap.FileRange{}, fmt.Errorf("sandbox: writing the code page: %w", err)
	}
	return fr, nil
}

// shareStubPages replaces t's process's private stub pages (made by
// freshImage) with the shared read-only ones, with the memory file at fd.
func (s *Sandbox) shareStubPages(t *task, fd int) error {
	for _, pg := range []struct {
		addr hostarch.Addr
		prot int
		off  uint64
	}{
		{scratchAddr, unix.PROT_READ, s.stubPages.Start},
		{codeAddr, unix.PROT_READ | unix.PROT_EXEC, s.stubPages.Start + hostarch.PageSize},
	} {
		r, err := s.inject(t, unix.SYS_MMAP, uintptr(pg.addr), hostarch.PageSize, uintptr(pg.prot),
			unix.MAP_SHARED|unix.MAP_FIXED, uintptr(fd), uintptr(pg.off))
		if err != nil {
			return err
		}
		if e, bad := errnoOf(r); bad {
			return fmt.Errorf("sandbox: mapping the stub page at %v: %w", pg.addr, e)
		}
	}
	t.p.stubPrivate = false
	return nil
}

// stubHole serves the memory system calls whose range reaches from the
// program's memory into vmspace's pages, [StubStart, TASK_SIZE), which
// are a hole to the program (and that the memory manager does not know):
// done is false for every other call.
func (s *Sandbox) stubHole(t *task, nr int, a [6]uint64) (res sysResult, done bool) {
	switch nr {
	case unix.SYS_MUNMAP, unix.SYS_MPROTECT, unix.SYS_PKEY_MPROTECT, unix.SYS_MADVISE,
		unix.SYS_MLOCK, unix.SYS_MLOCK2, unix.SYS_MUNLOCK, unix.SYS_MSYNC:
	default:
		return sysResult{}, false
	}
	start := a[0]
	n := (a[1] + hostarch.PageSize - 1) &^ (hostarch.PageSize - 1)
	top := uint64(hostarch.MaxUserAddress)
	if start%hostarch.PageSize != 0 || a[1] == 0 || n < a[1] || n > top || start > top-n || start+n <= uint64(ptrace.StubStart) {
		// Invalid (the manager says how), or below the hole.
		return sysResult{}, false
	}
	if start >= uint64(ptrace.StubStart) {
		if nr == unix.SYS_MUNMAP {
			return ret(0), true
		}
		// Nothing but the hole: the manager fails it (ENOMEM, or the
		// argument's error).
		return sysResult{}, false
	}
	b := a
	b[1] = uint64(ptrace.StubStart) - start
	res = s.memCall(t, nr, b)
	if nr != unix.SYS_MUNMAP && res.act == actReturn && res.val == 0 {
		res = retErr(unix.ENOMEM)
	}
	return res, true
}

// stubExe is the stub image in a memfd that every program process can
// execute as /proc/VMSPACE/fd/N.
type stubExe struct {
	// fd is a read-only descriptor of the memfd (read-only so that exec
	// does not fail with ETXTBSY). Immutable until close.
	fd int
	// path is "/proc/PID/fd/N" for vmspace's pid. Immutable.
	path string
}

// newStubExe writes the stub image to a memfd.
func newStubExe() (*stubExe, error) {
	wfd, err := unix.MemfdCreate("vmspace-sandbox-stub", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("sandbox: memfd_create: %w", err)
	}
	defer unix.Close(wfd)
	img := stubImage()
	if n, err := unix.Pwrite(wfd, img, 0); err != nil || n != len(img) {
		if err == nil {
			err = unix.EIO
		}
		return nil, fmt.Errorf("sandbox: writing the stub image: %w", err)
	}
	fd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", wfd), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("sandbox: reopening the stub image read-only: %w", err)
	}
	return &stubExe{fd: fd, path: fmt.Sprintf("/proc/%d/fd/%d", unix.Getpid(), fd)}, nil
}

func (e *stubExe) close() {
	if e.fd >= 0 {
		unix.Close(e.fd)
		e.fd = -1
	}
}
