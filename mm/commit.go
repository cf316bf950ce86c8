package mm

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/vmspace/vmspace/hostarch"
)

// Linux's vm.overcommit_memory modes.
const (
	// OvercommitGuess (0): a single request larger than RAM and swap
	// together fails; anything else is allowed.
	OvercommitGuess = 0
	// OvercommitAlways (1): every request is allowed.
	OvercommitAlways = 1
	// OvercommitNever (2): the memory committed may not reach
	// CommitLimit; MAP_NORESERVE is ignored.
	OvercommitNever = 2
)

// Overcommit is Linux's commit accounting policy and the figures it uses.
type Overcommit struct {
	// Mode is vm.overcommit_memory.
	Mode int
	// Ratio is vm.overcommit_ratio (percent of RAM in CommitLimit).
	Ratio uint64
	// KBytes is vm.overcommit_kbytes; when non-zero it replaces Ratio.
	KBytes uint64
	// AdminReserveKB and UserReserveKB are vm.admin_reserve_kbytes and
	// vm.user_reserve_kbytes, kept back in mode 2.
	AdminReserveKB, UserReserveKB uint64
	// TotalRAM and TotalSwap are MemTotal and SwapTotal in bytes.
	TotalRAM, TotalSwap uint64
}

// DefaultOvercommit is Linux's default policy (heuristic overcommit, ratio
// 50) for a machine with ram bytes of memory and no swap.
func DefaultOvercommit(ram uint64) Overcommit {
	return Overcommit{Mode: OvercommitGuess, Ratio: 50, AdminReserveKB: 8192, UserReserveKB: 131072, TotalRAM: ram}
}

// HostOvercommit reads the host's policy: the vm.overcommit_* and
// vm.*_reserve_kbytes sysctls and /proc/meminfo's MemTotal and SwapTotal.
// What cannot be read keeps Linux's default (and 1 GiB of memory).
func HostOvercommit() Overcommit {
	o := DefaultOvercommit(1 << 30)
	if v, ok := readSysctl("/proc/sys/vm/overcommit_memory"); ok && v <= OvercommitNever {
		o.Mode = int(v)
	}
	if v, ok := readSysctl("/proc/sys/vm/overcommit_ratio"); ok {
		o.Ratio = v
	}
	if v, ok := readSysctl("/proc/sys/vm/overcommit_kbytes"); ok {
		o.KBytes = v
	}
	if v, ok := readSysctl("/proc/sys/vm/admin_reserve_kbytes"); ok {
		o.AdminReserveKB = v
	}
	if v, ok := readSysctl("/proc/sys/vm/user_reserve_kbytes"); ok {
		o.UserReserveKB = v
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, rest, ok := strings.Cut(sc.Text(), ":")
			if !ok {
				continue
			}
			fields := strings.Fields(rest)
			if len(fields) == 0 {
				continue
			}
			v, err := strconv.ParseUint(fields[0], 10, 64)
			if err != nil {
				continue
			}
			switch k {
			case "MemTotal":
				o.TotalRAM = v << 10
			case "SwapTotal":
				o.TotalSwap = v << 10
			}
		}
	}
	return o
}

// Commit is the commit accounting shared by address spaces (Linux's
// vm_committed_as): the pages of accounted vmas (VM_ACCOUNT: private
// writable mappings not exempted by MAP_NORESERVE, the heap, stacks)
// counted against a policy. Address spaces made by fork share their
// parent's; a manager without one uses the process-wide one read from the
// host at first use.
type Commit struct {
	// mu is a leaf of the lock order (rankCommit).
	mu rankedMutex[commitRank]
	// policy is the overcommit policy. Protected by mu.
	policy Overcommit
	// committed is the number of pages committed. Protected by mu.
	committed uint64
}

// NewCommit returns accounting with nothing committed under policy p.
func NewCommit(p Overcommit) *Commit { return &Commit{policy: p} }

var (
	hostCommitOnce sync.Once
	hostCommit     *Commit
)

// HostCommit returns the process-wide accounting, with the host's policy
// as read at its first use.
func HostCommit() *Commit {
	hostCommitOnce.Do(func() { hostCommit = NewCommit(HostOvercommit()) })
	return hostCommit
}

// Policy returns the policy.
func (c *Commit) Policy() Overcommit {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.policy
}

// SetPolicy changes the policy (as writing the sysctls does); what is
// committed stays.
func (c *Commit) SetPolicy(p Overcommit) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.policy = p
}

// Committed returns the bytes committed (/proc/meminfo's Committed_AS for
// the address spaces sharing c).
func (c *Commit) Committed() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.committed << hostarch.PageShift
}

// CommitLimit returns /proc/meminfo's CommitLimit in bytes: overcommit_kbytes,
// or overcommit_ratio percent of RAM, plus swap.
func (c *Commit) CommitLimit() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.limitPagesLocked() << hostarch.PageShift
}

// limitPagesLocked is Linux's vm_commit_limit in pages.
func (c *Commit) limitPagesLocked() uint64 {
	p := &c.policy
	var allowed uint64
	if p.KBytes != 0 {
		allowed = p.KBytes >> (hostarch.PageShift - 10)
	} else {
		allowed = (p.TotalRAM >> hostarch.PageShift) * p.Ratio / 100
	}
	return allowed + p.TotalSwap>>hostarch.PageShift
}

// enough is Linux's __vm_enough_memory for pages more pages, for an
// address space of totalVM bytes: whether the policy allows committing
// them. It does not commit them (accounted vmas do as they are made).
func (c *Commit) enough(pages, totalVM uint64, capSysAdmin bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.enoughLocked(pages, totalVM, capSysAdmin)
}

// charge is enough, committing the pages if the policy allows (one
// locking for both).
func (c *Commit) charge(pages, totalVM uint64, capSysAdmin bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.enoughLocked(pages, totalVM, capSysAdmin) {
		return false
	}
	c.committed += pages
	return true
}

// enoughLocked is enough. Preconditions: c.mu held.
func (c *Commit) enoughLocked(pages, totalVM uint64, capSysAdmin bool) bool {
	p := &c.policy
	switch p.Mode {
	case OvercommitAlways:
		return true
	case OvercommitGuess:
		return pages <= (p.TotalRAM+p.TotalSwap)>>hostarch.PageShift
	}
	allowed := int64(c.limitPagesLocked())
	if !capSysAdmin {
		allowed -= int64(p.AdminReserveKB >> (hostarch.PageShift - 10))
	}
	allowed -= int64(min(totalVM>>hostarch.PageShift/32, p.UserReserveKB>>(hostarch.PageShift-10)))
	return int64(c.committed+pages) < allowed
}

// add commits (sign +1) or releases (sign -1) pages.
func (c *Commit) add(pages uint64, sign int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if sign > 0 {
		c.committed += pages
	} else {
		c.committed -= pages
	}
}

// commitLocked returns the manager's accounting. Preconditions: mappingMu
// held.
func (mm *MemoryManager) commitLocked() *Commit {
	if mm.commit == nil {
		return HostCommit()
	}
	return mm.commit
}

// SetCommit makes the manager account its commitments in c (nil: the
// process-wide accounting). Call it before the manager maps anything.
func (mm *MemoryManager) SetCommit(c *Commit) {
	mm.mappingMu.Lock()
	defer mm.mappingMu.Unlock()
	mm.commit = c
}

// Commit returns the accounting the manager commits its memory to.
func (mm *MemoryManager) Commit() *Commit {
	mm.mappingMu.RLock()
	defer mm.mappingMu.RUnlock()
	return mm.commitLocked()
}

// enoughMemoryLocked is Linux's security_vm_enough_memory_mm: whether
// length more bytes may be committed. Preconditions: mappingMu held.
func (mm *MemoryManager) enoughMemoryLocked(length uint64) bool {
	if length == 0 {
		return true
	}
	return mm.commitLocked().enough(length>>hostarch.PageShift, mm.usageAS, mm.limits.CapSysAdmin)
}

// accountable is Linux's accountable_mapping (with mmap's MAP_NORESERVE
// rule): a new vma v commits memory if it is private and writable and not
// exempted by MAP_NORESERVE (honoured unless the policy is mode 2).
func (mm *MemoryManager) accountableLocked(v *vma) bool {
	return v.private() && v.realPerms.Write && !v.flags.has(vmaNoReserve) && !v.flags.has(vmaAccount)
}
