package mm

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/pgalloc"
	"github.com/vmspace/vmspace/safemem"
	"golang.org/x/sys/unix"
)

// SpecialMappable is a named mapping of memory-file pages that the memory
// manager or the loader makes (a vDSO, an AIO ring): it is both the
// Mappable and the MappingIdentity of its vmas, and owns its pages until
// its last reference goes.
type SpecialMappable struct {
	// mf and fr are the memory-file pages the mappable owns, and name is
	// what /proc/PID/maps shows for its vmas ("[vdso]", "/[aio] (deleted)"). All
	// three are immutable.
	mf   *pgalloc.MemoryFile
	fr   memmap.FileRange
	name string

	// refs counts references (IncRef/DecRef); the pages are freed at zero.
	refs atomic.Int64

	// onMap is called, with mu held, when ms maps the mappable at dst:
	// a new mapping (AddMapping: src == dst), a fork's copy (CopyMapping
	// at the same address) or an mremap move (CopyMapping elsewhere). An
	// error refuses it. An AIO ring tracks its address through it.
	// Immutable after creation (set before the first mapping).
	onMap func(ms memmap.MappingSpace, src, dst hostarch.AddrRange) error

	// mu serialises onMap.
	mu rankedMutex[specialMappableRank]

	// punchErr is what MADV_REMOVE gets: EINVAL for mappings without a
	// file, ENODEV for the AIO ring, whose file cannot be punched.
	// Immutable.
	punchErr error

	// msyncErr is what Msync returns: nil for mappings without a file,
	// EINVAL for the AIO ring, whose file cannot be synced. Immutable.
	msyncErr error

	// aioRing is true for an AIO ring, which Linux maps from a file of
	// its aio pseudo-filesystem with no name left (VMAAIORing), rather
	// than as a special mapping without a file (VMASpecial). Immutable
	// after creation (set with onMap).
	aioRing bool
}

// NewSpecialMappable allocates size bytes (rounded up to pages) of zeroed
// memory in mf, named name in /proc/PID/maps. The caller holds one
// reference.
func NewSpecialMappable(name string, mf *pgalloc.MemoryFile, size uint64) (*SpecialMappable, error) {
	size, ok := hostarch.PageRoundUp(size)
	if !ok || size == 0 {
		return nil, fmt.Errorf("mm: bad special mapping size %d", size)
	}
	fr, err := mf.Allocate(size, pgalloc.AllocOpts{})
	if err != nil {
		return nil, err
	}
	m := &SpecialMappable{mf: mf, fr: fr, name: name}
	m.refs.Store(1)
	return m, nil
}

// Length returns the mappable's size.
func (m *SpecialMappable) Length() uint64 { return m.fr.Length() }

// Contents returns the pages, for the creator to fill.
func (m *SpecialMappable) Contents() (safemem.BlockSeq, error) {
	return m.mf.MapInternal(m.fr, hostarch.ReadWrite)
}

// IncRef implements memmap.MappingIdentity.
func (m *SpecialMappable) IncRef() { m.refs.Add(1) }

// DecRef implements memmap.MappingIdentity.
func (m *SpecialMappable) DecRef(ctx context.Context) {
	if n := m.refs.Add(-1); n == 0 {
		m.mf.DecRef(m.fr)
	} else if n < 0 {
		panic("mm: SpecialMappable.DecRef without reference")
	}
}

// MappedName implements memmap.MappingIdentity.
func (m *SpecialMappable) MappedName(context.Context) string { return m.name }

// DeviceID implements memmap.MappingIdentity.
func (m *SpecialMappable) DeviceID() uint64 { return 0 }

// InodeID implements memmap.MappingIdentity.
func (m *SpecialMappable) InodeID() uint64 { return 0 }

// Msync implements memmap.MappingIdentity.
func (m *SpecialMappable) Msync(context.Context, memmap.MappableRange) error { return m.msyncErr }

// AddMapping implements memmap.Mappable.
func (m *SpecialMappable) AddMapping(ctx context.Context, ms memmap.MappingSpace, ar hostarch.AddrRange, offset uint64, writable bool) error {
	return m.CopyMapping(ctx, ms, ar, ar, offset, writable)
}

// RemoveMapping implements memmap.Mappable.
func (m *SpecialMappable) RemoveMapping(ctx context.Context, ms memmap.MappingSpace, ar hostarch.AddrRange, offset uint64, writable bool) {
}

// CopyMapping implements memmap.Mappable.
func (m *SpecialMappable) CopyMapping(ctx context.Context, ms memmap.MappingSpace, srcAR, dstAR hostarch.AddrRange, offset uint64, writable bool) error {
	if m.onMap == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.onMap(ms, srcAR, dstAR)
}

// Translate implements memmap.Mappable: past the end is a bus error.
func (m *SpecialMappable) Translate(ctx context.Context, required, optional memmap.MappableRange, at hostarch.AccessType) ([]memmap.Translation, error) {
	var err error
	if required.End > m.fr.Length() {
		err = &memmap.BusError{Err: fmt.Errorf("access past the end of %s", m.name)}
	}
	src := optional.Intersect(memmap.MappableRange{Start: 0, End: m.fr.Length()})
	if src.Length() == 0 {
		return nil, err
	}
	return []memmap.Translation{{Source: src, File: m.mf, Offset: m.fr.Start + src.Start, Perms: hostarch.AnyAccess}}, err
}

// Resident implements Residency: a special mapping's pages are always in
// memory (an AIO ring's are populated when it is made).
func (m *SpecialMappable) Resident(mr memmap.MappableRange, out []byte) {
	for i := range out {
		out[i] = 1
	}
}

// Punch implements mm's Puncher: special mappings cannot be punched.
func (m *SpecialMappable) Punch(context.Context, memmap.MappableRange) error {
	if m.punchErr != nil {
		return m.punchErr
	}
	return unix.EINVAL
}

// InvalidateUnsavable implements memmap.Mappable.
func (m *SpecialMappable) InvalidateUnsavable(context.Context) error { return nil }

// MapSpecial maps m at addr (a hint unless fixed) with perms, as the kernel
// maps a vDSO or AIO ring: shared, not expandable by mremap, not counted
// against RLIMIT_AS.
func (mm *MemoryManager) MapSpecial(ctx context.Context, m *SpecialMappable, addr hostarch.Addr, fixed bool, perms hostarch.AccessType) (hostarch.Addr, error) {
	return mm.mmap(ctx, memmap.MMapOpts{
		Length:          m.Length(),
		Addr:            addr,
		Fixed:           fixed,
		Unmap:           fixed,
		Perms:           perms,
		MaxPerms:        perms,
		Mappable:        m,
		MappingIdentity: m,
		Force:           true,
	}, nil, vmaDontExpand)
}
