package mm

import (
	"fmt"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
)

// CheckInvariants verifies the manager's internal consistency, for tests:
// vmas are page-aligned, non-empty and ordered; every pma lies inside vmas
// and its permissions within theirs (what the platform may map within the
// vma's effective permissions, the most it may ever allow within the vma's
// maximum permissions) and within its Translation's; the usage figures
// equal their recomputation; every private pma's pages are counted in
// privateRefs.
func (mm *MemoryManager) CheckInvariants() error {
	mm.mappingMu.RLock()
	defer mm.mappingMu.RUnlock()
	rt := mm.activeMu.RLock()
	defer mm.activeMu.RUnlock(rt)

	var usage, locked, data, stack, exec uint64
	prevEnd := hostarch.Addr(0)
	for vseg := mm.vmas.FirstSegment(); vseg.Ok(); vseg = vseg.NextSegment() {
		r := hostarch.AddrRange(vseg.Range())
		if !r.IsPageAligned() || r.Length() == 0 || r.Start < prevEnd {
			return fmt.Errorf("vma %v: unaligned, empty or out of order", r)
		}
		prevEnd = r.End
		v := vseg.ValuePtr()
		usage += r.Length()
		if v.locked() {
			locked += r.Length()
		}
		if v.isData() {
			data += r.Length()
		}
		if v.growsDown() {
			stack += r.Length()
		}
		if v.isExec() {
			exec += r.Length()
		}
	}
	for _, c := range []struct {
		name      string
		got, want uint64
	}{
		{"usageAS", mm.usageAS, usage},
		{"lockedAS", mm.lockedAS, locked},
		{"dataAS", mm.dataAS, data},
		{"stackAS", mm.stackAS, stack},
		{"execAS", mm.execAS, exec},
		{"curRSS", mm.curRSS, uint64(mm.pmas.Span())},
	} {
		if c.got != c.want {
			return fmt.Errorf("%s = %#x, recomputed %#x", c.name, c.got, c.want)
		}
	}
	if mm.vmas.Len() > mm.limits.MaxMapCount {
		return fmt.Errorf("%d vmas exceed the map count %d", mm.vmas.Len(), mm.limits.MaxMapCount)
	}
	for pseg := mm.pmas.FirstSegment(); pseg.Ok(); pseg = pseg.NextSegment() {
		r := hostarch.AddrRange(pseg.Range())
		if !r.IsPageAligned() {
			return fmt.Errorf("pma %v unaligned", r)
		}
		p := pseg.ValuePtr()
		for addr := r.Start; addr < r.End; {
			vseg := mm.vmas.FindSegment(addr)
			if !vseg.Ok() {
				return fmt.Errorf("pma %v: %v is in no vma", r, addr)
			}
			v := vseg.ValuePtr()
			if !v.effectivePerms().SupersetOf(p.effectivePerms) || !v.maxPerms.SupersetOf(p.maxPerms) {
				return fmt.Errorf("pma %v (%v, max %v) exceeds the permissions of vma %v (%v, max %v)", r, p.effectivePerms, p.maxPerms, vseg.Range(), v.effectivePerms(), v.maxPerms)
			}
			addr = vseg.End()
		}
		if !p.maxPerms.SupersetOf(p.effectivePerms) || !p.translatePerms.SupersetOf(p.effectivePerms) {
			return fmt.Errorf("pma %v: permissions %v exceed its maximum %v or its Translation's %v", r, p.effectivePerms, p.maxPerms, p.translatePerms)
		}
		if p.private {
			fr := pmaRef{pseg}.fileRange(r)
			for off := fr.Start; off < fr.End; off += hostarch.PageSize {
				if mm.privateRefs.count(off) <= 0 {
					return fmt.Errorf("private pma %v: page %#x not counted", r, off)
				}
			}
		}
		if p.effectivePerms.Write && p.needCOW {
			return fmt.Errorf("pma %v writable while needing copy-on-write", r)
		}
		if p.lazyFree && (!p.private || !p.needCOW) {
			return fmt.Errorf("pma %v lazily freed but not private memory needing copy-on-write", r)
		}
	}
	for g := mm.guards.FirstSegment(); g.Ok(); g = g.NextSegment() {
		if mm.vmas.SpanRange(g.Range()) != g.Range().Length() {
			return fmt.Errorf("guard region %v outside vmas", g.Range())
		}
	}
	return nil
}

// CheckPrivateRefs verifies, for a family of managers forked from one
// another (and sharing privateRefs), that each private page's count equals
// the number of pmas referring to it.
func CheckPrivateRefs(mms ...*MemoryManager) error {
	if len(mms) == 0 {
		return nil
	}
	want := map[uint64]int32{}
	for _, mm := range mms {
		if mm.privateRefs != mms[0].privateRefs {
			return fmt.Errorf("managers do not share privateRefs")
		}
		rt := mm.activeMu.RLock()
		for pseg := mm.pmas.FirstSegment(); pseg.Ok(); pseg = pseg.NextSegment() {
			if p := pseg.ValuePtr(); p.private {
				fr := pmaRef{pseg}.fileRange(hostarch.AddrRange(pseg.Range()))
				for off := fr.Start; off < fr.End; off += hostarch.PageSize {
					want[off]++
				}
			}
		}
		mm.activeMu.RUnlock(rt)
	}
	r := mms[0].privateRefs
	r.mu.Lock()
	defer r.mu.Unlock()
	got := map[uint64]int32{}
	for seg := r.refs.FirstSegment(); seg.Ok(); seg = seg.NextSegment() {
		fr := memmap.FileRange(seg.Range())
		for off := fr.Start; off < fr.End; off += hostarch.PageSize {
			got[off] = seg.Value()
		}
	}
	for off, n := range want {
		if got[off] != n {
			return fmt.Errorf("page %#x: privateRefs %d, pmas %d", off, got[off], n)
		}
	}
	for off, n := range got {
		if want[off] != n {
			return fmt.Errorf("page %#x: privateRefs %d, pmas %d", off, n, want[off])
		}
	}
	return nil
}
