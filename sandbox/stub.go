package sandbox

import (
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
//	codeAddr    = ptrace.StubCode  code page, r-xs: the ptrace platform's
//	                               stub code (ptrace.StubCodePage); vmspace
//	                               uses its "syscall; int3"
//
// A host process is made (or remade, at exec) by executing the ptrace
// platform's stub image (ptrace.Exe), whose only page holds the same code
// at the same offset, linked at ptrace.StubLinkAddr. Right after the host
// exec, vmspace maps the code page at codeAddr and the scratch page, and
// unmaps everything else below StubStart (the image, its stack) but the
// vDSO (vdso.go).
// The rest of the stub's code (its request loops, which read their
// requests from the page at StubComm) is not used by the sandbox; a
// program jumping into it gains nothing it lacks (any code in the code
// page passes the seccomp filter, "syscall; int3" included).
//
// The two pages are out of the program's reach. They are shared mappings
// of two pages of the memory file (Sandbox.stubPages, the same for every
// process; with the fast path, the scratch page is each process's own,
// whose last bytes are its helper thread's: fastpath.go) without write
// permission: the program cannot write them
// directly (SIGSEGV), with process_vm_writev (EFAULT), nor through
// /proc/self/mem (EIO: a forced write goes only into a private mapping),
// so it cannot make the code vmspace runs in it loop or trap, nor change
// the arguments of an injected call. A system call of the program that
// would have the host kernel read them (a path or a buffer there) fails
// with EFAULT as on Linux, where nothing is mapped there (readsStub in
// prevalidate.go); one that would write there fails so in the host. The
// program can still load from them (Linux: SIGSEGV), and cannot map
// anything there: hiding them would need execute-only memory (PKU) or
// another way to make system calls in the program's threads, with no
// vmspace page in it while it runs (issue 18). vmspace writes the
// scratch page through the memory file (writeMem). The memory
// manager's range ends at StubStart, and the memory system calls treat
// [StubStart, TASK_SIZE) as a hole (stubHole): munmap there succeeds,
// mprotect, madvise, mlock, munlock and msync fail with ENOMEM after
// doing their work below, as Linux's do for unmapped addresses. A
// mapping cannot be placed there (Linux would allow one).
const (
	scratchAddr = ptrace.StubComm
	codeAddr    = ptrace.StubCode
	// sysOff is the offset of "syscall; int3" in the code page (and in
	// the image's page at ptrace.StubLinkAddr).
	sysOff = ptrace.StubSyscallOff
)

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
	code := ptrace.StubCodePage()
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
	return s.fastpathImage(t)
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
