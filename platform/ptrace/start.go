package ptrace

import (
	"fmt"
	"os"
	"strconv"
	"syscall"

	"github.com/vmspace/vmspace/hostarch"
	"golang.org/x/sys/unix"
)

// File descriptors the stub holds. They are high, so that an application
// running in the stub is unlikely to collide with them, and below 1024,
// the usual soft RLIMIT_NOFILE (start-up raises the stub's soft limit to
// 1024 if it is lower). A sandbox running an application in the stub must
// keep it from closing or replacing them (close, dup2, dup3, close_range on
// [StubSocketFD, 1024)); MapFile reinstalls a File whose descriptor has
// vanished, but nothing can replace the socket.
const (
	// StubSocketFD is the stub's end of the socket through which the
	// tracer passes it the descriptors of Files to map (SCM_RIGHTS).
	StubSocketFD = 960
	// StubFileFDBase is the first of the descriptors at which the stub
	// holds the Files it maps: StubFileFDBase+i for i in
	// [0, MaxStubFiles). The first File mapped (normally the memory file)
	// gets StubFileFDBase. They are a cache: a mapping does not need its
	// descriptor once made, so the least recently used is replaced when
	// all are taken.
	StubFileFDBase = StubSocketFD + 1
	// MaxStubFiles is the number of File descriptors the stub holds.
	MaxStubFiles = 1024 - StubFileFDBase
)

// Descriptors the stub inherits at exec, moved or closed during start-up.
const (
	inheritSocketFD = 3
	inheritCommFD   = 4
)

// Exe is the stub ELF in a memfd, executable by any process as Path: the
// image of every process a tracer starts (this package's stubs, and the
// processes of a sandbox).
type Exe struct {
	// fd is a read-only, close-on-exec descriptor of the memfd (read-only
	// so that exec does not fail with ETXTBSY). Immutable until Close.
	fd int
	// path is /proc/<our pid>/fd/<fd>: through our own descriptor table,
	// which a child's rearrangement of its descriptors before exec does
	// not touch. Immutable.
	path string
}

// NewExe writes the stub ELF to a memfd.
func NewExe() (*Exe, error) {
	wfd, err := unix.MemfdCreate("vmspace-stub", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("ptrace: memfd_create: %w", err)
	}
	defer unix.Close(wfd)
	img := stubELF()
	if n, err := unix.Pwrite(wfd, img, 0); err != nil || n != len(img) {
		if err == nil {
			err = unix.EIO
		}
		return nil, fmt.Errorf("ptrace: writing the stub: %w", err)
	}
	fd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", wfd), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("ptrace: reopening the stub read-only: %w", err)
	}
	return &Exe{fd: fd, path: fmt.Sprintf("/proc/%d/fd/%d", unix.Getpid(), fd)}, nil
}

// Start executes the stub as a traced child (PTRACE_TRACEME) of the
// calling thread, which must stay locked to its goroutine: it is the
// tracer. files become the child's descriptors 0, 1, ... (as in
// syscall.ProcAttr), dir its working directory ("": ours); its
// environment is empty. The child stops at its exec (SIGTRAP), and dies
// with the calling thread (until the tracer sets PTRACE_O_EXITKILL, and as
// a second line).
func (e *Exe) Start(dir string, files []uintptr) (int, error) {
	pid, err := syscall.ForkExec(e.path, []string{"vmspace-stub"}, &syscall.ProcAttr{
		Dir:   dir,
		Env:   []string{},
		Files: files,
		Sys:   &syscall.SysProcAttr{Ptrace: true, Pdeathsig: syscall.SIGKILL},
	})
	if err != nil {
		return 0, fmt.Errorf("ptrace: starting the stub: %w", err)
	}
	return pid, nil
}

// Path returns the path through which the stub is executed.
func (e *Exe) Path() string { return e.path }

// Close closes the memfd. Idempotent.
func (e *Exe) Close() error {
	if e.fd < 0 {
		return nil
	}
	err := unix.Close(e.fd)
	e.fd = -1
	return err
}

// stubConfig is what a new stub needs.
type stubConfig struct {
	exe *Exe
	// stdio become the stub's descriptors 0, 1 and 2.
	stdio [3]*os.File
	// sock is the stub's end of the descriptor-passing socket.
	sock int
}

// startStubLocked execs the stub as a traced child of the calling (tracer)
// thread and prepares it (bootstrapLocked).
func (t *tracer) startStubLocked(cfg *stubConfig) error {
	files := []uintptr{
		cfg.stdio[0].Fd(), cfg.stdio[1].Fd(), cfg.stdio[2].Fd(),
		inheritSocketFD: uintptr(cfg.sock),
		inheritCommFD:   uintptr(t.comm.fd),
	}
	pid, err := cfg.exe.Start("", files)
	if err != nil {
		return err
	}
	t.pid = pid
	return t.bootstrapLocked()
}

// bootstrapLocked prepares a freshly exec'd stub: the code page at
// StubCode, the comm page at StubComm, nothing else mapped, the socket at
// StubSocketFD. It leaves the stub stopped.
func (t *tracer) bootstrapLocked() error {
	ws, err := t.waitLocked()
	if err != nil {
		return fmt.Errorf("ptrace: waiting for the stub's exec: %w", err)
	}
	if ws.StopSignal() != unix.SIGTRAP {
		return fmt.Errorf("ptrace: stub stopped with %v after exec, want SIGTRAP", ws.StopSignal())
	}
	if err := unix.PtraceSetOptions(t.pid, unix.PTRACE_O_EXITKILL); err != nil {
		return fmt.Errorf("ptrace: PTRACE_SETOPTIONS: %w", err)
	}
	// The stub's own code runs with the segment registers of its start.
	if err := unix.PtraceGetRegs(t.pid, &t.own); err != nil {
		return fmt.Errorf("ptrace: PTRACE_GETREGS: %w", err)
	}
	t.own.Eflags = 0x202 // IF, and the always-set bit 1
	t.own.Orig_rax = ^uint64(0)
	// Until the code is at StubCode, use the copy the kernel loaded.
	t.bootIP = stubLinkAddr + prog.regsys
	do := func(what string, nr uintptr, args ...uintptr) error {
		if _, err := t.regSyscallLocked(nr, args...); err != nil {
			return fmt.Errorf("ptrace: stub start-up: %s: %w", what, err)
		}
		return nil
	}
	// The code page, replacing whatever the kernel put there (the stack
	// may reach the top of the range).
	if err := do("mmap code page", unix.SYS_MMAP, uintptr(StubCode), hostarch.PageSize,
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED, ^uintptr(0), 0); err != nil {
		return err
	}
	mem, err := os.OpenFile(fmt.Sprintf("/proc/%d/mem", t.pid), os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("ptrace: opening the stub's memory: %w", err)
	}
	t.mem = mem
	if _, err := mem.WriteAt(stubCodePage(), int64(StubCode)); err != nil {
		return fmt.Errorf("ptrace: writing the stub's code: %w", err)
	}
	if err := do("mprotect code page", unix.SYS_MPROTECT, uintptr(StubCode), hostarch.PageSize, unix.PROT_READ|unix.PROT_EXEC); err != nil {
		return err
	}
	if err := do("mmap comm page", unix.SYS_MMAP, uintptr(StubComm), hostarch.PageSize,
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_FIXED, inheritCommFD, 0); err != nil {
		return err
	}
	t.bootIP = uint64(StubCode) + prog.regsys
	// A name for ps and /proc/PID/comm (exec named it after the
	// descriptor number of /proc/self/fd/N).
	name := t.comm.mem[ScratchFree-StubComm:][:16]
	copy(name, "vmspace-stub\x00")
	err = do("prctl(PR_SET_NAME)", unix.SYS_PRCTL, unix.PR_SET_NAME, uintptr(ScratchFree))
	clear(name)
	if err != nil {
		return err
	}
	// Everything below the stub: the ELF image, the stack, vdso, vvar.
	if err := do("munmap", unix.SYS_MUNMAP, 0, uintptr(StubStart)); err != nil {
		return err
	}
	var lim unix.Rlimit
	if err := unix.Prlimit(t.pid, unix.RLIMIT_NOFILE, nil, &lim); err == nil && lim.Cur < 1024 {
		lim.Cur = 1024
		if lim.Max < lim.Cur {
			lim.Max = lim.Cur // needs CAP_SYS_RESOURCE; the error says so
		}
		if err := unix.Prlimit(t.pid, unix.RLIMIT_NOFILE, &lim, nil); err != nil {
			return fmt.Errorf("ptrace: raising the stub's RLIMIT_NOFILE to 1024: %w", err)
		}
	}
	if err := do("dup3 socket", unix.SYS_DUP3, inheritSocketFD, StubSocketFD, unix.O_CLOEXEC); err != nil {
		return err
	}
	t.comm.closeFD()
	// Every descriptor but stdio and the socket: the two inherited ones,
	// and any the host process let leak (not close-on-exec).
	if err := t.closeOthersLocked(); err != nil {
		return fmt.Errorf("ptrace: stub start-up: closing inherited descriptors: %w", err)
	}
	return nil
}

// closeOthersLocked closes the stub's descriptors other than 0, 1, 2 and
// StubSocketFD.
func (t *tracer) closeOthersLocked() error {
	_, err := t.regSyscallLocked(unix.SYS_CLOSE_RANGE, 3, StubSocketFD-1, 0)
	if err == nil {
		_, err = t.regSyscallLocked(unix.SYS_CLOSE_RANGE, StubSocketFD+1, ^uintptr(0)>>32, 0)
	}
	if err != unix.ENOSYS && err != unix.EINVAL {
		return err
	}
	// Before Linux 5.9: one by one.
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", t.pid))
	if err != nil {
		return err
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 || fd == StubSocketFD {
			continue
		}
		if _, err := t.regSyscallLocked(unix.SYS_CLOSE, uintptr(fd)); err != nil && err != unix.EBADF {
			return err
		}
	}
	return nil
}
