package sandbox

import (
	"slices"
	"strings"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/mm"
	"golang.org/x/sys/unix"
)

// vdsoAdvise checks madvise(a[0], a[1], a[2]) of t against the vDSO pieces
// before the manager sees it, as Linux treats special mappings: an advice
// that would change the flags of part of a piece only fails with EINVAL
// (a special mapping is never split), MADV_DOFORK fails on the data pages
// (VM_IO), and nothing populates them (VM_PFNMAP). The vmas before the
// failing piece are advised first, as Linux walks them in order. done is
// false if the call goes on to the manager.
func (s *Sandbox) vdsoAdvise(t *task, a [6]uint64, ranges []hostarch.AddrRange) (res sysResult, done bool) {
	addr, adv := a[0], mm.Advice(a[2])
	if addr%hostarch.PageSize != 0 || int64(a[1]) < 0 {
		return sysResult{}, false
	}
	end, ok := hostarch.Addr(addr).AddLength(pageUp(a[1]))
	if !ok || end == hostarch.Addr(addr) {
		return sysResult{}, false
	}
	ar := hostarch.AddrRange{Start: hostarch.Addr(addr), End: end}
	m := t.p.mm
	var vmas []mm.VMAInfo
	for _, r := range ranges {
		if !r.Overlaps(ar) {
			continue
		}
		if vmas == nil {
			vmas = m.VMAs(s.ctx)
		}
		var flags []string
		name := ""
		for _, v := range vmas {
			if v.Range == r {
				flags, name = v.Flags, v.Name
			}
		}
		if vdsoAdviceFails(adv, strings.HasPrefix(name, "[vvar"), flags, !ar.IsSupersetOf(r)) {
			if r.Start > ar.Start {
				err := m.MAdvise(s.ctx, ar.Start, uint64(r.Start-ar.Start), adv)
				if err != nil && err != unix.ENOMEM {
					return retErr(errno(err)), true
				}
			}
			return retErr(unix.EINVAL), true
		}
	}
	return sysResult{}, false
}

// vdsoAdviceFails reports whether Linux refuses advice adv on a vDSO
// piece (a data piece if pfn) whose smaps VmFlags are flags, over all of
// it or part of it.
func vdsoAdviceFails(adv mm.Advice, pfn bool, flags []string, part bool) bool {
	has := func(f string) bool { return slices.Contains(flags, f) }
	var changes bool
	switch adv {
	case mm.AdvNormal:
		changes = has("sr") || has("rr")
	case mm.AdvRandom:
		changes = !has("rr") || has("sr")
	case mm.AdvSequential:
		changes = !has("sr") || has("rr")
	case mm.AdvDontFork:
		changes = !has("dc")
	case mm.AdvDoFork:
		if pfn {
			return true
		}
		changes = has("dc")
	case mm.AdvHugePage:
		changes = !has("hg") || has("nh")
	case mm.AdvNoHugePage:
		changes = !has("nh") || has("hg")
	case mm.AdvDontDump:
		changes = !has("dd")
	case mm.AdvWipeOnFork:
		changes = !has("wf")
	case mm.AdvKeepOnFork:
		changes = has("wf")
	case mm.AdvPopulateRead, mm.AdvPopulateWrite:
		return pfn
	}
	return changes && part
}
