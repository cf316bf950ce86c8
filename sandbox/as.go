package sandbox

import (
	"errors"
	"fmt"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/mm"
	"github.com/vmspace/vmspace/platform"
	"github.com/vmspace/vmspace/platform/ptrace"
	"golang.org/x/sys/unix"
)

// stubAS is the platform.AddressSpace of one program process: the ptrace
// platform's driver of a process's host mappings (ptrace.HostMappings:
// the record of what is mapped, stale pieces inherited at a fork,
// deferred unmaps), whose mmap and munmap system calls are injected into
// one of the process's threads, which must be stopped under the tracer
// (the sandbox holds one stopped while it runs the memory manager for
// it, and stops one otherwise). All methods run on the tracer thread.
//
// Every host mapping below StubStart is made by it, so its record tells
// the sandbox whether a user buffer is mapped in the host before a
// passed-through system call touches it.
type stubAS struct {
	// s is the sandbox. Immutable.
	s *Sandbox
	// sp is the address space it belongs to. Immutable.
	sp *space
	// h is the host mappings. Its pending unmaps are made before any
	// task of the address space runs on (the unmapped pages, which the
	// process's other threads can still write meanwhile, are held by the
	// memory file until then: see Sandbox.shootdown); the manager unmaps
	// a range before mapping its new pages when it breaks copy-on-write,
	// and unmapped in between, the page holding a thread's rseq area
	// would make the kernel's next update of it fail, killing the thread
	// with SIGSEGV.
	h ptrace.HostMappings
	// released is set by Release; later calls do nothing.
	released bool
	// holes spans the inaccessible reservations that heap shrinks left
	// in the host where the record shows nothing (brk.go), removed when
	// the host refuses a mapping (clearHoles). Tracer goroutine.
	holes hostarch.AddrRange
	// evicted is set when the host refuses a mapping (the manager then
	// drops every host mapping), until the robust futex words are kept
	// again (keepUnflushedKernelAreas). Tracer goroutine.
	evicted bool
	// protects are ranges whose host mappings lose write access at the
	// next flush (protectLater): the record already says so. Tracer
	// goroutine.
	protects []hostarch.AddrRange
}

// generation returns a number that changes whenever a host mapping of the
// address space is made or removed (the fault path's test of progress).
func (as *stubAS) generation() uint64 { return as.h.Generation() }

var _ platform.AddressSpace = (*stubAS)(nil)

// MapFile implements platform.AddressSpace.
func (as *stubAS) MapFile(addr hostarch.Addr, f memmap.File, fr memmap.FileRange, at hostarch.AccessType, precommit bool) error {
	if as.released {
		return fmt.Errorf("sandbox: MapFile on a released address space: %w", unix.ESRCH)
	}
	if _, ok := f.(*vdsoImage); ok {
		// The host maps its own vDSO there (vdso_io.go).
		return nil
	}
	var err error
	if mapFileHook != nil {
		err = mapFileHook(as)
	}
	if err == nil {
		err = as.h.MapFile(addr, f, fr, at, precommit, injector{as: as})
	}
	if errors.Is(err, unix.ENOMEM) {
		as.evicted = true // the manager drops its host mappings
	}
	if _, pending := as.s.unflushed[as]; (pending || as.holes.Length() > 0) && errors.Is(err, unix.ENOMEM) {
		// The host refused the mapping (past vm.max_map_count) while
		// unmaps were pending, such as the manager's eviction of all
		// its host mappings after a refusal, or while heap shrinks left
		// holes (brk.go): make them (but for the kernel areas' pages:
		// flushEarly), remove those, then retry.
		as.flushEarly()
		as.clearHoles()
		err = as.h.MapFile(addr, f, fr, at, precommit, injector{as: as})
	}
	return err
}

// mapFileHook, if not nil, is called at every MapFile, which fails with
// its error if not nil as if the host had refused the mapping (tests make
// the host refuse mappings with it).
var mapFileHook func(as *stubAS) error

// flushEarly makes the pending unmaps at a moment when the manager's locks
// are held (it cannot map anything again now), except on the pages that
// the host kernel accesses for a live task of the address space (its
// kernel areas: kareas.go): those stay mapped as they were, and pending,
// until the next shootdown, which first has the manager map them again
// (keepUnflushedKernelAreas). Unmapped meanwhile, the page of a running
// thread's rseq area would have the kernel kill the thread at its next
// return to user mode.
func (as *stubAS) flushEarly() {
	if as.released {
		as.flush()
		return
	}
	if as.h.FlushExcept(injector{as: as}, as.kernelPages()) {
		delete(as.s.unflushed, as)
	}
}

// kernelPages returns the pages holding the kernel areas of the live tasks
// of the address space.
func (as *stubAS) kernelPages() []hostarch.AddrRange {
	var out []hostarch.AddrRange
	add := func(ar hostarch.AddrRange) {
		if ar.Length() == 0 {
			return
		}
		r := hostarch.AddrRange{Start: ar.Start.RoundDown()}
		end, ok := ar.End.RoundUp()
		if !ok {
			end = ptrace.StubStart
		}
		r.End = end
		out = append(out, r)
	}
	for p := range as.sp.procs {
		for _, t := range p.tasks {
			if t.dead() {
				continue
			}
			add(t.kareas.rseq)
			if t.kareas.ctid != 0 {
				add(areaRange(uint64(t.kareas.ctid), 4))
			}
			add(t.kareas.robust)
		}
	}
	return out
}

// refuseHostMap, if not nil, is asked before every host mapping a stubAS
// makes, and a true answer fails it with ENOMEM as a host past its
// vm.max_map_count would (tests set it).
var refuseHostMap func(as *stubAS, ar hostarch.AddrRange) bool

// injector is the ptrace.Caller of a stubAS: calls injected into a task
// of its address space (the one the sandbox holds stopped, or one it
// stops), with the descriptor of the File being mapped opened there for
// the moment.
type injector struct{ as *stubAS }

// task returns the task whose process the calls are made in: one the
// sandbox holds or stops, or, on the fast path, any task of the address
// space (its helper thread makes the calls: fastpath.go).
func (c injector) task() (*task, error) {
	if c.as.s.fp.serving() != nil {
		return c.as.s.fp.anyTask(c.as.sp)
	}
	return c.as.s.holder(c.as.sp)
}

// Map implements ptrace.Caller.
func (c injector) Map(rs []hostarch.AddrRange, m ptrace.Mapping, precommit bool) (int, error) {
	as := c.as
	t, err := c.task()
	if err != nil {
		return 0, err
	}
	if m.File == memmap.ZeroPage {
		return ptrace.MapZeroPage(rs, m, precommit, func(ar hostarch.AddrRange, prot, flags uintptr) (uintptr, error) {
			if refuseHostMap != nil && refuseHostMap(as, ar) {
				return 0, unix.ENOMEM
			}
			r, err := as.s.inject(t, unix.SYS_MMAP, uintptr(ar.Start), uintptr(ar.Length()), prot, flags, ^uintptr(0), 0)
			if e, ok := errnoOf(r); ok && err == nil {
				err = e
			}
			return r, err
		})
	}
	fd, done, err := as.s.mapFD(t, m.File, m.Perms)
	if err != nil {
		return 0, err
	}
	if done != nil {
		defer done()
	}
	flags := uintptr(unix.MAP_SHARED | unix.MAP_FIXED)
	if precommit {
		flags |= unix.MAP_POPULATE
	}
	for i, ar := range rs {
		if refuseHostMap != nil && refuseHostMap(as, ar) {
			return i, fmt.Errorf("sandbox: mmap(%v, %#x) in pid %d: %w (refused by a test)", ar.Start, ar.Length(), t.p.pid, unix.ENOMEM)
		}
		off := uint64(ar.Start) + m.Delta
		r, err := as.s.inject(t, unix.SYS_MMAP, uintptr(ar.Start), uintptr(ar.Length()), uintptr(m.Perms.Prot()), flags, uintptr(fd), uintptr(off))
		if err == nil && r != uintptr(ar.Start) {
			if e, ok := errnoOf(r); ok {
				err = fmt.Errorf("sandbox: mmap(%v, %#x) in pid %d: %w", ar.Start, ar.Length(), t.p.pid, e)
			} else {
				err = fmt.Errorf("sandbox: mmap(%v, MAP_FIXED) in pid %d returned %#x", ar.Start, t.p.pid, r)
			}
		}
		if err != nil {
			return i, err
		}
	}
	return len(rs), nil
}

// Unmap implements ptrace.Caller. It reports false if the unmap cannot be
// made now although the address space lives: every live task of it is
// parked at a fork or inside a system call.
func (c injector) Unmap(ar hostarch.AddrRange) bool {
	as := c.as
	t, err := c.task()
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
	return true
}

// protectNow takes write access away from the host mappings pcs (pieces
// of the record, sorted) at once, with injected mprotect calls (one per
// run of adjacent pieces left with the same protections), and records it.
// It reports false, having changed nothing more, when no task of the
// address space can take an injected call now: the rest of pcs is then
// left as it was. The pages stay mapped throughout, unlike an unmap and
// a new mapping.
func (as *stubAS) protectNow(pcs []shadowPiece) bool {
	if as.released {
		return true
	}
	for i := 0; i < len(pcs); {
		at := pcs[i].m.Perms
		at.Write = false
		run := pcs[i].ar
		j := i + 1
		for ; j < len(pcs); j++ {
			next := pcs[j].m.Perms
			next.Write = false
			if pcs[j].ar.Start != run.End || next != at {
				break
			}
			run.End = pcs[j].ar.End
		}
		t, err := injector{as: as}.task()
		if err != nil {
			return false
		}
		r, err := as.s.inject(t, unix.SYS_MPROTECT, uintptr(run.Start), uintptr(run.Length()), uintptr(at.Prot()))
		if err != nil {
			return false
		}
		if e, bad := errnoOf(r); bad {
			// mprotect fails only for lack of memory to split; the
			// process cannot be trusted with writable mappings of
			// shared pages.
			as.s.killProcess(t.p, fmt.Sprintf("mprotect(%v, %#x) failed: %v", run.Start, run.Length(), e))
			return true
		}
		as.h.Protect(run, at)
		i = j
	}
	return true
}

// protectLater is protectNow for a moment when no task of the address
// space can take an injected call, hence none runs: the record loses
// write access to pcs at once, the host at the next flush, before any
// task runs on.
func (as *stubAS) protectLater(pcs []shadowPiece) {
	if as.released {
		return
	}
	for _, pc := range pcs {
		at := pc.m.Perms
		at.Write = false
		as.h.Protect(pc.ar, at)
		as.protects = append(as.protects, pc.ar)
	}
	as.s.unflushed[as] = struct{}{}
}

// flushProtects makes the host mprotects protectLater left, where the
// record still shows the read-only mappings it recorded (what was mapped
// or unmapped there since needs nothing more), and reports whether none
// is left.
func (as *stubAS) flushProtects() bool {
	if len(as.protects) == 0 {
		return true
	}
	var pcs []shadowPiece
	for _, pc := range as.h.PiecesIn(as.protects) {
		if !pc.Mapping.Perms.Write {
			pcs = append(pcs, shadowPiece{pc.Range, pc.Mapping})
		}
	}
	if !as.protectNow(pcs) {
		return false
	}
	as.protects = nil
	return true
}

// flush makes the pending mprotects and unmaps. Those that cannot be made
// now (no task of the address space can take an injected call) stay
// pending.
func (as *stubAS) flush() {
	if !as.released && (!as.flushProtects() || !as.h.Flush(injector{as: as})) {
		return
	}
	as.protects = nil
	as.h.DropPending()
	delete(as.s.unflushed, as)
}

// unpend removes ar from the pending unmaps (the host's mappings there
// were replaced by other means).
func (as *stubAS) unpend(ar hostarch.AddrRange) { as.h.Unpend(ar) }

// Unmap implements platform.AddressSpace: the host munmap is deferred
// (flush).
func (as *stubAS) Unmap(addr hostarch.Addr, length uint64) {
	if as.released {
		return
	}
	if as.h.Unmap(addr, length) {
		as.s.unflushed[as] = struct{}{}
	}
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
	if len(s.unflushed) == 0 && !s.holdingTails() {
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

// verify checks that every host mapping the record shows maps the pages
// that the manager maps there, with no more permissions than it allows:
// what makes freed pages unreachable once the pending unmaps are made.
func (as *stubAS) verify() error {
	if as.released {
		return nil
	}
	for pc := range as.h.All() {
		m, r := pc.Mapping, pc.Range
		if m.Stale {
			return fmt.Errorf("host mapping %v is still an unconfirmed inherited one", r)
		}
		next := r.Start
		for _, b := range as.sp.mm.Backings(r) {
			switch {
			case b.Range.Start > next:
				return fmt.Errorf("host mapping %v maps %v, where the manager has no pma", r, hostarch.AddrRange{Start: next, End: b.Range.Start})
			case b.File != m.File || b.Offset-uint64(b.Range.Start) != m.Delta:
				return fmt.Errorf("host mapping %v maps %v at offset %#x of %v, the manager offset %#x of %v", r, b.Range, uint64(b.Range.Start)+m.Delta, m.File, b.Offset, b.File)
			case !b.Perms.SupersetOf(m.Perms):
				return fmt.Errorf("host mapping %v maps %v with %v, the manager allows %v", r, b.Range, m.Perms, b.Perms)
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
// the program, and the parent's writable private mappings stay in the
// record until the sandbox has read from it what the child inherited
// (fork.go).
func (as *stubAS) PreFork() bool { return true }

// PostFork implements platform.AddressSpace.
func (as *stubAS) PostFork() {}

// covers reports whether the host maps all of ar with at least at.
func (as *stubAS) covers(ar hostarch.AddrRange, at hostarch.AccessType) bool {
	return as.h.Covers(ar, at)
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
	// active is true once the manager was activated (activate): a fork
	// child's is at its first stop, which a child killed first never
	// has. Tracer goroutine.
	active bool
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
