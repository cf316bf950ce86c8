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
func (mm *MemoryManager) uffdRemapLocked(v, nv *vma, from, to hostarch.Addr, oldSize uint64) {
	u := v.uffd
	if u == nil {
		return
	}
	if !u.has(UffdFeatureEventRemap) {
		nv.uffd = nil
		nv.flags &^= vmaUffdFlags
		return
	}
	u.queue(UffdMsg{Event: UffdEventRemap, From: uint64(from), To: uint64(to), Len: oldSize})
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
