package safemem

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// classify says which signal a fault at addr was. The Go runtime reports
// both SIGSEGV and SIGBUS as the same error, so look at the host mapping:
// an address inside a readable mapping can only have faulted with SIGBUS
// (a file page past end-of-file); anything else is SIGSEGV. This runs only
// after a fault, so its cost does not matter.
func classify(addr uintptr) syscall.Signal {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return syscall.SIGSEGV
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || uint64(addr) < start || uint64(addr) >= end {
			continue
		}
		if strings.HasPrefix(fields[1], "r") {
			return syscall.SIGBUS
		}
		return syscall.SIGSEGV
	}
	return syscall.SIGSEGV
}
