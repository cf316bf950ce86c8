package sandbox

import (
	"encoding/binary"
	"fmt"
	"sort"

	"github.com/vmspace/vmspace/hostarch"

	"github.com/vmspace/vmspace/platform/ptrace"
	"golang.org/x/sys/unix"
)

// The seccomp filter installed in every program process decides which
// system calls stop for the tracer (SECCOMP_RET_TRACE):
//
//   - the memory system calls, which the memory manager serves, exec
//     system calls, clone3 (refused with ENOSYS, so that the C libraries
//     use clone, whose flags the tracer sees at the clone event), the
//     limits and privileges the manager follows (setrlimit, prlimit64,
//     capset, setuid, setreuid, setresuid), sigaltstack, ftruncate and
//     fallocate's COLLAPSE_RANGE and INSERT_RANGE (which drop private
//     copies of mapped file pages: truncate.go) (trapped);
//   - every call that uses the memory file's descriptor (memFD), which
//     vmspace refuses as if it were closed;
//   - every call with a pointer argument that is not NULL (sysSpecs in
//     sysargs.go), so that vmspace can map its buffers in the host
//     exactly as the memory manager holds them before the host kernel
//     touches them (see prevalidate.go), except the futex operations that
//     do not touch memory;
//   - prctl(PR_SET_MDWE) and prctl(PR_GET_MDWE): memory-deny-write-execute
//     is decided by the memory manager's mmap and mprotect;
//   - rseq, set_tid_address and set_robust_list, which tell where the
//     kernel will access a thread's memory by itself (kareas.go);
//   - wait4 and waitid, before which vmspace reaps the program's tasks
//     that ended still traced (process.go: reapExited).
//
// Everything else is allowed without a stop. System calls the filter does
// not look at (those without pointers or descriptors) are decided on the
// number alone, so the kernel's seccomp action cache lets them through
// without running the filter. The filter finds a system call's decision
// by a binary search of its number. System calls made by the stub's own
// code page are always allowed.

// Seccomp data offsets (struct seccomp_data).
const (
	sdNr     = 0
	sdArch   = 4
	sdIPLow  = 8
	sdIPHigh = 12
	sdArg0   = 16
	sdArg1   = 24
	sdArg2   = 32
)

// trapped lists the system calls that always stop (unless made by the
// stub's code).
var trapped = []int{
	// Memory.
	unix.SYS_MMAP, unix.SYS_MPROTECT, unix.SYS_MUNMAP, unix.SYS_BRK, unix.SYS_MREMAP,
	unix.SYS_MSYNC, unix.SYS_MINCORE, unix.SYS_MADVISE, unix.SYS_SHMGET, unix.SYS_SHMAT,
	unix.SYS_SHMCTL, unix.SYS_SHMDT, unix.SYS_MLOCK, unix.SYS_MUNLOCK, unix.SYS_MLOCKALL,
	unix.SYS_MUNLOCKALL, unix.SYS_MLOCK2, unix.SYS_REMAP_FILE_PAGES, unix.SYS_IO_SETUP,
	unix.SYS_IO_DESTROY, unix.SYS_IO_SUBMIT, unix.SYS_IO_CANCEL, unix.SYS_IO_GETEVENTS,
	unix.SYS_IO_PGETEVENTS, unix.SYS_PKEY_MPROTECT, unix.SYS_MSEAL, unix.SYS_MAP_SHADOW_STACK,
	// Another process's memory (procmadvise.go).
	unix.SYS_PROCESS_MRELEASE,
	// Processes.
	unix.SYS_EXECVE, unix.SYS_EXECVEAT, unix.SYS_CLONE3,
	// Limits and privileges that the manager follows.
	unix.SYS_SETRLIMIT, unix.SYS_PRLIMIT64, unix.SYS_CAPSET, unix.SYS_SETUID, unix.SYS_SETREUID,
	unix.SYS_SETRESUID,
	// Truncation of files the program may have mapped (truncate.go).
	unix.SYS_FTRUNCATE,
	// Signal delivery: vmspace follows alternate signal stacks.
	unix.SYS_SIGALTSTACK,
	// Memory the kernel accesses on a thread's behalf (kareas.go).
	unix.SYS_RSEQ, unix.SYS_SET_TID_ADDRESS, unix.SYS_SET_ROBUST_LIST,
	// Waits: children that ended traced are reaped first (reapExited).
	unix.SYS_WAIT4, unix.SYS_WAITID,
	// userfaultfd contexts are the memory manager's (uffd.go).
	unix.SYS_USERFAULTFD,
}

// isTrapped reports whether nr is in trapped (for tests and tracing).
func isTrapped(nr int) bool {
	for _, t := range trapped {
		if t == nr {
			return true
		}
	}
	return false
}

// bpf is a classic BPF program under construction, with symbolic jumps.
type bpf struct {
	ins []unix.SockFilter
	// jumps records, per instruction index, the labels of its true and
	// false targets ("" = next instruction).
	jumps map[int][2]string
	// far records, per instruction index, the label of an
	// unconditional jump.
	far map[int]string
	// labels maps a label to an instruction index.
	labels map[string]int
}

func newBPF() *bpf {
	return &bpf{jumps: map[int][2]string{}, far: map[int]string{}, labels: map[string]int{}}
}

func (b *bpf) label(l string) {
	if _, dup := b.labels[l]; dup {
		panic("bpf: duplicate label " + l)
	}
	b.labels[l] = len(b.ins)
}

func (b *bpf) stmt(code uint16, k uint32) {
	b.ins = append(b.ins, unix.SockFilter{Code: code, K: k})
}

// jump emits a conditional jump (op: BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JSET)
// against k.
func (b *bpf) jump(op uint16, k uint32, t, f string) {
	b.jumps[len(b.ins)] = [2]string{t, f}
	b.ins = append(b.ins, unix.SockFilter{Code: unix.BPF_JMP | op | unix.BPF_K, K: k})
}

// jumpRel emits a conditional jump with numeric offsets.
func (b *bpf) jumpRel(op uint16, k uint32, jt, jf uint8) {
	b.ins = append(b.ins, unix.SockFilter{Code: unix.BPF_JMP | op | unix.BPF_K, K: k, Jt: jt, Jf: jf})
}

// ja emits an unconditional jump to a label (any distance).
func (b *bpf) ja(l string) {
	b.far[len(b.ins)] = l
	b.ins = append(b.ins, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JA})
}

func (b *bpf) load(off uint32) { b.stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, off) }
func (b *bpf) ret(k uint32)    { b.stmt(unix.BPF_RET|unix.BPF_K, k) }

// finish resolves the jumps.
func (b *bpf) finish() ([]unix.SockFilter, error) {
	if len(b.ins) > unix.BPF_MAXINSNS {
		return nil, fmt.Errorf("bpf: %d instructions", len(b.ins))
	}
	for i, l := range b.far {
		to, ok := b.labels[l]
		if !ok || to <= i {
			return nil, fmt.Errorf("bpf: bad jump to %q", l)
		}
		b.ins[i].K = uint32(to - i - 1)
	}
	for i, j := range b.jumps {
		for k, l := range j {
			if l == "" {
				continue
			}
			to, ok := b.labels[l]
			if !ok {
				return nil, fmt.Errorf("bpf: undefined label %q", l)
			}
			d := to - i - 1
			if d < 0 || d > 255 {
				return nil, fmt.Errorf("bpf: jump to %q out of range (%d)", l, d)
			}
			if k == 0 {
				b.ins[i].Jt = uint8(d)
			} else {
				b.ins[i].Jf = uint8(d)
			}
		}
	}
	return b.ins, nil
}

// Special filter decisions.
var (
	// fcntlPointerCmds are the fcntl commands whose third argument points
	// to memory: F_GETLK, F_SETLK, F_SETLKW, F_SETOWN_EX, F_GETOWN_EX,
	// F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW and the read/write hints.
	fcntlPointerCmds = []uint32{5, 6, 7, 15, 16, 36, 37, 38, 1035, 1036, 1037, 1038}
	// prctlPointerOptions are the prctl options with a pointer argument.
	prctlPointerOptions = []uint32{
		unix.PR_GET_PDEATHSIG, unix.PR_GET_UNALIGN, unix.PR_GET_FPEMU, unix.PR_GET_FPEXC,
		unix.PR_SET_NAME, unix.PR_GET_NAME, unix.PR_GET_ENDIAN, unix.PR_SET_SECCOMP,
		unix.PR_GET_TSC, unix.PR_SET_MM, unix.PR_GET_CHILD_SUBREAPER, unix.PR_GET_TID_ADDRESS,
		unix.PR_SET_SYSCALL_USER_DISPATCH, unix.PR_SET_VMA, 0x41555856, /* PR_GET_AUXV */
		// Not pointers, but served by vmspace: the memory manager
		// holds memory-deny-write-execute.
		unix.PR_SET_MDWE, unix.PR_GET_MDWE,
	}
	// archPrctlPointerCodes are the arch_prctl codes that write through
	// their argument: ARCH_GET_FS, ARCH_GET_GS, ARCH_GET_XCOMP_SUPP,
	// ARCH_GET_XCOMP_PERM, ARCH_GET_XCOMP_GUEST_PERM, ARCH_SHSTK_STATUS.
	archPrctlPointerCodes = []uint32{0x1003, 0x1004, 0x4001, 0x4002, 0x4022, 0x5005}
	// futexNoMemory are the futex operations that do not touch memory:
	// FUTEX_WAKE and FUTEX_WAKE_BITSET of private futexes.
	futexNoMemory = []uint32{futexWAKE | futexPrivate, futexWAKE_BITSET | futexPrivate}
)

// Futex operations (linux/futex.h).
const (
	futexWAIT            = 0
	futexWAKE            = 1
	futexREQUEUE         = 3
	futexCMP_REQUEUE     = 4
	futexWAKE_OP         = 5
	futexLOCK_PI         = 6
	futexUNLOCK_PI       = 7
	futexTRYLOCK_PI      = 8
	futexWAIT_BITSET     = 9
	futexWAKE_BITSET     = 10
	futexWAIT_REQUEUE_PI = 11
	futexCMP_REQUEUE_PI  = 12
	futexLOCK_PI2        = 13
	futexPrivate         = 128
	futexClockRealtime   = 256
)

// filterNrs returns the system calls the filter looks at, sorted.
func filterNrs() []int {
	set := make(map[int]bool, len(specs)+len(trapped))
	for _, nr := range trapped {
		set[nr] = true
	}
	for nr := range specs {
		set[nr] = true
	}
	set[unix.SYS_CLOSE_RANGE] = true
	out := make([]int, 0, len(set))
	for nr := range set {
		out = append(out, nr)
	}
	sort.Ints(out)
	return out
}

// seccompFilter returns the filter program; memFD is the descriptor of
// the memory file, which every call on it stops for (vmspace then refuses
// it as if the descriptor were closed).
func seccompFilter(memFD int) ([]unix.SockFilter, error) {
	const (
		retAllow  = unix.SECCOMP_RET_ALLOW
		retTrace  = unix.SECCOMP_RET_TRACE
		retENOSYS = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	)
	b := newBPF()
	b.load(sdArch)
	b.jumpRel(unix.BPF_JEQ, unix.AUDIT_ARCH_X86_64, 1, 0)
	b.ja("enosys")
	b.load(sdNr)
	b.jumpRel(unix.BPF_JGE, 0x40000000, 0, 1) // x32
	b.ja("enosys")
	nrs := filterNrs()
	b.search(nrs)
	b.ret(retAllow)

	b.label("enosys")
	b.ret(retENOSYS)

	for _, nr := range nrs {
		b.label(nrLabel(nr))
		b.block(nr, memFD)
	}

	// System calls made by the stub's code page are vmspace's own.
	b.label("stubcheck")
	b.load(sdIPHigh)
	b.inCodePage("", "trace", "allow")

	b.label("trace")
	b.ret(retTrace)
	b.label("allow")
	b.ret(retAllow)
	return b.finish()
}

// inCodePage emits, with the high word of the instruction pointer loaded:
// jump to in if the call comes from the stub's code page, else to out;
// other is where a high word other than the code page's goes ("": out).
func (b *bpf) inCodePage(other, out, in string) {
	if other == "" {
		other = out
	}
	b.jump(unix.BPF_JEQ, uint32(uint64(codeAddr)>>32), "", other)
	b.load(sdIPLow)
	b.jump(unix.BPF_JGE, uint32(uint64(codeAddr)&0xffffffff), "", out)
	b.jump(unix.BPF_JGE, uint32(uint64(ptrace.StubEnd)&0xffffffff), out, in)
}

func nrLabel(nr int) string { return fmt.Sprintf("nr%d", nr) }

// search emits a binary search of the system call number (in the
// accumulator) among nrs, jumping to each one's block; a number not among
// them falls through after the search.
func (b *bpf) search(nrs []int) {
	if len(nrs) <= 3 {
		for _, nr := range nrs {
			b.jumpRel(unix.BPF_JEQ, uint32(nr), 0, 1)
			b.ja(nrLabel(nr))
		}
		return
	}
	mid := len(nrs) / 2
	hi := fmt.Sprintf("ge%d", nrs[mid])
	b.jumpRel(unix.BPF_JGE, uint32(nrs[mid]), 0, 1)
	b.ja(hi)
	b.search(nrs[:mid])
	b.ja("fallthrough" + hi)
	b.label(hi)
	b.search(nrs[mid:])
	b.label("fallthrough" + hi)
}

// traceIfEq emits: if the 32-bit word at off equals k, stop (after the
// stub check).
func (b *bpf) traceIfEq(off, k uint32) {
	b.load(off)
	b.jumpRel(unix.BPF_JEQ, k, 0, 1)
	b.ja("stubcheck")
}

// traceIfNonZero emits: if argument i is not zero, stop.
func (b *bpf) traceIfNonZero(i int) {
	off := uint32(sdArg0 + 8*i)
	for _, o := range []uint32{off, off + 4} {
		b.load(o)
		b.jumpRel(unix.BPF_JEQ, 0, 1, 0)
		b.ja("stubcheck")
	}
}

// traceIfIn emits: if argument i's low word is one of ks, stop.
func (b *bpf) traceIfIn(i int, ks []uint32) {
	b.load(uint32(sdArg0 + 8*i))
	for _, k := range ks {
		b.jumpRel(unix.BPF_JEQ, k, 0, 1)
		b.ja("stubcheck")
	}
}

// block emits the decision for system call nr, which ends in a jump to
// "stubcheck" (stop) or "allow".
func (b *bpf) block(nr, memFD int) {
	if isTrapped(nr) {
		b.ja("stubcheck")
		return
	}
	sp := specs[nr]
	fd := uint32(memFD)
	// Any use of the memory file's descriptor stops: vmspace refuses it
	// (or, for dup2/dup3 onto it, moves the memory file away).
	for i, a := range sp {
		switch a.kind {
		case argFD, argNewFD, argDirFD:
			b.traceIfEq(uint32(sdArg0+8*i), fd)
		}
	}
	switch nr {
	case unix.SYS_CLOSE_RANGE:
		// close_range(lo, hi): stops if it covers memFD.
		b.load(sdArg0)
		b.jumpRel(unix.BPF_JGT, fd, 3, 0)
		b.load(sdArg1)
		b.jumpRel(unix.BPF_JGE, fd, 0, 1)
		b.ja("stubcheck")
		b.ja("allow")
		return
	case unix.SYS_FCNTL, unix.SYS_PRCTL, unix.SYS_ARCH_PRCTL:
		// The command says whether the argument is a pointer.
		cmds := map[int]struct {
			arg int
			ks  []uint32
		}{
			unix.SYS_FCNTL:      {1, fcntlPointerCmds},
			unix.SYS_PRCTL:      {0, prctlPointerOptions},
			unix.SYS_ARCH_PRCTL: {0, archPrctlPointerCodes},
		}[nr]
		b.traceIfIn(cmds.arg, cmds.ks)
		b.ja("allow")
		return
	case unix.SYS_IOCTL:
		// USERFAULTFD_IOC_NEW, whose argument is flags (uffd.go).
		b.traceIfIn(1, []uint32{uffdIocNew})
	case unix.SYS_LSEEK:
		// SEEK_END, SEEK_DATA and SEEK_HOLE, which /proc views
		// refuse (procview.go).
		b.traceIfIn(2, []uint32{unix.SEEK_END, unix.SEEK_DATA, unix.SEEK_HOLE})
	case unix.SYS_FALLOCATE:
		// Collapsing or inserting a range moves the file's contents
		// (truncate.go).
		b.traceIfIn(1, []uint32{fallocCollapseRange, fallocInsertRange})
	case unix.SYS_FUTEX:
		b.load(sdArg1)
		b.stmt(unix.BPF_ALU|unix.BPF_AND|unix.BPF_K, ^uint32(futexClockRealtime))
		for _, k := range futexNoMemory {
			b.jumpRel(unix.BPF_JEQ, k, 0, 1)
			b.ja("allow")
		}
	}
	for i, a := range sp {
		if a.pointer() || a.kind == argSpecial {
			b.traceIfNonZero(i)
		}
	}
	b.ja("allow")
}

// filterBytes encodes a filter as the kernel reads it.
func filterBytes(f []unix.SockFilter) []byte {
	out := make([]byte, 8*len(f))
	for i, in := range f {
		binary.LittleEndian.PutUint16(out[8*i:], in.Code)
		out[8*i+2] = in.Jt
		out[8*i+3] = in.Jf
		binary.LittleEndian.PutUint32(out[8*i+4:], in.K)
	}
	return out
}

// injectFilter installs filter f in t's process with flags (seccomp(2)'s
// SECCOMP_SET_MODE_FILTER, setting no_new_privs first if the host wants
// it) and returns the call's result (a descriptor with
// SECCOMP_FILTER_FLAG_NEW_LISTENER); a failure of the call is an error.
func (s *Sandbox) injectFilter(t *task, f []unix.SockFilter, flags uintptr) (uintptr, error) {
	prog := filterBytes(f)
	// struct sock_fprog and the program, in memory mapped for the
	// moment (a filter can be larger than the scratch page).
	size := pageUp(uint64(16 + len(prog)))
	r, err := s.inject(t, unix.SYS_MMAP, 0, uintptr(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uintptr(0), 0)
	if err != nil {
		return 0, err
	}
	if e, bad := errnoOf(r); bad {
		return 0, fmt.Errorf("mapping memory for the filter: %w", e)
	}
	at := r
	defer s.inject(t, unix.SYS_MUNMAP, at, uintptr(size))
	buf := make([]byte, 16+len(prog))
	binary.LittleEndian.PutUint16(buf, uint16(len(f)))
	binary.LittleEndian.PutUint64(buf[8:], uint64(at)+16)
	copy(buf[16:], prog)
	if err := s.writeMem(t.p.pid, hostarch.Addr(at), buf); err != nil {
		return 0, fmt.Errorf("writing the filter: %w", err)
	}
	install := func() (uintptr, error) {
		return s.inject(t, unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, at)
	}
	r, err = install()
	if err != nil {
		return 0, err
	}
	if e, bad := errnoOf(r); bad && e == unix.EACCES {
		// Without CAP_SYS_ADMIN, a filter needs no_new_privs.
		if _, err := s.inject(t, unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return 0, err
		}
		if r, err = install(); err != nil {
			return 0, err
		}
	}
	if e, bad := errnoOf(r); bad {
		return 0, e
	}
	return r, nil
}
