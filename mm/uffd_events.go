package mm

import (
	"fmt"

	"github.com/vmspace/vmspace/hostarch"
)

// The non-cooperative events of userfaultfd contexts: the operations that
// change registered ranges call these hooks, which queue the messages the
// contexts' features asked for (see uffd.go).

// uffdUnmapLocked queues UFFD_EVENT_UNMAP of ar on every context with
// UFFD_FEATURE_EVENT_UNMAP registered on a vma overlapping ar, once per
// context (Linux's userfaultfd_unmap_prep): munmap, mmap over existing
// mappings, brk shrinking and mremap call it before removing ar.
// Preconditions: mappingMu held.
func (mm *MemoryManager) uffdUnmapLocked(ar hostarch.AddrRange) {
	var seen []*Userfaultfd
	for vseg := mm.vmas.LowerBoundSegment(ar.Start); vseg.Ok() && vseg.Start() < ar.End; vseg = vseg.NextSegment() {
		u := vseg.ValuePtr().uffd
		if u == nil || !u.has(UffdFeatureEventUnmap) || containsUffd(seen, u) {
			continue
		}
		seen = append(seen, u)
		u.queue(UffdMsg{Event: UffdEventUnmap, Start: uint64(ar.Start), End: uint64(ar.End)})
	}
}

func containsUffd(us []*Userfaultfd, u *Userfaultfd) bool {
	for _, x := range us {
		if x == u {
			return true
		}
	}
	return false
}

// uffdRemoveLocked queues UFFD_EVENT_REMOVE of r, a part of v, if v's
// context asked for it (Linux's userfaultfd_remove): MADV_DONTNEED,
// MADV_DONTNEED_LOCKED, MADV_FREE and MADV_REMOVE call it before dropping
// pages. Preconditions: mappingMu held.
func (mm *MemoryManager) uffdRemoveLocked(v *vma, r hostarch.AddrRange) {
	if u := v.uffd; u != nil && u.has(UffdFeatureEventRemove) {
		u.queue(UffdMsg{Event: UffdEventRemove, Start: uint64(r.Start), End: uint64(r.End)})
	}
}

// uffdRemapLocked is called by mremap moving oldSize bytes at from, of the
// vma v, to to, where the moved vma nv is about to be inserted (Linux's
// mremap_userfaultfd_prep and _complete): with UFFD_FEATURE_EVENT_REMAP
// the moved vma stays registered and UFFD_EVENT_REMAP is queued; without
// it, the moved vma loses its registration. Preconditions: mappingMu held
// for writing.
//
// The write-protect markers of the old range move with its pages while
// the moved vma stays registered for write protection, and are dropped
// otherwise (Linux's move_ptes clears uffd-wp bits and markers when the
// registration goes); uffdMovedPMA does the same for the moved pmas.
func (mm *MemoryManager) uffdRemapLocked(v, nv *vma, from, to hostarch.Addr, oldSize uint64) {
	u := v.uffd
	if u == nil {
		return
	}
	if !u.has(UffdFeatureEventRemap) {
		nv.uffd = nil
		nv.flags &^= vmaUffdFlags
	} else {
		u.queue(UffdMsg{Event: UffdEventRemap, From: uint64(from), To: uint64(to), Len: oldSize})
	}
	mm.activeMu.Lock()
	defer mm.activeMu.Unlock()
	old := hostarch.AddrRange{Start: from, End: from + hostarch.Addr(oldSize)}
	if mm.uffdMarkers.IsEmpty() || !v.usesMarkers() {
		return
	}
	var moved []hostarch.AddrRange
	for m := mm.uffdMarkers.LowerBoundSegment(old.Start); m.Ok() && m.Start() < old.End; m = m.NextSegment() {
		moved = append(moved, hostarch.AddrRange(m.Range()).Intersect(old))
	}
	mm.clearUffdMarkersLocked(old)
	if !nv.usesMarkers() {
		return
	}
	for _, r := range moved {
		nr := hostarch.AddrRange{Start: r.Start - from + to, End: r.End - from + to}
		mm.uffdMarkers.RemoveRange(addrSegRange(nr))
		mm.uffdMarkers.Add(addrSegRange(nr), struct{}{})
		mm.uffdMarkers.MergeAdjacent(addrSegRange(nr))
	}
}

// uffdMovedPMA adjusts p, a pma mremap moves into the vma nv, to nv's
// registration: without write protection there, p loses its own.
func uffdMovedPMA(nv *vma, p *pma) {
	if p.uffdWP && !nv.flags.has(vmaUffdWP) {
		p.uffdWP = false
		p.effectivePerms = nv.pmaPerms(p.translatePerms, p.needCOW, p.private)
	}
}

// forkUffdMarkersLocked gives mm2, the child of a fork that copied its
// vmas and pmas, the write-protect markers of its vmas that stay
// registered for write protection (UFFD_FEATURE_EVENT_FORK): the parent's
// markers, and the pages of the parent's protected pmas that the child
// did not copy (never populated), as Linux's fork copies markers where
// the child's vma keeps userfaultfd_wp. Preconditions: activeMu of mm and
// mm2 held for writing; mm2's vmas and pmas are the fork's.
func (mm *MemoryManager) forkUffdMarkersLocked(mm2 *MemoryManager) {
	for vseg := mm2.vmas.FirstSegment(); vseg.Ok(); vseg = vseg.NextSegment() {
		if !vseg.ValuePtr().usesMarkers() {
			continue
		}
		vr := hostarch.AddrRange(vseg.Range())
		for gap := mm2.pmas.LowerBoundGap(vr.Start); gap.Ok() && gap.Start() < vr.End; gap = gap.NextLargeEnoughGap(1) {
			gr := hostarch.AddrRange(gap.Range()).Intersect(vr)
			if gr.Length() == 0 {
				continue
			}
			var add []hostarch.AddrRange
			for m := mm.uffdMarkers.LowerBoundSegment(gr.Start); m.Ok() && m.Start() < gr.End; m = m.NextSegment() {
				add = append(add, hostarch.AddrRange(m.Range()).Intersect(gr))
			}
			for pseg := mm.pmas.LowerBoundSegment(gr.Start); pseg.Ok() && pseg.Start() < gr.End; pseg = pseg.NextSegment() {
				if pseg.ValuePtr().uffdWP {
					add = append(add, hostarch.AddrRange(pseg.Range()).Intersect(gr))
				}
			}
			for _, r := range add {
				mm2.uffdMarkers.RemoveRange(addrSegRange(r))
				mm2.uffdMarkers.Add(addrSegRange(r), struct{}{})
				mm2.uffdMarkers.MergeAdjacent(addrSegRange(r))
			}
		}
	}
}

// uffdForks maps the contexts of a forking parent to the child's copies
// (Linux's dup_userfaultfd list).
type uffdForks struct {
	parents, children []*Userfaultfd
}

// inherit gives v, a vma the child mm2 inherits, the child's copy of its
// context if that context asked for UFFD_FEATURE_EVENT_FORK, else no
// registration (Linux's dup_userfaultfd).
func (f *uffdForks) inherit(v *vma, mm2 *MemoryManager) {
	u := v.uffd
	if u == nil {
		return
	}
	if !u.has(UffdFeatureEventFork) || u.Released() {
		v.uffd = nil
		v.flags &^= vmaUffdFlags
		return
	}
	for i, p := range f.parents {
		if p == u {
			v.uffd = f.children[i]
			return
		}
	}
	c := &Userfaultfd{mm: mm2, flags: u.flags}
	c.features.Store(u.features.Load())
	f.parents = append(f.parents, u)
	f.children = append(f.children, c)
	v.uffd = c
}

// complete queues UFFD_EVENT_FORK on each parent context that has a child
// copy (Linux's dup_userfaultfd_complete).
func (f *uffdForks) complete() {
	for i, p := range f.parents {
		p.queue(UffdMsg{Event: UffdEventFork, Child: f.children[i]})
	}
}

// uffdSaveCheckLocked refuses to checkpoint m while a userfaultfd context
// registers any of its ranges or has write-protected or poisoned pages of
// it: contexts belong to descriptors a checkpoint does not hold.
// Preconditions: mappingMu and activeMu held (read suffices).
func (m *MemoryManager) uffdSaveCheckLocked() error {
	for vseg := m.vmas.FirstSegment(); vseg.Ok(); vseg = vseg.NextSegment() {
		if vseg.ValuePtr().uffd != nil {
			return fmt.Errorf("mm: %v is registered with a userfaultfd and cannot be saved", vseg.Range())
		}
	}
	for pseg := m.pmas.FirstSegment(); pseg.Ok(); pseg = pseg.NextSegment() {
		if p := pseg.ValuePtr(); p.uffdWP || p.poison {
			return fmt.Errorf("mm: %v is write-protected or poisoned by a userfaultfd and cannot be saved", pseg.Range())
		}
	}
	return nil
}
