package mm

import (
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/vmspace/vmspace/hostarch"
	"golang.org/x/sys/unix"
)

// RLimInfinity is RLIM_INFINITY.
const RLimInfinity = math.MaxUint64

// RLimit is a soft (Cur) and hard (Max) resource limit, as getrlimit(2).
type RLimit struct {
	Cur uint64
	Max uint64
}

// Limits are the resource limits, privileges and tunables that memory
// system calls consult. A sandbox sets them from the process it emulates.
type Limits struct {
	// AS limits the address space size (RLIMIT_AS).
	AS RLimit
	// Data limits private writable memory and the heap (RLIMIT_DATA).
	Data RLimit
	// MemLock limits locked memory (RLIMIT_MEMLOCK).
	MemLock RLimit
	// Stack limits the main stack (RLIMIT_STACK); it also sets the gap
	// between the stack and the top of the mmap area.
	Stack RLimit
	// CapIPCLock is true if the process has CAP_IPC_LOCK: memory locks are
	// then not limited by MemLock.
	CapIPCLock bool
	// CapSysAdmin is true if the process has CAP_SYS_ADMIN: overcommit
	// mode 2 then does not keep vm.admin_reserve_kbytes back from it.
	CapSysAdmin bool
	// CapSysRawIO is true if the process may map (MAP_FIXED, mremap)
	// below MinMmapAddr.
	CapSysRawIO bool
	// MinMmapAddr is vm.mmap_min_addr: processes without CAP_SYS_RAWIO
	// cannot map below it. The kernel's own bound, the larger of it and
	// CONFIG_LSM_MMAP_MIN_ADDR (lsmMmapMinAddr), is where hints are
	// rounded up to, where placement and stack growth stop, whatever the
	// privileges.
	MinMmapAddr hostarch.Addr
	// MaxMapCount is vm.max_map_count: the most vmas a process may have.
	MaxMapCount int
	// NoZeroPage is true if the kernel emulated has no shared zero page
	// (some virtualised kernels boot without one): a read fault of private
	// anonymous memory then allocates a page, which prepares the vma's
	// anon_vma, so fork copies the vma's pages and it merges only as a
	// written vma. With the zero page (Linux's default, false), a read
	// fault leaves the vma without an anon_vma.
	NoZeroPage bool
}

// Linux's defaults.
const (
	// lsmMmapMinAddr is CONFIG_LSM_MMAP_MIN_ADDR as distributions build
	// Linux: the kernel's mmap_min_addr (security/min_addr.c) is the larger
	// of it and vm.mmap_min_addr. It rounds hints and bounds placement and
	// stack growth; MAP_FIXED below it is allowed down to
	// vm.mmap_min_addr (without an LSM that refuses more).
	lsmMmapMinAddr hostarch.Addr = 0x10000

	// DefaultMinMmapAddr is Linux's default vm.mmap_min_addr on x86-64.
	DefaultMinMmapAddr hostarch.Addr = 0x10000
	// DefaultMaxMapCount is Linux's default vm.max_map_count.
	DefaultMaxMapCount = 65530
	// DefaultStackLimit is the usual soft RLIMIT_STACK (8 MiB).
	DefaultStackLimit = 8 << 20
	// DefaultMemLockLimit is Linux's default RLIMIT_MEMLOCK (8 MiB since
	// Linux 5.16).
	DefaultMemLockLimit = 8 << 20
)

// DefaultLimits returns Linux's defaults for an unprivileged process.
func DefaultLimits() Limits {
	return Limits{
		AS:          RLimit{RLimInfinity, RLimInfinity},
		Data:        RLimit{RLimInfinity, RLimInfinity},
		MemLock:     RLimit{DefaultMemLockLimit, DefaultMemLockLimit},
		Stack:       RLimit{DefaultStackLimit, RLimInfinity},
		MinMmapAddr: DefaultMinMmapAddr,
		MaxMapCount: DefaultMaxMapCount,
	}
}

// HostLimits returns the limits of the calling process and the host's
// vm.mmap_min_addr and vm.max_map_count, as vmscript requires ("vmspace
// starts each script with the limits of the process that replays it").
// Privileges are not inherited: the result describes an unprivileged
// process.
func HostLimits() Limits {
	l := DefaultLimits()
	for _, r := range []struct {
		res int
		dst *RLimit
	}{{rlimitAS, &l.AS}, {rlimitData, &l.Data}, {rlimitMemLock, &l.MemLock}, {rlimitStack, &l.Stack}} {
		if cur, max, err := getrlimit(r.res); err == nil {
			*r.dst = RLimit{cur, max}
		}
	}
	if v, ok := readSysctl("/proc/sys/vm/mmap_min_addr"); ok {
		l.MinMmapAddr = hostarch.Addr(v)
	}
	if v, ok := readSysctl("/proc/sys/vm/max_map_count"); ok && v > 0 && v < math.MaxInt32 {
		l.MaxMapCount = int(v)
	}
	l.NoZeroPage = hostLacksZeroPage()
	return l
}

func readSysctl(path string) (uint64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return v, err == nil
}

// Limits returns the manager's current limits.
func (mm *MemoryManager) Limits() Limits {
	mm.mappingMu.RLock()
	defer mm.mappingMu.RUnlock()
	return mm.limits
}

// SetLimits replaces the manager's limits. Lowering a limit below current
// usage does not change existing mappings, as in Linux.
func (mm *MemoryManager) SetLimits(l Limits) {
	mm.mappingMu.Lock()
	defer mm.mappingMu.Unlock()
	mm.limits = l
}

// mmapMinAddrLocked is the kernel's mmap_min_addr: the larger of
// vm.mmap_min_addr and CONFIG_LSM_MMAP_MIN_ADDR, rounded to a page. Hints
// below it are rounded up to it; placement and stack growth stay above it.
// Preconditions: mappingMu held.
func (mm *MemoryManager) mmapMinAddrLocked() hostarch.Addr {
	return max(mm.limits.MinMmapAddr, lsmMmapMinAddr).MustRoundUp()
}

// mayExpandLocked is Linux's may_expand_vm: adding v's length bytes while
// replacing replaced bytes (at most length) of existing vmas must keep the
// address space within RLIMIT_AS and, for data mappings, the data within
// RLIMIT_DATA. Like Linux it compares even when nothing is added, so a
// replacement fails while usage is over a lowered limit. Preconditions:
// mappingMu held.
func (mm *MemoryManager) mayExpandLocked(v *vma, length, replaced uint64) error {
	pages := (length - replaced) >> hostarch.PageShift
	if !mm.asOKLocked(pages) || (v.isData() && !mm.dataOKLocked(pages)) {
		return unix.ENOMEM
	}
	return nil
}

// asOKLocked reports whether pages more pages keep VmSize within
// RLIMIT_AS.
func (mm *MemoryManager) asOKLocked(pages uint64) bool {
	return mm.usageAS>>hostarch.PageShift+pages <= mm.limits.AS.Cur>>hostarch.PageShift
}

// dataOKLocked reports whether pages more data pages keep VmData within
// RLIMIT_DATA (a soft limit of 0 is not enforced below the hard limit, as
// Linux's exception for valgrind).
func (mm *MemoryManager) dataOKLocked(pages uint64) bool {
	dataPages := mm.dataAS>>hostarch.PageShift + pages
	if dataPages <= mm.limits.Data.Cur>>hostarch.PageShift {
		return true
	}
	return mm.limits.Data.Cur == 0 && dataPages <= mm.limits.Data.Max>>hostarch.PageShift
}
