package sandbox

import (
	"encoding/binary"
	"fmt"
	"sort"

	"github.com/vmspace/vmspace/platform/ptrace"
	"golang.org/x/sys/unix"
)

// The seccomp filter installed in every program process decides which
// system calls stop for the tracer (SECCOMP_RET_TRACE):
//
//   - the memory system calls, which the memory manager serves;
//   - exec system calls, and clone3 (refused with ENOSYS, so that the C
//     libraries use clone, whose flags the tracer sees at the clone event);
//   - system calls whose user buffers the host kernel reads or writes and
//     that commonly meet memory the manager has not mapped into the host
//     yet (read, getdents64, stat, wait4, ..., and write and pwrite64 of
//     more than smallWrite bytes), so that vmspace can map those buffers
//     before the host kernel touches them (see prevalidate.go);
//   - close, dup2, dup3 and close_range when they would close or replace
//     the descriptor of the memory file (memFD);
//   - prctl(PR_SET_MDWE) and prctl(PR_GET_MDWE): memory-deny-write-execute
//     is decided by the memory manager's mmap and mprotect;
//   - rseq, set_tid_address and set_robust_list, which tell where the
//     kernel will access a thread's memory by itself (kareas.go).
//
// Everything else is allowed without a stop. The filter looks only at the
// system call number and architecture for the allowed calls, so the
// kernel's seccomp action cache lets them through without running it.
// System calls made by the stub's own code page are always allowed.

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

// smallWrite is the largest write or pwrite64 that does not stop.
const smallWrite = 64 << 10

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
	// Processes.
	unix.SYS_EXECVE, unix.SYS_EXECVEAT, unix.SYS_CLONE3,
	// Limits that the manager follows.
	unix.SYS_SETRLIMIT, unix.SYS_PRLIMIT64,
	// Buffers.
	unix.SYS_READ, unix.SYS_PREAD64, unix.SYS_READV,
	unix.SYS_WRITEV, unix.SYS_PREADV, unix.SYS_PWRITEV, unix.SYS_PREADV2, unix.SYS_PWRITEV2,
	unix.SYS_SENDTO, unix.SYS_RECVFROM, unix.SYS_SENDMSG, unix.SYS_RECVMSG, unix.SYS_SENDMMSG,
	unix.SYS_RECVMMSG, unix.SYS_GETDENTS, unix.SYS_GETDENTS64, unix.SYS_GETRANDOM,
	unix.SYS_STAT, unix.SYS_FSTAT, unix.SYS_LSTAT, unix.SYS_NEWFSTATAT, unix.SYS_STATX,
	unix.SYS_WAIT4, unix.SYS_WAITID, unix.SYS_PIPE, unix.SYS_PIPE2, unix.SYS_SOCKETPAIR,
	unix.SYS_READLINK, unix.SYS_READLINKAT, unix.SYS_GETCWD, unix.SYS_UNAME, unix.SYS_SYSINFO,
	unix.SYS_GETRUSAGE, unix.SYS_TIMES, unix.SYS_GETRLIMIT, unix.SYS_SCHED_GETAFFINITY,
	unix.SYS_GETGROUPS, unix.SYS_GETRESUID, unix.SYS_GETRESGID, unix.SYS_POLL, unix.SYS_PPOLL,
	unix.SYS_SELECT, unix.SYS_PSELECT6, unix.SYS_ACCEPT, unix.SYS_ACCEPT4, unix.SYS_GETSOCKNAME,
	unix.SYS_GETPEERNAME, unix.SYS_GETSOCKOPT, unix.SYS_PROCESS_VM_READV,
	unix.SYS_PROCESS_VM_WRITEV, unix.SYS_VMSPLICE, unix.SYS_MSGRCV, unix.SYS_MSGSND,
	unix.SYS_GETXATTR, unix.SYS_LGETXATTR, unix.SYS_FGETXATTR, unix.SYS_LISTXATTR,
	unix.SYS_LLISTXATTR, unix.SYS_FLISTXATTR, unix.SYS_FSTATFS, unix.SYS_STATFS,
	// Signal delivery: vmspace follows alternate signal stacks.
	unix.SYS_SIGALTSTACK,
	// Memory the kernel accesses on a thread's behalf (kareas.go).
	unix.SYS_RSEQ, unix.SYS_SET_TID_ADDRESS, unix.SYS_SET_ROBUST_LIST,
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
	// labels maps a label to an instruction index.
	labels map[string]int
}

func newBPF() *bpf { return &bpf{jumps: map[int][2]string{}, labels: map[string]int{}} }

func (b *bpf) label(l string) { b.labels[l] = len(b.ins) }

func (b *bpf) stmt(code uint16, k uint32) {
	b.ins = append(b.ins, unix.SockFilter{Code: code, K: k})
}

// jump emits a conditional jump (op: BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JSET)
// against k.
func (b *bpf) jump(op uint16, k uint32, t, f string) {
	b.jumps[len(b.ins)] = [2]string{t, f}
	b.ins = append(b.ins, unix.SockFilter{Code: unix.BPF_JMP | op | unix.BPF_K, K: k})
}

func (b *bpf) load(off uint32) { b.stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, off) }
func (b *bpf) ret(k uint32)    { b.stmt(unix.BPF_RET|unix.BPF_K, k) }

// finish resolves the jumps.
func (b *bpf) finish() ([]unix.SockFilter, error) {
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

// seccompFilter returns the filter program; memFD is the descriptor that
// close, dup2, dup3 and close_range must not take away silently.
func seccompFilter(memFD int) ([]unix.SockFilter, error) {
	const (
		retAllow  = unix.SECCOMP_RET_ALLOW
		retTrace  = unix.SECCOMP_RET_TRACE
		retENOSYS = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	)
	b := newBPF()
	b.load(sdArch)
	b.jump(unix.BPF_JEQ, unix.AUDIT_ARCH_X86_64, "", "enosys")
	b.load(sdNr)
	b.jump(unix.BPF_JGE, 0x40000000, "enosys", "") // x32
	nrs := append([]int(nil), trapped...)
	sort.Ints(nrs)
	for _, nr := range nrs {
		b.jump(unix.BPF_JEQ, uint32(nr), "stubcheck", "")
	}
	b.jump(unix.BPF_JEQ, unix.SYS_RT_SIGACTION, "sigaction", "")
	b.jump(unix.BPF_JEQ, unix.SYS_RT_SIGPROCMASK, "sigprocmask", "")
	b.jump(unix.BPF_JEQ, unix.SYS_WRITE, "write", "")
	b.jump(unix.BPF_JEQ, unix.SYS_PWRITE64, "write", "")
	b.jump(unix.BPF_JEQ, unix.SYS_CLOSE, "close", "")
	b.jump(unix.BPF_JEQ, unix.SYS_DUP2, "dup", "")
	b.jump(unix.BPF_JEQ, unix.SYS_DUP3, "dup", "")
	b.jump(unix.BPF_JEQ, unix.SYS_CLOSE_RANGE, "closerange", "")
	b.jump(unix.BPF_JEQ, unix.SYS_PRCTL, "prctl", "")
	b.ret(retAllow)

	b.label("enosys")
	b.ret(retENOSYS)

	// write and pwrite64: only large writes. The host kernel only reads
	// the buffer, which the program has almost always written (so it is
	// mapped); a large buffer is more likely to reach memory never
	// touched, and costs little to check compared to the copy.
	b.label("write")
	b.load(sdArg2 + 4)
	b.jump(unix.BPF_JEQ, 0, "", "stubcheck")
	b.load(sdArg2)
	b.jump(unix.BPF_JGT, smallWrite, "stubcheck", "allow")

	// rt_sigaction that installs an action, and rt_sigprocmask that may
	// block signals: vmspace keeps SIGSEGV from being blocked (see
	// signals.go).
	b.label("sigaction")
	b.load(sdArg1)
	b.jump(unix.BPF_JEQ, 0, "", "stubcheck")
	b.load(sdArg1 + 4)
	b.jump(unix.BPF_JEQ, 0, "allow", "stubcheck")
	b.label("sigprocmask")
	b.load(sdArg0)
	b.jump(unix.BPF_JEQ, unix.SIG_UNBLOCK, "allow", "")
	b.load(sdArg1)
	b.jump(unix.BPF_JEQ, 0, "", "stubcheck")
	b.load(sdArg1 + 4)
	b.jump(unix.BPF_JEQ, 0, "allow", "stubcheck")

	b.label("close")
	b.load(sdArg0)
	b.jump(unix.BPF_JEQ, uint32(memFD), "stubcheck", "allow")

	b.label("dup")
	b.load(sdArg1)
	b.jump(unix.BPF_JEQ, uint32(memFD), "stubcheck", "allow")

	b.label("closerange")
	b.load(sdArg0)
	b.jump(unix.BPF_JGT, uint32(memFD), "allow", "")
	b.load(sdArg1)
	b.jump(unix.BPF_JGE, uint32(memFD), "stubcheck", "allow")

	// prctl's MDWE options: the memory manager holds that state.
	b.label("prctl")
	b.load(sdArg0)
	b.jump(unix.BPF_JEQ, unix.PR_SET_MDWE, "stubcheck", "")
	b.jump(unix.BPF_JEQ, unix.PR_GET_MDWE, "stubcheck", "allow")

	// System calls made by the stub's code page are vmspace's own.
	b.label("stubcheck")
	b.load(sdIPHigh)
	b.jump(unix.BPF_JEQ, uint32(uint64(codeAddr)>>32), "", "trace")
	b.load(sdIPLow)
	b.jump(unix.BPF_JGE, uint32(uint64(codeAddr)&0xffffffff), "", "trace")
	b.jump(unix.BPF_JGE, uint32(uint64(ptrace.StubEnd)&0xffffffff), "trace", "allow")

	b.label("trace")
	b.ret(retTrace)
	b.label("allow")
	b.ret(retAllow)
	return b.finish()
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
