package sandbox

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// The fast path relies on SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: once the
// server has received a call's notification, the caller waits killably,
// so that no signal can end its wait and no call the server has made
// comes back to the program as interrupted (fastpath.restartable serves
// an interrupted call, as Linux's memory calls are never interrupted).
// Kernels from the flag's introduction (5.19) up to upstream commit
// cce436aafc2a ("seccomp: Fix a race with WAIT_KILLABLE_RECV if the
// tracer replies too fast", in 6.18, and in the 6.17, 6.12, 6.6 and 6.1
// stable series from October 2025) break that promise in one window: a
// signal wakes the caller while its notification is not yet received,
// and before the caller takes the filter's lock again the server both
// receives the notification and answers it. The caller then sees its
// notification answered, not merely received, which the old check
// (state == SENT) did not count as received: it returns ERESTARTSYS and
// drops the answer. vmspace would serve the call a second time at the
// signal's stop (restartable), and a second mmap leaks the first mapping,
// a second mremap or MAP_FIXED_NOREPLACE fails, a second brk or munmap is
// harmless. The tracer cannot tell that case from a call interrupted
// before the server saw it (the registers are the same, and the
// notification is gone), so the fast path is used only on kernels known
// to have the fix: 6.18 and later. On older ones (including stable
// releases that have the backport, which the version does not show
// reliably) the memory calls stop for the tracer as without the fast
// path.

// fastpathKernelOK reports whether the host kernel's release (uname -r)
// has the WAIT_KILLABLE_RECV fix.
var fastpathKernelOK = sync.OnceValue(func() bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	ok := killableRecvFixed(unix.ByteSliceToString(u.Release[:]))
	if !ok && debug {
		fmt.Fprintf(os.Stderr, "vmspace-debug: fast path off: kernel %s may answer an interrupted notification twice\n", unix.ByteSliceToString(u.Release[:]))
	}
	return ok
})

// killableRecvFixed reports whether a kernel release string names a
// mainline version with upstream commit cce436aafc2a: 6.18 or later.
func killableRecvFixed(release string) bool {
	fields := strings.SplitN(release, ".", 3)
	if len(fields) < 2 {
		return false
	}
	major, err1 := strconv.Atoi(fields[0])
	digits := fields[1]
	if i := strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		digits = digits[:i] // "18-rc1"
	}
	minor, err2 := strconv.Atoi(digits)
	if err1 != nil || err2 != nil {
		return false
	}
	return major > 6 || major == 6 && minor >= 18
}
