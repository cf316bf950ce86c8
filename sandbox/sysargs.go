package sandbox

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The arguments of every x86-64 system call that the host kernel runs for
// the program, as far as vmspace needs to know them: which are descriptors
// (the memory file's must look closed to the program), and which point to
// memory the kernel reads or writes (which must be mapped in the host
// exactly as the memory manager holds it, see prevalidate.go). This one
// table drives both the seccomp filter (seccomp.go: a call stops only if
// one of its arguments needs it) and the prevalidation of its buffers.
//
// A spec lists the arguments in order, separated by spaces (missing ones
// are plain values):
//
//   - a plain value
//     fd        a descriptor of the caller
//     nfd       the new descriptor of dup2/dup3 (the memory file's number
//     makes vmspace move the memory file away)
//     dfd       the directory descriptor of the next path argument
//     path      a NUL-terminated string the kernel reads (a path or a name)
//     iS oS ioS a buffer of size S that the kernel reads (i), writes (o) or
//     both (io); S is a number of bytes, @K the value of argument
//     K, @K*M that times M, @K+M that plus M, bits@K a bitmap of
//     argument K bits, or &K the socklen_t that argument K points to
//     rdS       like oS, capped by what a read from the descriptor in
//     argument 0 can return (see readCap)
//     ioviN iovoN iovioN
//     an iovec array of argument N entries whose buffers the
//     kernel reads, writes, or either
//     iovrdN    like iovoN, capped like rd
//     msgi msgo a struct msghdr for sendmsg (read) or recvmsg (written)
//     mmsgiN mmsgoN
//     an array of argument N struct mmsghdr
//     fdsetN    an fd_set of argument N bits, read and written
//     x         an argument whose meaning depends on another (ioctl and
//     fcntl commands, prctl options, futex operations, ...):
//     served by prevalidateSpecial, and stopped for as the filter
//     says (specialFilter)
//
// Calls that vmspace serves itself (memory calls, exec, ...) are listed in
// trapped (seccomp.go) and need no spec.
var sysSpecs = map[int]string{
	unix.SYS_READ:                    "fd rd@2",
	unix.SYS_WRITE:                   "fd i@2",
	unix.SYS_OPEN:                    "path",
	unix.SYS_CLOSE:                   "fd",
	unix.SYS_STAT:                    "path o144",
	unix.SYS_FSTAT:                   "fd o144",
	unix.SYS_LSTAT:                   "path o144",
	unix.SYS_POLL:                    "io@1*8",
	unix.SYS_LSEEK:                   "fd",
	unix.SYS_RT_SIGACTION:            "- i32 o32",
	unix.SYS_RT_SIGPROCMASK:          "- i@3 o@3",
	unix.SYS_IOCTL:                   "fd - x",
	unix.SYS_PREAD64:                 "fd rd@2",
	unix.SYS_PWRITE64:                "fd i@2",
	unix.SYS_READV:                   "fd iovrd2",
	unix.SYS_WRITEV:                  "fd iovi2",
	unix.SYS_ACCESS:                  "path",
	unix.SYS_PIPE:                    "o8",
	unix.SYS_SELECT:                  "- fdset0 fdset0 fdset0 io16",
	unix.SYS_DUP:                     "fd",
	unix.SYS_DUP2:                    "fd nfd",
	unix.SYS_NANOSLEEP:               "i16 o16",
	unix.SYS_GETITIMER:               "- o32",
	unix.SYS_SETITIMER:               "- i32 o32",
	unix.SYS_SENDFILE:                "fd fd io8",
	unix.SYS_CONNECT:                 "fd i@2",
	unix.SYS_ACCEPT:                  "fd o&2 io4",
	unix.SYS_SENDTO:                  "fd i@2 - - i@5",
	unix.SYS_RECVFROM:                "fd rd@2 - - o&5 io4",
	unix.SYS_SENDMSG:                 "fd msgi",
	unix.SYS_RECVMSG:                 "fd msgo",
	unix.SYS_SHUTDOWN:                "fd",
	unix.SYS_BIND:                    "fd i@2",
	unix.SYS_LISTEN:                  "fd",
	unix.SYS_GETSOCKNAME:             "fd o&2 io4",
	unix.SYS_GETPEERNAME:             "fd o&2 io4",
	unix.SYS_SOCKETPAIR:              "- - - o8",
	unix.SYS_SETSOCKOPT:              "fd - - i@4",
	unix.SYS_GETSOCKOPT:              "fd - - o&4 io4",
	unix.SYS_CLONE:                   "- - o4 o4",
	unix.SYS_WAIT4:                   "- o4 - o144",
	unix.SYS_UNAME:                   "o390",
	unix.SYS_SEMOP:                   "- i@2*6",
	unix.SYS_SEMCTL:                  "- - - x",
	unix.SYS_MSGSND:                  "- i@2+8",
	unix.SYS_MSGRCV:                  "- o@2+8",
	unix.SYS_MSGCTL:                  "- - x",
	unix.SYS_FCNTL:                   "fd - x",
	unix.SYS_FLOCK:                   "fd",
	unix.SYS_FSYNC:                   "fd",
	unix.SYS_FDATASYNC:               "fd",
	unix.SYS_TRUNCATE:                "path",
	unix.SYS_FTRUNCATE:               "fd",
	unix.SYS_GETDENTS:                "fd o@2",
	unix.SYS_GETCWD:                  "o@1",
	unix.SYS_CHDIR:                   "path",
	unix.SYS_FCHDIR:                  "fd",
	unix.SYS_RENAME:                  "path path",
	unix.SYS_MKDIR:                   "path",
	unix.SYS_RMDIR:                   "path",
	unix.SYS_CREAT:                   "path",
	unix.SYS_LINK:                    "path path",
	unix.SYS_UNLINK:                  "path",
	unix.SYS_SYMLINK:                 "path path",
	unix.SYS_READLINK:                "path o@2",
	unix.SYS_CHMOD:                   "path",
	unix.SYS_FCHMOD:                  "fd",
	unix.SYS_CHOWN:                   "path",
	unix.SYS_FCHOWN:                  "fd",
	unix.SYS_LCHOWN:                  "path",
	unix.SYS_GETTIMEOFDAY:            "o16 o8",
	unix.SYS_GETRLIMIT:               "- o16",
	unix.SYS_GETRUSAGE:               "- o144",
	unix.SYS_SYSINFO:                 "o112",
	unix.SYS_TIMES:                   "o32",
	unix.SYS_SYSLOG:                  "- o@2",
	unix.SYS_GETGROUPS:               "- o@0*4",
	unix.SYS_SETGROUPS:               "- i@0*4",
	unix.SYS_GETRESUID:               "o4 o4 o4",
	unix.SYS_GETRESGID:               "o4 o4 o4",
	unix.SYS_CAPGET:                  "io8 o24",
	unix.SYS_CAPSET:                  "i8 i24",
	unix.SYS_RT_SIGPENDING:           "o@1",
	unix.SYS_RT_SIGTIMEDWAIT:         "i@3 o128 i16",
	unix.SYS_RT_SIGQUEUEINFO:         "- - i128",
	unix.SYS_RT_SIGSUSPEND:           "i@1",
	unix.SYS_UTIME:                   "path i16",
	unix.SYS_MKNOD:                   "path",
	unix.SYS_USELIB:                  "path",
	unix.SYS_USTAT:                   "- o32",
	unix.SYS_STATFS:                  "path o120",
	unix.SYS_FSTATFS:                 "fd o120",
	unix.SYS_SCHED_SETPARAM:          "- i4",
	unix.SYS_SCHED_GETPARAM:          "- o4",
	unix.SYS_SCHED_SETSCHEDULER:      "- - i4",
	unix.SYS_SCHED_RR_GET_INTERVAL:   "- o16",
	unix.SYS_MODIFY_LDT:              "- io@2",
	unix.SYS_PIVOT_ROOT:              "path path",
	unix.SYS_PRCTL:                   "x x x x x",
	unix.SYS_ARCH_PRCTL:              "- x",
	unix.SYS_ADJTIMEX:                "io208",
	unix.SYS_CHROOT:                  "path",
	unix.SYS_ACCT:                    "path",
	unix.SYS_SETTIMEOFDAY:            "i16 i8",
	unix.SYS_MOUNT:                   "path path path",
	unix.SYS_UMOUNT2:                 "path",
	unix.SYS_SWAPON:                  "path",
	unix.SYS_SWAPOFF:                 "path",
	unix.SYS_SETHOSTNAME:             "i@1",
	unix.SYS_SETDOMAINNAME:           "i@1",
	unix.SYS_INIT_MODULE:             "i@1 - path",
	unix.SYS_DELETE_MODULE:           "path",
	unix.SYS_QUOTACTL:                "- path",
	unix.SYS_READAHEAD:               "fd",
	unix.SYS_SETXATTR:                "path path i@3",
	unix.SYS_LSETXATTR:               "path path i@3",
	unix.SYS_FSETXATTR:               "fd path i@3",
	unix.SYS_GETXATTR:                "path path o@3",
	unix.SYS_LGETXATTR:               "path path o@3",
	unix.SYS_FGETXATTR:               "fd path o@3",
	unix.SYS_LISTXATTR:               "path o@2",
	unix.SYS_LLISTXATTR:              "path o@2",
	unix.SYS_FLISTXATTR:              "fd o@2",
	unix.SYS_REMOVEXATTR:             "path path",
	unix.SYS_LREMOVEXATTR:            "path path",
	unix.SYS_FREMOVEXATTR:            "fd path",
	unix.SYS_TIME:                    "o8",
	unix.SYS_FUTEX:                   "x x - x x",
	unix.SYS_SCHED_SETAFFINITY:       "- - i@1",
	unix.SYS_SCHED_GETAFFINITY:       "- - o@1",
	unix.SYS_SET_THREAD_AREA:         "io16",
	unix.SYS_GET_THREAD_AREA:         "io16",
	unix.SYS_LOOKUP_DCOOKIE:          "- o@2",
	unix.SYS_GETDENTS64:              "fd o@2",
	unix.SYS_SET_TID_ADDRESS:         "o4",
	unix.SYS_SEMTIMEDOP:              "- i@2*6 i16",
	unix.SYS_FADVISE64:               "fd",
	unix.SYS_TIMER_CREATE:            "- i64 o4",
	unix.SYS_TIMER_SETTIME:           "- - i32 o32",
	unix.SYS_TIMER_GETTIME:           "- o32",
	unix.SYS_CLOCK_SETTIME:           "- i16",
	unix.SYS_CLOCK_GETTIME:           "- o16",
	unix.SYS_CLOCK_GETRES:            "- o16",
	unix.SYS_CLOCK_NANOSLEEP:         "- - i16 o16",
	unix.SYS_EPOLL_WAIT:              "fd o@2*12",
	unix.SYS_EPOLL_CTL:               "fd - fd i12",
	unix.SYS_UTIMES:                  "path i32",
	unix.SYS_MBIND:                   "- - - ibits@4",
	unix.SYS_SET_MEMPOLICY:           "- ibits@2",
	unix.SYS_GET_MEMPOLICY:           "o4 obits@2",
	unix.SYS_MQ_OPEN:                 "path - - i64",
	unix.SYS_MQ_UNLINK:               "path",
	unix.SYS_MQ_TIMEDSEND:            "fd i@2 - i16",
	unix.SYS_MQ_TIMEDRECEIVE:         "fd o@2 o4 i16",
	unix.SYS_MQ_NOTIFY:               "fd i64",
	unix.SYS_MQ_GETSETATTR:           "fd i64 o64",
	unix.SYS_WAITID:                  "- - o128 - o144",
	unix.SYS_ADD_KEY:                 "path path i@3",
	unix.SYS_REQUEST_KEY:             "path path path",
	unix.SYS_INOTIFY_ADD_WATCH:       "fd path",
	unix.SYS_INOTIFY_RM_WATCH:        "fd",
	unix.SYS_MIGRATE_PAGES:           "- - ibits@1 ibits@1",
	unix.SYS_OPENAT:                  "dfd path",
	unix.SYS_MKDIRAT:                 "dfd path",
	unix.SYS_MKNODAT:                 "dfd path",
	unix.SYS_FCHOWNAT:                "dfd path",
	unix.SYS_FUTIMESAT:               "dfd path i32",
	unix.SYS_NEWFSTATAT:              "dfd path o144",
	unix.SYS_UNLINKAT:                "dfd path",
	unix.SYS_RENAMEAT:                "dfd path dfd path",
	unix.SYS_LINKAT:                  "dfd path dfd path",
	unix.SYS_SYMLINKAT:               "path dfd path",
	unix.SYS_READLINKAT:              "dfd path o@3",
	unix.SYS_FCHMODAT:                "dfd path",
	unix.SYS_FACCESSAT:               "dfd path",
	unix.SYS_PSELECT6:                "- fdset0 fdset0 fdset0 i16 i16",
	unix.SYS_PPOLL:                   "io@1*8 - i16 i@4",
	unix.SYS_SET_ROBUST_LIST:         "i24",
	unix.SYS_GET_ROBUST_LIST:         "- o8 o8",
	unix.SYS_SPLICE:                  "fd io8 fd io8",
	unix.SYS_TEE:                     "fd fd",
	unix.SYS_SYNC_FILE_RANGE:         "fd",
	unix.SYS_VMSPLICE:                "fd iovio2",
	unix.SYS_MOVE_PAGES:              "- - i@1*8 i@1*4 o@1*4",
	unix.SYS_UTIMENSAT:               "dfd path i32",
	unix.SYS_EPOLL_PWAIT:             "fd o@2*12 - - i@5",
	unix.SYS_SIGNALFD:                "fd i@2",
	unix.SYS_FALLOCATE:               "fd",
	unix.SYS_TIMERFD_SETTIME:         "fd - i32 o32",
	unix.SYS_TIMERFD_GETTIME:         "fd o32",
	unix.SYS_ACCEPT4:                 "fd o&2 io4",
	unix.SYS_SIGNALFD4:               "fd i@2",
	unix.SYS_DUP3:                    "fd nfd",
	unix.SYS_PIPE2:                   "o8",
	unix.SYS_PREADV:                  "fd iovrd2",
	unix.SYS_PWRITEV:                 "fd iovi2",
	unix.SYS_RT_TGSIGQUEUEINFO:       "- - - i128",
	unix.SYS_PERF_EVENT_OPEN:         "i128 - - fd",
	unix.SYS_RECVMMSG:                "fd mmsgo2 - - i16",
	unix.SYS_FANOTIFY_MARK:           "fd - - dfd path",
	unix.SYS_NAME_TO_HANDLE_AT:       "dfd path io8 o4",
	unix.SYS_OPEN_BY_HANDLE_AT:       "fd i8",
	unix.SYS_CLOCK_ADJTIME:           "- io208",
	unix.SYS_SYNCFS:                  "fd",
	unix.SYS_SENDMMSG:                "fd mmsgi2",
	unix.SYS_SETNS:                   "fd",
	unix.SYS_GETCPU:                  "o4 o4",
	unix.SYS_PROCESS_VM_READV:        "- iovo2 - x",
	unix.SYS_PROCESS_VM_WRITEV:       "- iovi2 - x",
	unix.SYS_FINIT_MODULE:            "fd path",
	unix.SYS_SCHED_SETATTR:           "- i56",
	unix.SYS_SCHED_GETATTR:           "- o@2",
	unix.SYS_RENAMEAT2:               "dfd path dfd path",
	unix.SYS_SECCOMP:                 "- - i16",
	unix.SYS_GETRANDOM:               "o@1",
	unix.SYS_MEMFD_CREATE:            "path",
	unix.SYS_KEXEC_FILE_LOAD:         "fd fd - path",
	unix.SYS_BPF:                     "- io@2",
	unix.SYS_COPY_FILE_RANGE:         "fd io8 fd io8",
	unix.SYS_PREADV2:                 "fd iovrd2",
	unix.SYS_PWRITEV2:                "fd iovi2",
	unix.SYS_STATX:                   "dfd path - - o256",
	unix.SYS_RSEQ:                    "io@1",
	unix.SYS_PIDFD_SEND_SIGNAL:       "fd - i128",
	unix.SYS_IO_URING_SETUP:          "- io120",
	unix.SYS_IO_URING_ENTER:          "fd - - - i@5",
	unix.SYS_IO_URING_REGISTER:       "fd",
	unix.SYS_OPEN_TREE:               "dfd path",
	unix.SYS_MOVE_MOUNT:              "dfd path dfd path",
	unix.SYS_FSOPEN:                  "path",
	unix.SYS_FSCONFIG:                "fd - path",
	unix.SYS_FSMOUNT:                 "fd",
	unix.SYS_FSPICK:                  "dfd path",
	unix.SYS_OPENAT2:                 "dfd path i@3",
	unix.SYS_PIDFD_GETFD:             "fd fd",
	unix.SYS_FACCESSAT2:              "dfd path",
	unix.SYS_PROCESS_MADVISE:         "fd i@2*16",
	unix.SYS_EPOLL_PWAIT2:            "fd o@2*12 - i16 i@5",
	unix.SYS_MOUNT_SETATTR:           "dfd path - i@4",
	unix.SYS_QUOTACTL_FD:             "fd",
	unix.SYS_LANDLOCK_CREATE_RULESET: "i@1",
	unix.SYS_LANDLOCK_ADD_RULE:       "fd - i16",
	unix.SYS_LANDLOCK_RESTRICT_SELF:  "fd",
	unix.SYS_PROCESS_MRELEASE:        "fd",
	unix.SYS_FUTEX_WAITV:             "i@1*24 - i16",
	unix.SYS_CACHESTAT:               "fd i16 o32",
	unix.SYS_FCHMODAT2:               "dfd path",
	unix.SYS_FUTEX_WAKE:              "i4",
	unix.SYS_FUTEX_WAIT:              "i4 - - - i16",
	unix.SYS_FUTEX_REQUEUE:           "i48",
	unix.SYS_STATMOUNT:               "i24 o@2",
	unix.SYS_LISTMOUNT:               "i24 o@2*8",
	unix.SYS_LSM_GET_SELF_ATTR:       "- o&2 io4",
	unix.SYS_LSM_SET_SELF_ATTR:       "- i@2",
	unix.SYS_LSM_LIST_MODULES:        "o&1 io4",
	unix.SYS_SETXATTRAT:              "dfd path - i32",
	unix.SYS_GETXATTRAT:              "dfd path - io32",
	unix.SYS_LISTXATTRAT:             "dfd path - o@4",
	unix.SYS_REMOVEXATTRAT:           "dfd path - path",
	unix.SYS_OPEN_TREE_ATTR:          "dfd path - i@4",
	unix.SYS_FILE_GETATTR:            "dfd path o@3",
	unix.SYS_FILE_SETATTR:            "dfd path i@3",
}

// argKind is what one argument is.
type argKind uint8

const (
	argValue argKind = iota
	argFD
	argNewFD
	argDirFD
	argPath
	argBuf
	argRead  // rd: an output buffer capped by readCap
	argIOV   // iovec array
	argIOVRd // iovec array capped by readCap
	argMsg   // struct msghdr
	argMMsg  // struct mmsghdr array
	argFDSet // fd_set
	argSpecial
)

// sizeRule says how large a buffer is.
type sizeRule struct {
	// fixed is the size in bytes when arg < 0.
	fixed uint64
	// arg is the argument holding the size (or count), or -1.
	arg int8
	// mul and add turn the argument into bytes: arg*mul + add.
	mul, add uint64
	// bits: the argument is a number of bits (rounded up to longs).
	bits bool
	// lenPtr: the argument points to a socklen_t holding the size.
	lenPtr bool
}

// argSpec is the spec of one argument.
type argSpec struct {
	kind argKind
	// in and out say whether the kernel reads or writes the memory.
	in, out bool
	size    sizeRule
}

// pointer reports whether the argument points to program memory.
func (a argSpec) pointer() bool {
	return a.kind >= argPath && a.kind != argSpecial
}

// sysSpec is the parsed spec of one system call.
type sysSpec [6]argSpec

// specs are the parsed sysSpecs by system call number.
var specs = mustParseSpecs()

func mustParseSpecs() map[int]sysSpec {
	out := make(map[int]sysSpec, len(sysSpecs))
	for nr, s := range sysSpecs {
		sp, err := parseSpec(s)
		if err != nil {
			panic(fmt.Sprintf("sandbox: system call %d: %v", nr, err))
		}
		out[nr] = sp
	}
	return out
}

// parseSpec parses one spec string.
func parseSpec(s string) (sysSpec, error) {
	var sp sysSpec
	toks := strings.Fields(s)
	if len(toks) > 6 {
		return sp, fmt.Errorf("%d arguments", len(toks))
	}
	for i, tok := range toks {
		a, err := parseArg(tok)
		if err != nil {
			return sp, fmt.Errorf("argument %d %q: %w", i, tok, err)
		}
		sp[i] = a
	}
	return sp, nil
}

func parseArg(tok string) (argSpec, error) {
	switch tok {
	case "-":
		return argSpec{}, nil
	case "fd":
		return argSpec{kind: argFD}, nil
	case "nfd":
		return argSpec{kind: argNewFD}, nil
	case "dfd":
		return argSpec{kind: argDirFD}, nil
	case "path":
		return argSpec{kind: argPath, in: true}, nil
	case "x":
		return argSpec{kind: argSpecial}, nil
	case "msgi":
		return argSpec{kind: argMsg, in: true}, nil
	case "msgo":
		return argSpec{kind: argMsg, out: true}, nil
	}
	argNum := func(s string) (int8, error) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > 5 {
			return 0, fmt.Errorf("bad argument number %q", s)
		}
		return int8(n), nil
	}
	for _, p := range []struct {
		prefix string
		kind   argKind
		in     bool
		out    bool
	}{
		{"iovrd", argIOVRd, false, true}, {"iovio", argIOV, true, true}, {"iovi", argIOV, true, false},
		{"iovo", argIOV, false, true}, {"mmsgi", argMMsg, true, false}, {"mmsgo", argMMsg, false, true},
		{"fdset", argFDSet, true, true},
	} {
		if rest, ok := strings.CutPrefix(tok, p.prefix); ok {
			n, err := argNum(rest)
			if err != nil {
				return argSpec{}, err
			}
			return argSpec{kind: p.kind, in: p.in, out: p.out, size: sizeRule{arg: n}}, nil
		}
	}
	a := argSpec{kind: argBuf}
	var rest string
	switch {
	case strings.HasPrefix(tok, "rd"):
		a.kind, a.out, rest = argRead, true, tok[2:]
	case strings.HasPrefix(tok, "io"):
		a.in, a.out, rest = true, true, tok[2:]
	case strings.HasPrefix(tok, "i"):
		a.in, rest = true, tok[1:]
	case strings.HasPrefix(tok, "o"):
		a.out, rest = true, tok[1:]
	default:
		return a, fmt.Errorf("unknown kind")
	}
	r := sizeRule{arg: -1, mul: 1}
	switch {
	case strings.HasPrefix(rest, "bits@"):
		n, err := argNum(rest[5:])
		if err != nil {
			return a, err
		}
		r.arg, r.bits = n, true
	case strings.HasPrefix(rest, "&"):
		n, err := argNum(rest[1:])
		if err != nil {
			return a, err
		}
		r.arg, r.lenPtr = n, true
	case strings.HasPrefix(rest, "@"):
		rest = rest[1:]
		if i := strings.IndexAny(rest, "*+"); i >= 0 {
			v, err := strconv.ParseUint(rest[i+1:], 10, 32)
			if err != nil {
				return a, err
			}
			if rest[i] == '*' {
				r.mul = v
			} else {
				r.add = v
			}
			rest = rest[:i]
		}
		n, err := argNum(rest)
		if err != nil {
			return a, err
		}
		r.arg = n
	default:
		v, err := strconv.ParseUint(rest, 10, 32)
		if err != nil || v == 0 {
			return a, fmt.Errorf("bad size %q", rest)
		}
		r.fixed = v
	}
	a.size = r
	return a, nil
}
