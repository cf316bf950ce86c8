package sandbox

import (
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/platform/ptrace"
	"golang.org/x/sys/unix"
)

// noStopSignals makes the kernel stop sending vmspace a SIGCHLD for every
// ptrace stop of its tracees (SA_NOCLDSTOP on the Go runtime's own
// handler), which would otherwise cost a signal delivery per stop. Exits
// still signal; nothing in vmspace waits for SIGCHLD anyway.
func noStopSignals() {
	const saNoCldStop = 1
	var act [4]uint64 // handler, flags, restorer, mask
	_, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(unix.SIGCHLD), 0, uintptr(unsafe.Pointer(&act)), 8, 0, 0)
	if e != 0 || act[0] == 0 || act[0] == 1 || act[1]&saNoCldStop != 0 {
		return // default or ignored (nothing to save), or done already
	}
	act[1] |= saNoCldStop
	unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(unix.SIGCHLD), uintptr(unsafe.Pointer(&act)), 0, 8, 0, 0)
}

// startRoot starts the first process: the stub image, traced, then the
// program loaded into it.
func (s *Sandbox) startRoot() error {
	stdio := []*os.File{s.opts.Stdin, s.opts.Stdout, s.opts.Stderr}
	def := []*os.File{os.Stdin, os.Stdout, os.Stderr}
	files := make([]uintptr, 3, 4)
	for i := range stdio {
		f := stdio[i]
		if f == nil {
			f = def[i]
		}
		files[i] = ^uintptr(0)
		if f != nil {
			if _, err := unix.FcntlInt(f.Fd(), unix.F_GETFD, 0); err == nil {
				files[i] = f.Fd()
			}
		}
	}
	// The descriptors vmspace inherited for the program (not
	// close-on-exec, as a shell's redirections) stay where they are; the
	// memory file comes in at the first number after 2 that none of them
	// holds (the child's rearrangement of descriptors would move or close
	// the ones it is given, and cannot place any above the limit).
	inherited := inheritedFDs()
	for slices.Contains(inherited, len(files)) {
		files = append(files, uintptr(len(files)))
	}
	memSlot := len(files)
	files = append(files, uintptr(s.mf.FD()))
	prebuildFilter()
	pid, err := s.exe.Start(s.opts.Dir, files)
	if err != nil {
		return fmt.Errorf("sandbox: starting the first process: %w", err)
	}
	s.root = pid
	if s.opts.Started != nil {
		s.opts.Started(pid)
	}
	_, ws, err := wait4(pid, 0)
	if err != nil || !ws.Stopped() || ws.StopSignal() != unix.SIGTRAP {
		unix.Kill(pid, unix.SIGKILL)
		return fmt.Errorf("sandbox: the first process did not stop at exec (%v, %v)", ws, err)
	}
	if err := s.restoreLimits(pid); err != nil {
		unix.Kill(pid, unix.SIGKILL)
		return fmt.Errorf("sandbox: limits of the first process: %w", err)
	}
	// The memory file's number, from the program's own limit (the one
	// vmspace was started with, which the child has).
	var lim unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &lim); err != nil {
		unix.Kill(pid, unix.SIGKILL)
		return fmt.Errorf("sandbox: RLIMIT_NOFILE of the first process: %w", err)
	}
	caps, _ := effectiveCaps("/proc/self/status")
	s.memFDNum = vmspaceFDSlot(lim, caps&(1<<unix.CAP_SYS_RESOURCE) != 0)
	for slices.Contains(inherited, s.memFDNum) {
		s.memFDNum++
	}
	p := s.newProcess(pid)
	t := s.newTask(p, pid)
	s.stats.Processes++
	if err := unix.PtraceSetOptions(pid, traceOptions); err != nil {
		unix.Kill(pid, unix.SIGKILL)
		return fmt.Errorf("sandbox: PTRACE_SETOPTIONS: %w", err)
	}
	p.held = t
	t.state = taskSignalStop
	if err := s.freshImage(t, memSlot); err != nil {
		unix.Kill(pid, unix.SIGKILL)
		return err
	}
	if err := s.installFilter(t); err != nil {
		unix.Kill(pid, unix.SIGKILL)
		return err
	}
	if err := s.fastpathInstall(t); err != nil {
		unix.Kill(pid, unix.SIGKILL)
		return err
	}
	s.unblockSEGV(t)
	argv := s.opts.Argv
	env := s.opts.Env
	if env == nil {
		env = os.Environ()
	}
	var path, execFn string
	if s.opts.Image != nil {
		f, err := imageFile(s.opts.Image)
		if err != nil {
			unix.Kill(pid, unix.SIGKILL)
			return err
		}
		s.imageFile = f
		path = f.Name()
		if len(argv) == 0 {
			argv = []string{"vmspace-demo"}
		}
		execFn = argv[0]
	} else {
		path, err = lookPath(argv[0], env)
		if err != nil {
			unix.Kill(pid, unix.SIGKILL)
			return fmt.Errorf("sandbox: %s: %w", argv[0], err)
		}
		execFn = path
		if !strings.HasPrefix(path, "/") {
			path = s.hostPath(p, path, unix.AT_FDCWD)
		}
	}
	tl := time.Now()
	img, errno := s.prepareExec(p, path, execFn, argv, env)
	if errno != 0 {
		unix.Kill(pid, unix.SIGKILL)
		return fmt.Errorf("sandbox: cannot execute %s: %w", argv[0], errno)
	}
	tc := time.Now()
	if err := s.commitExec(t, img, false); err != nil {
		unix.Kill(pid, unix.SIGKILL)
		return err
	}
	if debug {
		fmt.Fprintf(os.Stderr, "vmspace-debug: start: stub %v, load %v, commit %v\n", tl.Sub(s.start), tc.Sub(tl), time.Since(tc))
	}
	s.resume(t, 0, nil)
	return nil
}

// inheritedFDs returns vmspace's descriptors above 2 that are not
// close-on-exec: those a shell opened for the program.
func inheritedFDs() []int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 {
			continue
		}
		if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil && fl&unix.FD_CLOEXEC == 0 {
			out = append(out, fd)
		}
	}
	sort.Ints(out)
	return out
}

// imageFile writes an executable image to a memfd and returns it open
// (its /proc/self/fd path is its name).
func imageFile(b []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate("vmspace-demo", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if _, err := unix.Pwrite(fd, b, 0); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), fmt.Sprintf("/proc/%d/fd/%d", unix.Getpid(), fd)), nil
}

// lookPath finds a program the way execvp does, in the PATH of env.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	path := "/usr/local/bin:/usr/bin:/bin"
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path = v
		}
	}
	var firstErr error = unix.ENOENT
	for _, dir := range strings.Split(path, ":") {
		if dir == "" {
			dir = "."
		}
		p := dir + "/" + name
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
			continue
		}
		if err := unix.Access(p, unix.X_OK); err != nil {
			firstErr = err
			continue
		}
		return p, nil
	}
	return "", firstErr
}

// freshImage prepares a process that has just executed the stub image
// (stopped at the exec): the code and scratch pages at the top of the
// range, nothing else mapped, the memory file at memFDNum (moved from
// inheritedFD if that is not -1).
//
// With the memory file at hand (inheritedFD, or the descriptor the
// process kept across its exec), the shared pages are mapped at once: the
// code page by a call from the stub image's own "syscall; int3" (which
// the seccomp filter stops, the image being outside the code page), then
// the rest from the code page. Otherwise private pages come first, from
// which the memory file is found or opened again, then the shared ones.
func (s *Sandbox) freshImage(t *task, inheritedFD int) error {
	fail := func(what string, err error) error {
		return fmt.Errorf("sandbox: preparing process %d: %s: %w", t.p.pid, what, err)
	}
	t.regState = regsStale
	if err := s.fetchRegs(t); err != nil {
		return fail("registers", err)
	}
	t.ip = ptrace.StubLinkAddr + sysOff
	call := func(what string, nr uintptr, args ...uintptr) error {
		r, err := s.inject(t, nr, args...)
		if err != nil {
			return fail(what, err)
		}
		if e, bad := errnoOf(r); bad {
			return fail(what, e)
		}
		return nil
	}
	memFD := inheritedFD
	if memFD < 0 && t.p.memFDOurs {
		memFD = t.p.memFD
	}
	shared := memFD >= 0
	if shared {
		if err := call("mmap", unix.SYS_MMAP, uintptr(codeAddr), hostarch.PageSize, unix.PROT_READ|unix.PROT_EXEC,
			unix.MAP_SHARED|unix.MAP_FIXED, uintptr(memFD), uintptr(s.stubPages.Start+hostarch.PageSize)); err != nil {
			return err
		}
		t.ip = uint64(codeAddr) + sysOff
		if err := call("mmap", unix.SYS_MMAP, uintptr(scratchAddr), hostarch.PageSize, unix.PROT_READ,
			unix.MAP_SHARED|unix.MAP_FIXED, uintptr(memFD), uintptr(s.stubPages.Start)); err != nil {
			return err
		}
		t.p.stubPrivate = false
	} else {
		t.p.stubPrivate = true
		if err := call("mmap", unix.SYS_MMAP, uintptr(scratchAddr), 2*hostarch.PageSize,
			unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED, ^uintptr(0), 0); err != nil {
			return err
		}
		if err := s.writeMem(t.p.pid, codeAddr, ptrace.StubCodePage()); err != nil {
			return fail("writing the code page", err)
		}
		if err := call("mprotect", unix.SYS_MPROTECT, uintptr(codeAddr), hostarch.PageSize, unix.PROT_READ|unix.PROT_EXEC); err != nil {
			return err
		}
		t.ip = uint64(codeAddr) + sysOff
	}
	// The host exec ended the rseq registration, clear_child_tid and the
	// robust list.
	t.kareas = kernelAreas{}
	if err := s.keepVDSO(t, call); err != nil {
		return err
	}
	if inheritedFD >= 0 {
		restore, err := installAt(t.p.pid, s.memFDNum)
		if err != nil {
			return fail("RLIMIT_NOFILE", err)
		}
		err = call("dup3", unix.SYS_DUP3, uintptr(inheritedFD), uintptr(s.memFDNum), 0)
		restore()
		if err != nil {
			return err
		}
		if err := call("close", unix.SYS_CLOSE, uintptr(inheritedFD)); err != nil {
			return err
		}
		t.p.memFD, t.p.memFDOurs = s.memFDNum, true
	}
	if shared {
		return s.fastpathImage(t)
	}
	fd, err := s.stubFD(t)
	if err != nil {
		return fail("the memory file", err)
	}
	if err := s.shareStubPages(t, fd); err != nil {
		return fail("sharing the stub pages", err)
	}
	return nil
}

// installFilter installs the seccomp filter in t's process (inherited by
// everything it starts).
func (s *Sandbox) installFilter(t *task) error {
	f, err := filterFor(s.memFDNum)
	if err != nil {
		return err
	}
	if _, err := s.injectFilter(t, f, unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW); err != nil {
		return fmt.Errorf("sandbox: installing the seccomp filter: %w", err)
	}
	return nil
}
