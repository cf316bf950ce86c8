package loader

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/hostfile"
	"github.com/vmspace/vmspace/mm"
	"github.com/vmspace/vmspace/platform"
)

// fixedRandom is a deterministic AT_RANDOM source.
type fixedRandom byte

func (r fixedRandom) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r) + byte(i)
	}
	return len(p), nil
}

var testAux = AuxValues{HWCAP: 0x178bfbff, HWCAP2: 2, ClockTicks: 100, MinSigStkSz: 3376, RSEQFeatureSize: 28, RSEQAlign: 32}
var testCreds = Credentials{UID: 1000, EUID: 1001, GID: 1002, EGID: 1003}

func testOpts(path string) Options {
	return Options{
		Path:   path,
		Argv:   []string{"prog", "arg one", ""},
		Envv:   []string{"A=1", "HOME=/nowhere"},
		Random: fixedRandom(0x10),
		Aux:    &testAux,
		Creds:  &testCreds,
	}
}

func TestStaticExec(t *testing.T) {
	dir := t.TempDir()
	f := staticExec()
	path := writeExe(t, dir, "static", f.bytes())
	m := newMM(t)
	opts := testOpts(path)
	res, err := Load(ctx, m, nil, opts)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if res.Entry != 0x400100 || res.ProgramEntry != 0x400100 || res.LoadBias != 0 || res.Interpreter != "" || res.InterpreterBase != 0 {
		t.Errorf("entry %v program entry %v bias %v interp %q base %v", res.Entry, res.ProgramEntry, res.LoadBias, res.Interpreter, res.InterpreterBase)
	}
	if res.PHDR != 0x400040 {
		t.Errorf("PHDR = %v, want 0x400040", res.PHDR)
	}
	if res.Brk != 0x404000 || m.BrkRange() != (hostarch.AddrRange{Start: 0x404000, End: 0x404000}) {
		t.Errorf("brk = %v, BrkRange = %v, want 0x404000", res.Brk, m.BrkRange())
	}
	if res.StartCode != 0x400000 || res.EndCode != 0x401000 || res.StartData != 0x401000 || res.EndData != 0x401100 {
		t.Errorf("code [%v, %v) data [%v, %v)", res.StartCode, res.EndCode, res.StartData, res.EndData)
	}
	real, _ := filepath.EvalSymlinks(path)
	wantMaps := []string{
		fmt.Sprintf("00400000-00401000 r-xp 00000000 %s", real),
		fmt.Sprintf("00401000-00402000 rw-p 00001000 %s", real),
		"00402000-00404000 rw-p 00000000 ",
		"7ffffffde000-7ffffffff000 rw-p 00000000 [stack]",
	}
	if got := mapsSummary(t, m); !slices.Equal(got, wantMaps) {
		t.Errorf("maps:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantMaps, "\n"))
	}
	// The data page: 0x100 bytes from the file, then zeros to the end of
	// the page (the file has 0xcd there), then zero bss.
	data := readBytes(t, m, 0x401000, 0x3000)
	if !bytes.Equal(data[:0x100], bytes.Repeat([]byte{0xab}, 0x100)) {
		t.Errorf("data segment contents wrong: % x...", data[:16])
	}
	if i := slices.IndexFunc(data[0x100:], func(b byte) bool { return b != 0 }); i >= 0 {
		t.Errorf("bss byte at %#x is %#x, want 0", 0x401100+i, data[0x100+i])
	}
	// The text page is the file's.
	text := readBytes(t, m, 0x400000, 0x1000)
	if !bytes.Equal(text, f.bytes()[:0x1000]) {
		t.Errorf("text segment differs from the file")
	}
	checkStack(t, m, res, opts, uint64(len(f.phdrs)))
	// The metadata.
	if argv, envv := m.ArgvEnvv(); argv != res.Argv || envv != res.Envv {
		t.Errorf("ArgvEnvv = %v %v, want %v %v", argv, envv, res.Argv, res.Envv)
	}
	if got := m.Auxv(); !slices.Equal(got, res.Auxv) {
		t.Errorf("Auxv = %v, want %v", got, res.Auxv)
	}
	exe := m.Executable()
	if exe == nil {
		t.Fatalf("no executable set")
	}
	if got := exe.MappedName(ctx); got != real {
		t.Errorf("executable %q, want %q", got, real)
	}
	exe.DecRef(ctx)
	if s := m.Stats(); s.VmStk != res.Stack.Length() {
		t.Errorf("VmStk = %d, want %d", s.VmStk, res.Stack.Length())
	}
}

// mapsSummary returns the maps lines with the device and inode removed.
func mapsSummary(t *testing.T, m *mm.MemoryManager) []string {
	var out []string
	for _, vi := range m.VMAs(ctx) {
		name := vi.Name
		if name == "[heap]" && heapNameBug(t, m, vi.Range.End) {
			name = ""
		}
		out = append(out, fmt.Sprintf("%08x-%08x %s %08x %s", uint64(vi.Range.Start), uint64(vi.Range.End), vi.Perms, vi.Offset, name))
	}
	return out
}

// heapNameBug reports whether a vma ending at end that mm names [heap]
// is one Linux does not: Linux 6.6+ (vma_is_initial_heap) names a vma
// [heap] only if it overlaps [start_brk, brk) strictly, so the bss vma
// just below an empty heap is unnamed, while mm/procfs.go also names a vma
// that merely touches it. Linux 6.18 was seen to leave it unnamed (see
// TestCompiledPrograms). Until mm is fixed, the loader's tests tolerate
// that one difference and say so.
func heapNameBug(t *testing.T, m *mm.MemoryManager, end hostarch.Addr) bool {
	brk := m.BrkRange()
	if brk.Length() == 0 && end == brk.Start {
		t.Logf("tolerating a known mm difference: the vma ending at the empty heap's start %v is named [heap]; Linux leaves it unnamed", end)
		return true
	}
	return false
}

// checkStack decodes the initial stack and checks it against opts and
// res: argc, argv, envp, the auxiliary vector, AT_RANDOM, AT_EXECFN,
// AT_PLATFORM, AT_PHDR, alignment and the recorded ranges.
func checkStack(t *testing.T, m *mm.MemoryManager, res *Result, opts Options, phnum uint64) {
	t.Helper()
	sp := res.StackPointer
	if sp%16 != 0 {
		t.Errorf("stack pointer %v is not 16-byte aligned", sp)
	}
	if !res.Stack.Contains(sp) {
		t.Errorf("stack pointer %v outside the stack %v", sp, res.Stack)
	}
	s := decodeStack(t, m, sp)
	argv := opts.Argv
	if len(argv) == 0 {
		argv = []string{""}
	}
	if s.argc != uint64(len(argv)) || !slices.Equal(s.argv, argv) {
		t.Errorf("argc %d argv %q, want %q", s.argc, s.argv, argv)
	}
	if !slices.Equal(s.envp, opts.Envv) && !(len(s.envp) == 0 && len(opts.Envv) == 0) {
		t.Errorf("envp %q, want %q", s.envp, opts.Envv)
	}
	if !slices.Equal(s.auxv, res.Auxv) {
		t.Errorf("auxv on the stack %v, Result.Auxv %v", s.auxv, res.Auxv)
	}
	// Strings are contiguous: argv, then envp, then AT_EXECFN, then 8
	// zero bytes at the top.
	if len(s.argvPtrs) > 0 && hostarch.Addr(s.argvPtrs[0]) != res.Argv.Start {
		t.Errorf("argv[0] at %#x, Result.Argv %v", s.argvPtrs[0], res.Argv)
	}
	if len(s.envpPtrs) > 0 && hostarch.Addr(s.envpPtrs[0]) != res.Envv.Start {
		t.Errorf("envp[0] at %#x, Result.Envv %v", s.envpPtrs[0], res.Envv)
	}
	if res.Argv.End != res.Envv.Start {
		t.Errorf("argv %v and envv %v not adjacent", res.Argv, res.Envv)
	}
	if want := strings.Join(argv, "\x00") + "\x00"; string(readBytes(t, m, res.Argv.Start, int(res.Argv.Length()))) != want {
		t.Errorf("argv area differs")
	}
	execFn := opts.ExecFn
	if execFn == "" {
		execFn = opts.Path
	}
	wantAux := []uint64{AT_MINSIGSTKSZ, AT_HWCAP, AT_PAGESZ, AT_CLKTCK, AT_PHDR, AT_PHENT, AT_PHNUM, AT_BASE, AT_FLAGS, AT_ENTRY,
		AT_UID, AT_EUID, AT_GID, AT_EGID, AT_SECURE, AT_RANDOM, AT_HWCAP2, AT_EXECFN, AT_PLATFORM, AT_RSEQ_FEATURE_SIZE, AT_RSEQ_ALIGN}
	var keys []uint64
	for _, e := range s.auxv {
		keys = append(keys, e.Key)
	}
	if !slices.Equal(keys, wantAux) {
		t.Errorf("auxv keys %v, want %v", keys, wantAux)
	}
	for _, c := range []struct {
		key  uint64
		want uint64
	}{
		{AT_MINSIGSTKSZ, testAux.MinSigStkSz}, {AT_HWCAP, testAux.HWCAP}, {AT_HWCAP2, testAux.HWCAP2},
		{AT_PAGESZ, 4096}, {AT_CLKTCK, 100}, {AT_PHDR, uint64(res.PHDR)}, {AT_PHENT, 56}, {AT_PHNUM, phnum},
		{AT_BASE, uint64(res.InterpreterBase)}, {AT_FLAGS, 0}, {AT_ENTRY, uint64(res.ProgramEntry)},
		{AT_UID, 1000}, {AT_EUID, 1001}, {AT_GID, 1002}, {AT_EGID, 1003}, {AT_SECURE, 0},
		{AT_RSEQ_FEATURE_SIZE, 28}, {AT_RSEQ_ALIGN, 32},
	} {
		if v, _ := s.auxval(c.key); v != c.want {
			t.Errorf("auxv[%d] = %#x, want %#x", c.key, v, c.want)
		}
	}
	execAddr, _ := s.auxval(AT_EXECFN)
	if got := readCString(t, m, hostarch.Addr(execAddr)); got != execFn {
		t.Errorf("AT_EXECFN %q, want %q", got, execFn)
	}
	if want := hostarch.Addr(uint64(res.Envv.End)); hostarch.Addr(execAddr) != want {
		t.Errorf("AT_EXECFN at %#x, want right after the environment at %v", execAddr, want)
	}
	if top := hostarch.Addr(execAddr) + hostarch.Addr(len(execFn)) + 1; top+8 != res.Stack.End {
		t.Errorf("exec file name ends at %v, want 8 bytes below the stack top %v", top, res.Stack.End)
	}
	plat, _ := s.auxval(AT_PLATFORM)
	if got := readCString(t, m, hostarch.Addr(plat)); got != "x86_64" {
		t.Errorf("AT_PLATFORM %q", got)
	}
	rnd, _ := s.auxval(AT_RANDOM)
	var want [16]byte
	fixedRandom(0x10).Read(want[:])
	if got := readBytes(t, m, hostarch.Addr(rnd), 16); opts.Random != nil && !bytes.Equal(got, want[:]) {
		t.Errorf("AT_RANDOM bytes % x, want % x", got, want)
	}
	if hostarch.Addr(rnd) < s.auxEnd {
		t.Errorf("AT_RANDOM at %#x overlaps the auxv ending at %v", rnd, s.auxEnd)
	}
	// AT_PHDR points at the program headers.
	phdrs := readBytes(t, m, res.PHDR, int(phnum*phdrSize))
	var ph elf.Prog64
	binary.Decode(phdrs, binary.LittleEndian, &ph)
	if ph.Type == 0 && ph.Vaddr == 0 && ph.Memsz == 0 {
		t.Errorf("AT_PHDR %v does not point at program headers", res.PHDR)
	}
}

func TestStackContents(t *testing.T) {
	dir := t.TempDir()
	path := writeExe(t, dir, "static", staticExec().bytes())
	for _, tc := range []struct {
		name string
		argv []string
		envv []string
		fn   string
	}{
		{"no env", []string{"a"}, nil, ""},
		{"empty argv gets empty argv0", nil, []string{"X=y"}, ""},
		{"nothing", nil, nil, "/some/where/else"},
		{"odd lengths", []string{"abc", "de"}, []string{"f=g", "hijkl=m", "n="}, "x"},
		{"long", []string{strings.Repeat("a", 100000)}, []string{strings.Repeat("b", 5000)}, ""},
		{"many", slices.Repeat([]string{"arg"}, 1000), slices.Repeat([]string{"E=1"}, 1000), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMM(t)
			opts := testOpts(path)
			opts.Argv, opts.Envv, opts.ExecFn = tc.argv, tc.envv, tc.fn
			res, err := Load(ctx, m, nil, opts)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			checkStack(t, m, res, opts, 3)
		})
	}
}

func TestArgLimits(t *testing.T) {
	dir := t.TempDir()
	path := writeExe(t, dir, "static", staticExec().bytes())
	for _, tc := range []struct {
		name  string
		argv  []string
		envv  []string
		limit uint64
		want  error
	}{
		{"string too long", []string{strings.Repeat("a", 131072)}, nil, 8 << 20, unix.E2BIG},
		{"string at the limit", []string{strings.Repeat("a", 131071)}, nil, 8 << 20, nil},
		{"total too large", slices.Repeat([]string{strings.Repeat("a", 100000)}, 21), nil, 8 << 20, unix.E2BIG},
		{"small stack allows ARG_MAX", slices.Repeat([]string{strings.Repeat("a", 1000)}, 120), nil, 64 << 10, nil},
		{"small stack beyond ARG_MAX", slices.Repeat([]string{strings.Repeat("a", 1000)}, 140), nil, 64 << 10, unix.E2BIG},
		{"NUL in a string", []string{"a\x00b"}, nil, 8 << 20, unix.EINVAL},
		{"NUL in the environment", []string{"a"}, []string{"A=\x00"}, 8 << 20, unix.EINVAL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMM(t)
			opts := testOpts(path)
			opts.Argv, opts.Envv, opts.StackLimit = tc.argv, tc.envv, tc.limit
			res, err := Load(ctx, m, nil, opts)
			if !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
				t.Fatalf("Load: %v, want %v", err, tc.want)
			}
			if err == nil {
				checkStack(t, m, res, opts, 3)
			} else if len(m.VMAs(ctx)) != 0 {
				t.Errorf("failed Load left mappings:\n%s", m.MapsText(ctx))
			}
		})
	}
}

func TestStackSize(t *testing.T) {
	dir := t.TempDir()
	path := writeExe(t, dir, "static", staticExec().bytes())
	for _, tc := range []struct {
		name  string
		argv  []string
		limit uint64
		want  hostarch.AddrRange
	}{
		// One page of strings plus 128 KiB.
		{"default", []string{"a"}, 8 << 20, hostarch.AddrRange{Start: 0x7ffffffde000, End: 0x7ffffffff000}},
		// Strings over 3 pages: 3 pages plus 128 KiB.
		{"three pages", []string{strings.Repeat("a", 9000)}, 8 << 20, hostarch.AddrRange{Start: 0x7ffffffdc000, End: 0x7ffffffff000}},
		// The expansion is capped by RLIMIT_STACK (rounded down to a page).
		{"small limit", []string{"a"}, 20<<10 + 100, hostarch.AddrRange{Start: 0x7fffffffa000, End: 0x7ffffffff000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMM(t)
			opts := testOpts(path)
			opts.Argv, opts.StackLimit = tc.argv, tc.limit
			res, err := Load(ctx, m, nil, opts)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if res.Stack != tc.want {
				t.Errorf("stack %v, want %v", res.Stack, tc.want)
			}
			vmas := m.VMAs(ctx)
			last := vmas[len(vmas)-1]
			if last.Range != tc.want || last.Name != "[stack]" || !slices.Contains(last.Flags, "gd") {
				t.Errorf("stack vma %v %q %v", last.Range, last.Name, last.Flags)
			}
		})
	}
}

func TestLayout(t *testing.T) {
	for _, tc := range []struct {
		name   string
		max    hostarch.Addr
		rlim   uint64
		legacy bool
		top    hostarch.Addr
		bottom hostarch.Addr
		dir    mm.MmapDirection
	}{
		{"8 MiB stack", hostarch.MaxUserAddress, 8 << 20, false, 0x7ffff7fff000, 0x2aaaaaaab000, mm.MmapTopDown},
		{"1 GiB stack", hostarch.MaxUserAddress, 1 << 30, false, 0x7fffbfeff000, 0x2aaaaaaab000, mm.MmapTopDown},
		{"unlimited stack", hostarch.MaxUserAddress, mm.RLimInfinity, false, 0x155555556000, 0x2aaaaaaab000, mm.MmapTopDown},
		{"unaligned limit", hostarch.MaxUserAddress, 200<<20 + 5, false, 0x7ffff36ff000, 0x2aaaaaaab000, mm.MmapTopDown},
		{"legacy", hostarch.MaxUserAddress, 8 << 20, true, 0x7ffff7fff000, 0x2aaaaaaab000, mm.MmapBottomUp},
		{"ptrace platform", 0x7fffffffd000, 8 << 20, false, 0x7ffff7fff000, 0x2aaaaaaab000, mm.MmapTopDown},
		{"small platform", 0x100000000, 8 << 20, false, 0xf8000000, 0x55556000, mm.MmapTopDown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur := mm.MmapLayout{MinAddr: 0x10000, MaxAddr: tc.max}
			l := Layout(cur, tc.rlim, tc.legacy)
			if l.TopDownBase != tc.top || l.BottomUpBase != tc.bottom || l.DefaultDirection != tc.dir || l.MinAddr != cur.MinAddr || l.MaxAddr != cur.MaxAddr {
				t.Errorf("Layout = %+v, want top %#x bottom %#x dir %v", l, uint64(tc.top), uint64(tc.bottom), tc.dir)
			}
		})
	}
	if got := etDynBase(DefaultMapWindow); got != 0x555555554aaa {
		t.Errorf("ELF_ET_DYN_BASE = %#x", uint64(got))
	}
}

func TestPIEWithInterpreter(t *testing.T) {
	dir := t.TempDir()
	interp := writeExe(t, dir, "ld.so", interpDyn().bytes())
	prog := pieExec(interp)
	path := writeExe(t, dir, "pie", prog.bytes())
	m := newMM(t)
	opts := testOpts(path)
	res, err := Load(ctx, m, nil, opts)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	const bias = 0x555555554000
	if res.LoadBias != bias || res.ProgramEntry != bias+0x1100 || res.PHDR != bias+0x40 {
		t.Errorf("bias %v entry %v phdr %v", res.LoadBias, res.ProgramEntry, res.PHDR)
	}
	// The interpreter goes top-down below mmap_base (0x7ffff7fff000),
	// its whole image (0x4800 bytes, rounded to 5 pages) reserved.
	const ibase = 0x7ffff7fff000 - 0x5000
	if res.InterpreterBase != ibase || res.Entry != ibase+0x1000 || res.Interpreter != interp {
		t.Errorf("interp %q base %v entry %v", res.Interpreter, res.InterpreterBase, res.Entry)
	}
	if res.Brk != bias+0x5000 {
		t.Errorf("brk %v, want %#x", res.Brk, bias+0x5000)
	}
	pr, _ := filepath.EvalSymlinks(path)
	ir, _ := filepath.EvalSymlinks(interp)
	want := []string{
		fmt.Sprintf("555555554000-555555556000 r-xp 00000000 %s", pr),
		// The data segment's file page, then one zero page.
		fmt.Sprintf("555555556000-555555557000 rw-p 00001000 %s", pr),
		"555555557000-555555559000 rw-p 00000000 ",
		fmt.Sprintf("7ffff7ffa000-7ffff7ffb000 r--p 00000000 %s", ir),
		fmt.Sprintf("7ffff7ffb000-7ffff7ffc000 r-xp 00001000 %s", ir),
		fmt.Sprintf("7ffff7ffd000-7ffff7ffe000 rw-p 00002000 %s", ir),
		"7ffff7ffe000-7ffff7fff000 rw-p 00000000 ",
		"7ffffffde000-7ffffffff000 rw-p 00000000 [stack]",
	}
	if got := mapsSummary(t, m); !slices.Equal(got, want) {
		t.Errorf("maps:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	checkStack(t, m, res, opts, 4)
	s := decodeStack(t, m, res.StackPointer)
	if v, _ := s.auxval(AT_BASE); v != ibase {
		t.Errorf("AT_BASE %#x", v)
	}
}

func TestExecutableStack(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name  string
		stack []elf.Prog64
		exec  bool
	}{
		{"no PT_GNU_STACK", nil, false},
		{"RW", []elf.Prog64{gnuStack(elf.PF_R | elf.PF_W)}, false},
		{"RWX", []elf.Prog64{gnuStack(elf.PF_R | elf.PF_W | elf.PF_X)}, true},
		{"last wins", []elf.Prog64{gnuStack(elf.PF_R | elf.PF_W | elf.PF_X), gnuStack(elf.PF_R | elf.PF_W)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := staticExec()
			f.phdrs = append(f.phdrs[:2:2], tc.stack...)
			path := writeExe(t, dir, strings.ReplaceAll(tc.name, " ", "_"), f.bytes())
			m := newMM(t)
			res, err := Load(ctx, m, nil, testOpts(path))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			vmas := m.VMAs(ctx)
			want := "rw-p"
			if tc.exec {
				want = "rwxp"
			}
			if res.ExecutableStack != tc.exec || vmas[len(vmas)-1].Perms != want {
				t.Errorf("ExecutableStack %v, stack perms %s", res.ExecutableStack, vmas[len(vmas)-1].Perms)
			}
		})
	}
}

// segmentShape is a synthetic program of PT_LOAD segments, with the maps
// Linux shows for it (F stands for the file's path).
type segmentShape struct {
	name  string
	loads []elf.Prog64
	size  int
	maps  []string
	check func(t *testing.T, m *mm.MemoryManager)
}

// segmentShapes are the unusual segment layouts TestSegmentShapes and
// TestSyntheticNative load.
var segmentShapes = []segmentShape{
	{
		// More than a page of program headers (Linux allows 64 KiB).
		name:  "many program headers",
		loads: append([]elf.Prog64{load(elf.PF_R|elf.PF_X, 0, 0x400000, 0x3000, 0x3000)}, slices.Repeat([]elf.Prog64{{Type: uint32(elf.PT_NOTE)}}, 200)...),
		size:  0x3000,
		maps:  []string{"00400000-00403000 r-xp 00000000 F"},
	},
	{
		name: "read-only bss is not zeroed",
		// Linux's padzero fails on a read-only page and is ignored:
		// the file's bytes past p_filesz stay visible.
		loads: []elf.Prog64{load(elf.PF_R, 0, 0x400000, 0x180, 0x2000)},
		size:  0x1000,
		maps:  []string{"00400000-00401000 r--p 00000000 F", "00401000-00402000 rw-p 00000000 "},
		check: func(t *testing.T, m *mm.MemoryManager) {
			if b := readBytes(t, m, 0x400180, 1); b[0] != 0xcd {
				t.Errorf("byte past p_filesz is %#x, want the file's 0xcd", b[0])
			}
		},
	},
	{
		name:  "executable bss is executable",
		loads: []elf.Prog64{load(elf.PF_R|elf.PF_X, 0, 0x400000, 0x180, 0x2000)},
		size:  0x1000,
		maps:  []string{"00400000-00401000 r-xp 00000000 F", "00401000-00402000 rwxp 00000000 "},
	},
	{
		name:  "bss only",
		loads: []elf.Prog64{load(elf.PF_R, 0, 0x400000, 0x100, 0x100), load(elf.PF_R|elf.PF_W, 0, 0x600010, 0, 0x3000)},
		size:  0x1000,
		maps:  []string{"00400000-00401000 r--p 00000000 F", "00600000-00604000 rw-p 00000000 "},
	},
	{
		name: "segments sharing a page",
		// The second is mapped over the first's last page, as Linux
		// does.
		loads: []elf.Prog64{load(elf.PF_R|elf.PF_X, 0, 0x400000, 0x1800, 0x1800), load(elf.PF_R|elf.PF_W, 0x1800, 0x401800, 0x100, 0x100)},
		size:  0x2000,
		maps:  []string{"00400000-00401000 r-xp 00000000 F", "00401000-00402000 rw-p 00001000 F"},
	},
	{
		name: "segment past end of file",
		// Accepted, as by Linux; touching it would be SIGBUS.
		loads: []elf.Prog64{load(elf.PF_R|elf.PF_X, 0, 0x400000, 0x1000, 0x1000), load(elf.PF_R, 0x5000, 0x405000, 0x100, 0x100)},
		size:  0x1000,
		maps:  []string{"00400000-00401000 r-xp 00000000 F", "00405000-00406000 r--p 00005000 F"},
		check: func(t *testing.T, m *mm.MemoryManager) {
			if _, err := m.CopyIn(ctx, 0x405000, make([]byte, 1), mm.IOOpts{}); err == nil {
				t.Errorf("reading past EOF succeeded")
			}
		},
	},
	{
		name:  "no permissions",
		loads: []elf.Prog64{load(elf.PF_R|elf.PF_X, 0, 0x400000, 0x1000, 0x1000), load(0, 0x1000, 0x401000, 0x100, 0x100)},
		size:  0x2000,
		maps:  []string{"00400000-00401000 r-xp 00000000 F", "00401000-00402000 ---p 00001000 F"},
	},
}

func TestSegmentShapes(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range segmentShapes {
		t.Run(tc.name, func(t *testing.T) {
			f := elfFile{hdr: header(elf.ET_EXEC, 0x400000), phdrs: tc.loads, size: tc.size, fill: 0xcd}
			path := writeExe(t, dir, strings.ReplaceAll(tc.name, " ", "_"), f.bytes())
			real, _ := filepath.EvalSymlinks(path)
			m := newMM(t)
			res, err := Load(ctx, m, nil, testOpts(path))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			want := append(slices.Clone(tc.maps), "7ffffffde000-7ffffffff000 rw-p 00000000 [stack]")
			for i := range want {
				want[i] = strings.Replace(want[i], " F", " "+real, 1)
			}
			if got := mapsSummary(t, m); !slices.Equal(got, want) {
				t.Errorf("maps:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if tc.check != nil {
				tc.check(t, m)
			}
			_ = res
		})
	}
}

// TestBadELF checks that malformed programs and interpreters fail with the
// errno Linux gives, and leave nothing mapped when the failure is found
// before anything is mapped.
func TestBadELF(t *testing.T) {
	dir := t.TempDir()
	mk := func(change func(f *elfFile)) []byte {
		f := staticExec()
		change(&f)
		return f.bytes()
	}
	withInterp := func(interp string) []byte { return pieExec(interp).bytes() }
	var counter int
	badInterp := func(change func(f *elfFile)) []byte {
		counter++
		f := interpDyn()
		change(&f)
		return withInterp(writeExe(t, dir, fmt.Sprintf("badinterp%d", counter), f.bytes()))
	}
	full := staticExec().bytes()
	for _, tc := range []struct {
		name   string
		data   []byte
		errno  unix.Errno
		mapped bool // whether the failure comes after mapping started
	}{
		{"empty file", nil, unix.ENOEXEC, false},
		{"three bytes", []byte("\x7fEL"), unix.ENOEXEC, false},
		{"magic only", []byte("\x7fELF"), unix.ENOEXEC, false},
		{"script", []byte("#!/bin/sh\necho hi\n"), unix.ENOEXEC, false},
		{"text", []byte("hello world"), unix.ENOEXEC, false},
		{"header truncated", full[:40], unix.ENOEXEC, false},
		{"phdrs truncated", full[:ehdrSize+phdrSize+10], unix.ENOEXEC, false},
		{"ET_REL", mk(func(f *elfFile) { f.hdr.Type = uint16(elf.ET_REL) }), unix.ENOEXEC, false},
		{"ET_CORE", mk(func(f *elfFile) { f.hdr.Type = uint16(elf.ET_CORE) }), unix.ENOEXEC, false},
		{"i386", mk(func(f *elfFile) { f.hdr.Machine = uint16(elf.EM_386) }), unix.ENOEXEC, false},
		{"aarch64", mk(func(f *elfFile) { f.hdr.Machine = uint16(elf.EM_AARCH64) }), unix.ENOEXEC, false},
		{"ELFCLASS32", mk(func(f *elfFile) { f.hdr.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS32) }), unix.ENOEXEC, false},
		{"big-endian", mk(func(f *elfFile) { f.hdr.Ident[elf.EI_DATA] = byte(elf.ELFDATA2MSB) }), unix.ENOEXEC, false},
		{"bad phentsize", mk(func(f *elfFile) { f.keepHdr = true; f.hdr.Phoff, f.hdr.Phnum, f.hdr.Phentsize = 64, 3, 32 }), unix.ENOEXEC, false},
		{"no phdrs", mk(func(f *elfFile) { f.keepHdr = true; f.hdr.Phoff, f.hdr.Phnum, f.hdr.Phentsize = 64, 0, phdrSize }), unix.ENOEXEC, false},
		{"1171 phdrs", mk(func(f *elfFile) {
			f.phdrs = append(f.phdrs, slices.Repeat([]elf.Prog64{{Type: uint32(elf.PT_NOTE)}}, 1168)...)
			f.size = 0x11000
		}), unix.ENOEXEC, false},
		{"PN_XNUM phdrs", mk(func(f *elfFile) { f.keepHdr = true; f.hdr.Phoff, f.hdr.Phnum, f.hdr.Phentsize = 64, 0xffff, phdrSize }), unix.ENOEXEC, false},
		{"phoff huge", mk(func(f *elfFile) { f.keepHdr = true; f.hdr.Phoff, f.hdr.Phnum, f.hdr.Phentsize = 1<<63+5, 3, phdrSize }), unix.ENOEXEC, false},
		{"no PT_LOAD", mk(func(f *elfFile) { f.phdrs = f.phdrs[2:] }), unix.EINVAL, false},
		{"filesz > memsz", mk(func(f *elfFile) { f.phdrs[1].Filesz = 0x4000 }), unix.EINVAL, false},
		{"vaddr beyond TASK_SIZE", mk(func(f *elfFile) { f.phdrs[1].Vaddr = 0x800000000000; f.phdrs[1].Off = 0 }), unix.EINVAL, false},
		{"memsz wraps", mk(func(f *elfFile) { f.phdrs[1].Memsz = 1<<64 - 0x1000 }), unix.EINVAL, false},
		{"segment end beyond TASK_SIZE", mk(func(f *elfFile) { f.phdrs[1].Vaddr, f.phdrs[1].Off = 0x7ffffffff000-0x1000, 0 }), unix.EINVAL, false},
		{"misaligned offset", mk(func(f *elfFile) { f.phdrs[1].Off = 0x1010 }), unix.EINVAL, false},
		{"offset overflows", mk(func(f *elfFile) { f.phdrs[1].Off = 1<<63 + 0x1000 }), unix.EOVERFLOW, false},
		{"overlapping segments", mk(func(f *elfFile) { f.phdrs[1].Vaddr, f.phdrs[1].Off = 0x400800, 0x800 }), unix.ENOEXEC, false},
		{"duplicate segment", mk(func(f *elfFile) { f.phdrs = append(f.phdrs, f.phdrs[0]) }), unix.ENOEXEC, false},
		{"entry beyond TASK_SIZE", mk(func(f *elfFile) { f.hdr.Entry = 0xffffffff00000000 }), unix.EINVAL, false},
		{"below mmap_min_addr", mk(func(f *elfFile) { f.phdrs[0].Vaddr = 0x1000; f.phdrs[1].Vaddr = 0x2000 }), unix.EPERM, true},
		{"PT_INTERP too short", mk(func(f *elfFile) { f.phdrs = append(f.phdrs, interpHdr(0x1800, 1)) }), unix.ENOEXEC, false},
		{"PT_INTERP too long", mk(func(f *elfFile) { f.phdrs = append(f.phdrs, interpHdr(0x1800, 4097)) }), unix.ENOEXEC, false},
		{"PT_INTERP not terminated", mk(func(f *elfFile) { f.phdrs = append(f.phdrs, interpHdr(0x1800, 8)) }), unix.ENOEXEC, false},
		{"PT_INTERP past EOF", mk(func(f *elfFile) { f.phdrs = append(f.phdrs, interpHdr(0x1ff0, 0x20)) }), unix.EIO, false},
		{"interpreter missing", withInterp(filepath.Join(dir, "nonexistent")), unix.ENOENT, false},
		{"interpreter empty path", mk(func(f *elfFile) { f.phdrs = append(f.phdrs, interpHdr(0x1800, 2)); f.at[0x1800] = []byte{0, 0} }), unix.EACCES, false},
		{"interpreter is a directory", withInterp(dir), unix.EACCES, false},
		{"interpreter not executable", withInterp(func() string {
			p := filepath.Join(dir, "noexec")
			os.WriteFile(p, interpDyn().bytes(), 0o644)
			return p
		}()), unix.EACCES, false},
		{"interpreter is a FIFO", withInterp(func() string {
			p := filepath.Join(dir, "fifo")
			unix.Mkfifo(p, 0o755)
			return p
		}()), unix.EACCES, false},
		{"interpreter truncated", badInterp(func(f *elfFile) { f.size = 40 }), unix.EIO, false},
		{"interpreter not ELF", withInterp(writeExe(t, dir, "sh", []byte("#!/bin/sh\n"+strings.Repeat("x", 100)))), unix.ELIBBAD, false},
		{"interpreter i386", badInterp(func(f *elfFile) { f.hdr.Machine = uint16(elf.EM_386) }), unix.ELIBBAD, false},
		{"interpreter ET_REL", badInterp(func(f *elfFile) { f.hdr.Type = uint16(elf.ET_REL) }), unix.ELIBBAD, false},
		{"interpreter phdrs truncated", badInterp(func(f *elfFile) { f.size = ehdrSize + 10 }), unix.ELIBBAD, false},
		{"interpreter too many phdrs", badInterp(func(f *elfFile) {
			f.phdrs = append(f.phdrs, slices.Repeat([]elf.Prog64{{Type: uint32(elf.PT_NOTE)}}, 1168)...)
			f.size = 0x11000
		}), unix.ELIBBAD, false},
		{"interpreter no PT_LOAD", badInterp(func(f *elfFile) { f.phdrs = []elf.Prog64{gnuStack(elf.PF_R)} }), unix.ELIBBAD, false},
		{"interpreter filesz > memsz", badInterp(func(f *elfFile) { f.phdrs[2].Filesz = 0x2000 }), unix.ELIBBAD, false},
		{"interpreter misaligned", badInterp(func(f *elfFile) { f.phdrs[1].Off = 0x1008 }), unix.ELIBBAD, false},
		{"interpreter overlapping", badInterp(func(f *elfFile) { f.phdrs[1].Vaddr, f.phdrs[1].Off = 0x400, 0x400 }), unix.ELIBBAD, false},
		{"interpreter ET_EXEC over the program", badInterp(func(f *elfFile) {
			// An ET_EXEC interpreter is mapped MAP_FIXED at its
			// addresses; with none below mmap_min_addr... put it
			// below: EPERM from mmap.
			f.hdr.Type = uint16(elf.ET_EXEC)
		}), unix.EPERM, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeExe(t, dir, "prog", tc.data)
			m := newMM(t)
			_, err := Load(ctx, m, nil, testOpts(path))
			if err == nil {
				t.Fatalf("Load succeeded:\n%s", m.MapsText(ctx))
			}
			var le *Error
			if !errors.As(err, &le) {
				t.Fatalf("error %v (%T) is not an *Error", err, err)
			}
			if !errors.Is(err, tc.errno) || le.Errno != tc.errno {
				t.Errorf("Load: %v (errno %v), want %v", err, le.Errno, unix.ErrnoName(tc.errno))
			}
			if n := len(m.VMAs(ctx)); !tc.mapped && n != 0 {
				t.Errorf("failed Load left %d vmas", n)
			}
			// Where Linux's execve fails (before its point of no
			// return), it must fail the same way.
			if native := nativeExecErrno(t, path); native != 0 && native != le.Errno {
				t.Errorf("Load: %v; Linux's execve: %v", err, unix.ErrnoName(native))
			} else if native == 0 {
				t.Logf("Linux's execve does not fail (the process would be killed, or runs): %v", err)
			} else {
				t.Logf("Linux's execve fails alike: %v", err)
			}
		})
	}
}

func TestBadPaths(t *testing.T) {
	dir := t.TempDir()
	noexec := filepath.Join(dir, "noexec")
	os.WriteFile(noexec, staticExec().bytes(), 0o644)
	for _, tc := range []struct {
		name  string
		path  string
		errno unix.Errno
	}{
		{"empty", "", unix.ENOENT},
		{"missing", filepath.Join(dir, "missing"), unix.ENOENT},
		{"directory", dir, unix.EACCES},
		{"not executable", noexec, unix.EACCES},
		{"through a file", filepath.Join(noexec, "x"), unix.ENOTDIR},
		{"device", "/dev/null", unix.EACCES},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMM(t)
			_, err := Load(ctx, m, nil, testOpts(tc.path))
			if !errors.Is(err, tc.errno) {
				t.Errorf("Load(%q): %v, want %v", tc.path, err, unix.ErrnoName(tc.errno))
			}
		})
	}
	if _, err := Load(ctx, nil, nil, Options{Path: "/bin/true"}); !errors.Is(err, unix.EINVAL) {
		t.Errorf("Load with a nil manager: %v", err)
	}
}

// TestOccupied checks MAP_FIXED_NOREPLACE: a program whose range is taken
// fails with EEXIST.
func TestOccupied(t *testing.T) {
	dir := t.TempDir()
	path := writeExe(t, dir, "static", staticExec().bytes())
	m := newMM(t)
	if _, err := m.MMap(ctx, anonOpts(hostarch.AddrRange{Start: 0x401000, End: 0x402000}, hostarch.ReadWrite)); err != nil {
		t.Fatal(err)
	}
	// The first segment is MAP_FIXED_NOREPLACE; the others are
	// MAP_FIXED and replace what is there, as in Linux.
	if _, err := Load(ctx, m, nil, testOpts(path)); err != nil {
		t.Errorf("Load over an occupied second segment: %v", err)
	}
	m2 := newMM(t)
	if _, err := m2.MMap(ctx, anonOpts(hostarch.AddrRange{Start: 0x400000, End: 0x401000}, hostarch.ReadWrite)); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(ctx, m2, nil, testOpts(path)); !errors.Is(err, unix.EEXIST) {
		t.Errorf("Load over an occupied first segment: %v, want EEXIST", err)
	}
}

// TestVDSOHook checks that a vDSO mapped by Options.VDSO is announced with
// AT_SYSINFO_EHDR first, and that its failure fails the load.
func TestVDSOHook(t *testing.T) {
	dir := t.TempDir()
	path := writeExe(t, dir, "static", staticExec().bytes())
	m := newMM(t)
	opts := testOpts(path)
	var sm *mm.SpecialMappable
	opts.VDSO = func(ctx2 context.Context, m *mm.MemoryManager) (hostarch.Addr, error) {
		var err error
		sm, err = mm.NewSpecialMappable("[vdso]", m.MemoryFile(), 2*hostarch.PageSize)
		if err != nil {
			return 0, err
		}
		return m.MapSpecial(ctx2, sm, 0, false, hostarch.ReadExecute)
	}
	res, err := Load(ctx, m, nil, opts)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	defer sm.DecRef(ctx)
	if res.Auxv[0].Key != AT_SYSINFO_EHDR || res.Auxv[0].Value != 0x7ffff7ffd000 {
		t.Errorf("auxv[0] = %+v, want AT_SYSINFO_EHDR at 0x7ffff7ffd000", res.Auxv[0])
	}
	s := decodeStack(t, m, res.StackPointer)
	if v, ok := s.auxval(AT_SYSINFO_EHDR); !ok || v != res.Auxv[0].Value {
		t.Errorf("AT_SYSINFO_EHDR on the stack: %#x %v", v, ok)
	}

	m2 := newMM(t)
	opts.VDSO = func(context.Context, *mm.MemoryManager) (hostarch.Addr, error) { return 0, unix.ENOMEM }
	if _, err := Load(ctx, m2, nil, opts); !errors.Is(err, unix.ENOMEM) {
		t.Errorf("Load with a failing vDSO: %v", err)
	}
}

// limitedPlatform is NoPlatform with a lower MaxUserAddress, as the ptrace
// platform (whose stub takes the top two pages) or a smaller one.
type limitedPlatform struct {
	platform.NoPlatform
	max hostarch.Addr
}

func (p limitedPlatform) MaxUserAddress() hostarch.Addr { return p.max }

// TestPlatformLimit checks the layout in managers whose platform cannot
// map up to Linux's TASK_SIZE.
func TestPlatformLimit(t *testing.T) {
	dir := t.TempDir()
	interp := writeExe(t, dir, "ld.so", interpDyn().bytes())
	path := writeExe(t, dir, "pie", pieExec(interp).bytes())
	for _, tc := range []struct {
		name  string
		max   hostarch.Addr
		stack hostarch.AddrRange
		bias  hostarch.Addr
		ibase hostarch.Addr
	}{
		// The ptrace platform: the stack ends below the stub; mmap_base
		// and ELF_ET_DYN_BASE are Linux's.
		{"ptrace", 0x7fffffffd000, hostarch.AddrRange{Start: 0x7fffffffd000 - 0x21000, End: 0x7fffffffd000}, 0x555555554000, 0x7ffff7fff000 - 0x5000},
		// A 4 GiB address space: everything scales with it.
		{"4 GiB", 0x100000000, hostarch.AddrRange{Start: 0x100000000 - 0x21000, End: 0x100000000}, 0xaaaaa000, 0xf8000000 - 0x5000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mf := newMF(t)
			m := mm.New(mm.Options{MemoryFile: mf, Platform: limitedPlatform{max: tc.max}})
			defer func() {
				m.DecUsers(ctx)
				if n := mf.UsageAllocated(); n != 0 {
					t.Errorf("%d bytes still allocated", n)
				}
			}()
			opts := testOpts(path)
			res, err := Load(ctx, m, nil, opts)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if res.Stack != tc.stack || res.LoadBias != tc.bias || res.InterpreterBase != tc.ibase {
				t.Errorf("stack %v bias %v interpreter %v; want %v %v %v", res.Stack, res.LoadBias, res.InterpreterBase, tc.stack, tc.bias, tc.ibase)
			}
			checkStack(t, m, res, opts, 4)
		})
	}
}

// TestFilesTable checks that with Options.Files the program and the
// interpreter are opened through the table, shared by two loads, and
// leave it when both managers are gone.
func TestFilesTable(t *testing.T) {
	dir := t.TempDir()
	interp := writeExe(t, dir, "ld.so", interpDyn().bytes())
	path := writeExe(t, dir, "pie", pieExec(interp).bytes())
	mf := newMF(t)
	table := hostfile.NewTable(mf)
	var ms []*mm.MemoryManager
	for range 2 {
		m := mm.New(mm.Options{MemoryFile: mf})
		ms = append(ms, m)
		opts := testOpts(path)
		opts.Files = table
		if _, err := Load(ctx, m, mf, opts); err != nil {
			t.Fatalf("Load: %v", err)
		}
	}
	if n := table.Len(); n != 2 {
		t.Errorf("table holds %d files, want 2 (program and interpreter)", n)
	}
	// The same page of the program is the same page of the cache in
	// both: read it in one, it is resident for the other.
	a := readBytes(t, ms[0], 0x555555554000, 64)
	b := readBytes(t, ms[1], 0x555555554000, 64)
	if !bytes.Equal(a, b) || !bytes.HasPrefix(a, []byte(elf.ELFMAG)) {
		t.Errorf("program headers differ or are not ELF")
	}
	for _, m := range ms {
		m.DecUsers(ctx)
	}
	if n := table.Len(); n != 0 {
		t.Errorf("table still holds %d files", n)
	}
	if n := mf.UsageAllocated(); n != 0 {
		t.Errorf("%d bytes still allocated", n)
	}
}
