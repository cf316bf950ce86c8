package sandbox

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/linuxabi"
	"github.com/vmspace/vmspace/mm"
	"golang.org/x/sys/unix"
)

// What a system call handler wants done with the stopped call.
type sysAction int

const (
	// actReturn: skip the call; it returns val.
	actReturn sysAction = iota
	// actPass: let the host run the call (with the registers in t.regs,
	// which a handler may have changed).
	actPass
	// actDone: the handler resumed (or replaced) the task itself.
	actDone
	// actBrkTail: a brk that shrank the heap to val, whose host unmap of
	// the tail the program's own call may make (brk.go).
	actBrkTail
)

// sysResult is a handler's decision.
type sysResult struct {
	act sysAction
	val uintptr
	// tail is the heap's freed tail, for actBrkTail.
	tail hostarch.AddrRange
}

func ret(v uintptr) sysResult           { return sysResult{act: actReturn, val: v} }
func retErr(e unix.Errno) sysResult     { return sysResult{act: actReturn, val: uintptr(-int64(e))} }
func pass() sysResult                   { return sysResult{act: actPass} }
func retAddr(a hostarch.Addr) sysResult { return ret(uintptr(a)) }

// errno converts an error from the memory manager to an errno.
func errno(err error) unix.Errno { return linuxabi.Errno(err) }

// retFrom returns 0 or err's errno.
func retFrom(err error) sysResult {
	if err != nil {
		return retErr(errno(err))
	}
	return ret(0)
}

// syscall serves a system call stop of t.
func (s *Sandbox) syscall(t *task) {
	if err := s.fetchRegs(t); err != nil {
		return
	}
	r := &t.regs
	nr := int(r.Orig_rax)
	a := [6]uint64{r.Rdi, r.Rsi, r.Rdx, r.R10, r.R8, r.R9}
	t.callPC, t.callSP = r.Rip, r.Rsp
	// The buffers of the call in flight (ensure records those the host
	// kernel will write): the previous call's are done with.
	t.kcall = t.kcall[:0]
	res := s.dispatch(t, nr, a)
	if t.dead() {
		return
	}
	if res.act == actPass {
		if e := s.prevalidate(t, nr, a); e != 0 {
			res = retErr(e)
		}
		if t.dead() {
			return
		}
	}
	if res.act != actPass {
		// Served here: the host kernel writes nothing for it.
		t.kcall = t.kcall[:0]
	}
	if s.uffd != nil && s.uffdParkSyscall(t, res.act == actPass) {
		return
	}
	if res.act == actBrkTail {
		res = s.brkTail(t, res)
	}
	switch res.act {
	case actDone:
		return
	case actReturn:
		t.regs.Orig_rax = ^uint64(0)
		t.regs.Rax = uint64(res.val)
		if t.regState != regsOwed {
			if err := ptraceSetRegs(t.tid, &t.regs); err != nil {
				return
			}
		}
		if s.uffd != nil && s.uffdEventWait(t) {
			return
		}
		s.resume(t, 0, nil)
	case actPass:
		if t.regState == regsOwed {
			// Injected calls replaced the stop: run the call again
			// from its syscall instruction.
			t.regs.Rax = t.regs.Orig_rax
			t.regs.Orig_rax = ^uint64(0)
			t.regs.Rip -= 2
			s.resume(t, 0, nil)
			return
		}
		s.watchTruncation(t, nr, a)
		s.watchProcOpen(t, nr, a)
		s.resume(t, 0, nil)
	}
}

// dispatch serves system call nr with arguments a.
func (s *Sandbox) dispatch(t *task, nr int, a [6]uint64) sysResult {
	p := t.p
	if e, ok := s.usesMemFD(t, nr, a); ok {
		return retErr(e)
	}
	if s.sendsMemFD(t, nr, a) {
		return retErr(unix.EBADF)
	}
	if s.opensMemFile(t, nr, a) {
		// As for a descriptor that is not open.
		return retErr(unix.ENOENT)
	}
	if res, ok := s.viewCall(t, nr, a); ok {
		return res
	}
	switch nr {
	case unix.SYS_MMAP, unix.SYS_MUNMAP, unix.SYS_MPROTECT, unix.SYS_PKEY_MPROTECT, unix.SYS_BRK,
		unix.SYS_MREMAP, unix.SYS_MADVISE, unix.SYS_MLOCK, unix.SYS_MUNLOCK, unix.SYS_MLOCK2,
		unix.SYS_MLOCKALL, unix.SYS_MUNLOCKALL, unix.SYS_MSYNC, unix.SYS_MINCORE, unix.SYS_MSEAL,
		unix.SYS_REMAP_FILE_PAGES, unix.SYS_MAP_SHADOW_STACK, unix.SYS_SHMGET, unix.SYS_SHMAT,
		unix.SYS_SHMDT, unix.SYS_SHMCTL, unix.SYS_IO_SETUP, unix.SYS_IO_DESTROY, unix.SYS_IO_SUBMIT,
		unix.SYS_IO_CANCEL, unix.SYS_IO_GETEVENTS, unix.SYS_IO_PGETEVENTS:
		p.memCalls++
		s.stats.MemCalls++
		res := s.servedMemCall(t, nr, a)
		if !t.dead() {
			s.keepKernelAreas(p.sp)
		}
		if s.opts.Trace != nil {
			s.traceCall(t, nr, a, res)
		}
		return res
	case unix.SYS_CLONE3:
		// The C libraries fall back to clone, whose flags the filter
		// can see.
		return retErr(unix.ENOSYS)
	case unix.SYS_CLONE:
		return s.sysClone(t, a)
	case unix.SYS_EXECVE:
		return s.sysExecve(t, unix.AT_FDCWD, a[0], a[1], a[2], 0)
	case unix.SYS_EXECVEAT:
		return s.sysExecve(t, int32(a[0]), a[1], a[2], a[3], int(a[4]))
	case unix.SYS_CLOSE:
		if int32(a[0]) == int32(s.memFDNum) && p.memFDOurs {
			return retErr(unix.EBADF)
		}
		return pass()
	case unix.SYS_DUP2, unix.SYS_DUP3:
		return s.sysDupOver(t, nr, a)
	case unix.SYS_CLOSE_RANGE:
		return s.sysCloseRange(t, a)
	case unix.SYS_SETRLIMIT, unix.SYS_PRLIMIT64:
		return s.sysRlimit(t, nr, a)
	case unix.SYS_PRCTL:
		return s.sysPrctl(t, a)
	case unix.SYS_CAPSET, unix.SYS_SETUID, unix.SYS_SETREUID, unix.SYS_SETRESUID:
		return s.sysCreds(t, nr, a)
	case unix.SYS_SIGALTSTACK:
		return s.sysSigaltstack(t, a)
	case unix.SYS_RT_SIGACTION:
		return s.sysSigaction(t, a)
	case unix.SYS_RT_SIGPROCMASK:
		return s.sysSigprocmask(t, a)
	case unix.SYS_RSEQ:
		return s.sysRseq(t, a)
	case unix.SYS_SET_TID_ADDRESS:
		return s.sysSetTidAddress(t, a)
	case unix.SYS_SET_ROBUST_LIST:
		return s.sysSetRobustList(t, a)
	case unix.SYS_PROCESS_VM_READV, unix.SYS_PROCESS_VM_WRITEV:
		return s.sysProcessVM(t, nr, a)
	case unix.SYS_PROCESS_MADVISE:
		return s.sysProcessMadvise(t, a)
	case unix.SYS_USERFAULTFD:
		return s.sysUserfaultfd(t, a)
	case unix.SYS_IOCTL:
		if res, ok := s.uffdIoctl(t, a); ok {
			return res
		}
	case unix.SYS_PROCESS_MRELEASE:
		return s.sysProcessMrelease(t, a)
	case unix.SYS_WAIT4, unix.SYS_WAITID:
		s.reapExited()
		s.watchWait(t, nr, a)
		return pass()
	}
	return pass()
}

// sendsMemFD reports whether sendmsg or sendmmsg would pass the memory
// file's descriptor to another process (SCM_RIGHTS), which Linux refuses
// with EBADF for a descriptor that is not open.
func (s *Sandbox) sendsMemFD(t *task, nr int, a [6]uint64) bool {
	p := t.p
	if !p.memFDOurs || p.mm == nil {
		return false
	}
	var msgs []uint64
	switch nr {
	case unix.SYS_SENDMSG:
		msgs = []uint64{a[1]}
	case unix.SYS_SENDMMSG:
		for i := uint64(0); i < min(a[2]&0xffffffff, maxIOVecs); i++ {
			msgs = append(msgs, a[1]+64*i)
		}
	default:
		return false
	}
	for _, msg := range msgs {
		w, ok := s.readWords(t, msg, 6)
		if !ok {
			continue
		}
		ctl, ctllen := w[4], min(w[5], 1<<16)
		if ctl == 0 || ctllen < 16 {
			continue
		}
		buf := make([]byte, ctllen)
		n, _ := p.mm.CopyIn(s.ctx, hostarch.Addr(ctl), buf, mm.IOOpts{})
		buf = buf[:n]
		// struct cmsghdr: u64 len, i32 level, i32 type, then data;
		// each is aligned to 8 bytes.
		for off := 0; off+16 <= len(buf); {
			clen := int(binary.LittleEndian.Uint64(buf[off:]))
			level := int32(binary.LittleEndian.Uint32(buf[off+8:]))
			typ := int32(binary.LittleEndian.Uint32(buf[off+12:]))
			if clen < 16 || off+clen > len(buf) {
				break
			}
			if level == unix.SOL_SOCKET && typ == unix.SCM_RIGHTS {
				for d := off + 16; d+4 <= off+clen; d += 4 {
					if int32(binary.LittleEndian.Uint32(buf[d:])) == int32(p.memFD) {
						return true
					}
				}
			}
			off += (clen + 7) &^ 7
		}
	}
	return false
}

// opensMemFile reports whether system call nr would open or truncate the
// memory file by a path: /proc/PID/fd/N (self, thread-self, /dev/fd, a
// sibling's, vmspace's own) or another path to it. Only paths that name a
// descriptor directory ("fd/") are looked at, as the program would resolve
// them (its /proc/self, working directory or directory descriptor).
func (s *Sandbox) opensMemFile(t *task, nr int, a [6]uint64) bool {
	dirfd, pathp := int32(unix.AT_FDCWD), a[0]
	switch nr {
	case unix.SYS_OPEN, unix.SYS_CREAT, unix.SYS_TRUNCATE:
	case unix.SYS_OPENAT, unix.SYS_OPENAT2:
		dirfd, pathp = int32(a[0]), a[1]
	default:
		return false
	}
	p := t.p
	if p.mm == nil || pathp == 0 {
		return false
	}
	buf := make([]byte, 4096)
	n, _ := p.mm.CopyIn(s.ctx, hostarch.Addr(pathp), buf, mm.IOOpts{})
	path := string(buf[:n])
	if i := strings.IndexByte(path, 0); i >= 0 {
		path = path[:i]
	} else {
		return false
	}
	if !strings.Contains(path, "fd/") {
		return false
	}
	for _, r := range []struct{ from, to string }{
		{"/proc/self/", fmt.Sprintf("/proc/%d/", p.pid)},
		{"/proc/thread-self/", fmt.Sprintf("/proc/%d/task/%d/", p.pid, t.tid)},
		{"/dev/fd/", fmt.Sprintf("/proc/%d/fd/", p.pid)},
	} {
		if rest, ok := strings.CutPrefix(path, r.from); ok {
			path = r.to + rest
		}
	}
	if !strings.HasPrefix(path, "/") {
		base := fmt.Sprintf("/proc/%d/cwd", p.pid)
		if dirfd != unix.AT_FDCWD {
			base = fmt.Sprintf("/proc/%d/fd/%d", p.pid, dirfd)
		}
		path = base + "/" + path
	}
	var st, mst unix.Stat_t
	if unix.Stat(path, &st) != nil || unix.Fstat(s.mf.FD(), &mst) != nil {
		return false
	}
	return st.Dev == mst.Dev && st.Ino == mst.Ino
}

// usesMemFD reports whether system call nr uses the memory file's
// descriptor as one of its own, and if so the errno the program gets: as
// if the descriptor were not open (EBADF), except that a directory
// descriptor is ignored with an absolute path, as the kernel does.
func (s *Sandbox) usesMemFD(t *task, nr int, a [6]uint64) (unix.Errno, bool) {
	p := t.p
	if !p.memFDOurs {
		return 0, false
	}
	sp, ok := specs[nr]
	if !ok {
		return 0, false
	}
	for i, as := range sp {
		if int32(a[i]) != int32(p.memFD) {
			continue
		}
		switch as.kind {
		case argFD:
			return unix.EBADF, true
		case argDirFD:
			if i+1 < len(a) && sp[i+1].kind == argPath && p.mm != nil {
				var c [1]byte
				if _, err := p.mm.CopyIn(s.ctx, hostarch.Addr(a[i+1]), c[:], mm.IOOpts{}); err == nil && c[0] == '/' {
					continue
				}
			}
			return unix.EBADF, true
		}
	}
	return 0, false
}

// memCall serves a memory system call.
func (s *Sandbox) memCall(t *task, nr int, a [6]uint64) sysResult {
	if res, done := s.stubHole(t, nr, a); done {
		return res
	}
	if res, done := s.vdsoCall(t, nr, a); done {
		return res
	}
	defer s.serveVDSO(t)()
	p := t.p
	m := p.mm
	ctx := s.ctx
	switch nr {
	case unix.SYS_SHMGET, unix.SYS_SHMAT, unix.SYS_SHMDT, unix.SYS_SHMCTL:
		return s.shmCall(t, nr, a)
	case unix.SYS_IO_SETUP, unix.SYS_IO_DESTROY, unix.SYS_IO_SUBMIT, unix.SYS_IO_CANCEL,
		unix.SYS_IO_GETEVENTS, unix.SYS_IO_PGETEVENTS:
		return s.aioCall(t, nr, a)
	}
	files := &mmapFiles{s: s, p: p, args: a}
	oldBrk := m.BrkRange().End
	v, err := linuxabi.Call(ctx, m, files, nr, a)
	switch nr {
	case unix.SYS_MPROTECT, unix.SYS_PKEY_MPROTECT:
		// The manager unmapped what lost permissions; what stays
		// accessible is mapped again at once, so that the host kernel
		// sees it in the system calls it runs (see prevalidate.go).
		m.MapPresent(ctx, hostarch.Addr(a[0]), a[1])
		if err == nil {
			s.syncVDSOPerms(t, hostarch.AddrRange{Start: hostarch.Addr(a[0]), End: hostarch.Addr(a[0] + pageUp(a[1]))})
		}
	case unix.SYS_MREMAP:
		if err == nil {
			// The moved pages are mapped at their new place at once
			// (see prevalidate.go).
			m.MapPresent(ctx, hostarch.Addr(v), a[2])
		}
	case unix.SYS_BRK:
		if res, ok := s.brkShrinkResult(t, oldBrk, hostarch.Addr(v), err); ok {
			return res
		}
		if b := hostarch.Addr(v); b > oldBrk && uint64(b-oldBrk) <= eagerBrk {
			// A heap grows to be used at once (malloc writes its
			// headers there): map it now, saving a fault stop. Its
			// pages are not committed: each becomes resident when
			// the program touches it, as on Linux (RSS, mincore).
			start := oldBrk.MustRoundUp()
			p.mm.MapAhead(s.ctx, start, uint64(b.MustRoundUp()-start), hostarch.Write)
		}
	case unix.SYS_MMAP:
		if err == nil && files.regular && a[1] <= eagerFileMap && a[2]&(unix.PROT_READ|unix.PROT_EXEC) != 0 {
			// Map small file mappings at once: the host kernel may
			// read them (a path or a message in read-only data)
			// before the program touches them.
			addr := hostarch.Addr(v)
			s.populateFileMap(t, int32(a[4]), a[5], hostarch.AddrRange{Start: addr, End: addr + hostarch.Addr(pageUp(a[1]))}, loaderData(a))
		}
	}
	if err != nil {
		return retErr(linuxabi.Errno(err))
	}
	return ret(uintptr(v))
}

// mmapFiles gives mmap the files of a process's descriptors
// (linuxabi.Files).
type mmapFiles struct {
	s *Sandbox
	p *process
	// regular is set once MMapFile returns a regular file (not
	// /dev/zero nor a file without mmap).
	regular bool
	// args are the mmap call's arguments.
	args [6]uint64
}

// MMapFile implements linuxabi.Files.MMapFile.
func (f *mmapFiles) MMapFile(ctx context.Context, fd int32) (mm.MappableFile, func(), error) {
	file, done, e := f.s.mappableFile(f.p, fd, f.args)
	if e != 0 {
		return nil, nil, e
	}
	f.regular = done != nil
	return file, done, nil
}

// eagerBrk is the largest heap growth that brk maps at once.
const eagerBrk = 8 << 20

// eagerFileMap is the largest file mapping that mmap populates at once.
const eagerFileMap = 16 << 20

func pageUp(n uint64) uint64 {
	r, ok := hostarch.PageRoundUp(n)
	if !ok {
		return n &^ (hostarch.PageSize - 1)
	}
	return r
}

// populate faults in ar (for writing if write) and maps it in the host,
// ignoring errors (the host kernel then fails as Linux would).
func (s *Sandbox) populate(p *process, ar hostarch.AddrRange, write bool) {
	if ar.Length() == 0 || p.mm == nil {
		return
	}
	adv := mm.AdvPopulateRead
	if write {
		adv = mm.AdvPopulateWrite
	}
	p.mm.MAdvise(s.ctx, ar.Start, ar.Length(), adv)
}

// mappableFile returns the file behind descriptor fd of p for mmap:
// /dev/zero is an mm.ZeroFile, and files without an mmap of their own
// (pipes, directories, sockets, other devices) are mm.UnmappableFiles, so
// that mmap checks its arguments as Linux does before failing. args are
// the mmap call's (a hugetlbfs file is mapped only where the host would:
// hugetlbProbe).
func (s *Sandbox) mappableFile(p *process, fd int32, args [6]uint64) (mm.MappableFile, func(), unix.Errno) {
	if fd < 0 || (int(fd) == s.memFDNum && p.memFDOurs) {
		return nil, nil, unix.EBADF
	}
	hfd, err := s.getFD(p, int(fd))
	if err != nil {
		return nil, nil, errno(err)
	}
	defer unix.Close(hfd)
	fl, err := unix.FcntlInt(uintptr(hfd), unix.F_GETFL, 0)
	if err != nil || fl&unix.O_PATH != 0 {
		return nil, nil, unix.EBADF
	}
	var st unix.Stat_t
	if err := unix.Fstat(hfd, &st); err != nil {
		return nil, nil, errno(err)
	}
	acc := fl & unix.O_ACCMODE
	r, w := acc != unix.O_WRONLY, acc != unix.O_RDONLY
	var sfs unix.Statfs_t
	noexec := unix.Fstatfs(hfd, &sfs) == nil && sfs.Flags&unix.ST_NOEXEC != 0
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		if e := hugetlbProbe(hfd, &sfs, args); e != 0 {
			return nil, nil, e
		}
	case unix.S_IFCHR:
		if unix.Major(st.Rdev) == 1 && unix.Minor(st.Rdev) == 5 { // /dev/zero
			return mm.ZeroFile{R: r, W: w}, nil, 0
		}
		return mm.UnmappableFile{R: r, W: w, NoExecMount: noexec}, nil, 0
	case unix.S_IFSOCK, unix.S_IFIFO:
		// Pipes and sockets live on noexec pseudo file systems;
		// sockets have an mmap that fails late.
		return mm.UnmappableFile{R: r, W: w, Socket: st.Mode&unix.S_IFMT == unix.S_IFSOCK, NoExecMount: true}, nil, 0
	default:
		return mm.UnmappableFile{R: r, W: w, NoExecMount: noexec}, nil, 0
	}
	f, err := s.files.Import(hfd)
	if err != nil {
		return nil, nil, errno(err)
	}
	return f, func() { f.Close(s.ctx) }, 0
}

// getFD returns a duplicate, in vmspace, of descriptor fd of process p.
func (s *Sandbox) getFD(p *process, fd int) (int, error) {
	if p.pidfd < 0 {
		pfd, err := unix.PidfdOpen(p.pid, 0)
		if err != nil {
			return -1, fmt.Errorf("sandbox: pidfd_open(%d): %w", p.pid, err)
		}
		p.pidfd = pfd
	}
	hfd, err := unix.PidfdGetfd(p.pidfd, fd, 0)
	if err != nil {
		return -1, err
	}
	return hfd, nil
}

// sysDupOver serves dup2 and dup3 whose new descriptor is memFDNum.
func (s *Sandbox) sysDupOver(t *task, nr int, a [6]uint64) sysResult {
	p := t.p
	mfd := s.memFDNum
	if !p.memFDOurs || int32(a[1]) != int32(mfd) {
		return pass()
	}
	if int32(a[0]) == int32(mfd) {
		return retErr(unix.EBADF) // not the program's descriptor
	}
	// The program wants this descriptor: move the memory file away, to
	// a free descriptor below, or else just above the soft limit of
	// descriptors (raised for the moment of the move).
	target := s.freeFD(p, -1)
	var lim unix.Rlimit
	raised := false
	if target < 0 || target == mfd {
		if err := unix.Prlimit(p.pid, unix.RLIMIT_NOFILE, nil, &lim); err != nil || lim.Max <= lim.Cur {
			return retErr(unix.EMFILE)
		}
		target = int(lim.Cur)
		nl := lim
		nl.Cur++
		if unix.Prlimit(p.pid, unix.RLIMIT_NOFILE, &nl, nil) != nil {
			return retErr(unix.EMFILE)
		}
		raised = true
	}
	r, err := s.inject(t, unix.SYS_DUP3, uintptr(mfd), uintptr(target), 0)
	if raised {
		unix.Prlimit(p.pid, unix.RLIMIT_NOFILE, &lim, nil)
	}
	if err != nil {
		return sysResult{act: actDone}
	}
	if e, bad := errnoOf(r); bad {
		return retErr(e)
	}
	p.memFD, p.memFDOurs = target, false
	return pass()
}

// sysCloseRange serves close_range over memFDNum: the memory file stays.
func (s *Sandbox) sysCloseRange(t *task, a [6]uint64) sysResult {
	p := t.p
	mfd := s.memFDNum
	lo, hi, flags := uint32(a[0]), uint32(a[1]), uintptr(a[2])
	if !p.memFDOurs || lo > uint32(mfd) || hi < uint32(mfd) {
		return pass()
	}
	if flags&^(unix.CLOSE_RANGE_UNSHARE|unix.CLOSE_RANGE_CLOEXEC) != 0 {
		return retErr(unix.EINVAL)
	}
	var first unix.Errno
	f := flags
	if lo < uint32(mfd) {
		r, err := s.inject(t, unix.SYS_CLOSE_RANGE, uintptr(lo), uintptr(mfd-1), f)
		if err != nil {
			return sysResult{act: actDone}
		}
		if e, bad := errnoOf(r); bad {
			first = e
		}
		f &^= unix.CLOSE_RANGE_UNSHARE
	}
	if hi > uint32(mfd) {
		r, err := s.inject(t, unix.SYS_CLOSE_RANGE, uintptr(mfd+1), uintptr(hi), f)
		if err != nil {
			return sysResult{act: actDone}
		}
		if e, bad := errnoOf(r); bad && first == 0 {
			first = e
		}
	}
	if first != 0 {
		return retErr(first)
	}
	return ret(0)
}

// sysRlimit serves setrlimit and prlimit64: limits the memory manager
// enforces are set on the host first, then copied into the manager.
func (s *Sandbox) sysRlimit(t *task, nr int, a [6]uint64) sysResult {
	p := t.p
	pid, res, newp, oldp := 0, int(a[0]), a[1], uint64(0)
	if nr == unix.SYS_PRLIMIT64 {
		pid, res, newp, oldp = int(int32(a[0])), int(a[1]), a[2], a[3]
		s.ensure(t, oldp, 16, true)
	}
	self := pid == 0 || pid == p.pid || p.tasks[pid] != nil
	if newp == 0 || !self || !managedLimit(res) {
		return pass()
	}
	s.ensure(t, newp, 16, false)
	r, err := s.inject(t, uintptr(nr), uintptr(a[0]), uintptr(a[1]), uintptr(a[2]), uintptr(a[3]))
	if err != nil {
		return sysResult{act: actDone}
	}
	if _, bad := errnoOf(r); !bad {
		s.syncLimits(p)
	}
	return ret(r)
}

// managedLimit reports whether resource res limits the memory manager.
func managedLimit(res int) bool {
	switch res {
	case unix.RLIMIT_AS, unix.RLIMIT_DATA, unix.RLIMIT_MEMLOCK, unix.RLIMIT_STACK:
		return true
	}
	return false
}

// syncLimits copies p's host limits into its memory manager.
func (s *Sandbox) syncLimits(p *process) {
	if p.mm == nil {
		return
	}
	l := p.mm.Limits()
	s.readLimits(p.pid, &l)
	p.mm.SetLimits(l)
}

// readLimits reads the memory limits of host process pid into l.
func (s *Sandbox) readLimits(pid int, l *mm.Limits) {
	for _, r := range []struct {
		res int
		dst *mm.RLimit
	}{{unix.RLIMIT_AS, &l.AS}, {unix.RLIMIT_DATA, &l.Data}, {unix.RLIMIT_MEMLOCK, &l.MemLock}, {unix.RLIMIT_STACK, &l.Stack}} {
		var lim unix.Rlimit
		if err := unix.Prlimit(pid, r.res, nil, &lim); err == nil {
			*r.dst = mm.RLimit{Cur: lim.Cur, Max: lim.Max}
		}
	}
}

// sysSigaltstack notes a thread's alternate signal stack (so that signal
// frames can be mapped before delivery), and lets the host set it.
func (s *Sandbox) sysSigaltstack(t *task, a [6]uint64) sysResult {
	s.ensure(t, a[1], 24, true)
	if a[0] == 0 {
		return pass()
	}
	s.ensure(t, a[0], 24, false)
	w, ok := s.readWords(t, a[0], 3)
	if !ok {
		return pass()
	}
	const ssDisable = 2
	sp, flags, size := w[0], uint32(w[1]), w[2]
	switch {
	case flags&ssDisable != 0:
		t.altStack = hostarch.AddrRange{}
	case size >= 2048 && size <= 1<<30 && sp+size > sp:
		t.altStack = hostarch.AddrRange{Start: hostarch.Addr(sp), End: hostarch.Addr(sp + size)}
	}
	return pass()
}

// sysPrctl serves prctl(PR_SET_MDWE) and prctl(PR_GET_MDWE), the options
// the filter stops: memory-deny-write-execute is the memory manager's state,
// which its mmap and mprotect consult. The host process never gets it (it
// would refuse vmspace's own host mappings of executable pages).
func (s *Sandbox) sysPrctl(t *task, a [6]uint64) sysResult {
	m := t.p.mm
	if m == nil {
		return pass()
	}
	switch int32(a[0]) {
	case unix.PR_SET_MDWE:
		return retFrom(m.SetMDWE(a[1], a[2], a[3], a[4]))
	case unix.PR_GET_MDWE:
		b, err := m.GetMDWE(a[1], a[2], a[3], a[4])
		if err != nil {
			return retErr(errno(err))
		}
		return ret(uintptr(b))
	}
	return pass()
}

// sysCreds serves capset and the setuid family, which may change the
// thread's effective capabilities: the host makes the call, then the
// memory manager takes the capabilities that its checks consult
// (CAP_IPC_LOCK for memory locks, CAP_SYS_RAWIO for mappings below
// vm.mmap_min_addr) from the thread's status.
func (s *Sandbox) sysCreds(t *task, nr int, a [6]uint64) sysResult {
	if nr == unix.SYS_CAPSET {
		// The header (which the kernel rewrites on a bad version) and
		// the two data structures.
		s.ensure(t, a[0], 8, true)
		s.ensure(t, a[1], 24, false)
	}
	r, err := s.inject(t, uintptr(nr), uintptr(a[0]), uintptr(a[1]), uintptr(a[2]))
	if err != nil {
		return sysResult{act: actDone}
	}
	if _, bad := errnoOf(r); !bad {
		s.syncCaps(t)
	}
	return ret(r)
}

// syncCaps copies task t's effective capabilities into its process's
// memory manager. Capabilities are per thread in Linux; the manager has one
// set for the process, the last one a thread of it changed (or exec set).
func (s *Sandbox) syncCaps(t *task) {
	m := t.p.mm
	if m == nil {
		return
	}
	caps, ok := effectiveCaps(fmt.Sprintf("/proc/%d/task/%d/status", t.p.pid, t.tid))
	if !ok {
		return
	}
	l := m.Limits()
	setCaps(&l, caps)
	m.SetLimits(l)
}
