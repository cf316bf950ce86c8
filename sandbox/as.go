package sandbox

import (
	"fmt"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/mm"
	"github.com/vmspace/vmspace/platform"
	"github.com/vmspace/vmspace/platform/ptrace"
	"github.com/vmspace/vmspace/segment"
	"golang.org/x/sys/unix"
)

// hostMap is what the host has mapped over a range of a program process:
// a shared mapping of a File (the memory file, or a host file mapped
// directly) with these permissions.
type hostMap struct {
	// file is the File mapped (nil where unknown).
	file memmap.File
	// perms are the mapping's host protections.
	perms hostarch.AccessType
	// delta is the file offset of the mapping minus its address (modulo
	// 2^64), the same for every page of one mapping.
	delta uint64
	// stale is true for a mapping inherited from a fork parent that the
	// process's own manager has not confirmed yet (see fork.go): MapFile
	// maps over it, unless it is trusted (stubAS.trustStale) and maps
	// what MapFile wants, which MapFile then only confirms.
	stale bool
}

type shadowFuncs struct{}

func (shadowFuncs) MinKey() hostarch.Addr { return 0 }
func (shadowFuncs) MaxKey() hostarch.Addr { return ptrace.StubStart }
func (shadowFuncs) ClearValue(*hostMap)   {}
func (shadowFuncs) Merge(_ segment.Range[hostarch.Addr], a hostMap, _ segment.Range[hostarch.Addr], b hostMap) (hostMap, bool) {
	return a, a == b
}
func (shadowFuncs) Split(_ segment.Range[hostarch.Addr], v hostMap, _ hostarch.Addr) (hostMap, hostMap) {
	return v, v
}

// shadowSet records the host mappings of one program process, as made by
// its stubAS. Ranges are page-aligned and below StubStart.
type shadowSet = segment.Set[hostarch.Addr, hostMap, shadowFuncs]

// stubAS is the platform.AddressSpace of one program process: MapFile and
// Unmap are mmap, munmap and mprotect system calls injected into one of the
// process's threads, which must be stopped under the tracer (the sandbox
// holds one stopped while it runs the memory manager for it, and stops one
// otherwise). All methods run on the tracer thread.
//
// It keeps a shadow of what it mapped (every host mapping below StubStart
// was made by it), which tells the sandbox whether a user buffer is mapped
// in the host before a passed-through system call touches it.
type stubAS struct {
	// s is the sandbox. Immutable.
	s *Sandbox
	// sp is the address space it belongs to. Immutable.
	sp *space
	// shadow is the host mappings made so far.
	shadow shadowSet
	// released is set by Release; later calls do nothing.
	released bool
	// pending are ranges the manager unmapped whose host munmap is
	// deferred until the next flush: a MapFile over them replaces them at
	// once instead (the manager unmaps a range before mapping its new
	// pages when it breaks copy-on-write; unmapped in between, the page
	// holding a thread's rseq area would make the kernel's next update of
	// it fail, killing the thread with SIGSEGV). The shadow no longer
	// shows pending ranges. Until they are flushed, the pages the manager
	// freed are held by the memory file (the shootdown: see
	// Sandbox.shootdown), since the process's other threads run on and
	// can still write them.
	pending []hostarch.AddrRange
	// trustStale is set while a fork child's mappings are fixed, if the
	// child inherited exactly its parent's shadow (fork.go).
	trustStale bool
	// mapCalls and unmapCalls count the injected calls, for statistics.
	mapCalls, unmapCalls uint64
	// gen advances with every change to the host mappings (made, or
	// removed from the shadow): see generation. A fork also uses it to
	// tell whether its child inherited exactly what the shadow shows
	// (task.mapGen).
	gen uint64
}

// generation returns a number that changes whenever a host mapping of the
// address space is made or removed (the fault path's test of progress).
func (as *stubAS) generation() uint64 { return as.gen }

var _ platform.AddressSpace = (*stubAS)(nil)

// MapFile implements platform.AddressSpace.
func (as *stubAS) MapFile(addr hostarch.Addr, f memmap.File, fr memmap.FileRange, at hostarch.AccessType, precommit bool) error {
	if as.released {
		return fmt.Errorf("sandbox: MapFile on a released address space: %w", unix.ESRCH)
	}
	end, ok := addr.AddLength(fr.Length())
	if !addr.IsPageAligned() || !ok || end > ptrace.StubStart || fr.Length() == 0 || !hostarch.IsPageAligned(fr.Start) {
		return fmt.Errorf("sandbox: MapFile(%v, %v): %w", addr, fr, unix.EINVAL)
	}
	ar := hostarch.AddrRange{Start: addr, End: end}
	want := hostMap{file: f, perms: at, delta: fr.Start - uint64(addr)}
	// Map only what the host does not already map this way: the manager
	// maps whole pmas, most of which are often mapped already.
	miss, confirm := as.missing(ar, want)
	for _, r := range confirm {
		as.record(r, want)
	}
	if len(miss) == 0 {
		return nil
	}
	t, err := as.s.holder(as.sp)
	if err != nil {
		return err
	}
	fd, done, err := as.s.mapFD(t, f, at)
	if err != nil {
		return err
	}
	if done != nil {
		defer done()
	}
	for _, r := range miss {
		if err := as.mmap(t, fd, r, want, precommit); err != nil {
			return err
		}
	}
	return nil
}

// missing returns the parts of ar that the host does not map as m, and
// the trusted stale parts that it maps as m, to confirm.
func (as *stubAS) missing(ar hostarch.AddrRange, m hostMap) (miss, confirm []hostarch.AddrRange) {
	next := ar.Start
	for seg := range as.shadow.Segments(segment.Range[hostarch.Addr](ar)) {
		v := *seg.ValuePtr()
		r := hostarch.AddrRange(seg.Range()).Intersect(ar)
		if v.stale && as.trustStale {
			v.stale = false
			if v == m {
				confirm = append(confirm, r)
			}
		}
		if v != m {
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

// mmap maps ar as m in the host, through descriptor fd of t's process.
func (as *stubAS) mmap(t *task, fd int, ar hostarch.AddrRange, m hostMap, precommit bool) error {
	flags := uintptr(unix.MAP_SHARED | unix.MAP_FIXED)
	if precommit {
		flags |= unix.MAP_POPULATE
	}
	off := uint64(ar.Start) + m.delta
	r, err := as.s.inject(t, unix.SYS_MMAP, uintptr(ar.Start), uintptr(ar.Length()), uintptr(m.perms.Prot()), flags, uintptr(fd), uintptr(off))
	if err == nil && r != uintptr(ar.Start) {
		if e, ok := errnoOf(r); ok {
			err = fmt.Errorf("sandbox: mmap(%v, %#x) in pid %d: %w", ar.Start, ar.Length(), t.p.pid, e)
		} else {
			err = fmt.Errorf("sandbox: mmap(%v, MAP_FIXED) in pid %d returned %#x", ar.Start, t.p.pid, r)
		}
	}
	if err != nil {
		return err
	}
	as.mapCalls++
	as.record(ar, m)
	as.unpend(ar)
	return nil
}

// unpend removes ar from the pending unmaps.
func (as *stubAS) unpend(ar hostarch.AddrRange) {
	if len(as.pending) == 0 {
		return
	}
	out := as.pending[:0:0]
	for _, r := range as.pending {
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
	as.pending = out
}

// flush makes the pending unmaps. Those that cannot be made now (no task
// of the address space can take an injected call) stay pending.
func (as *stubAS) flush() {
	for len(as.pending) > 0 && !as.released {
		if !as.munmap(as.pending[0]) {
			return
		}
		as.pending = as.pending[1:]
	}
	as.pending = nil
	delete(as.s.unflushed, as)
}

// record notes that ar is now mapped with m.
func (as *stubAS) record(ar hostarch.AddrRange, m hostMap) {
	as.gen++
	as.shadow.RemoveRange(segment.Range[hostarch.Addr](ar))
	as.shadow.Add(segment.Range[hostarch.Addr](ar), m)
}

// Unmap implements platform.AddressSpace.
func (as *stubAS) Unmap(addr hostarch.Addr, length uint64) {
	if as.released {
		return
	}
	ar, ok := ptrace.ClipUser(addr, length)
	if !ok {
		return
	}
	if as.shadow.IsEmptyRange(segment.Range[hostarch.Addr](ar)) {
		return
	}
	as.shadow.RemoveRange(segment.Range[hostarch.Addr](ar))
	as.gen++
	as.pending = append(as.pending, ar)
	as.s.unflushed[as] = struct{}{}
}

// munmap unmaps ar in the host. It reports false if that cannot be done
// now although the address space lives: every live task of it is parked
// at a fork or inside a system call.
func (as *stubAS) munmap(ar hostarch.AddrRange) bool {
	t, err := as.s.holder(as.sp)
	if err != nil {
		// The processes are gone (and so are their mappings), or
		// none can be stopped now.
		return !as.s.spaceAlive(as.sp)
	}
	r, err := as.s.inject(t, unix.SYS_MUNMAP, uintptr(ar.Start), uintptr(ar.Length()))
	if err == nil {
		if e, bad := errnoOf(r); bad {
			// munmap fails only for lack of memory to split; the
			// process cannot be trusted with stale mappings.
			as.s.killProcess(t.p, fmt.Sprintf("munmap(%v, %#x) failed: %v", ar.Start, ar.Length(), e))
		}
	} else if as.s.spaceAlive(as.sp) {
		return false
	}
	as.unmapCalls++
	return true
}

// spaceAlive reports whether a task using sp has not exited.
func (s *Sandbox) spaceAlive(sp *space) bool {
	for p := range sp.procs {
		for _, t := range p.tasks {
			if !t.dead() {
				return true
			}
		}
	}
	return false
}

// syncRelease makes the memory file release freed pages synchronously
// (pgalloc.Options.DisableAsyncRelease): tests set it to give a page the
// longest life between its release and the next shootdown, when one
// comes too late.
var syncRelease = false

// shootdown makes the deferred host unmaps of every address space and
// then, if none is left, releases the memory-file pages freed meanwhile
// (held by the memory file until then: pgalloc.Options.HoldFreed). This
// is the sandbox's TLB shootdown: a page the memory manager frees may
// still be mapped in the host, in the process that freed it (pending
// unmaps, while its other threads run on) or in others (a shared memory
// page invalidated in every address space mapping it), and a write
// through such a mapping must never reach a page that someone else was
// given since. Fork children's inherited mappings need no waiting: a
// child does not run before fixFork has brought them in line with its
// manager.
func (s *Sandbox) shootdown() {
	for as := range s.unflushed {
		as.flush()
	}
	if len(s.unflushed) == 0 {
		s.mf.ReleaseHeld()
	}
}

// checkShadow, if not nil, receives every disagreement between a host
// mapping and its memory manager that verifyShadows finds after each stop
// (tests set it).
var checkShadow func(error)

// verifyShadows checks every live address space (verify).
func (s *Sandbox) verifyShadows() {
	seen := make(map[*space]bool)
	for _, p := range s.procs {
		if sp := p.sp; sp != nil && !seen[sp] {
			seen[sp] = true
			if err := sp.as.verify(); err != nil {
				checkShadow(fmt.Errorf("pid %d: %w", p.pid, err))
			}
		}
	}
}

// verify checks that every host mapping the shadow shows maps the pages
// that the manager maps there, with no more permissions than it allows
// (but for the writable private memory a forking parent keeps until it
// takes it back: task.reown): what makes freed pages unreachable once the
// pending unmaps are made.
func (as *stubAS) verify() error {
	if as.released {
		return nil
	}
	var reown []hostarch.AddrRange
	for p := range as.sp.procs {
		for _, t := range p.tasks {
			reown = append(reown, t.reown...)
		}
	}
	inReown := func(r hostarch.AddrRange) bool {
		for _, o := range reown {
			if o.Start <= r.Start && r.End <= o.End {
				return true
			}
		}
		return false
	}
	for seg := as.shadow.FirstSegment(); seg.Ok(); seg = seg.NextSegment() {
		m, r := seg.Value(), hostarch.AddrRange(seg.Range())
		if m.stale {
			return fmt.Errorf("host mapping %v is still an unconfirmed inherited one", r)
		}
		next := r.Start
		for _, b := range as.sp.mm.Backings(r) {
			switch {
			case b.Range.Start > next:
				return fmt.Errorf("host mapping %v maps %v, where the manager has no pma", r, hostarch.AddrRange{Start: next, End: b.Range.Start})
			case b.File != m.file || b.Offset-uint64(b.Range.Start) != m.delta:
				return fmt.Errorf("host mapping %v maps %v at offset %#x of %v, the manager offset %#x of %v", r, b.Range, uint64(b.Range.Start)+m.delta, m.file, b.Offset, b.File)
			case !b.Perms.SupersetOf(m.perms) && !(inReown(b.Range) && b.Perms.Union(hostarch.Write).SupersetOf(m.perms)):
				return fmt.Errorf("host mapping %v maps %v with %v, the manager allows %v", r, b.Range, m.perms, b.Perms)
			}
			next = b.Range.End
		}
		if next < r.End {
			return fmt.Errorf("host mapping %v maps %v, where the manager has no pma", r, hostarch.AddrRange{Start: next, End: r.End})
		}
	}
	return nil
}

// Release implements platform.AddressSpace. The host process is not
// touched: it lives on (a new manager replaces this one at exec) or is
// already gone.
func (as *stubAS) Release() { as.released = true }

// PreFork implements platform.AddressSpace: the host process forks with
// the program, and the parent keeps its writable private memory mapped
// writable until the child has copied it (fork.go).
func (as *stubAS) PreFork() bool { return true }

// PostFork implements platform.AddressSpace.
func (as *stubAS) PostFork() {}

// stalePieces returns the stale ranges within ar.
func (as *stubAS) stalePieces(ar hostarch.AddrRange) []hostarch.AddrRange {
	var out []hostarch.AddrRange
	for seg := range as.shadow.Segments(segment.Range[hostarch.Addr](ar)) {
		if seg.ValuePtr().stale {
			out = append(out, hostarch.AddrRange(seg.Range()).Intersect(ar))
		}
	}
	return out
}

// covers reports whether the host maps all of ar with at least at.
func (as *stubAS) covers(ar hostarch.AddrRange, at hostarch.AccessType) bool {
	if ar.Length() == 0 {
		return true
	}
	next := ar.Start
	seg := as.shadow.FindSegment(ar.Start)
	for seg.Ok() && next < ar.End {
		if seg.Start() > next || seg.ValuePtr().stale || !seg.ValuePtr().perms.SupersetOf(at) {
			return false
		}
		next = seg.End()
		seg = seg.NextSegment()
	}
	return next >= ar.End
}

// errnoOf returns the errno of a raw system call result, if it is one.
func errnoOf(r uintptr) (unix.Errno, bool) { return ptrace.Errno(r) }

// space is one host address space and the memory manager that serves it,
// shared by the processes created with CLONE_VM (vfork, posix_spawn) until
// they exec.
type space struct {
	// mm is the memory manager; as its AddressSpace. Immutable.
	mm *mm.MemoryManager
	as *stubAS
	// procs are the processes using the space.
	procs map[*process]struct{}
}

// sbPlatform is the platform of the sandbox's memory managers: the ptrace
// platform's user range, and AddressSpaces that are stubASes of existing
// processes, handed over through next.
type sbPlatform struct {
	// minAddr is MinUserAddress. Immutable.
	minAddr hostarch.Addr
	// next is the AddressSpace the next NewAddressSpace returns (set by
	// the sandbox right before activating a manager).
	next *stubAS
}

// NewAddressSpace implements platform.Platform.
func (p *sbPlatform) NewAddressSpace() (platform.AddressSpace, error) {
	as := p.next
	p.next = nil
	if as == nil {
		return nil, fmt.Errorf("sandbox: no process for a new address space: %w", unix.EAGAIN)
	}
	return as, nil
}

// SupportsAddressSpaceIO implements platform.Platform: the manager copies
// through its own mappings of the memory file.
func (*sbPlatform) SupportsAddressSpaceIO() bool { return false }

// MapUnit implements platform.Platform: whole pmas.
func (*sbPlatform) MapUnit() uint64 { return 0 }

// MinUserAddress implements platform.Platform: the ptrace platform's.
func (p *sbPlatform) MinUserAddress() hostarch.Addr { return p.minAddr }

// MaxUserAddress implements platform.Platform: the ptrace platform's, where
// the stub's pages begin.
func (*sbPlatform) MaxUserAddress() hostarch.Addr { return ptrace.StubStart }
