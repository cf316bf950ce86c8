package sandbox

import (
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// traceCall writes one strace-like line for a served memory system call.
func (s *Sandbox) traceCall(t *task, nr int, a [6]uint64, res sysResult) {
	fmt.Fprintf(s.opts.Trace, "[pid %d] %s = %s\n", t.tid, formatCall(nr, a), formatResult(nr, res))
}

// formatResult formats a result like strace: an errno with its name, an
// address in hex.
func formatResult(nr int, res sysResult) string {
	if res.act != actReturn && res.act != actBrkTail {
		return "?"
	}
	if e, bad := errnoOf(res.val); bad {
		return "-1 " + errName(e)
	}
	switch nr {
	case unix.SYS_MMAP, unix.SYS_MREMAP, unix.SYS_BRK, unix.SYS_SHMAT:
		return fmt.Sprintf("%#x", uint64(res.val))
	}
	return fmt.Sprintf("%d", int64(res.val))
}

// sysNames are the names of the memory system calls.
var sysNames = map[int]string{
	unix.SYS_MMAP: "mmap", unix.SYS_MUNMAP: "munmap", unix.SYS_MPROTECT: "mprotect",
	unix.SYS_PKEY_MPROTECT: "pkey_mprotect", unix.SYS_BRK: "brk", unix.SYS_MREMAP: "mremap",
	unix.SYS_MADVISE: "madvise", unix.SYS_MLOCK: "mlock", unix.SYS_MUNLOCK: "munlock",
	unix.SYS_MLOCK2: "mlock2", unix.SYS_MLOCKALL: "mlockall", unix.SYS_MUNLOCKALL: "munlockall",
	unix.SYS_MSYNC: "msync", unix.SYS_MINCORE: "mincore", unix.SYS_MSEAL: "mseal",
	unix.SYS_REMAP_FILE_PAGES: "remap_file_pages", unix.SYS_MAP_SHADOW_STACK: "map_shadow_stack",
	unix.SYS_SHMGET: "shmget", unix.SYS_SHMAT: "shmat", unix.SYS_SHMDT: "shmdt", unix.SYS_SHMCTL: "shmctl",
	unix.SYS_IO_SETUP: "io_setup", unix.SYS_IO_DESTROY: "io_destroy", unix.SYS_IO_SUBMIT: "io_submit",
	unix.SYS_IO_CANCEL: "io_cancel", unix.SYS_IO_GETEVENTS: "io_getevents", unix.SYS_IO_PGETEVENTS: "io_pgetevents",
}

// formatCall formats a memory system call and its arguments.
func formatCall(nr int, a [6]uint64) string {
	name := sysNames[nr]
	if name == "" {
		name = fmt.Sprintf("syscall_%d", nr)
	}
	hex := func(v uint64) string {
		if v == 0 {
			return "NULL"
		}
		return fmt.Sprintf("%#x", v)
	}
	var args []string
	switch nr {
	case unix.SYS_MMAP:
		off := "0"
		if a[5] != 0 {
			off = fmt.Sprintf("%#x", a[5])
		}
		args = []string{hex(a[0]), fmt.Sprint(a[1]), protString(a[2]), mapFlagsString(a[3]), fmt.Sprint(int32(a[4])), off}
	case unix.SYS_MPROTECT:
		args = []string{hex(a[0]), fmt.Sprint(a[1]), protString(a[2])}
	case unix.SYS_PKEY_MPROTECT:
		args = []string{hex(a[0]), fmt.Sprint(a[1]), protString(a[2]), fmt.Sprint(int32(a[3]))}
	case unix.SYS_MUNMAP, unix.SYS_MLOCK, unix.SYS_MUNLOCK:
		args = []string{hex(a[0]), fmt.Sprint(a[1])}
	case unix.SYS_BRK:
		args = []string{hex(a[0])}
	case unix.SYS_MREMAP:
		args = []string{hex(a[0]), fmt.Sprint(a[1]), fmt.Sprint(a[2]), fmt.Sprintf("%#x", a[3])}
		if a[3]&unix.MREMAP_FIXED != 0 || a[3]&4 != 0 {
			args = append(args, hex(a[4]))
		}
	case unix.SYS_MADVISE:
		args = []string{hex(a[0]), fmt.Sprint(a[1]), adviceString(int(int32(a[2])))}
	case unix.SYS_MSYNC, unix.SYS_MLOCK2, unix.SYS_MSEAL:
		args = []string{hex(a[0]), fmt.Sprint(a[1]), fmt.Sprintf("%#x", a[2])}
	case unix.SYS_MINCORE:
		args = []string{hex(a[0]), fmt.Sprint(a[1]), hex(a[2])}
	case unix.SYS_MLOCKALL:
		args = []string{fmt.Sprintf("%#x", a[0])}
	case unix.SYS_MUNLOCKALL:
	case unix.SYS_SHMGET:
		args = []string{fmt.Sprintf("%#x", uint32(a[0])), fmt.Sprint(a[1]), fmt.Sprintf("%#o", a[2])}
	case unix.SYS_SHMAT:
		args = []string{fmt.Sprint(int32(a[0])), hex(a[1]), fmt.Sprintf("%#o", a[2])}
	case unix.SYS_SHMDT:
		args = []string{hex(a[0])}
	case unix.SYS_SHMCTL:
		args = []string{fmt.Sprint(int32(a[0])), fmt.Sprint(int32(a[1])), hex(a[2])}
	case unix.SYS_IO_SETUP:
		args = []string{fmt.Sprint(int32(a[0])), hex(a[1])}
	case unix.SYS_IO_DESTROY:
		args = []string{hex(a[0])}
	default:
		for _, v := range a[:3] {
			args = append(args, hex(v))
		}
	}
	return name + "(" + strings.Join(args, ", ") + ")"
}

func protString(p uint64) string {
	if p == 0 {
		return "PROT_NONE"
	}
	var f []string
	for _, b := range []struct {
		bit  uint64
		name string
	}{{1, "PROT_READ"}, {2, "PROT_WRITE"}, {4, "PROT_EXEC"}, {8, "PROT_SEM"}, {0x01000000, "PROT_GROWSDOWN"}, {0x02000000, "PROT_GROWSUP"}} {
		if p&b.bit != 0 {
			f = append(f, b.name)
			p &^= b.bit
		}
	}
	if p != 0 {
		f = append(f, fmt.Sprintf("%#x", p))
	}
	return strings.Join(f, "|")
}

func mapFlagsString(fl uint64) string {
	var f []string
	switch fl & 0xf {
	case 1:
		f = append(f, "MAP_SHARED")
	case 2:
		f = append(f, "MAP_PRIVATE")
	case 3:
		f = append(f, "MAP_SHARED_VALIDATE")
	default:
		f = append(f, fmt.Sprintf("%#x", fl&0xf))
	}
	fl &^= 0xf
	for _, b := range []struct {
		bit  uint64
		name string
	}{{0x10, "MAP_FIXED"}, {0x20, "MAP_ANONYMOUS"}, {0x40, "MAP_32BIT"}, {0x100, "MAP_GROWSDOWN"},
		{0x800, "MAP_DENYWRITE"}, {0x1000, "MAP_EXECUTABLE"}, {0x2000, "MAP_LOCKED"}, {0x4000, "MAP_NORESERVE"},
		{0x8000, "MAP_POPULATE"}, {0x10000, "MAP_NONBLOCK"}, {0x20000, "MAP_STACK"}, {0x40000, "MAP_HUGETLB"},
		{0x80000, "MAP_SYNC"}, {0x100000, "MAP_FIXED_NOREPLACE"}} {
		if fl&b.bit != 0 {
			f = append(f, b.name)
			fl &^= b.bit
		}
	}
	if fl != 0 {
		f = append(f, fmt.Sprintf("%#x", fl))
	}
	return strings.Join(f, "|")
}

func adviceString(a int) string {
	names := map[int]string{
		0: "MADV_NORMAL", 1: "MADV_RANDOM", 2: "MADV_SEQUENTIAL", 3: "MADV_WILLNEED", 4: "MADV_DONTNEED",
		8: "MADV_FREE", 9: "MADV_REMOVE", 10: "MADV_DONTFORK", 11: "MADV_DOFORK", 12: "MADV_MERGEABLE",
		13: "MADV_UNMERGEABLE", 14: "MADV_HUGEPAGE", 15: "MADV_NOHUGEPAGE", 16: "MADV_DONTDUMP",
		17: "MADV_DODUMP", 18: "MADV_WIPEONFORK", 19: "MADV_KEEPONFORK", 20: "MADV_COLD", 21: "MADV_PAGEOUT",
		22: "MADV_POPULATE_READ", 23: "MADV_POPULATE_WRITE", 102: "MADV_GUARD_INSTALL", 103: "MADV_GUARD_REMOVE",
	}
	if n, ok := names[a]; ok {
		return n
	}
	return fmt.Sprint(a)
}

// debug enables a log of every stop on stderr (VMSPACE_DEBUG=1).
var debug = os.Getenv("VMSPACE_DEBUG") != ""

// stderr is where vmspace's own messages about the program go: the
// program's standard error.
func (s *Sandbox) stderr() io.Writer {
	if s.opts.Stderr != nil {
		return s.opts.Stderr
	}
	return os.Stderr
}
