package bench

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"time"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/mm"
	"github.com/vmspace/vmspace/pgalloc"
	"github.com/vmspace/vmspace/platform"
)

// env is what a workload runs with. Immutable during a run.
type env struct {
	// ctx is passed to every memory-manager call.
	ctx context.Context
	// mf is the memory file shared by all workloads.
	mf *pgalloc.MemoryFile
	// scale shrinks counts and sizes (see Options.Scale); <= 0 or >= 1
	// means the spec's figures.
	scale float64
	// pin says whether fault_as pins the process to CPU 0.
	pin bool
	// newPlatform makes fault_as's real platform; nil if there is none.
	newPlatform func() (platform.Platform, error)
	// log receives diagnostics (never nil).
	log io.Writer
}

// n returns the spec's count x, scaled by e.scale, and at least 1.
func (e *env) n(x int) int { return e.nMin(x, 1) }

// nMin returns the spec's count x scaled by e.scale, and at least min (or x
// if x is smaller).
func (e *env) nMin(x, min int) int {
	if e.scale <= 0 || e.scale >= 1 {
		return x
	}
	v := int(float64(x) * e.scale)
	if v < min {
		v = min
	}
	if v > x {
		v = x
	}
	return v
}

// newMM returns a fresh MemoryManager on p (the no-op platform if nil),
// activated so that faults go through its AddressSpace (MapFile) as with
// the reference harness. done deactivates and destroys it; call it exactly
// once.
func (e *env) newMM(p platform.Platform) (m *mm.MemoryManager, done func(), err error) {
	m = mm.New(mm.Options{MemoryFile: e.mf, Platform: p})
	if err := m.Activate(e.ctx); err != nil {
		m.DecUsers(e.ctx)
		return nil, nil, fmt.Errorf("Activate: %w", err)
	}
	return m, func() {
		m.Deactivate()
		m.DecUsers(e.ctx)
	}, nil
}

const (
	pageSize = hostarch.PageSize
	kib      = 1 << 10
	mib      = 1 << 20
)

// touchBytes is what touching a page writes at its offset 0.
var touchBytes = [8]byte{1, 2, 3, 4, 5, 6, 7, 8}

// anon returns the options of an anonymous private mapping of length bytes
// with perms, at no fixed address.
func anon(length uint64, perms hostarch.AccessType) memmap.MMapOpts {
	return memmap.MMapOpts{Length: length, Private: true, Perms: perms, MaxPerms: hostarch.AnyAccess}
}

// mapAnon maps length bytes anonymous RW.
func mapAnon(ctx context.Context, m *mm.MemoryManager, length uint64) (hostarch.Addr, error) {
	a, err := m.MMap(ctx, anon(length, hostarch.ReadWrite))
	if err != nil {
		return 0, fmt.Errorf("MMap(%d bytes): %w", length, err)
	}
	return a, nil
}

// touch writes touchBytes at offset 0 of each of the pages pages from addr,
// in ascending order, through m.CopyOut.
func touch(ctx context.Context, m *mm.MemoryManager, addr hostarch.Addr, pages int) error {
	b := touchBytes[:]
	for i := 0; i < pages; i++ {
		a := addr + hostarch.Addr(i)*pageSize
		if n, err := m.CopyOut(ctx, a, b, mm.IOOpts{}); err != nil || n != len(b) {
			return fmt.Errorf("CopyOut(%v, 8) = %d, %v", a, n, err)
		}
	}
	return nil
}

// region marks a timed region for CPU profiles: while it is on, the
// goroutine carries the pprof label timed=<output name>, so that
// "go tool pprof -tagfocus timed=fork_256m" shows only what was timed.
// Switching is one pointer store, cheap enough to do around each timed
// call.
type region struct {
	// on and off are the label sets inside and outside the region.
	// Immutable.
	on, off context.Context
}

// timed returns the region of output name.
func (e *env) timed(name string) region {
	return region{on: pprof.WithLabels(e.ctx, pprof.Labels("timed", name)), off: e.ctx}
}

// untimed returns a region that labels nothing (for warm-ups).
func (e *env) untimed() region { return region{on: e.ctx, off: e.ctx} }

// start enters the region.
func (r region) start() { pprof.SetGoroutineLabels(r.on) }

// stop leaves the region.
func (r region) stop() { pprof.SetGoroutineLabels(r.off) }

// nsPer returns d in nanoseconds divided by n.
func nsPer(d time.Duration, n int) float64 { return float64(d.Nanoseconds()) / float64(n) }

// medianDur returns the median of ds (the mean of the middle two if even).
func medianDur(ds []time.Duration) float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return float64(s[n/2].Nanoseconds())
	}
	return (float64(s[n/2-1].Nanoseconds()) + float64(s[n/2].Nanoseconds())) / 2
}

// groups are the workloads in canonical order.
var groups = []*group{
	{name: "mmap_munmap_64k", outputs: []output{{"mmap_munmap_64k", "ns/op"}}, run: runMmapMunmap},
	{name: "populate_256m", outputs: []output{{"populate_256m", "ns/page"}}, run: runPopulate},
	{name: "fault_256m", outputs: []output{{"fault_256m", "ns/page"}}, run: runFault},
	{name: "copyin_8", outputs: []output{{"copyin_8", "ns/op"}}, run: runCopyin8},
	{name: "copyout_4k", outputs: []output{{"copyout_4k", "ns/op"}, {"copyout_4k_mbps", "MB/s"}}, run: runCopyout4k},
	{name: "copyin_1m", outputs: []output{{"copyin_1m", "ns/op"}, {"copyin_1m_mbps", "MB/s"}}, run: runCopyin1m},
	{name: "mprotect_frag", outputs: []output{{"mprotect_split_4096", "ns"}, {"mprotect_merge_4096", "ns"}}, run: runMprotectFrag},
	{name: "vma_lookup_100k", outputs: []output{{"vma_lookup_100k", "ns/op"}, {"vma_bytes_100k", "B/vma"}}, run: runVMALookup},
	{name: "fork_256m", outputs: []output{{"fork_256m", "ns/op"}, {"fork_cow_break", "ns/page"}}, run: runFork},
	{name: "brk_grow_64m", outputs: []output{{"brk_grow_64m", "ns/step"}}, run: runBrk},
	{name: "mremap_grow", outputs: []output{{"mremap_grow", "ns/op"}}, run: runMremap},
	{name: "parallel_copyin_8", outputs: []output{{"parallel_copyin_8", "ns/op"}}, run: runParallelCopyin},
	{name: "fault_as", outputs: []output{{"fault_as", "ns/page"}}, run: runFaultAS},
}

// 1. mmap_munmap_64k: MMap 64 KiB anonymous RW + MUnmap it; 1000 warm-up
// iterations, 20000 timed.
func runMmapMunmap(e *env) ([]measure, error) {
	m, done, err := e.newMM(nil)
	if err != nil {
		return nil, err
	}
	defer done()
	ctx := e.ctx
	opts := anon(64*kib, hostarch.ReadWrite)
	iter := func() error {
		a, err := m.MMap(ctx, opts)
		if err != nil {
			return fmt.Errorf("MMap: %w", err)
		}
		if err := m.MUnmap(ctx, a, 64*kib); err != nil {
			return fmt.Errorf("MUnmap(%v): %w", a, err)
		}
		return nil
	}
	for i, n := 0, e.n(1000); i < n; i++ {
		if err := iter(); err != nil {
			return nil, err
		}
	}
	n := e.n(20000)
	reg := e.timed("mmap_munmap_64k")
	reg.start()
	start := time.Now()
	for i := 0; i < n; i++ {
		if err := iter(); err != nil {
			reg.stop()
			return nil, err
		}
	}
	d := time.Since(start)
	reg.stop()
	return []measure{{nsPer(d, n), n}}, nil
}

// 2. populate_256m: touch every page of a new 256 MiB mapping.
func runPopulate(e *env) ([]measure, error) {
	m, done, err := e.newMM(nil)
	if err != nil {
		return nil, err
	}
	defer done()
	pages := e.n(65536)
	a, err := mapAnon(e.ctx, m, uint64(pages)*pageSize)
	if err != nil {
		return nil, err
	}
	reg := e.timed("populate_256m")
	reg.start()
	start := time.Now()
	err = touch(e.ctx, m, a, pages)
	d := time.Since(start)
	reg.stop()
	if err != nil {
		return nil, err
	}
	return []measure{{nsPer(d, pages), pages}}, nil
}

// 3. fault_256m: HandleUserFault(write) once per page of a new 256 MiB
// mapping, ascending.
func runFault(e *env) ([]measure, error) {
	m, done, err := e.newMM(nil)
	if err != nil {
		return nil, err
	}
	defer done()
	pages := e.n(65536)
	a, err := mapAnon(e.ctx, m, uint64(pages)*pageSize)
	if err != nil {
		return nil, err
	}
	d, err := faultPages(e.ctx, m, a, pages, e.timed("fault_256m"))
	if err != nil {
		return nil, err
	}
	return []measure{{nsPer(d, pages), pages}}, nil
}

// faultPages calls HandleUserFault(write) on each of pages pages from a,
// ascending, and returns the time that took.
func faultPages(ctx context.Context, m *mm.MemoryManager, a hostarch.Addr, pages int, reg region) (time.Duration, error) {
	reg.start()
	defer reg.stop()
	start := time.Now()
	for i := 0; i < pages; i++ {
		p := a + hostarch.Addr(i)*pageSize
		if err := m.HandleUserFault(ctx, p, hostarch.Write, 0); err != nil {
			return 0, fmt.Errorf("HandleUserFault(%v, write): %w", p, err)
		}
	}
	return time.Since(start), nil
}

// copyLoop calls f n times in region reg and returns the time that took.
func copyLoop(n int, f func() error, reg region) (time.Duration, error) {
	reg.start()
	defer reg.stop()
	start := time.Now()
	for i := 0; i < n; i++ {
		if err := f(); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// copyIn returns a function that CopyIns len(buf) bytes at a into buf.
func copyIn(ctx context.Context, m *mm.MemoryManager, a hostarch.Addr, buf []byte) func() error {
	return func() error {
		if n, err := m.CopyIn(ctx, a, buf, mm.IOOpts{}); err != nil || n != len(buf) {
			return fmt.Errorf("CopyIn(%v, %d) = %d, %v", a, len(buf), n, err)
		}
		return nil
	}
}

// copyOut returns a function that CopyOuts buf to a.
func copyOut(ctx context.Context, m *mm.MemoryManager, a hostarch.Addr, buf []byte) func() error {
	return func() error {
		if n, err := m.CopyOut(ctx, a, buf, mm.IOOpts{}); err != nil || n != len(buf) {
			return fmt.Errorf("CopyOut(%v, %d) = %d, %v", a, len(buf), n, err)
		}
		return nil
	}
}

// 4. copyin_8: CopyIn 8 B from offset 0 of page 0 of a populated 64 KiB
// mapping; 10000 warm-up, 500000 timed.
func runCopyin8(e *env) ([]measure, error) {
	m, done, err := e.newMM(nil)
	if err != nil {
		return nil, err
	}
	defer done()
	a, err := mapAnon(e.ctx, m, 64*kib)
	if err != nil {
		return nil, err
	}
	if err := touch(e.ctx, m, a, 16); err != nil {
		return nil, err
	}
	buf := make([]byte, 8)
	f := copyIn(e.ctx, m, a, buf)
	if _, err := copyLoop(e.n(10000), f, e.untimed()); err != nil {
		return nil, err
	}
	n := e.n(500000)
	d, err := copyLoop(n, f, e.timed("copyin_8"))
	if err != nil {
		return nil, err
	}
	return []measure{{nsPer(d, n), n}}, nil
}

// 5. copyout_4k: CopyOut 4096 B (bytes i&0xff) to page 0 of a populated
// 1 MiB mapping; 1000 warm-up, 200000 timed.
func runCopyout4k(e *env) ([]measure, error) {
	m, done, err := e.newMM(nil)
	if err != nil {
		return nil, err
	}
	defer done()
	a, err := mapAnon(e.ctx, m, mib)
	if err != nil {
		return nil, err
	}
	if err := touch(e.ctx, m, a, mib/pageSize); err != nil {
		return nil, err
	}
	buf := make([]byte, 4096)
	for i := range buf {
		buf[i] = byte(i & 0xff)
	}
	f := copyOut(e.ctx, m, a, buf)
	if _, err := copyLoop(e.n(1000), f, e.untimed()); err != nil {
		return nil, err
	}
	n := e.n(200000)
	d, err := copyLoop(n, f, e.timed("copyout_4k"))
	if err != nil {
		return nil, err
	}
	ns := nsPer(d, n)
	return []measure{{ns, n}, {4096 / ns * 1e3, n}}, nil
}

// 6. copyin_1m: CopyIn the whole of a populated 1 MiB mapping into a
// resident buffer; 10 warm-up, 2000 timed.
func runCopyin1m(e *env) ([]measure, error) {
	m, done, err := e.newMM(nil)
	if err != nil {
		return nil, err
	}
	defer done()
	a, err := mapAnon(e.ctx, m, mib)
	if err != nil {
		return nil, err
	}
	if err := touch(e.ctx, m, a, mib/pageSize); err != nil {
		return nil, err
	}
	buf := make([]byte, mib)
	for i := range buf {
		buf[i] = byte(i)
	}
	f := copyIn(e.ctx, m, a, buf)
	if _, err := copyLoop(e.n(10), f, e.untimed()); err != nil {
		return nil, err
	}
	n := e.n(2000)
	d, err := copyLoop(n, f, e.timed("copyin_1m"))
	if err != nil {
		return nil, err
	}
	ns := nsPer(d, n)
	return []measure{{ns, n}, {mib / ns * 1e3, n}}, nil
}

// 7. mprotect_frag: on a populated 4096-page mapping, 5 rounds of a split
// phase (MProtect(Read) of every even page: 2048 calls) and a merge phase
// (one MProtect(ReadWrite) of everything); the median of each phase.
func runMprotectFrag(e *env) ([]measure, error) {
	m, done, err := e.newMM(nil)
	if err != nil {
		return nil, err
	}
	defer done()
	ctx := e.ctx
	pages := e.nMin(4096, 2) &^ 1
	length := uint64(pages) * pageSize
	a, err := mapAnon(ctx, m, length)
	if err != nil {
		return nil, err
	}
	if err := touch(ctx, m, a, pages); err != nil {
		return nil, err
	}
	rounds := 5
	split := make([]time.Duration, rounds)
	merge := make([]time.Duration, rounds)
	splitReg, mergeReg := e.timed("mprotect_split_4096"), e.timed("mprotect_merge_4096")
	for r := 0; r < rounds; r++ {
		splitReg.start()
		start := time.Now()
		for i := 0; i < pages; i += 2 {
			if err := m.MProtect(ctx, a+hostarch.Addr(i)*pageSize, pageSize, hostarch.Read, mm.MProtectOpts{}); err != nil {
				splitReg.stop()
				return nil, fmt.Errorf("round %d: MProtect(page %d, Read): %w", r, i, err)
			}
		}
		split[r] = time.Since(start)
		mergeReg.start()
		start = time.Now()
		err := m.MProtect(ctx, a, length, hostarch.ReadWrite, mm.MProtectOpts{})
		merge[r] = time.Since(start)
		mergeReg.stop()
		if err != nil {
			return nil, fmt.Errorf("round %d: MProtect(all, ReadWrite): %w", r, err)
		}
	}
	return []measure{{medianDur(split), rounds}, {medianDur(merge), rounds}}, nil
}

// LookupIndexes returns the spec's fixed random page indexes for
// vma_lookup_100k: 65536 xorshift64 steps from 0x9E3779B97F4A7C15, each
// taken modulo nvmas (100000 in the spec).
func LookupIndexes(nvmas int) []uint32 {
	idx := make([]uint32, 65536)
	s := uint64(0x9E3779B97F4A7C15)
	for i := range idx {
		s ^= s << 13
		s ^= s >> 7
		s ^= s << 17
		idx[i] = uint32(s % uint64(nvmas))
	}
	return idx
}

// heapAlloc returns runtime.MemStats.HeapAlloc after two collections.
func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// 8. vma_lookup_100k: 100000 populated pages made into 100000 vmas
// alternating RW/R; 500000 CopyIns of 8 B at pseudo-random vmas; and the
// heap growth per vma.
func runVMALookup(e *env) ([]measure, error) {
	ctx := e.ctx
	nvmas := e.nMin(100000, 2) &^ 1
	idx := LookupIndexes(nvmas)
	buf := make([]byte, 8)
	lim := mm.DefaultLimits()
	lim.MaxMapCount = 2*nvmas + 1000
	m := mm.New(mm.Options{MemoryFile: e.mf, Limits: &lim})
	if err := m.Activate(ctx); err != nil {
		m.DecUsers(ctx)
		return nil, fmt.Errorf("Activate: %w", err)
	}
	defer func() {
		m.Deactivate()
		m.DecUsers(ctx)
	}()

	h0 := heapAlloc()
	a, err := mapAnon(ctx, m, uint64(nvmas)*pageSize)
	if err != nil {
		return nil, err
	}
	if err := touch(ctx, m, a, nvmas); err != nil {
		return nil, err
	}
	for i := 1; i < nvmas; i += 2 {
		if err := m.MProtect(ctx, a+hostarch.Addr(i)*pageSize, pageSize, hostarch.Read, mm.MProtectOpts{}); err != nil {
			return nil, fmt.Errorf("MProtect(page %d, Read): %w", i, err)
		}
	}
	h1 := heapAlloc()
	bytesPerVMA := (float64(h1) - float64(h0)) / float64(nvmas)

	n := e.n(500000)
	reg := e.timed("vma_lookup_100k")
	reg.start()
	start := time.Now()
	for k := 0; k < n; k++ {
		p := a + hostarch.Addr(idx[k&65535])*pageSize
		if c, err := m.CopyIn(ctx, p, buf, mm.IOOpts{}); err != nil || c != 8 {
			reg.stop()
			return nil, fmt.Errorf("CopyIn(%v, 8) = %d, %v", p, c, err)
		}
	}
	d := time.Since(start)
	reg.stop()
	return []measure{{nsPer(d, n), n}, {bytesPerVMA, nvmas}}, nil
}

// forkBase is where fork_256m's 64 mappings start; they are 8 MiB apart.
const forkBase hostarch.Addr = 0x200000000000

// 9. fork_256m: 64 populated 4 MiB vmas; 5 rounds of (parent touches
// everything, timed Fork, timed child touch of everything, child destroyed).
func runFork(e *env) ([]measure, error) {
	ctx := e.ctx
	m, done, err := e.newMM(nil)
	if err != nil {
		return nil, err
	}
	defer done()
	const nvmas = 64
	vmaPages := e.n(1024)
	for i := 0; i < nvmas; i++ {
		opts := anon(uint64(vmaPages)*pageSize, hostarch.ReadWrite)
		opts.Addr = forkBase + hostarch.Addr(i)*8*mib
		opts.Fixed = true
		if a, err := m.MMap(ctx, opts); err != nil || a != opts.Addr {
			return nil, fmt.Errorf("MMap(fixed %v) = %v, %v", opts.Addr, a, err)
		}
	}
	touchAll := func(m *mm.MemoryManager) error {
		for i := 0; i < nvmas; i++ {
			if err := touch(ctx, m, forkBase+hostarch.Addr(i)*8*mib, vmaPages); err != nil {
				return err
			}
		}
		return nil
	}
	const rounds = 5
	forks := make([]time.Duration, rounds)
	var cow time.Duration
	forkReg, cowReg := e.timed("fork_256m"), e.timed("fork_cow_break")
	for r := 0; r < rounds; r++ {
		if err := touchAll(m); err != nil {
			return nil, fmt.Errorf("round %d: parent: %w", r, err)
		}
		forkReg.start()
		start := time.Now()
		child, err := m.Fork(ctx)
		forks[r] = time.Since(start)
		forkReg.stop()
		if err != nil {
			return nil, fmt.Errorf("round %d: Fork: %w", r, err)
		}
		cowReg.start()
		start = time.Now()
		err = touchAll(child)
		cow += time.Since(start)
		cowReg.stop()
		child.DecUsers(ctx)
		if err != nil {
			return nil, fmt.Errorf("round %d: child: %w", r, err)
		}
	}
	pages := rounds * nvmas * vmaPages
	return []measure{{medianDur(forks), rounds}, {nsPer(cow, pages), pages}}, nil
}

// brkBase is brk_grow_64m's BrkSetup address.
const brkBase hostarch.Addr = 0x555500000000

// 10. brk_grow_64m: 3 passes of 16384 Brk calls growing the heap by a page
// each, then one Brk back to the base.
func runBrk(e *env) ([]measure, error) {
	ctx := e.ctx
	m, done, err := e.newMM(nil)
	if err != nil {
		return nil, err
	}
	defer done()
	m.BrkSetup(ctx, brkBase)
	const passes = 3
	steps := e.n(16384)
	var total time.Duration
	reg := e.timed("brk_grow_64m")
	for p := 0; p < passes; p++ {
		reg.start()
		start := time.Now()
		for k := 1; k <= steps; k++ {
			want := brkBase + hostarch.Addr(k)*pageSize
			if got, err := m.Brk(ctx, want); err != nil || got != want {
				reg.stop()
				return nil, fmt.Errorf("pass %d: Brk(%v) = %v, %v", p, want, got, err)
			}
		}
		total += time.Since(start)
		reg.stop()
		if got, err := m.Brk(ctx, brkBase); err != nil || got != brkBase {
			return nil, fmt.Errorf("pass %d: Brk(%v) = %v, %v", p, brkBase, got, err)
		}
	}
	return []measure{{nsPer(total, passes*steps), passes * steps}}, nil
}

// 11. mremap_grow: 200 rounds of 14 MRemap(MAYMOVE) doublings of a 4 KiB
// RW mapping that a read-only blocker page stops from growing in place, each
// call timed on its own.
func runMremap(e *env) ([]measure, error) {
	ctx := e.ctx
	m, done, err := e.newMM(nil)
	if err != nil {
		return nil, err
	}
	defer done()
	rounds := e.n(200)
	const doublings = 14
	var total time.Duration
	moved, calls := 0, 0
	reg := e.timed("mremap_grow")
	for r := 0; r < rounds; r++ {
		a, err := mapAnon(ctx, m, 2*pageSize)
		if err != nil {
			return nil, err
		}
		blocker := anon(pageSize, hostarch.Read)
		blocker.Addr = a + pageSize
		blocker.Fixed = true
		blocker.Unmap = true
		if b, err := m.MMap(ctx, blocker); err != nil || b != blocker.Addr {
			return nil, fmt.Errorf("round %d: blocker MMap(%v) = %v, %v", r, blocker.Addr, b, err)
		}
		if err := touch(ctx, m, a, 1); err != nil {
			return nil, err
		}
		size := uint64(pageSize)
		for i := 0; i < doublings; i++ {
			reg.start()
			start := time.Now()
			na, err := m.MRemap(ctx, a, size, 2*size, mm.MRemapOpts{MayMove: true})
			total += time.Since(start)
			reg.stop()
			if err != nil {
				return nil, fmt.Errorf("round %d: MRemap(%v, %d, %d, MAYMOVE): %w", r, a, size, 2*size, err)
			}
			calls++
			if na != a {
				moved++
			}
			a = na
			if err := touch(ctx, m, a+hostarch.Addr(2*size)-pageSize, 1); err != nil {
				return nil, fmt.Errorf("round %d: %w", r, err)
			}
			size *= 2
		}
		if err := m.MUnmap(ctx, a, size); err != nil {
			return nil, fmt.Errorf("round %d: MUnmap(%v, %d): %w", r, a, size, err)
		}
		if err := m.MUnmap(ctx, blocker.Addr, pageSize); err != nil {
			return nil, fmt.Errorf("round %d: MUnmap(blocker %v): %w", r, blocker.Addr, err)
		}
	}
	if moved != calls {
		fmt.Fprintf(e.log, "bench:   mremap_grow: %d of %d calls moved the mapping (the reference systems move every time)\n", moved, calls)
	}
	return []measure{{nsPer(total, calls), calls}}, nil
}

// 12. parallel_copyin_8: 2 goroutines each doing 500000 CopyIns of 8 B at
// their own page of one populated 64 KiB mapping, after 10000 warm-up ones;
// wall time from a start barrier until both are done, per CopyIn.
func runParallelCopyin(e *env) ([]measure, error) {
	ctx := e.ctx
	m, done, err := e.newMM(nil)
	if err != nil {
		return nil, err
	}
	defer done()
	a, err := mapAnon(ctx, m, 64*kib)
	if err != nil {
		return nil, err
	}
	if err := touch(ctx, m, a, 16); err != nil {
		return nil, err
	}
	const threads = 2
	warm, n := e.n(10000), e.n(500000)
	var ready, finished sync.WaitGroup
	startCh := make(chan struct{})
	errs := make([]error, threads)
	ready.Add(threads)
	finished.Add(threads)
	reg := e.timed("parallel_copyin_8")
	for t := 0; t < threads; t++ {
		go func() {
			defer finished.Done()
			f := copyIn(ctx, m, a+hostarch.Addr(t)*pageSize, make([]byte, 8))
			_, errs[t] = copyLoop(warm, f, e.untimed())
			ready.Done()
			<-startCh
			if errs[t] == nil {
				_, errs[t] = copyLoop(n, f, reg)
			}
		}()
	}
	ready.Wait()
	start := time.Now()
	close(startCh)
	finished.Wait()
	d := time.Since(start)
	for t, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("thread %d: %w", t, err)
		}
	}
	return []measure{{nsPer(d, threads*n), threads * n}}, nil
}

// 13. fault_as: on the real (ptrace) platform, 3 passes of
// HandleUserFault(write) on every page of a fresh 16 MiB mapping; the
// process is pinned to CPU 0 (unless Options.NoPin) before the platform is
// created. The host mappings are driven as in vmspace run
// (ptrace.HostMappings), but reach the stub through its comm page rather
// than by injection into a stopped program thread (see newPtrace).
func runFaultAS(e *env) ([]measure, error) {
	if e.newPlatform == nil {
		return nil, errNoPlatform
	}
	ctx := e.ctx
	if e.pin {
		unpin, err := pinProcess(0)
		if err != nil {
			return nil, fmt.Errorf("pinning to CPU 0: %w", err)
		}
		defer func() {
			if err := unpin(); err != nil {
				fmt.Fprintf(e.log, "bench:   fault_as: restoring CPU affinity: %v\n", err)
			}
		}()
	}
	p, err := e.newPlatform()
	if err != nil {
		return nil, fmt.Errorf("creating the platform: %w", err)
	}
	if c, ok := p.(interface{ Close() error }); ok {
		defer c.Close()
	}
	m, done, err := e.newMM(p)
	if err != nil {
		return nil, err
	}
	defer done()
	const passes = 3
	pages := e.n(4096)
	var total time.Duration
	for i := 0; i < passes; i++ {
		length := uint64(pages) * pageSize
		a, err := mapAnon(ctx, m, length)
		if err != nil {
			return nil, err
		}
		d, err := faultPages(ctx, m, a, pages, e.timed("fault_as"))
		if err != nil {
			return nil, fmt.Errorf("pass %d: %w", i, err)
		}
		total += d
		if err := m.MUnmap(ctx, a, length); err != nil {
			return nil, fmt.Errorf("pass %d: MUnmap: %w", i, err)
		}
	}
	return []measure{{nsPer(total, passes*pages), passes * pages}}, nil
}
