package hostfile

import (
	"context"
	"fmt"
	"maps"

	"golang.org/x/sys/unix"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/segment"
)

// mappingKey identifies one mapping of a File: the MappingSpace, and base,
// the address at which offset 0 of the File would be mapped (ar.Start -
// offset, modulo 2^64), so that offset o of the File is mapped at base + o.
// A key stays the same when the segment holding it is split or merged.
type mappingKey struct {
	// ms is the address space. Its dynamic type must be comparable.
	ms memmap.MappingSpace
	// base is the address of offset 0, modulo 2^64.
	base uint64
	// writable is true for a shared writable mapping.
	writable bool
}

// mappingsVal is the value of a mapping segment: the set of mappings of
// the segment's range. Never empty in the set. Each segment owns its map
// (Split clones).
type mappingsVal map[mappingKey]struct{}

// mappingFuncs are the segment.Functions of File.mappings. Adjacent
// segments merge when they hold the same mappings.
type mappingFuncs struct{}

func (mappingFuncs) MinKey() uint64 { return 0 }

// MaxKey is 2^64 - 1: the last byte of the offset space cannot be mapped,
// which mmap's EOVERFLOW check makes impossible anyway.
func (mappingFuncs) MaxKey() uint64            { return ^uint64(0) }
func (mappingFuncs) ClearValue(v *mappingsVal) { *v = nil }
func (mappingFuncs) Merge(_ segment.Range[uint64], v1 mappingsVal, _ segment.Range[uint64], v2 mappingsVal) (mappingsVal, bool) {
	return v1, maps.Equal(v1, v2)
}
func (mappingFuncs) Split(_ segment.Range[uint64], v mappingsVal, _ uint64) (mappingsVal, mappingsVal) {
	return v, maps.Clone(v)
}

// mappingSet is the type of File.mappings.
type mappingSet = segment.Set[uint64, mappingsVal, mappingFuncs]

// mappedRange checks the arguments of AddMapping and friends and returns the
// File range mapped.
func mappedRange(ar hostarch.AddrRange, offset uint64) (memmap.MappableRange, error) {
	if ar.Start >= ar.End || !ar.IsPageAligned() || !hostarch.IsPageAligned(offset) {
		return memmap.MappableRange{}, fmt.Errorf("hostfile: mapping %v at offset %#x: bad range: %w", ar, offset, unix.EINVAL)
	}
	end := offset + ar.Length()
	if end < offset || end > (mappingFuncs{}).MaxKey() {
		return memmap.MappableRange{}, fmt.Errorf("hostfile: mapping %v at offset %#x: offset overflow: %w", ar, offset, unix.EOVERFLOW)
	}
	return memmap.MappableRange{Start: offset, End: end}, nil
}

// AddMapping implements memmap.Mappable.AddMapping.
//
// Preconditions (memory manager): mappingMu held.
func (f *File) AddMapping(ctx context.Context, ms memmap.MappingSpace, ar hostarch.AddrRange, offset uint64, writable bool) error {
	mr, err := mappedRange(ar, offset)
	if err != nil {
		return err
	}
	if ms == nil {
		return fmt.Errorf("hostfile: AddMapping with a nil MappingSpace: %w", unix.EINVAL)
	}
	key := mappingKey{ms: ms, base: uint64(ar.Start) - offset, writable: writable}
	f.mapsMu.Lock()
	defer f.mapsMu.Unlock()
	first := f.mappings.IsEmpty()
	f.addMappingLocked(mr, key)
	if first {
		f.mappedChanged(true)
	}
	return nil
}

// addMappingLocked adds key to every offset of mr. Preconditions: mapsMu
// held.
func (f *File) addMappingLocked(mr memmap.MappableRange, key mappingKey) {
	r := segRange(mr)
	pos := r.Start
	for pos < r.End {
		seg, gap := f.mappings.Find(pos)
		if seg.Ok() {
			seg = f.mappings.Isolate(seg, segment.Range[uint64]{Start: pos, End: r.End})
			(*seg.ValuePtr())[key] = struct{}{}
			pos = seg.End()
			continue
		}
		end := min(gap.End(), r.End)
		f.mappings.InsertWithoutMerging(gap, segment.Range[uint64]{Start: pos, End: end}, mappingsVal{key: {}})
		pos = end
	}
	f.mappings.MergeRange(r)
	f.mappings.MergeAdjacent(r)
}

// RemoveMapping implements memmap.Mappable.RemoveMapping. Removing a
// mapping that was never added does nothing. Removing a shared writable
// mapping of a host file marks the cached pages it covered dirty, since it
// may have written them.
//
// Preconditions (memory manager): mappingMu held.
func (f *File) RemoveMapping(ctx context.Context, ms memmap.MappingSpace, ar hostarch.AddrRange, offset uint64, writable bool) {
	mr, err := mappedRange(ar, offset)
	if err != nil || ms == nil {
		return
	}
	key := mappingKey{ms: ms, base: uint64(ar.Start) - offset, writable: writable}
	r := segRange(mr)
	f.mapsMu.Lock()
	defer f.mapsMu.Unlock()
	found := false
	seg := f.mappings.LowerBoundSegment(r.Start)
	for seg.Ok() && seg.Start() < r.End {
		if _, ok := seg.Value()[key]; !ok {
			seg = seg.NextSegment()
			continue
		}
		found = true
		seg = f.mappings.Isolate(seg, r)
		m := *seg.ValuePtr()
		delete(m, key)
		if len(m) == 0 {
			seg = f.mappings.Remove(seg).NextSegment()
			continue
		}
		seg = seg.NextSegment()
	}
	f.mappings.MergeRange(r)
	f.mappings.MergeAdjacent(r)
	if found && f.mappings.IsEmpty() {
		f.mappedChanged(false)
	}
	if found && writable && f.kind == hostKind {
		// Whatever the mapping wrote must reach the host file, even
		// through a translation that did not ask for write access.
		f.dataMu.Lock()
		f.setDirtyLocked(mr, true)
		f.dataMu.Unlock()
	}
}

// CopyMapping implements memmap.Mappable.CopyMapping: the copy is a new
// mapping at dstAR.
//
// Preconditions (memory manager): mappingMu held.
func (f *File) CopyMapping(ctx context.Context, ms memmap.MappingSpace, srcAR, dstAR hostarch.AddrRange, offset uint64, writable bool) error {
	return f.AddMapping(ctx, ms, dstAR, offset, writable)
}

// invalidation is one MappingSpace.Invalidate call to make.
type invalidation struct {
	ms memmap.MappingSpace
	ar hostarch.AddrRange
}

// invalidateMappingsLocked calls Invalidate, with opts, on every mapping of
// every offset in mr, once per contiguous mapped address range.
//
// Preconditions: mapsMu held; dataMu not held (Invalidate takes the memory
// manager's activeMu, which comes before dataMu).
func (f *File) invalidateMappingsLocked(mr memmap.MappableRange, opts memmap.InvalidateOpts) {
	var calls []invalidation
	// last maps a mapping to the index in calls of its latest range, to
	// coalesce the pieces of one mapping that segment boundaries split.
	last := make(map[mappingKey]int)
	r := segRange(mr)
	for seg := range f.mappings.Segments(r) {
		p := seg.Range().Intersect(r)
		for k := range seg.Value() {
			ar := hostarch.AddrRange{Start: hostarch.Addr(k.base + p.Start), End: hostarch.Addr(k.base + p.End)}
			if i, ok := last[k]; ok && calls[i].ar.End == ar.Start {
				calls[i].ar.End = ar.End
				continue
			}
			last[k] = len(calls)
			calls = append(calls, invalidation{ms: k.ms, ar: ar})
		}
	}
	for _, c := range calls {
		c.ms.Invalidate(c.ar, opts)
	}
}

// writableMappedLocked returns the ranges within mr that a shared writable
// mapping covers, in order, coalesced. Preconditions: mapsMu held.
func (f *File) writableMappedLocked(mr memmap.MappableRange) []memmap.MappableRange {
	var out []memmap.MappableRange
	r := segRange(mr)
	for seg := range f.mappings.Segments(r) {
		w := false
		for k := range seg.Value() {
			if k.writable {
				w = true
				break
			}
		}
		if !w {
			continue
		}
		p := memmap.MappableRange(seg.Range().Intersect(r))
		if n := len(out); n > 0 && out[n-1].End == p.Start {
			out[n-1].End = p.End
		} else {
			out = append(out, p)
		}
	}
	return out
}

// IsMapped reports whether any MappingSpace maps any offset of f.
func (f *File) IsMapped() bool {
	f.mapsMu.Lock()
	defer f.mapsMu.Unlock()
	return !f.mappings.IsEmpty()
}
