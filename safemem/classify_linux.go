package safemem

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"strconv"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// classify tells which signal an access (a store if write, else a load) to
// the host page containing addr raised. The Go runtime reports SIGSEGV and
// SIGBUS alike, so ask the kernel about the page now. transient is true if
// the kernel now finds the page accessible (its mapping changed since the
// fault); sig is then SIGSEGV. This runs only after a fault.
func classify(addr uintptr, write bool) (sig syscall.Signal, transient bool) {
	if testClassifyHook != nil {
		return testClassifyHook(addr, write)
	}
	if sig, transient, ok := classifyPopulate(addr, write); ok {
		return sig, transient
	}
	return classifyMaps(addr, write), false
}

// testClassifyHook, if set (only by tests, which do not run in parallel
// with other users of this package), replaces classify.
var testClassifyHook func(addr uintptr, write bool) (syscall.Signal, bool)

// populateProbe is a byte in a page that is surely mapped and readable, for
// populateSupported to try MADV_POPULATE_READ on.
var populateProbe byte

// populateSupported reports whether madvise(MADV_POPULATE_READ) works here
// (Linux 5.14 and later, and no seccomp filter refusing it).
var populateSupported = sync.OnceValue(func() bool {
	page := uintptr(unsafe.Pointer(&populateProbe)) &^ (pageSize - 1)
	_, _, e := unix.Syscall(unix.SYS_MADVISE, page, pageSize, unix.MADV_POPULATE_READ)
	return e == 0
})

// classifyPopulate classifies a fault by asking the kernel to fault the
// page in for the same access with madvise(MADV_POPULATE_READ or
// MADV_POPULATE_WRITE), which fails as the access did: ENOMEM for an
// unmapped address and EINVAL for one whose protection forbids the access
// (SIGSEGV), EFAULT or EHWPOISON where the access would raise SIGBUS. Faulting
// in a page that just faulted for the same access has no effect that the
// access would not have had. ok is false if the kernel cannot answer this
// way.
//
// A guard region (MADV_GUARD_INSTALL, Linux 6.13) is the one known case it
// gets wrong: accesses there raise SIGSEGV, but populating reports EFAULT,
// so such a fault is reported as SIGBUS.
func classifyPopulate(addr uintptr, write bool) (sig syscall.Signal, transient, ok bool) {
	if !populateSupported() {
		return 0, false, false
	}
	advice := uintptr(unix.MADV_POPULATE_READ)
	if write {
		advice = unix.MADV_POPULATE_WRITE
	}
	page := addr &^ (pageSize - 1)
	for range 8 {
		_, _, e := unix.Syscall(unix.SYS_MADVISE, page, pageSize, advice)
		switch e {
		case 0:
			return syscall.SIGSEGV, true, true
		case unix.EINTR, unix.EAGAIN:
			continue
		case unix.EFAULT, unix.EHWPOISON:
			return syscall.SIGBUS, false, true
		case unix.ENOMEM, unix.EINVAL:
			return syscall.SIGSEGV, false, true
		default:
			return 0, false, false
		}
	}
	return 0, false, false
}

// classifyMaps classifies a fault by finding addr's mapping in
// /proc/self/maps: an address inside a mapping that permits the access
// can only have faulted with SIGBUS (a file page past end-of-file, a
// hugetlb page that could not be allocated, a poisoned page); anything else
// is SIGSEGV. It cannot see a mapping change after the fault, nor guard
// regions (MADV_GUARD_INSTALL) or protection keys, which raise SIGSEGV
// inside a permitting mapping.
func classifyMaps(addr uintptr, write bool) syscall.Signal {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return syscall.SIGSEGV
	}
	defer f.Close()
	perms, ok := findMapping(f, uint64(addr))
	if !ok {
		return syscall.SIGSEGV
	}
	need := byte('r')
	i := 0
	if write {
		need, i = 'w', 1
	}
	if len(perms) > i && perms[i] == need {
		return syscall.SIGBUS
	}
	return syscall.SIGSEGV
}

// findMapping scans r, in the format of /proc/PID/maps, for the mapping
// containing addr and returns its permission field ("rw-p" and the like).
func findMapping(r io.Reader, addr uint64) (perms string, ok bool) {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if perms, ok := parseMapsLine(line, addr); ok {
				return perms, true
			}
		}
		if err == bufio.ErrBufferFull {
			// A line longer than the buffer: skip the rest of it.
			for err == bufio.ErrBufferFull {
				_, err = br.ReadSlice('\n')
			}
		}
		if err != nil {
			return "", false
		}
	}
}

// parseMapsLine returns the permissions of the maps line "start-end perms
// ..." if its range contains addr.
func parseMapsLine(line []byte, addr uint64) (string, bool) {
	rng, rest, ok := bytes.Cut(line, []byte{' '})
	if !ok {
		return "", false
	}
	lo, hi, ok := bytes.Cut(rng, []byte{'-'})
	if !ok {
		return "", false
	}
	start, err1 := strconv.ParseUint(string(lo), 16, 64)
	end, err2 := strconv.ParseUint(string(hi), 16, 64)
	if err1 != nil || err2 != nil || addr < start || addr >= end {
		return "", false
	}
	perms, _, _ := bytes.Cut(rest, []byte{' '})
	return string(bytes.TrimSpace(perms)), true
}
