package ptrace

import (
	"fmt"
	"iter"
	"reflect"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/segment"
	"golang.org/x/sys/unix"
)

// HostMappings is the driver of one traced process's application range
// [0, StubStart): a record of every host mapping made there (each a
// shared mapping of a memmap.File, made only through it), which makes
// MapFile map only what the host does not already map that way (a
// memory manager maps whole pmas, most of which are often mapped
// already), and tells whether a range is mapped in the host. Its host
// system calls are made by a Caller, in whatever way its user reaches
// the process (this package's AddressSpace through the stub's comm
// page, package sandbox's by injection into a stopped thread of a
// program).
//
// Unmaps can be deferred: Unmap removes a range from the record at once,
// and leaves its host munmap pending until Flush, so that a memory
// manager's unmap and its next map of the same range (a copy-on-write
// break) make one host call, and a range is never left unmapped in
// between. A user that defers must not let the pages it freed be reused
// before Flush (the sandbox's shootdown: the memory file holds them);
// this package's AddressSpace flushes at once.
//
// A process made by a host fork inherits its parent's mappings, which
// its own manager has not confirmed yet: Inherit records them as stale.
// MapFile maps over a stale piece, unless stale pieces are trusted
// (SetTrustStale: the child inherited exactly what the record shows) and
// the piece maps what MapFile wants, which it then only confirms.
//
// A HostMappings is not safe for concurrent use: its user serialises
// calls (the sandbox's tracer thread; the AddressSpace's tracer.mu).
type HostMappings struct {
	// set is the host mappings made so far. Ranges are page-aligned and
	// below StubStart.
	set hostSet
	// pending are ranges removed from set whose host munmap is deferred
	// until the next Flush: a MapFile over them replaces them at once
	// instead.
	pending []hostarch.AddrRange
	// trustStale is set while a fork child's mappings are confirmed (see
	// SetTrustStale).
	trustStale bool
	// gen advances with every change to set: see Generation.
	gen uint64
}

// Mapping is what the host maps over a range: a shared mapping of File
// with protections Perms.
type Mapping struct {
	// File is the File mapped.
	File memmap.File
	// Perms are the mapping's host protections.
	Perms hostarch.AccessType
	// Delta is the file offset of the mapping minus its address (modulo
	// 2^64), the same for every page of one mapping.
	Delta uint64
	// Stale is true for a mapping inherited from a fork parent that the
	// process's own manager has not confirmed yet.
	Stale bool
}

// same reports whether m and o map the same pages the same way. Files
// of a type that cannot be compared are never the same.
func (m Mapping) same(o Mapping) bool {
	if m.Perms != o.Perms || m.Delta != o.Delta || m.Stale != o.Stale {
		return false
	}
	if m.File == nil || o.File == nil {
		return m.File == nil && o.File == nil
	}
	t := reflect.TypeOf(m.File)
	return t == reflect.TypeOf(o.File) && t.Comparable() && m.File == o.File
}

// Piece is a range of a HostMappings and what is mapped there.
type Piece struct {
	Range   hostarch.AddrRange
	Mapping Mapping
}

// Caller makes a HostMappings' host system calls in its process.
type Caller interface {
	// Map maps each of rs in turn as m: mmap(MAP_SHARED|MAP_FIXED, and
	// MAP_POPULATE if precommit) of m.File at offset Delta plus the
	// address. It returns how many of rs it mapped, and the error that
	// stopped it.
	Map(rs []hostarch.AddrRange, m Mapping, precommit bool) (int, error)
	// Unmap unmaps ar (munmap). It returns false if that cannot be done
	// now although the process lives (the unmap then stays pending); a
	// process that has gone has nothing mapped.
	Unmap(ar hostarch.AddrRange) bool
}

type hostSetFuncs struct{}

func (hostSetFuncs) MinKey() hostarch.Addr { return 0 }
func (hostSetFuncs) MaxKey() hostarch.Addr { return StubStart }
func (hostSetFuncs) ClearValue(*Mapping)   {}
func (hostSetFuncs) Merge(_ segment.Range[hostarch.Addr], a Mapping, _ segment.Range[hostarch.Addr], b Mapping) (Mapping, bool) {
	return a, a.same(b)
}
func (hostSetFuncs) Split(_ segment.Range[hostarch.Addr], v Mapping, _ hostarch.Addr) (Mapping, Mapping) {
	return v, v
}

type hostSet = segment.Set[hostarch.Addr, Mapping, hostSetFuncs]

// Generation returns a number that changes whenever a host mapping is
// recorded or removed from the record (a fault handler's test of
// progress; a fork's test of whether its child inherited exactly what the
// record shows).
func (h *HostMappings) Generation() uint64 { return h.gen }

// Pending reports whether unmaps are waiting for Flush.
func (h *HostMappings) Pending() bool { return len(h.pending) > 0 }

// MapFile maps fr of f at addr with access at in the host, as
// platform.AddressSpace.MapFile, through c, making only the calls needed
// for what the host does not map that way already. addr and fr must be
// page-aligned, fr non-empty, and the range below StubStart; otherwise
// the error wraps EINVAL.
func (h *HostMappings) MapFile(addr hostarch.Addr, f memmap.File, fr memmap.FileRange, at hostarch.AccessType, precommit bool, c Caller) error {
	end, ok := addr.AddLength(fr.Length())
	if f == nil || !addr.IsPageAligned() || !ok || end > StubStart || fr.Length() == 0 || !hostarch.IsPageAligned(fr.Start) || !hostarch.IsPageAligned(fr.End) {
		return fmt.Errorf("ptrace: MapFile(%v, %v): %w", addr, fr, unix.EINVAL)
	}
	ar := hostarch.AddrRange{Start: addr, End: end}
	want := Mapping{File: f, Perms: at, Delta: fr.Start - uint64(addr)}
	miss, confirm := h.missing(ar, want)
	for _, r := range confirm {
		h.record(r, want)
	}
	if len(miss) == 0 {
		return nil
	}
	n, err := c.Map(miss, want, precommit)
	for _, r := range miss[:n] {
		h.record(r, want)
		h.Unpend(r)
	}
	return err
}

// missing returns the parts of ar that the host does not map as m, and
// the trusted stale parts that it maps as m, to confirm.
func (h *HostMappings) missing(ar hostarch.AddrRange, m Mapping) (miss, confirm []hostarch.AddrRange) {
	next := ar.Start
	for seg := range h.set.Segments(segment.Range[hostarch.Addr](ar)) {
		v := *seg.ValuePtr()
		r := hostarch.AddrRange(seg.Range()).Intersect(ar)
		if v.Stale && h.trustStale {
			v.Stale = false
			if v.same(m) {
				confirm = append(confirm, r)
			}
		}
		if !v.same(m) {
			continue
		}
		if r.Start > next {
			miss = append(miss, hostarch.AddrRange{Start: next, End: r.Start})
		}
		next = r.End
	}
	if next < ar.End {
		miss = append(miss, hostarch.AddrRange{Start: next, End: ar.End})
	}
	return miss, confirm
}

// record notes that ar is now mapped as m.
func (h *HostMappings) record(ar hostarch.AddrRange, m Mapping) {
	h.gen++
	h.set.RemoveRange(segment.Range[hostarch.Addr](ar))
	h.set.Add(segment.Range[hostarch.Addr](ar), m)
}

// Unpend removes ar from the pending unmaps: its user replaced the host's
// mappings there itself (an mremap it made of a mapping of its own).
func (h *HostMappings) Unpend(ar hostarch.AddrRange) {
	if len(h.pending) == 0 {
		return
	}
	out := h.pending[:0:0]
	for _, r := range h.pending {
		if !r.Overlaps(ar) {
			out = append(out, r)
			continue
		}
		if r.Start < ar.Start {
			out = append(out, hostarch.AddrRange{Start: r.Start, End: ar.Start})
		}
		if r.End > ar.End {
			out = append(out, hostarch.AddrRange{Start: ar.End, End: r.End})
		}
	}
	h.pending = out
}

// Unmap removes [addr, addr+length), rounded out to pages and clipped to
// [0, StubStart) (ClipUser), from the record, and leaves its host munmap
// pending until Flush (or a MapFile over it). It reports whether
// anything was mapped there.
func (h *HostMappings) Unmap(addr hostarch.Addr, length uint64) bool {
	ar, ok := ClipUser(addr, length)
	if !ok || h.set.IsEmptyRange(segment.Range[hostarch.Addr](ar)) {
		return false
	}
	h.set.RemoveRange(segment.Range[hostarch.Addr](ar))
	h.gen++
	h.pending = append(h.pending, ar)
	return true
}

// Flush makes the pending unmaps through c, and reports whether none is
// left: those that c cannot make now stay pending.
func (h *HostMappings) Flush(c Caller) bool { return h.FlushExcept(c, nil) }

// FlushExcept is Flush, except that the parts of the pending unmaps that
// lie in keep stay pending: the host keeps mapping them until a later
// Flush (the sandbox keeps the pages that the host kernel writes for a
// running thread until the manager has mapped them again). It reports
// whether no unmap is left pending.
func (h *HostMappings) FlushExcept(c Caller, keep []hostarch.AddrRange) bool {
	var kept []hostarch.AddrRange
	for len(h.pending) > 0 {
		todo, held := splitOff(h.pending[0], keep)
		for i, r := range todo {
			if !c.Unmap(r) {
				rest := append(kept, held...)
				rest = append(rest, todo[i:]...)
				h.pending = append(rest, h.pending[1:]...)
				return false
			}
		}
		kept = append(kept, held...)
		h.pending = h.pending[1:]
	}
	h.pending = kept
	return len(kept) == 0
}

// splitOff returns the parts of r outside every range of keep, and those
// inside one.
func splitOff(r hostarch.AddrRange, keep []hostarch.AddrRange) (out, in []hostarch.AddrRange) {
	out = []hostarch.AddrRange{r}
	for _, k := range keep {
		var next []hostarch.AddrRange
		for _, o := range out {
			if !o.Overlaps(k) {
				next = append(next, o)
				continue
			}
			in = append(in, o.Intersect(k))
			if o.Start < k.Start {
				next = append(next, hostarch.AddrRange{Start: o.Start, End: k.Start})
			}
			if o.End > k.End {
				next = append(next, hostarch.AddrRange{Start: k.End, End: o.End})
			}
		}
		out = next
	}
	return out, in
}

// DropPending forgets the pending unmaps (the process is gone, and its
// mappings with it).
func (h *HostMappings) DropPending() { h.pending = nil }

// Covers reports whether the host maps all of ar with at least at (and
// none of it stale).
func (h *HostMappings) Covers(ar hostarch.AddrRange, at hostarch.AccessType) bool {
	if ar.Length() == 0 {
		return true
	}
	next := ar.Start
	seg := h.set.FindSegment(ar.Start)
	for seg.Ok() && next < ar.End {
		if seg.Start() > next || seg.ValuePtr().Stale || !seg.ValuePtr().Perms.SupersetOf(at) {
			return false
		}
		next = seg.End()
		seg = seg.NextSegment()
	}
	return next >= ar.End
}

// PiecesIn returns the recorded pieces within rs (sorted and disjoint).
func (h *HostMappings) PiecesIn(rs []hostarch.AddrRange) []Piece {
	var out []Piece
	for _, r := range rs {
		for seg := range h.set.Segments(segment.Range[hostarch.Addr](r)) {
			out = append(out, Piece{hostarch.AddrRange(seg.Range()).Intersect(r), seg.Value()})
		}
	}
	return out
}

// All returns every recorded piece, in address order.
func (h *HostMappings) All() iter.Seq[Piece] {
	return func(yield func(Piece) bool) {
		for seg := h.set.FirstSegment(); seg.Ok(); seg = seg.NextSegment() {
			if !yield(Piece{hostarch.AddrRange(seg.Range()), seg.Value()}) {
				return
			}
		}
	}
}

// Inherit records pieces, which a host fork child inherited from its
// parent, as stale.
func (h *HostMappings) Inherit(pieces []Piece) {
	for _, pc := range pieces {
		m := pc.Mapping
		m.Stale = true
		h.record(pc.Range, m)
	}
}

// SetTrustStale says whether stale pieces map what the record shows, so
// that a MapFile of the same File, offset and permissions only confirms
// them.
func (h *HostMappings) SetTrustStale(trust bool) { h.trustStale = trust }

// StalePieces returns the stale ranges within ar.
func (h *HostMappings) StalePieces(ar hostarch.AddrRange) []hostarch.AddrRange {
	var out []hostarch.AddrRange
	for seg := range h.set.Segments(segment.Range[hostarch.Addr](ar)) {
		if seg.ValuePtr().Stale {
			out = append(out, hostarch.AddrRange(seg.Range()).Intersect(ar))
		}
	}
	return out
}

// Protect records that the host mappings within ar now allow no more
// than at, after its user changed their protections itself (mprotect).
func (h *HostMappings) Protect(ar hostarch.AddrRange, at hostarch.AccessType) {
	for _, pc := range h.PiecesIn([]hostarch.AddrRange{ar}) {
		m := pc.Mapping
		if m.Perms.Intersect(at) == m.Perms {
			continue
		}
		m.Perms = m.Perms.Intersect(at)
		h.record(pc.Range, m)
	}
}

// Forget removes ar from the record, after its user unmapped it in the
// host itself.
func (h *HostMappings) Forget(ar hostarch.AddrRange) {
	h.set.RemoveRange(segment.Range[hostarch.Addr](ar))
	h.gen++
}

// MapZeroPage is Caller.Map for a Mapping of memmap.ZeroPage, which has no
// descriptor: each of rs in turn becomes private anonymous memory with
// m.Perms less Write (mmap(MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, and
// MAP_POPULATE if precommit), made by mmap, which returns the mapping's
// address or the call's error), whose reads the host answers with its own
// zero page, allocating nothing. It returns how many of rs it mapped, and
// the error that stopped it.
func MapZeroPage(rs []hostarch.AddrRange, m Mapping, precommit bool, mmap func(ar hostarch.AddrRange, prot, flags uintptr) (uintptr, error)) (int, error) {
	at := m.Perms
	at.Write = false
	flags := uintptr(unix.MAP_PRIVATE | unix.MAP_ANONYMOUS | unix.MAP_FIXED)
	if precommit {
		flags |= unix.MAP_POPULATE
	}
	for i, ar := range rs {
		r, err := mmap(ar, uintptr(at.Prot()), flags)
		if err == nil && r != uintptr(ar.Start) {
			err = fmt.Errorf("mmap(%v, MAP_FIXED) returned %#x", ar.Start, r)
		}
		if err != nil {
			return i, fmt.Errorf("ptrace: mapping the zero page at %v (%#x bytes): %w", ar.Start, ar.Length(), err)
		}
	}
	return len(rs), nil
}
