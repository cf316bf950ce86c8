package fuzz

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"github.com/vmspace/vmspace/vmscript"
)

// Generate returns a random script, deterministic in seed, for differential
// fuzzing. Its statements concentrate on a small region at @0x0 (16 to 64
// pages) so that mappings overlap, split and merge, and it mixes in forks,
// files and memfds, shared memory, AIO rings, limits, locks, seals, guard
// pages and bad inputs. Parse accepts every script Generate returns.
//
// Generated scripts avoid what makes Linux's answer depend on the host (see
// package vmscript's documentation): they never name anonymous mappings, never call
// mlockall(MCL_CURRENT) unless RLIMIT_MEMLOCK is known to be below what
// either system has mapped (so both fail), never move the break in a script
// that limits RLIMIT_DATA, set RLIMIT_AS and RLIMIT_DATA only relative to
// current usage, create only small AIO contexts, never touch the vsyscall
// page or the areas next to the stacks and libraries, never ask mincore about
// regular files, and never make a mapping large enough to hurt when it is
// populated (every length that can succeed is bounded by the region).
func Generate(seed uint64) []byte {
	g := newGen(seed)
	g.script()
	return []byte(g.b.String())
}

// gen is the state of one generated script. It tracks statically what Parse
// tracks (live processes, the current one, bound names) so that every line
// it writes parses, plus what keeps the script host-independent.
type gen struct {
	// r is the random source; deterministic in the seed.
	r *rand.Rand
	// b accumulates the script text.
	b strings.Builder
	// pages is the size of the region at @0x0, in pages.
	pages int

	// Features of this script, chosen once.
	files, memfds, forks, shm, aio, brk, locks, seal, guard bool
	// dataLimit is set when the script limits RLIMIT_DATA (then brk is
	// never used: brk's check counts the native binary's data segment).
	dataLimit bool
	// mincore says mincore may be used: no regular file is ever mapped
	// (Linux reports page-cache residency for them).
	mincore bool
	// checkpoints says checkpoint statements are inserted.
	checkpoints bool
	// tera says terabyte lengths are used (overcommit), only in scripts
	// without locks (a privileged native agent would lock them).
	tera bool

	// procs are the live processes, in creation order.
	procs []string
	// cur is the current process, or "" after it exited.
	cur string
	// nforks counts forks made, for fresh child names.
	nforks int
	// memlockSmall says, per live process, that its RLIMIT_MEMLOCK is
	// known to be at most 1 MiB (so mlockall(MCL_CURRENT) fails on both
	// systems: each has more than that mapped).
	memlockSmall map[string]bool

	// binds are the names bound with "-> NAME", with the length mapped
	// there when bound (statements on $NAME stay inside it) and the
	// processes that have that mapping.
	binds []*binding
	// aioRing maps an AIO context name to the binding of its ring.
	aioRing map[string]*binding
	// target is the process the statement being generated runs in.
	target string
	// fileNames are names ever given to files or memfds.
	fileNames []string
	// shmNames and aioNames are names ever given to shm segments and AIO
	// contexts.
	shmNames, aioNames []string
}

// binding is one "-> NAME" of a generated script.
type binding struct {
	name string
	// size is how many bytes from $NAME the binding statement mapped.
	size uint64
	// procs are the processes in which $NAME is known to be mapped as
	// bound: the binding process and its later forks, until a statement
	// unmaps or moves it. Outside the window, what is at an address that
	// is no longer (or never was) a process's own mapping depends on where
	// each system places new mappings, so statements use $NAME only there.
	procs map[string]bool
}

// usable returns the bindings statements of the target process may use.
func (g *gen) usable() []*binding {
	var out []*binding
	for _, b := range g.binds {
		if b.procs[g.target] {
			out = append(out, b)
		}
	}
	return out
}

// afterLine updates the bindings after a statement line: a statement that
// unmaps, moves or detaches $NAME, or destroys the AIO context whose ring
// NAME is, ends NAME's use.
func (g *gen) afterLine(line string) {
	toks := strings.Fields(line)
	if len(toks) > 0 && strings.HasSuffix(toks[0], ":") {
		toks = toks[1:]
	}
	if len(toks) < 2 {
		return
	}
	kill := func(b *binding) {
		if b != nil {
			b.procs = map[string]bool{}
		}
	}
	switch toks[0] {
	case "munmap", "mremap", "shmdt":
		if name, ok := strings.CutPrefix(toks[1], "$"); ok {
			if i := strings.IndexAny(name, "+-"); i >= 0 {
				name = name[:i]
			}
			for _, b := range g.binds {
				if b.name == name {
					kill(b)
				}
			}
		}
	case "io_destroy":
		kill(g.aioRing[toks[1]])
	}
}

func newGen(seed uint64) *gen {
	g := &gen{
		r:            rand.New(rand.NewPCG(seed, 0x766d736372697074)),
		procs:        []string{"p0"},
		cur:          "p0",
		memlockSmall: map[string]bool{},
		aioRing:      map[string]*binding{},
	}
	g.pages = []int{16, 16, 32, 32, 64}[g.r.IntN(5)]
	g.files = g.chance(0.35)
	g.memfds = g.chance(0.35)
	g.forks = g.chance(0.5)
	g.shm = g.chance(0.2)
	g.aio = g.chance(0.12)
	g.locks = g.chance(0.4)
	g.seal = g.chance(0.12)
	g.guard = g.chance(0.25)
	if g.chance(0.3) {
		g.brk = true
	} else {
		g.dataLimit = g.chance(0.3)
	}
	g.mincore = !g.files
	g.checkpoints = g.chance(0.2)
	g.tera = !g.locks && g.chance(0.2)
	return g
}

func (g *gen) chance(p float64) bool { return g.r.Float64() < p }

// pick returns a random element of xs.
func pick[T any](g *gen, xs []T) T { return xs[g.r.IntN(len(xs))] }

// line writes one statement line.
func (g *gen) line(s string) {
	g.b.WriteString(s)
	g.b.WriteByte('\n')
}

// script writes the whole script.
func (g *gen) script() {
	g.line("# generated: region " + strconv.Itoa(g.pages) + " pages at @0x0")
	// A few mappings first, so that most statements have something to
	// work on.
	g.target = g.cur
	for n := 1 + g.r.IntN(3); n > 0; n-- {
		g.line(g.stmtMmap("", true))
	}
	for n := 10 + g.r.IntN(50); n > 0; n-- {
		if g.cur == "" {
			if !g.revive() {
				return
			}
		}
		g.stmt()
	}
	// Observe every live process at the end.
	for _, p := range g.procs {
		pre := p + ": "
		g.line(pre + "state @0x0 " + hx(g.regionSize()))
		g.line(pre + "vmsize")
		if g.locks {
			g.line(pre + "vmlck")
		}
	}
}

// revive makes a live process current after the current one exited; false
// when none is alive.
func (g *gen) revive() bool {
	if len(g.procs) == 0 {
		return false
	}
	g.cur = pick(g, g.procs)
	g.line("use " + g.cur)
	return true
}

func (g *gen) regionSize() uint64 { return uint64(g.pages) * vmscript.PageSize }

// weighted statement kinds.
type genKind struct {
	w  int
	on func(g *gen) bool
	f  func(g *gen, pre, proc string) string
}

var genKinds = []genKind{
	{18, nil, func(g *gen, pre, proc string) string { return g.stmtMmap(pre, false) }},
	{7, nil, (*gen).stmtMunmap},
	{8, nil, (*gen).stmtMprotect},
	{8, nil, (*gen).stmtMremap},
	{8, nil, (*gen).stmtMadvise},
	{4, func(g *gen) bool { return g.locks }, (*gen).stmtMlock},
	{2, func(g *gen) bool { return g.locks }, (*gen).stmtMlockall},
	{2, nil, (*gen).stmtMsync},
	{3, func(g *gen) bool { return g.mincore }, (*gen).stmtMincore},
	{1, func(g *gen) bool { return g.seal }, (*gen).stmtMseal},
	{4, func(g *gen) bool { return g.brk }, (*gen).stmtBrk},
	{3, nil, (*gen).stmtSetrlimit},
	{8, nil, (*gen).stmtWrite},
	{4, nil, (*gen).stmtFill},
	{6, nil, (*gen).stmtRead},
	{3, nil, (*gen).stmtSum},
	{6, func(g *gen) bool { return g.files || g.memfds }, (*gen).stmtFile},
	{4, func(g *gen) bool { return g.shm }, (*gen).stmtShm},
	{2, func(g *gen) bool { return g.aio }, (*gen).stmtAio},
	{7, nil, (*gen).stmtState},
	{2, nil, func(g *gen, pre, proc string) string { return pre + "vmsize" }},
	{1, func(g *gen) bool { return g.locks }, func(g *gen, pre, proc string) string { return pre + "vmlck" }},
	// A checkpoint saves and restores every process (natively nothing);
	// it takes no process prefix.
	{1, func(g *gen) bool { return g.checkpoints }, func(g *gen, pre, proc string) string { return "checkpoint" }},
}

// stmt writes one random statement (or a process statement).
func (g *gen) stmt() {
	if g.forks && g.mincore && g.mayFork() && g.chance(0.03) {
		g.readForkMincore()
		return
	}
	if g.mincore && g.chance(0.02) {
		g.readReclaimMincore()
		return
	}
	if g.forks && g.chance(0.08) {
		g.procStmt()
		return
	}
	total := 0
	for _, k := range genKinds {
		if k.on == nil || k.on(g) {
			total += k.w
		}
	}
	n := g.r.IntN(total)
	for _, k := range genKinds {
		if k.on != nil && !k.on(g) {
			continue
		}
		if n < k.w {
			pre, proc := "", g.cur
			if len(g.procs) > 1 && g.chance(0.15) {
				proc = pick(g, g.procs)
				pre = proc + ": "
			}
			g.target = proc
			l := k.f(g, pre, proc)
			g.line(l)
			g.afterLine(l)
			return
		}
		n -= k.w
	}
}

// mayFork says another process may be made.
func (g *gen) mayFork() bool { return len(g.procs) < 4 && g.nforks < 6 }

// fork writes a fork of parent (a live process) and returns the child's
// name. Precondition: mayFork.
func (g *gen) fork(parent string) string {
	g.nforks++
	child := "p" + strconv.Itoa(g.nforks)
	if parent != g.cur {
		g.line(parent + ": fork " + child)
	} else {
		g.line("fork " + child)
	}
	g.procs = append(g.procs, child)
	g.memlockSmall[child] = g.memlockSmall[parent]
	for _, b := range g.binds {
		if b.procs[parent] {
			b.procs[child] = true
		}
	}
	return child
}

// readForkMincore writes a read of private anonymous memory (sometimes of
// a fresh mapping that nothing wrote), a fork, and the child's mincore of
// the region, and sometimes the parent's faults after it and the child's
// second look. Linux copies to a child only the pages of the vmas that
// have an anon_vma, which a read prepares only on a kernel without the
// shared zero page: the answer depends on the host, and vmspace models
// both kinds. Without this sequence the generator almost never met the
// difference (none in 300 scripts), and the fuzzer, run only on a host
// without the zero page, never compared vmspace's zero-page mode with
// Linux's.
func (g *gen) readForkMincore() {
	// A few pages of the region (mincore fails on a range with holes).
	off := uint64(g.r.IntN(g.pages)) * vmscript.PageSize
	n := uint64(1+g.r.IntN(min(8, g.pages-int(off/vmscript.PageSize)))) * vmscript.PageSize
	a, l := "@"+hx(off), hx(n)
	if g.chance(0.6) {
		// A fresh mapping, that nothing wrote.
		g.line("mmap " + a + " " + l + " " + pick(g, []string{"r", "rw"}) + " private,anon,fixed")
	}
	if g.chance(0.7) {
		// From the start: a sum stops at the first page it cannot read.
		g.line("sum " + a + " " + hx(uint64(1+g.r.IntN(int(n)))))
	} else {
		g.line("madvise " + a + " " + l + " populate_read")
	}
	child := g.fork(g.cur)
	g.line(child + ": mincore " + a + " " + l)
	if g.chance(0.5) {
		g.line("sum " + a + " " + l)
		g.line(child + ": mincore " + a + " " + l)
	}
}

// readReclaimMincore writes reads of a fresh private anonymous mapping
// (some of its pages), MADV_FREE and/or MADV_PAGEOUT over it, and its
// mincore. On a kernel with the shared zero page the pages read map it,
// and neither advice drops it (mincore still says 1); without it they are
// private pages, which MADV_FREE then MADV_PAGEOUT discard. Random
// statements almost never made this sequence (none in 6770 scripts), and
// vmspace dropped the pages read on either kind of kernel.
func (g *gen) readReclaimMincore() {
	off := uint64(g.r.IntN(g.pages)) * vmscript.PageSize
	n := uint64(1+g.r.IntN(min(8, g.pages-int(off/vmscript.PageSize)))) * vmscript.PageSize
	a, l := "@"+hx(off), hx(n)
	g.line("mmap " + a + " " + l + " " + pick(g, []string{"r", "rw"}) + " private,anon,fixed")
	if g.chance(0.7) {
		g.line("sum " + a + " " + hx(uint64(1+g.r.IntN(int(n)))))
	} else {
		g.line("madvise " + a + " " + l + " populate_read")
	}
	for _, adv := range pick(g, [][]string{{"free"}, {"pageout"}, {"free", "pageout"}}) {
		g.line("madvise " + a + " " + l + " " + adv)
	}
	g.line("mincore " + a + " " + l)
}

// procStmt writes a fork, use or exit.
func (g *gen) procStmt() {
	switch x := g.r.IntN(10); {
	case x < 5 && g.mayFork():
		parent := g.cur
		if len(g.procs) > 1 && g.chance(0.3) {
			parent = pick(g, g.procs)
		}
		child := g.fork(parent)
		if g.chance(0.5) {
			g.cur = child
			g.line("use " + child)
		}
	case x < 8 && len(g.procs) > 1:
		g.cur = pick(g, g.procs)
		g.line("use " + g.cur)
	case len(g.procs) > 1:
		victim := pick(g, g.procs)
		if victim == "p0" && g.chance(0.7) {
			victim = g.procs[len(g.procs)-1]
		}
		g.line("exit " + victim)
		for i, p := range g.procs {
			if p == victim {
				g.procs = append(g.procs[:i], g.procs[i+1:]...)
				break
			}
		}
		delete(g.memlockSmall, victim)
		if g.cur == victim {
			g.cur = ""
		}
	default:
		g.line("vmsize")
	}
}

// ---- numbers and addresses ----

// pageOff returns a page offset inside the region (or a little past it).
func (g *gen) pageOff() uint64 {
	if g.chance(0.05) {
		return uint64(g.pages+g.r.IntN(4)) * vmscript.PageSize
	}
	return uint64(g.r.IntN(g.pages)) * vmscript.PageSize
}

// badAddrs are absolute addresses every system call rejects or finds
// unmapped whatever the host's layout: the null page, low memory (below the
// kernel's mmap_min_addr), non-canonical and kernel addresses. (Not the
// vsyscall page, and not the top of the user address space, where the
// stacks are.)
var badAddrs = []uint64{0, 0x1000, 0x800000000000, 0xffff800000000000, 0xfffffffffffff000}

// lowAddrs are absolute addresses around Linux's two lower bounds:
// vm.mmap_min_addr (4096 on the reference machines), below which MAP_FIXED
// and mremap need CAP_SYS_RAWIO, and the kernel's mmap_min_addr (65536,
// CONFIG_LSM_MMAP_MIN_ADDR), to which hints are rounded up and above which
// mappings are placed and stacks grow. Nothing else is mapped there.
var lowAddrs = []uint64{0, 0x800, 0x1000, 0x2000, 0x8000, 0xf000, 0xfff0, 0x10000, 0x11000, 0x1f000}

// hugeLens are lengths every range call rejects from any address at or above
// the window (they run past the user address space or wrap).
var hugeLens = []uint64{0x800000000000, 1 << 62, 0x8000000000000000, 0xfffffffffffff000, 0xffffffffffffffff}

// rangeArgs returns the ADDR and LEN of a range system call: mostly pages of
// the region, sometimes a bound name, an unaligned address or a bad one.
//
// Lengths never let a call reach memory the script did not map: on a bound
// name they stay inside what it mapped (the native process has the Go
// runtime's and the libraries' mappings around it), and huge lengths either
// wrap around the top of the address space (wrapOnly: madvise walks every
// vma of a range that does not wrap, holes or not) or exceed the user address
// space from an address in the window, where every call stops at the first
// hole.
func (g *gen) rangeArgs(wrapOnly bool) (addr, length string) {
	return g.rangeArgsOf(func() string { return g.rangeLen(wrapOnly) }, true)
}

// observeArgs are rangeArgs without huge lengths, for statements that report
// on the whole range (state, mincore): there a huge length would show the
// native process's own mappings.
func (g *gen) observeArgs() (addr, length string) {
	return g.rangeArgsOf(g.smallLen, false)
}

func (g *gen) rangeArgsOf(windowLen func() string, wrap bool) (addr, length string) {
	switch x := g.r.IntN(100); {
	case x < 84:
		return "@" + hx(g.pageOff()), windowLen()
	case x < 92 && len(g.usable()) > 0:
		return g.boundRange(wrap)
	case x < 96:
		return "@" + hx(g.pageOff()+uint64(1+g.r.IntN(int(vmscript.PageSize)-1))), windowLen()
	default:
		return addrAbs(pick(g, badAddrs)), g.smallLen()
	}
}

// boundRange returns $NAME[+OFF] and a length inside what NAME mapped (or,
// with wrap, sometimes a length that wraps).
func (g *gen) boundRange(wrap bool) (addr, length string) {
	b := pick(g, g.usable())
	size := max(b.size, vmscript.PageSize)
	npages := int((size + vmscript.PageSize - 1) / vmscript.PageSize)
	k := g.r.IntN(npages)
	addr = "$" + b.name
	if k > 0 {
		addr += "+" + hx(uint64(k)*vmscript.PageSize)
	}
	switch x := g.r.IntN(10); {
	case x < 7:
		return addr, g.pagesStr(1 + g.r.IntN(npages-k))
	case x < 8:
		return addr, "0"
	case x < 9 || !wrap:
		return addr, hx(uint64(1 + g.r.IntN(int(uint64(npages-k)*vmscript.PageSize))))
	default:
		// A name may be bound below the window (brk+OFF): only
		// lengths that wrap from any address do.
		return addr, hx(pick(g, wrapLens[:2]))
	}
}

// boundAccess returns $NAME[+OFF] for a memory access of up to n bytes, and
// how many bytes from it NAME mapped.
func (g *gen) boundAccess(aligned bool) (string, uint64) {
	b := pick(g, g.usable())
	size := max(b.size, vmscript.PageSize)
	var off uint64
	if aligned {
		off = uint64(g.r.IntN(int((size+vmscript.PageSize-1)/vmscript.PageSize))) * vmscript.PageSize
	} else {
		off = uint64(g.r.IntN(int(size)))
	}
	if off == 0 {
		return "$" + b.name, size
	}
	return "$" + b.name + "+" + hx(off), size - off
}

func addrAbs(a uint64) string {
	if a == 0 {
		return "0"
	}
	return hx(a)
}

// wrapLens are huge lengths that wrap around the top of the address space
// from any address at or above the window.
var wrapLens = []uint64{0xfffffffffffff000, 0xffffffffffffffff, 0xffffe00000000000, 0xfffffff000000000}

// rangeLen returns the LEN of a range system call from an address in the
// window.
func (g *gen) rangeLen(wrapOnly bool) string {
	switch x := g.r.IntN(100); {
	case x < 93:
		return g.smallLen()
	case wrapOnly:
		return hx(pick(g, wrapLens))
	default:
		return hx(pick(g, append(append([]uint64(nil), hugeLens...), wrapLens...)))
	}
}

// smallLen returns a length of at most the region: mostly whole pages,
// sometimes unaligned or zero.
func (g *gen) smallLen() string {
	switch x := g.r.IntN(100); {
	case x < 86:
		n := 1 + g.r.IntN(max(1, g.pages/2))
		if g.chance(0.1) {
			n = 1 + g.r.IntN(g.pages)
		}
		return g.pagesStr(n)
	case x < 95:
		return hx(uint64(g.r.IntN(4*int(vmscript.PageSize)) + 1))
	default:
		return "0"
	}
}

// pagesStr writes n pages, sometimes with a k suffix.
func (g *gen) pagesStr(n int) string {
	if g.chance(0.15) {
		return strconv.Itoa(n*4) + "k"
	}
	return hx(uint64(n) * vmscript.PageSize)
}

// accessAddr returns the ADDR of a memory access (any byte of the region, a
// byte after the break, a bound name, or a bad address) and how many bytes
// from it the access may touch: inside what a bound name mapped, around which
// the native process has mappings of its own.
func (g *gen) accessAddr() (string, uint64) {
	unlimited := ^uint64(0)
	switch x := g.r.IntN(100); {
	case x < 60:
		return "@" + hx(g.pageOff()), unlimited
	case x < 85:
		return "@" + hx(uint64(g.r.IntN(int(g.regionSize())))), unlimited
	case x < 90 && g.brk:
		return "brk+" + hx(uint64(g.r.IntN(8*int(vmscript.PageSize)))), unlimited
	case x < 96 && len(g.usable()) > 0:
		return g.boundAccess(g.chance(0.5))
	case x < 98:
		return addrAbs(pick(g, []uint64{0, 0x800000000000, 0xffff800000000000})), unlimited
	default:
		return "@" + hx(g.pageOff()), unlimited
	}
}

func (g *gen) prot() string {
	return pick(g, []string{"rw", "rw", "rw", "r", "r", "none", "w", "x", "rx", "rwx", "wx"})
}

func (g *gen) bind(size uint64) string {
	name := "m" + strconv.Itoa(len(g.binds))
	g.binds = append(g.binds, &binding{name: name, size: size, procs: map[string]bool{g.target: true}})
	return " -> " + name
}

// flagWords joins distinct words with commas ("0" for none).
func flagWords(ws []string) string {
	if len(ws) == 0 {
		return "0"
	}
	seen := map[string]bool{}
	var out []string
	for _, w := range ws {
		if !seen[w] {
			seen[w] = true
			out = append(out, w)
		}
	}
	return strings.Join(out, ",")
}

// ---- statements ----

// stmtMmap makes an mmap line. first asks for one that very likely
// succeeds (at the script start).
func (g *gen) stmtMmap(pre string, first bool) string {
	var words []string
	file := ""
	off := uint64(0)
	useFile := !first && (g.files || g.memfds) && len(g.fileNames) > 0 && g.chance(0.35)
	switch x := g.r.IntN(100); {
	case useFile && x < 50:
		words = append(words, "shared")
	case useFile && x < 95:
		words = append(words, "private")
	case useFile:
		words = append(words, "shared_validate")
	case x < 65:
		words = append(words, "private", "anon")
	case x < 90 || first:
		words = append(words, "shared", "anon")
	case x < 93:
		words = append(words, "shared_validate", "anon")
	case x < 96:
		words = append(words, "anon") // no type: EINVAL
	default:
		words = append(words, "private", "shared", "anon")
	}
	if useFile {
		file = pick(g, g.fileNames)
		switch x := g.r.IntN(10); {
		case x < 6:
			off = 0
		case x < 9:
			off = uint64(g.r.IntN(8)) * vmscript.PageSize
		default:
			off = uint64(g.r.IntN(3*int(vmscript.PageSize)) + 1)
		}
		if g.chance(0.05) {
			words = append(words, "anon") // fd ignored
		}
	}

	addr := "@" + hx(g.pageOff())
	length := g.pagesStr(1 + g.r.IntN(max(1, g.pages/2)))
	if !first && g.chance(0.12) {
		length = g.rangeLen(false)
	}
	if !first && g.tera && g.chance(0.15) {
		// Overcommit: terabytes, without MAP_FIXED beyond the window
		// and never populated.
		l := pick(g, []uint64{1 << 40, 1 << 40, 1 << 44, 0x100000000000})
		a := "0"
		if l <= vmscript.WindowSize && g.chance(0.5) {
			a = "@0x0" // a hint that fits the window
		}
		s := pre + "mmap " + a + " " + hx(l) + " " + pick(g, []string{"rw", "r", "none"}) + " " +
			strings.Join(append(words, pick(g, [][]string{nil, {"noreserve"}})...), ",")
		if l == 1<<40 && g.chance(0.3) {
			s = pre + "mmap @0x0 " + hx(l) + " " + pick(g, []string{"rw", "r"}) + " " + strings.Join(append(words, "fixed"), ",")
		}
		if file != "" {
			s += " " + file + " " + hx(off)
		}
		return s
	}
	if first {
		words = append(words, "fixed")
	} else {
		switch x := g.r.IntN(100); {
		case x < 70:
			words = append(words, "fixed")
		case x < 80:
			words = append(words, "fixed_noreplace")
		case x < 88:
			// a hint
		case x < 92:
			addr = "0"
		case x < 94 && g.brk:
			addr = "brk+" + hx(uint64(4+g.r.IntN(12))*vmscript.PageSize)
			words = append(words, "fixed")
		case x < 96:
			addr, length = g.rangeArgs(false)
			words = append(words, pick(g, []string{"fixed", "fixed_noreplace", "fixed,fixed_noreplace"}))
		case x < 98:
			// Low memory, fixed or as a hint.
			addr, length = addrAbs(pick(g, lowAddrs)), g.pagesStr(1+g.r.IntN(20))
			if g.chance(0.6) {
				words = append(words, pick(g, []string{"fixed", "fixed_noreplace"}))
			}
		default:
			addr, length = g.rangeArgs(false)
		}
	}
	if !first {
		for _, w := range []struct {
			w string
			p float64
		}{{"populate", 0.08}, {"noreserve", 0.05}, {"locked", 0.06 + 0.1*b2f(g.locks)}, {"growsdown", 0.07}, {"stack", 0.04}, {"32bit", 0.02}} {
			if g.chance(w.p) {
				words = append(words, w.w)
			}
		}
	}
	prot := g.prot()
	if first {
		prot = pick(g, []string{"rw", "rw", "r", "none"})
	}
	s := pre + "mmap " + addr + " " + length + " " + prot + " " + strings.Join(dedup(words), ",")
	if file != "" {
		s += " " + file + " " + hx(off)
	}
	if addr == "0" || (!first && g.chance(0.1)) {
		n, ok := vmscript.ParseNum(length)
		if !ok || n > g.regionSize() {
			n = 0
		}
		s += g.bind(n)
	}
	return s
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func dedup(ws []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, w := range ws {
		if !seen[w] {
			seen[w] = true
			out = append(out, w)
		}
	}
	return out
}

func (g *gen) stmtMunmap(pre, proc string) string {
	a, l := g.rangeArgs(false)
	return pre + "munmap " + a + " " + l
}

func (g *gen) stmtMprotect(pre, proc string) string {
	p := g.prot()
	switch x := g.r.IntN(100); {
	case x < 6:
		p += "+growsdown"
	case x < 8:
		p += "+growsup"
	}
	a, l := g.rangeArgs(false)
	return pre + "mprotect " + a + " " + l + " " + p
}

func (g *gen) stmtMremap(pre, proc string) string {
	old, oldLen := g.rangeArgs(false)
	newLen := g.rangeLen(false)
	if g.chance(0.2) {
		newLen = oldLen
	}
	var words []string
	newAddr := ""
	switch x := g.r.IntN(100); {
	case x < 20:
	case x < 45:
		words = []string{"maymove"}
	case x < 75:
		words = []string{"maymove", "fixed"}
		if !g.locks && g.chance(0.2) {
			words = append(words, "dontunmap")
		}
	case x < 85 && !g.locks:
		// (Not with locks: Linux leaves locked_vm counting pages a
		// dontunmap move unlocked, a count that never comes back.)
		words = []string{"maymove", "dontunmap"}
	case x < 85:
		words = []string{"maymove"}
	case x < 90:
		words = []string{"fixed"}
	case g.locks:
		words = []string{pick(g, []string{"dontunmap", "fixed,dontunmap"})} // EINVAL
	default:
		words = []string{pick(g, []string{"dontunmap", "fixed,dontunmap", "maymove,fixed,dontunmap"})}
	}
	hasFixed := false
	for _, w := range words {
		if strings.Contains(w, "fixed") {
			hasFixed = true
		}
	}
	if hasFixed || g.chance(0.05) {
		switch x := g.r.IntN(100); {
		case x < 85:
			newAddr = " @" + hx(g.pageOff())
		case x < 90:
			newAddr = " @" + hx(g.pageOff()+uint64(1+g.r.IntN(int(vmscript.PageSize)-1)))
		case x < 93:
			newAddr = " " + addrAbs(pick(g, badAddrs))
			newLen = g.smallLen()
		case x < 95 || len(g.usable()) == 0:
			newAddr = " " + addrAbs(pick(g, lowAddrs))
			newLen = g.smallLen()
		default:
			// Moving onto a bound mapping: stay inside it.
			var a string
			a, newLen = g.boundRange(true)
			newAddr = " " + a
		}
	}
	s := pre + "mremap " + old + " " + oldLen + " " + newLen + " " + flagWords(words) + newAddr
	if g.chance(0.25) {
		n, ok := vmscript.ParseNum(newLen)
		if !ok || n > g.regionSize() {
			n = 0
		}
		s += g.bind(n)
	}
	return s
}

// advice words by how often they are generated.
var genAdvice = []string{
	"normal", "random", "sequential", "willneed", "dontneed", "dontneed", "dontneed",
	"free", "free", "remove", "dontfork", "dofork", "dontfork", "mergeable", "unmergeable",
	"hugepage", "nohugepage", "dontdump", "dodump", "wipeonfork", "wipeonfork", "keeponfork",
	"cold", "pageout", "populate_read", "populate_write", "populate_write",
}

func (g *gen) stmtMadvise(pre, proc string) string {
	a := pick(g, genAdvice)
	if g.guard && g.chance(0.3) {
		a = pick(g, []string{"guard_install", "guard_install", "guard_remove"})
	} else if g.guard && g.forks && g.chance(0.15) {
		// Guards meet what fork does to a vma.
		a = pick(g, []string{"wipeonfork", "dontfork", "keeponfork"})
	}
	addr, l := g.rangeArgs(true)
	return pre + "madvise " + addr + " " + l + " " + a
}

func (g *gen) stmtMlock(pre, proc string) string {
	a, l := g.rangeArgs(false)
	switch x := g.r.IntN(10); {
	case x < 4:
		return pre + "mlock " + a + " " + l
	case x < 6:
		return pre + "mlock " + a + " " + l + " onfault"
	default:
		return pre + "munlock " + a + " " + l
	}
}

func (g *gen) stmtMlockall(pre, proc string) string {
	if g.chance(0.3) {
		return pre + "munlockall"
	}
	opts := [][]string{{"future"}, {"future", "onfault"}, {"onfault"}, nil}
	if g.memlockSmall[proc] {
		opts = append(opts, []string{"current"}, []string{"current", "future"},
			[]string{"current", "onfault"}, []string{"current", "future", "onfault"})
	}
	return pre + "mlockall " + flagWords(pick(g, opts))
}

func (g *gen) stmtMsync(pre, proc string) string {
	f := pick(g, [][]string{{"sync"}, {"async"}, {"invalidate"}, {"sync", "invalidate"}, {"async", "invalidate"}, {"async", "sync"}, nil})
	a, l := g.rangeArgs(false)
	return pre + "msync " + a + " " + l + " " + flagWords(f)
}

func (g *gen) stmtMincore(pre, proc string) string {
	if g.chance(0.6) {
		return pre + "mincore @0x0 " + hx(g.regionSize())
	}
	a, l := g.observeArgs()
	return pre + "mincore " + a + " " + l
}

func (g *gen) stmtMseal(pre, proc string) string {
	a, l := g.rangeArgs(false)
	return pre + "mseal " + a + " " + l
}

func (g *gen) stmtBrk(pre, proc string) string {
	var a string
	switch x := g.r.IntN(10); {
	case x < 5:
		a = "brk+" + hx(uint64(g.r.IntN(16))*vmscript.PageSize)
	case x < 6:
		a = "brk+" + hx(uint64(g.r.IntN(16*int(vmscript.PageSize))))
	case x < 7:
		a = "brk-" + hx(uint64(1+g.r.IntN(4))*vmscript.PageSize)
	case x < 8:
		a = "0"
		if g.tera && g.chance(0.5) {
			a = "brk+" + hx(pick(g, []uint64{1 << 40, 0x100000000000}))
		}
	case x < 9:
		a = "brk"
	default:
		return pre + "state brk " + hx(16*vmscript.PageSize)
	}
	s := pre + "brk " + a
	if g.chance(0.1) {
		s += g.bind(vmscript.PageSize)
	}
	return s
}

func (g *gen) stmtSetrlimit(pre, proc string) string {
	plus := func(maxPages int) string {
		return "+" + hx(uint64(g.r.IntN(maxPages+1))*vmscript.PageSize)
	}
	switch x := g.r.IntN(10); {
	case x < 3:
		v := plus(g.pages)
		if g.chance(0.1) {
			v = "inf"
		}
		return pre + "setrlimit as " + v
	case x < 5 && g.dataLimit:
		v := plus(g.pages)
		switch y := g.r.IntN(10); {
		case y < 1:
			v = "inf"
		case y < 2:
			v = "0"
		}
		return pre + "setrlimit data " + v
	case x < 8 && g.locks:
		var v string
		if g.chance(0.75) {
			n := pick(g, []uint64{0, vmscript.PageSize, 2 * vmscript.PageSize, 4 * vmscript.PageSize, 8 * vmscript.PageSize, 16 * vmscript.PageSize, 64 * vmscript.PageSize, 256 * vmscript.PageSize})
			v = hx(n)
			g.setMemlockSmall(pre, proc, true)
		} else {
			v = plus(8)
			g.setMemlockSmall(pre, proc, g.memlockSmall[proc])
		}
		return pre + "setrlimit memlock " + v
	default:
		v := hx(pick(g, []uint64{vmscript.PageSize, 2 * vmscript.PageSize, 4 * vmscript.PageSize, 16 * vmscript.PageSize, 64 * vmscript.PageSize, 1 << 20, 8 << 20}))
		if g.chance(0.1) {
			v = "inf"
		}
		return pre + "setrlimit stack " + v
	}
}

func (g *gen) setMemlockSmall(pre, proc string, small bool) {
	g.memlockSmall[proc] = small
}

// hexBytes returns n random bytes in hex.
func (g *gen) hexBytes(n int) string {
	const digits = "0123456789abcdef"
	b := make([]byte, 2*n)
	for i := range b {
		b[i] = digits[g.r.IntN(16)]
	}
	return string(b)
}

func (g *gen) stmtWrite(pre, proc string) string {
	a, most := g.accessAddr()
	return pre + "write " + a + " " + g.hexBytes(int(min(uint64(1+g.r.IntN(8)), most)))
}

// accessLen returns the length of a fill or sum, at most most.
func (g *gen) accessLen(most uint64) uint64 {
	var n uint64
	switch x := g.r.IntN(10); {
	case x < 4:
		n = uint64(1 + g.r.IntN(int(vmscript.PageSize)))
	case x < 8:
		n = uint64(1+g.r.IntN(4)) * vmscript.PageSize
	default:
		n = uint64(1 + g.r.IntN(int(g.regionSize())))
	}
	return min(n, most)
}

func (g *gen) stmtFill(pre, proc string) string {
	a, most := g.accessAddr()
	return pre + "fill " + a + " " + hx(g.accessLen(most)) + " " + hx(uint64(g.r.IntN(256)))
}

func (g *gen) stmtRead(pre, proc string) string {
	a, most := g.accessAddr()
	return pre + "read " + a + " " + strconv.Itoa(int(min(uint64(1+g.r.IntN(vmscript.MaxRead)), most)))
}

func (g *gen) stmtSum(pre, proc string) string {
	if g.chance(0.3) {
		return pre + "sum @0x0 " + hx(g.regionSize())
	}
	a, most := g.accessAddr()
	return pre + "sum " + a + " " + hx(g.accessLen(most))
}

// fileName returns a name for a new file or memfd.
func (g *gen) newFileName() string {
	name := "f" + strconv.Itoa(g.r.IntN(3))
	for _, n := range g.fileNames {
		if n == name {
			return name
		}
	}
	g.fileNames = append(g.fileNames, name)
	return name
}

func (g *gen) fileSize() string {
	if g.chance(0.15) {
		return hx(uint64(g.r.IntN(8 * int(vmscript.PageSize))))
	}
	return hx(uint64(g.r.IntN(g.pages/2+1)) * vmscript.PageSize)
}

func (g *gen) stmtFile(pre, proc string) string {
	if len(g.fileNames) == 0 || g.chance(0.2) {
		kinds := []bool{}
		if g.files {
			kinds = append(kinds, true)
		}
		if g.memfds {
			kinds = append(kinds, false)
		}
		regular := pick(g, kinds)
		name := g.newFileName()
		if regular {
			s := pre + "file " + name + " " + g.fileSize()
			if g.chance(0.2) {
				s += " ro"
			}
			if g.chance(0.5) {
				s += " seed=" + strconv.Itoa(g.r.IntN(251))
			}
			return s
		}
		return pre + "memfd " + name + " " + g.fileSize()
	}
	name := pick(g, g.fileNames)
	if g.chance(0.05) {
		name = "nosuch"
	}
	switch x := g.r.IntN(10); {
	case x < 3:
		return pre + "ftruncate " + name + " " + g.fileSize()
	case x < 6:
		return pre + "pwrite " + name + " " + hx(uint64(g.r.IntN(g.pages/2*int(vmscript.PageSize)+1))) + " " + g.hexBytes(1+g.r.IntN(8))
	case x < 9:
		return pre + "psum " + name + " " + hx(uint64(g.r.IntN(4))*vmscript.PageSize) + " " + hx(uint64(1+g.r.IntN(g.pages/2*int(vmscript.PageSize))))
	default:
		return pre + "close " + name
	}
}

func (g *gen) stmtShm(pre, proc string) string {
	if len(g.shmNames) == 0 || g.chance(0.2) {
		name := "s" + strconv.Itoa(g.r.IntN(2))
		if !slices.Contains(g.shmNames, name) {
			g.shmNames = append(g.shmNames, name)
		}
		size := hx(uint64(1+g.r.IntN(8)) * vmscript.PageSize)
		if g.chance(0.15) {
			size = hx(uint64(1 + g.r.IntN(3*int(vmscript.PageSize))))
		}
		return pre + "shmget " + name + " " + size
	}
	name := pick(g, g.shmNames)
	switch x := g.r.IntN(10); {
	case x < 5:
		addr := "@" + hx(g.pageOff())
		switch y := g.r.IntN(10); {
		case y < 1:
			addr = "0"
		case y < 2:
			addr, _ = g.rangeArgs(false)
		}
		s := pre + "shmat " + name + " " + addr
		if g.chance(0.25) {
			s += " rdonly"
		}
		if addr == "0" || g.chance(0.1) {
			s += g.bind(vmscript.PageSize)
		}
		return s
	case x < 8:
		a, _ := g.rangeArgs(false)
		return pre + "shmdt " + a
	default:
		return pre + "shmrm " + name
	}
}

func (g *gen) stmtAio(pre, proc string) string {
	if len(g.aioNames) == 0 || g.chance(0.4) {
		name := "c" + strconv.Itoa(g.r.IntN(2))
		if !slices.Contains(g.aioNames, name) {
			g.aioNames = append(g.aioNames, name)
		}
		nr := pick(g, []int{0, 1, 2, 16, 64, 128, 200})
		s := pre + "io_setup " + name + " " + strconv.Itoa(nr) + g.bind(vmscript.PageSize)
		g.aioRing[name] = g.binds[len(g.binds)-1]
		return s
	}
	return pre + "io_destroy " + pick(g, g.aioNames)
}

func (g *gen) stmtState(pre, proc string) string {
	if bs := g.usable(); len(bs) > 0 && g.chance(0.15) {
		b := pick(g, bs)
		return pre + "state $" + b.name + " " + hx(max(vmscript.PageSize, (b.size+vmscript.PageSize-1)/vmscript.PageSize*vmscript.PageSize))
	}
	if g.chance(0.85) {
		return pre + "state @0x0 " + hx(g.regionSize())
	}
	a, l := g.observeArgs()
	return pre + "state " + a + " " + l
}

func hx(n uint64) string { return "0x" + strconv.FormatUint(n, 16) }
