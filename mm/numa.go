package mm

import (
	"context"

	"github.com/vmspace/vmspace/hostarch"
	"golang.org/x/sys/unix"
)

// NUMA memory policies (MPOL_*).
const (
	MPolDefault    = 0
	MPolPreferred  = 1
	MPolBind       = 2
	MPolInterleave = 3
	MPolLocal      = 4
)

// SetNumaPolicy implements mbind(2) for the policy and node mask of a
// single-node machine: every vma in the range records them.
func (mm *MemoryManager) SetNumaPolicy(ctx context.Context, addr hostarch.Addr, length uint64, policy int32, nodemask uint64) error {
	if policy < MPolDefault || policy > MPolLocal {
		return unix.EINVAL
	}
	ar, empty, err := checkRange(addr, length)
	if err != nil || empty {
		return err
	}
	mm.mappingMu.Lock()
	defer mm.mappingMu.Unlock()
	return mm.changeMappedRangeLocked(ctx, ar, unix.EFAULT, func(nv *vma) { nv.numaPolicy, nv.numaNodemask = policy, nodemask })
}

// NumaPolicy returns the policy and node mask of the vma containing addr
// (get_mempolicy with MPOL_F_ADDR); EFAULT if addr is unmapped.
func (mm *MemoryManager) NumaPolicy(addr hostarch.Addr) (int32, uint64, error) {
	mm.mappingMu.RLock()
	defer mm.mappingMu.RUnlock()
	vseg := mm.vmas.FindSegment(addr)
	if !vseg.Ok() {
		return 0, 0, unix.EFAULT
	}
	v := vseg.ValuePtr()
	return v.numaPolicy, v.numaNodemask, nil
}
