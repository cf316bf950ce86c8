package sandbox

import (
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/vmspace/vmspace/mm"
	"golang.org/x/sys/unix"
)

// spaceLimits are the limits on address space that vmspace takes for its
// own process (its memory file's mappings, the Go runtime) but gives the
// program as they were: RLIMIT_AS and RLIMIT_DATA.
var spaceLimits = [2]int{unix.RLIMIT_AS, unix.RLIMIT_DATA}

var (
	ownLimitsOnce sync.Once
	ownLimitsOrig [2]unix.Rlimit
)

// ownLimits returns the address-space limits vmspace was started with (the
// program's: see spaceLimits), lifting vmspace's own limits the first
// time: vmspace's reservations must not be charged to the program. With
// CAP_SYS_RESOURCE both limits go to infinity; without it, the soft limit
// goes up to the hard one, which binds vmspace too. The program's
// processes get the limits back (restoreLimits).
func ownLimits() [2]unix.Rlimit {
	ownLimitsOnce.Do(func() {
		for i, res := range spaceLimits {
			var l unix.Rlimit
			if unix.Prlimit(0, res, nil, &l) != nil {
				l = unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}
			}
			ownLimitsOrig[i] = l
			inf := unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}
			if l != inf && unix.Prlimit(0, res, &inf, nil) == nil {
				continue
			}
			if l.Cur < l.Max {
				raised := unix.Rlimit{Cur: l.Max, Max: l.Max}
				unix.Prlimit(0, res, &raised, nil)
			}
		}
	})
	return ownLimitsOrig
}

// addressSpaceBound says whether a hard RLIMIT_AS that vmspace could not
// lift (ownLimits) bounds its process: the memory file is then mapped in
// 2 MiB windows only where used (pgalloc.Options.Windowed), so that the
// room left stays the Go runtime's, for its heap arenas (see
// internal/runtimeroom).
func addressSpaceBound() bool {
	var l unix.Rlimit
	return unix.Getrlimit(unix.RLIMIT_AS, &l) == nil && l.Max != unix.RLIM_INFINITY
}

// restoreLimits gives the first program process the address-space limits
// vmspace was started with.
func (s *Sandbox) restoreLimits(pid int) error {
	for i, res := range spaceLimits {
		l := s.progLimits[i]
		var cur unix.Rlimit
		if err := unix.Prlimit(pid, res, nil, &cur); err != nil {
			return err
		}
		if cur == l {
			continue
		}
		if err := unix.Prlimit(pid, res, &l, nil); err != nil {
			return err
		}
	}
	return nil
}

// hostLimits returns the limits of a process started by vmspace, with the
// privileges vmspace has.
func hostLimits() mm.Limits {
	l := mm.HostLimits()
	if caps, ok := effectiveCaps("/proc/self/status"); ok {
		setCaps(&l, caps)
	}
	return l
}

// setCaps sets the privileges of l from effective capabilities caps.
func setCaps(l *mm.Limits, caps uint64) {
	l.CapIPCLock = caps&(1<<unix.CAP_IPC_LOCK) != 0
	l.CapSysRawIO = caps&(1<<unix.CAP_SYS_RAWIO) != 0
}

// effectiveCaps returns the effective capabilities in the status file at
// path (/proc/.../status).
func effectiveCaps(path string) (uint64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			var c uint64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%x", &c); err == nil {
				return c, true
			}
		}
	}
	return 0, false
}
