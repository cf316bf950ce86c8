package sandbox

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/loader"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/mm"
	"github.com/vmspace/vmspace/platform/ptrace"
	"golang.org/x/sys/unix"
)

// execve, as vmspace does it:
//
//  1. The program's execve stops at entry. Its path, arguments and
//     environment are read through the memory manager.
//  2. The new program is loaded by the loader into a new memory manager
//     ("#!" scripts are followed to their interpreter). A failure here is
//     the errno of the program's execve, and its old image goes on.
//  3. Point of no return: the thread is made to execute the stub image on
//     the host. The host kernel thus does everything else exec does: other
//     threads die, close-on-exec descriptors close, signal handlers reset,
//     the thread becomes the thread group leader, a vfork parent resumes.
//  4. The fresh host image is emptied (freshImage), the new manager takes
//     over the process, and the thread starts at the program's entry with
//     the initial stack the loader built.

// execImage is a program loaded into a new manager, ready to take over a
// process.
type execImage struct {
	mm  *mm.MemoryManager
	res *loader.Result
	// path is the host path of the program; name is the file name as
	// given to execve.
	path, name string
}

// maxScriptDepth bounds "#!" interpreter chains (Linux allows 5 levels of
// binfmt recursion).
const maxScriptDepth = 4

// prepareExec loads the program at host path hostPath into a new manager.
// execFn is the file name as given (AT_EXECFN).
func (s *Sandbox) prepareExec(p *process, hostPath, execFn string, argv, envv []string) (*execImage, unix.Errno) {
	name := execFn
	for depth := 0; ; depth++ {
		interp, arg, isScript, e := readShebang(hostPath)
		if e != 0 {
			return nil, e
		}
		if !isScript {
			break
		}
		if depth >= maxScriptDepth {
			return nil, unix.ELOOP
		}
		nargv := []string{interp}
		if arg != "" {
			nargv = append(nargv, arg)
		}
		nargv = append(nargv, execFn)
		if len(argv) > 1 {
			nargv = append(nargv, argv[1:]...)
		}
		argv = nargv
		execFn = interp
		hostPath = s.hostPath(p, interp, unix.AT_FDCWD)
	}
	m := s.newManager()
	if p.mm != nil {
		m.InheritMDWE(p.mm)
	}
	lim := m.Limits()
	s.readLimits(p.pid, &lim)
	m.SetLimits(lim)
	aslr, legacy := s.layoutOpts(p)
	if aslr != nil {
		aslr.VDSOAt, aslr.VDSOSize = s.freshVDSO(p)
	}
	res, err := loader.Load(s.ctx, m, s.mf, loader.Options{
		ASLR:         aslr,
		LegacyLayout: legacy,
		Path:         hostPath,
		Argv:         argv,
		Envv:         envv,
		ExecFn:       name,
		Files:        s.files,
		StackLimit:   lim.Stack.Cur,
		VDSO:         s.mapVDSO,
	})
	if err != nil {
		m.DecUsers(s.ctx)
		var e unix.Errno
		if errors.As(err, &e) {
			return nil, e
		}
		return nil, unix.ENOEXEC
	}
	return &execImage{mm: m, res: res, path: hostPath, name: name}, 0
}

// readShebang reports whether the file at path is a "#!" script and, if so,
// its interpreter and optional argument. An unreadable file is left to the
// loader, except for permission: a script must be executable.
func readShebang(path string) (interp, arg string, ok bool, e unix.Errno) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", "", false, 0
	}
	defer unix.Close(fd)
	var buf [256]byte
	n, _ := unix.Pread(fd, buf[:], 0)
	if n < 2 || buf[0] != '#' || buf[1] != '!' {
		return "", "", false, 0
	}
	if err := unix.Access(path, unix.X_OK); err != nil {
		return "", "", false, unix.EACCES
	}
	line := buf[2:n]
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	} else if n == len(buf) {
		// Linux 5.1+ fails a truncated interpreter name only if it
		// does not fit; keep what fits.
	}
	l := strings.Trim(string(line), " \t")
	if l == "" {
		return "", "", false, unix.ENOEXEC
	}
	interp, arg, _ = strings.Cut(l, " ")
	if j := strings.IndexByte(interp, '\t'); j >= 0 {
		interp, arg = interp[:j], interp[j+1:]+" "+arg
	}
	arg = strings.Trim(arg, " \t")
	return interp, arg, true, 0
}

// hostPath turns a path given by process p (relative to its working
// directory, or to directory descriptor dirfd) into one vmspace can open,
// mapping /proc/self, /proc/thread-self, /dev/fd and /proc/PID/exe of
// sandboxed processes.
func (s *Sandbox) hostPath(p *process, path string, dirfd int32) string {
	if !strings.HasPrefix(path, "/") {
		base := fmt.Sprintf("/proc/%d/cwd", p.pid)
		if dirfd != unix.AT_FDCWD {
			base = fmt.Sprintf("/proc/%d/fd/%d", p.pid, dirfd)
		}
		if d, err := os.Readlink(base); err == nil && strings.HasPrefix(d, "/") {
			base = d
		}
		path = base + "/" + path
	}
	if rest, ok := strings.CutPrefix(path, "/proc/self/"); ok {
		path = fmt.Sprintf("/proc/%d/%s", p.pid, rest)
	} else if rest, ok := strings.CutPrefix(path, "/proc/thread-self/"); ok {
		path = fmt.Sprintf("/proc/%d/%s", p.pid, rest)
	} else if rest, ok := strings.CutPrefix(path, "/dev/fd/"); ok {
		path = fmt.Sprintf("/proc/%d/fd/%s", p.pid, rest)
	}
	clean := filepath.Clean(path)
	if f := strings.Split(clean, "/"); len(f) == 4 && f[1] == "proc" && f[3] == "exe" {
		if pid, err := strconv.Atoi(f[2]); err == nil {
			if q := s.procs[pid]; q != nil && q.exe != "" {
				return q.exe
			}
			if t := s.tasks[pid]; t != nil && t.p.exe != "" {
				return t.p.exe
			}
		}
	}
	return path
}

// readString reads a NUL-terminated string of at most max bytes at addr
// of t's address space.
func (s *Sandbox) readString(t *task, addr uint64, max int) (string, unix.Errno) {
	if addr == 0 {
		return "", unix.EFAULT
	}
	var out []byte
	chunk := make([]byte, 256)
	for len(out) < max {
		// Read up to the end of the page, so a string ending just
		// before an unmapped page reads.
		n := int(hostarch.PageSize - (addr+uint64(len(out)))%hostarch.PageSize)
		n = min(n, len(chunk), max-len(out))
		got, err := t.p.mm.CopyIn(s.ctx, hostarch.Addr(addr+uint64(len(out))), chunk[:n], mm.IOOpts{})
		if i := bytes.IndexByte(chunk[:got], 0); i >= 0 {
			return string(append(out, chunk[:i]...)), 0
		}
		out = append(out, chunk[:got]...)
		if err != nil {
			return "", unix.EFAULT
		}
	}
	return "", unix.ENAMETOOLONG
}

// readStrings reads a NULL-terminated array of string pointers.
func (s *Sandbox) readStrings(t *task, addr uint64) ([]string, unix.Errno) {
	if addr == 0 {
		return nil, 0
	}
	var out []string
	total := 0
	for i := 0; ; i++ {
		w, ok := s.readWords(t, addr+8*uint64(i), 1)
		if !ok {
			return nil, unix.EFAULT
		}
		if w[0] == 0 {
			return out, 0
		}
		str, e := s.readString(t, w[0], 32*int(hostarch.PageSize))
		if e == unix.ENAMETOOLONG {
			return nil, unix.E2BIG
		}
		if e != 0 {
			return nil, e
		}
		total += len(str) + 1 + 8
		if total > 1<<30 || i > 1<<24 {
			return nil, unix.E2BIG
		}
		out = append(out, str)
	}
}

// sysExecve serves execve and execveat.
func (s *Sandbox) sysExecve(t *task, dirfd int32, pathp, argvp, envp uint64, flags int) sysResult {
	p := t.p
	if flags&^(unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW) != 0 {
		return retErr(unix.EINVAL)
	}
	path, e := s.readString(t, pathp, unix.PathMax)
	if e != 0 {
		return retErr(e)
	}
	argv, e := s.readStrings(t, argvp)
	if e != 0 {
		return retErr(e)
	}
	envv, e := s.readStrings(t, envp)
	if e != 0 {
		return retErr(e)
	}
	var hp string
	switch {
	case path == "" && flags&unix.AT_EMPTY_PATH != 0:
		hp = fmt.Sprintf("/proc/%d/fd/%d", p.pid, dirfd)
		path = fmt.Sprintf("/dev/fd/%d", dirfd)
	case path == "":
		return retErr(unix.ENOENT)
	default:
		hp = s.hostPath(p, path, dirfd)
	}
	if flags&unix.AT_SYMLINK_NOFOLLOW != 0 {
		if fi, err := os.Lstat(hp); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			return retErr(unix.ELOOP)
		}
	}
	if s.opts.Trace != nil {
		fmt.Fprintf(s.opts.Trace, "[pid %d] execve(%q, %q) ...\n", t.tid, path, argv)
	}
	t0 := time.Now()
	img, e := s.prepareExec(p, hp, path, argv, envv)
	if debug {
		defer func() {
			fmt.Fprintf(os.Stderr, "vmspace-debug: exec %s in %v (load %v)\n", path, time.Since(t0), img != nil)
		}()
	}
	if e != 0 {
		if s.opts.Trace != nil {
			fmt.Fprintf(s.opts.Trace, "[pid %d] execve(%q) = -1 %s\n", t.tid, path, errName(e))
		}
		return retErr(e)
	}
	// The point of no return.
	nt, named, err := s.hostExec(t, img.name)
	if err != nil {
		img.mm.DecUsers(s.ctx)
		var e unix.Errno
		if errors.As(err, &e) && nt != nil {
			return retErr(e)
		}
		return sysResult{act: actDone}
	}
	if err := s.freshImage(nt, -1); err != nil {
		img.mm.DecUsers(s.ctx)
		s.killProcess(p, err.Error())
		return sysResult{act: actDone}
	}
	if err := s.commitExec(nt, img, named); err != nil {
		s.killProcess(p, err.Error())
		return sysResult{act: actDone}
	}
	s.resume(nt, 0, nil)
	return sysResult{act: actDone}
}

// errHostExec wraps the errno of a failed host exec of the stub image.
var errHostExec = errors.New("sandbox: host exec of the stub image failed")

// hostExec makes t execute the stub image on the host and returns the task,
// now the process's only one (with the leader's id), stopped after the
// exec, and whether the exec named the thread after file name name (see
// stubPath). If the exec fails, the task is returned with an error
// wrapping the errno, its process untouched.
func (s *Sandbox) hostExec(t *task, name string) (*task, bool, error) {
	stub, named := s.stubPath(name)
	nt, err := s.hostExecPath(t, stub)
	return nt, named, err
}

// hostExecPath is hostExec through path, a path of the stub image.
func (s *Sandbox) hostExecPath(t *task, stub string) (*task, error) {
	p := t.p
	// Scratch: the path, argv[0], argv, envp.
	path := stub + "\x00"
	argv0 := "vmspace-stub\x00"
	buf := make([]byte, 1024+32)
	copy(buf, path)
	copy(buf[512:], argv0)
	put := func(off int, v uint64) {
		for i := 0; i < 8; i++ {
			buf[off+i] = byte(v >> (8 * i))
		}
	}
	put(1024, uint64(scratchAddr)+512)
	put(1032, 0)
	put(1040, 0)
	if err := s.writeMem(p.pid, scratchAddr, buf); err != nil {
		return t, fmt.Errorf("%w: %w", errHostExec, unix.EFAULT)
	}
	if err := s.fetchRegs(t); err != nil {
		return nil, err
	}
	r := t.regs
	r.Rip = t.ip
	r.Rax = unix.SYS_EXECVE
	r.Orig_rax = ^uint64(0)
	r.Rdi, r.Rsi, r.Rdx = uint64(scratchAddr), uint64(scratchAddr)+1024, uint64(scratchAddr)+1040
	r.Eflags = 0x202
	if err := ptraceSetRegs(t.tid, &r); err != nil {
		return nil, s.lost(t, "PTRACE_SETREGS", err)
	}
	t.regState = regsOwed
	if err := ptraceCont(t.tid, 0); err != nil {
		return nil, s.lost(t, "PTRACE_CONT", err)
	}
	for {
		wpid, ws, err := wait4(-1, 0)
		if err != nil {
			return nil, err
		}
		q := s.tasks[wpid]
		if wpid != t.tid && wpid != p.pid && (q == nil || q.p != p) {
			// Someone else's news: later.
			s.keep(wpid, ws)
			continue
		}
		if ws.Exited() || ws.Signaled() {
			if wpid == t.tid {
				s.keep(wpid, ws)
				t.state = taskDead
				return nil, errTaskDead
			}
			// Another thread, killed by the exec.
			if q != nil {
				s.taskGone(q)
			}
			continue
		}
		if !ws.Stopped() {
			continue
		}
		if wpid != t.tid && event(ws) != eventExec {
			// Another thread stopped on its way out: it is being
			// killed; let it go.
			ptraceCont(wpid, 0)
			continue
		}
		switch {
		case event(ws) == eventExec:
			// Out of the execve system call first: nothing can be
			// injected inside it.
			if err := s.syscallExit(wpid); err != nil {
				t.state = taskDead
				return nil, err
			}
			// wpid is the leader's id, which t now has.
			for tid, q := range p.tasks {
				if q != t {
					s.taskGone(q)
					_ = tid
				}
			}
			if t.tid != p.pid {
				delete(s.tasks, t.tid)
				delete(p.tasks, t.tid)
				t.tid = p.pid
				s.tasks[t.tid] = t
				p.tasks[t.tid] = t
			}
			t.regState = regsStale
			t.altStack = hostarch.AddrRange{}
			t.state = taskStopped
			t.pending = nil
			p.held = t
			return t, nil
		case event(ws) == eventSeccomp:
			ptraceCont(wpid, 0)
		case ws.StopSignal() == unix.SIGTRAP && event(ws) == 0:
			var rr unix.PtraceRegs
			if ptraceGetRegs(t.tid, &rr) == nil && rr.Rip == t.ip+ptrace.StubTrapDelta {
				t.state = taskSignalStop
				e, bad := errnoOf(uintptr(rr.Rax))
				if !bad {
					e = unix.ENOEXEC
				}
				return t, fmt.Errorf("%w: %w", errHostExec, e)
			}
			s.noteSignal(t, ws)
			ptraceCont(wpid, 0)
		default:
			var si siginfo
			if wpid == t.tid && event(ws) == 0 && ptraceGetSiginfo(wpid, &si) == nil && syncSignal(ws.StopSignal(), &si) {
				// A fault at the code page before the exec (as in
				// inject): it would come back at every retry.
				t.state = taskSignalStop
				return t, fmt.Errorf("%w: %w", errHostExec, unix.EFAULT)
			}
			s.noteSignal(t, ws)
			ptraceCont(wpid, 0)
		}
	}
}

// syscallExit takes tid, stopped inside a system call, to its exit.
func (s *Sandbox) syscallExit(tid int) error {
	if err := ptraceSyscall(tid, 0); err != nil {
		return err
	}
	for {
		_, ws, err := wait4(tid, 0)
		if err != nil {
			return err
		}
		if ws.Exited() || ws.Signaled() {
			s.keep(tid, ws)
			return errTaskDead
		}
		if ws.Stopped() && ws.StopSignal() == sysStopSig {
			return nil
		}
		if ws.Stopped() {
			ptraceSyscall(tid, 0)
		}
	}
}

// taskGone forgets a task that died without (or before) a report.
func (s *Sandbox) taskGone(q *task) {
	q.state = taskDead
	delete(s.tasks, q.tid)
	delete(q.p.tasks, q.tid)
	if q.p.held == q {
		q.p.held = nil
	}
}

// commitExec makes img the image of t's process (just emptied by
// freshImage) and sets t up to start it; named says that the host exec
// gave the thread its name already.
func (s *Sandbox) commitExec(t *task, img *execImage, named bool) error {
	p := t.p
	s.leaveSpace(p, "exec")
	sp := s.newSpace(img.mm)
	s.joinSpace(p, sp)
	// The host exec set the thread's capabilities as Linux's exec does.
	s.syncCaps(t)
	p.exe, p.name = img.path, img.name
	p.held = t
	if err := s.activate(img.mm, sp.as); err != nil {
		return fmt.Errorf("sandbox: activating the address space: %w", err)
	}
	if err := s.placeVDSO(t, img.mm); err != nil {
		return err
	}
	s.stats.Execs++
	s.reportExec(p)
	if err := s.fetchRegs(t); err != nil {
		return err
	}
	r := t.regs
	r.Rax, r.Rbx, r.Rcx, r.Rdx, r.Rsi, r.Rdi, r.Rbp = 0, 0, 0, 0, 0, 0, 0
	r.R8, r.R9, r.R10, r.R11, r.R12, r.R13, r.R14, r.R15 = 0, 0, 0, 0, 0, 0, 0, 0
	r.Rip = uint64(img.res.Entry)
	r.Rsp = uint64(img.res.StackPointer)
	r.Eflags = 0x202
	r.Orig_rax = ^uint64(0)
	r.Fs_base, r.Gs_base = 0, 0
	t.regs = r
	t.regState = regsOwed
	if !named {
		s.setComm(t, img.name)
	}
	s.withFDCache(t, func() {
		s.populateImage(p, img.res)
		// After the segments: the descriptor they opened for the
		// program's file serves PR_SET_MM_MAP's executable too.
		s.setProcInfo(t, img)
	})
	return nil
}

// cachedFDOf returns the descriptor that the fdCache holds in t's process
// for the file at host path, read-only, or -1.
func (s *Sandbox) cachedFDOf(t *task, path string) int {
	c := s.fdCache
	if c == nil || c.t != t || len(c.fds) == 0 {
		return -1
	}
	var want unix.Stat_t
	if unix.Stat(path, &want) != nil {
		return -1
	}
	for k, fd := range c.fds {
		var st unix.Stat_t
		if k.write || unix.Stat(fmt.Sprintf("/proc/%d/fd/%d", t.p.pid, fd), &st) != nil {
			continue
		}
		if st.Dev == want.Dev && st.Ino == want.Ino {
			return fd
		}
	}
	return -1
}

// fdCache keeps the descriptors that mapFD opens in a task's process for
// the host mappings of files, so that several mappings of one file (an
// image's segments) open it once. Used by the tracer goroutine only.
type fdCache struct {
	// t is the task whose process holds the descriptors. Immutable.
	t *task
	// fds are the descriptors, by file and write access.
	fds map[fdCacheKey]int
}

// fdCacheKey identifies a descriptor of an fdCache.
type fdCacheKey struct {
	file  memmap.File
	write bool
}

// withFDCache runs fn with the descriptors that mapFD opens in t's process
// kept open (and reused) until fn returns, then closes them: an exec's
// image maps several segments of each of its files. Only a process with
// t as its one task does this (right after exec): no other thread of the
// program can see, close or reuse the descriptors meanwhile.
func (s *Sandbox) withFDCache(t *task, fn func()) {
	if len(t.p.tasks) != 1 || s.fdCache != nil {
		fn()
		return
	}
	c := &fdCache{t: t, fds: make(map[fdCacheKey]int)}
	s.fdCache = c
	defer func() {
		s.fdCache = nil
		s.closeCached(t, c)
	}()
	fn()
}

// closeCached closes the descriptors of c, each run of consecutive
// numbers with one injected close_range (an image's files are opened one
// after the other, at the lowest free numbers), and a lent memory file
// number with closeIn, which gives it back.
func (s *Sandbox) closeCached(t *task, c *fdCache) {
	fds := make([]int, 0, len(c.fds))
	for _, fd := range c.fds {
		if t.p.memFDLent && fd == t.p.memFD {
			s.closeIn(t, fd)
			continue
		}
		fds = append(fds, fd)
	}
	slices.Sort(fds)
	for len(fds) > 0 {
		n := 1
		for n < len(fds) && fds[n] == fds[n-1]+1 {
			n++
		}
		if n > 1 {
			r, err := s.inject(t, unix.SYS_CLOSE_RANGE, uintptr(fds[0]), uintptr(fds[n-1]), 0)
			if err != nil {
				return
			}
			if _, bad := errnoOf(r); !bad {
				fds = fds[n:]
				continue
			}
		}
		for _, fd := range fds[:n] {
			s.closeIn(t, fd)
		}
		fds = fds[n:]
	}
}

// setComm sets the thread's name (/proc/PID/comm) as exec does: the last
// component of the file name, at most 15 bytes.
func (s *Sandbox) setComm(t *task, name string) {
	base := commName(name)
	if s.writeMem(t.p.pid, scratchAddr, append([]byte(base), 0)) == nil {
		s.inject(t, unix.SYS_PRCTL, unix.PR_SET_NAME, uintptr(scratchAddr))
	}
}

// setProcInfo tells the host kernel where the program's arguments,
// environment, auxiliary vector and break are, and which file it runs, so
// that /proc/PID/exe and auxv show the program rather than the stub image
// (prctl PR_SET_MM_MAP; the executable needs CAP_SYS_ADMIN or
// CAP_CHECKPOINT_RESTORE, without which only the rest is set). Failures
// are ignored: the program runs all the same. (/proc/PID/cmdline and
// environ stay empty: the host kernel reads them only from anonymous
// memory, and the stack is a mapping of the memory file.)
func (s *Sandbox) setProcInfo(t *task, img *execImage) {
	res := img.res
	const (
		mapOff  = 0
		auxOff  = 256
		pathOff = 1024
	)
	buf := make([]byte, pathOff+len(img.path)+1)
	copy(buf[pathOff:], img.path)
	cwd := unix.AT_FDCWD
	exeFD := ^uint32(0)
	if fd := s.cachedFDOf(t, img.path); fd >= 0 {
		// Opened for the segments' host mappings (withFDCache).
		exeFD = uint32(fd)
	} else {
		if s.writeMem(t.p.pid, scratchAddr, buf) != nil {
			return
		}
		r, err := s.inject(t, unix.SYS_OPENAT, uintptr(cwd), uintptr(scratchAddr)+pathOff, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return
		}
		if _, bad := errnoOf(r); !bad {
			exeFD = uint32(r)
			defer s.inject(t, unix.SYS_CLOSE, r)
		}
	}
	le := binary.LittleEndian
	auxv := make([]byte, 0, 16*(len(res.Auxv)+1))
	for _, e := range res.Auxv {
		auxv = le.AppendUint64(le.AppendUint64(auxv, e.Key), e.Value)
	}
	auxv = append(auxv, make([]byte, 16)...)
	m := make([]byte, 104)
	for i, v := range []uint64{
		uint64(res.StartCode), uint64(res.EndCode), uint64(res.StartData), uint64(res.EndData),
		uint64(res.Brk), uint64(res.Brk), uint64(res.StackPointer),
		uint64(res.Argv.Start), uint64(res.Argv.End), uint64(res.Envv.Start), uint64(res.Envv.End),
		uint64(scratchAddr) + auxOff,
	} {
		le.PutUint64(m[8*i:], v)
	}
	le.PutUint32(m[96:], uint32(len(auxv)))
	le.PutUint32(m[100:], exeFD)
	if len(auxv) > pathOff-auxOff {
		return
	}
	if s.writeMem(t.p.pid, scratchAddr, m) != nil || s.writeMem(t.p.pid, scratchAddr+auxOff, auxv) != nil {
		return
	}
	r, err := s.inject(t, unix.SYS_PRCTL, unix.PR_SET_MM, unix.PR_SET_MM_MAP, uintptr(scratchAddr)+mapOff, 104, 0)
	if err == nil && exeFD != ^uint32(0) {
		if e, bad := errnoOf(r); bad && e == unix.EPERM {
			// Without the right to change the executable: the rest.
			le.PutUint32(m[100:], ^uint32(0))
			if s.writeMem(t.p.pid, scratchAddr, m) == nil {
				s.inject(t, unix.SYS_PRCTL, unix.PR_SET_MM, unix.PR_SET_MM_MAP, uintptr(scratchAddr)+mapOff, 104, 0)
			}
		}
	}
}

// populateImage maps what the program and its interpreter need at once:
// their file-backed segments (which the host kernel may read before the
// program does: paths and messages in read-only data) and the initial
// stack. The writable segments of the interpreter (which relocates
// itself at once: its GOT, RELRO and data) are copied for writing at
// once, saving a fault a page; the program's are left to its writes.
func (s *Sandbox) populateImage(p *process, res *loader.Result) {
	for _, seg := range res.Segments {
		if seg.File.Length() > 0 && seg.File.Length() <= eagerFileMap {
			write := seg.Perms.Write && res.Interpreter != "" && seg.Path != res.Segments[0].Path && seg.File.Length() <= eagerCOW
			s.populate(p, seg.File, write)
		}
	}
	// The stack is mapped, not committed: the program's pushes make
	// its pages resident, as on Linux (the loader wrote the top ones).
	p.mm.MapAhead(s.ctx, res.Stack.Start, res.Stack.Length(), hostarch.Write)
}

// eagerCOW is the largest private writable file mapping that is copied
// for writing at once (loaderData, populateImage).
const eagerCOW = 1 << 20

// loaderData reports whether mmap arguments a are the dynamic loader's
// mapping of a library's writable segment (private, writable, with
// MAP_DENYWRITE, which only ld.so passes, and at most eagerCOW bytes),
// which it writes at once (relocations of the GOT, RELRO and data): such
// a mapping is populated for writing, saving a fault a page.
func loaderData(a [6]uint64) bool {
	const want = unix.MAP_PRIVATE | unix.MAP_DENYWRITE
	return a[2]&unix.PROT_WRITE != 0 && a[3]&(unix.MAP_TYPE|unix.MAP_DENYWRITE) == want && a[1] <= eagerCOW
}

// errName returns the symbolic name of an errno, like strace.
func errName(e unix.Errno) string {
	if n := unix.ErrnoName(e); n != "" {
		return n + " (" + e.Error() + ")"
	}
	return e.Error()
}

// freshVDSO returns where the host's vDSO block of p is and its size, if
// p has just executed the stub image and nothing moved the block yet (the
// first process, loaded after its host exec), else 0, 0. The loader then
// takes the layout randomization that puts the manager's vDSO there (the
// host's place is as random as Linux's), which saves placeVDSO's
// mremaps.
func (s *Sandbox) freshVDSO(p *process) (hostarch.Addr, uint64) {
	st := s.vdsoSt
	if st == nil || len(st.pieces) == 0 {
		return 0, 0
	}
	at, ok := st.fresh[p]
	if !ok {
		return 0, 0
	}
	last := st.pieces[len(st.pieces)-1].piece
	return at, last.off + last.size
}
