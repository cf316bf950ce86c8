package mm

import (
	"context"

	"github.com/vmspace/vmspace/hostarch"
)

// KernelUserfault returns the first address of ar at which the kernel's
// access at (a system call reading or writing a buffer there) would wait
// on a userfaultfd, as Linux's kernel-mode faults do in a context made
// without UFFD_USER_MODE_ONLY: a missing, minor or write-protect fault
// in a registered range the vma permits the access to. It reports false
// if there is none; pages that would fault otherwise (unmapped, no
// permission, guard pages) end the search, since the access fails there
// first. Nothing is faulted in (a write-protect fault of a context with
// UFFD_FEATURE_WP_ASYNC is resolved, as any access does).
func (mm *MemoryManager) KernelUserfault(ctx context.Context, ar hostarch.AddrRange, at hostarch.AccessType) (hostarch.Addr, bool) {
	if ar.Length() == 0 {
		return 0, false
	}
	mm.mappingMu.RLock()
	defer mm.mappingMu.RUnlock()
	mm.activeMu.Lock()
	defer mm.activeMu.Unlock()
	for addr := ar.Start; addr < ar.End; addr = (addr + hostarch.PageSize).RoundDown() {
		vseg := mm.vmas.FindSegment(addr)
		if !vseg.Ok() {
			return 0, false
		}
		v := vseg.ValuePtr()
		if !v.effectivePerms().SupersetOf(at) || mm.isGuardLocked(addr) {
			return 0, false
		}
		if u := v.uffd; u == nil || u.flags&UffdUserModeOnly != 0 {
			// Skip the rest of the vma.
			if vseg.End() >= ar.End {
				return 0, false
			}
			addr = vseg.End() - hostarch.PageSize
			continue
		}
		if _, ok := mm.userfaultCheckLocked(ctx, vseg, mm.pmas.FindSegment(addr), addr.RoundDown(), at).(*UserfaultError); ok {
			return addr, true
		}
	}
	return 0, false
}
