package mm

import (
	"context"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/safemem"
)

// FileAt describes the file mapping holding addr, for naming code
// addresses (package report's call sites): name is the path as
// /proc/PID/maps shows it, off the file offset of addr, and exec whether
// the vma is executable. ok is false where addr is not in a vma mapping
// a file (anonymous memory, a hole).
func (mm *MemoryManager) FileAt(ctx context.Context, addr hostarch.Addr) (name string, off uint64, exec, ok bool) {
	mm.mappingMu.RLock()
	defer mm.mappingMu.RUnlock()
	vseg := mm.vmas.FindSegment(addr)
	if !vseg.Ok() {
		return "", 0, false, false
	}
	v := vseg.ValuePtr()
	if v.id == nil || v.mappable == nil {
		return "", 0, false, false
	}
	return v.id.MappedName(ctx), v.off + uint64(addr-vseg.Start()), v.realPerms.Execute, true
}

// Peek copies the len(dst) bytes at addr into dst if the application may
// read them and they are already there to read: a pma covers them with
// read permission and its mapping is at hand. It faults nothing in and
// changes nothing the application could see (residency, copy-on-write
// sharing), unlike CopyIn; it reports whether it copied.
func (mm *MemoryManager) Peek(addr hostarch.Addr, dst []byte) bool {
	end := addr + hostarch.Addr(len(dst))
	if len(dst) == 0 || end < addr {
		return false
	}
	rt := mm.activeMu.RLock()
	defer mm.activeMu.RUnlock(rt)
	pseg := mm.pmas.FindSegment(addr)
	if !pseg.Ok() || end > pseg.End() {
		return false
	}
	src, ok := fastMapping(pseg, addr, len(dst), false)
	if !ok {
		return false
	}
	n, err := safemem.Copy(safemem.BlockFromSafeSlice(dst), src)
	return err == nil && n == len(dst)
}
