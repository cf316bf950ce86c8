package loader

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/mm"
	"github.com/vmspace/vmspace/pgalloc"
)

// The test program: initialised data, read-only data and a large bss.
const progC = `
#include <stdio.h>
int data_var = 0x12345678;
const char rodata_str[] = "vmspace-rodata";
char bss_buf[200000];
int main(int argc, char **argv) {
	bss_buf[argc] = 1;
	printf("%d %s %s\n", data_var, rodata_str, argv[0]);
	return 0;
}
`

// progVariants are the ways the test program is built.
var progVariants = []struct {
	name  string
	flags []string
}{
	{"static", []string{"-static"}},
	{"static-pie", []string{"-static-pie"}},
	{"pie", []string{"-pie", "-fPIE"}},
	{"nopie", []string{"-no-pie"}},
	{"execstack", []string{"-z", "execstack"}},
	{"static-2m", []string{"-static", "-Wl,-z,max-page-size=0x200000"}},
	{"static-pie-2m", []string{"-static-pie", "-Wl,-z,max-page-size=0x200000"}},
	{"pie-2m", []string{"-pie", "-fPIE", "-Wl,-z,max-page-size=0x200000"}},
}

var (
	buildOnce sync.Once
	buildDir  string
	// built maps a variant to its path, or to "" with buildErr set.
	built    = map[string]string{}
	buildErr = map[string]string{}
)

// buildProgs compiles the test program's variants once per test binary,
// or skips the test if gcc is missing.
func buildProgs(t *testing.T) {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not found: skipping tests on compiled programs")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "loader-progs-")
		if err != nil {
			t.Fatal(err)
		}
		buildDir = dir
		src := filepath.Join(dir, "prog.c")
		if err := os.WriteFile(src, []byte(progC), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, v := range progVariants {
			out := filepath.Join(dir, v.name)
			args := append(append([]string{"-O1", "-o", out}, v.flags...), src)
			if b, err := exec.Command(gcc, args...).CombinedOutput(); err != nil {
				buildErr[v.name] = fmt.Sprintf("gcc %s: %v\n%s", strings.Join(args, " "), err, b)
				continue
			}
			built[v.name] = out
		}
	})
}

// progPath returns the built variant, or skips the test.
func progPath(t *testing.T, name string) string {
	t.Helper()
	buildProgs(t)
	p, ok := built[name]
	if !ok {
		t.Skipf("could not build %s: %s", name, buildErr[name])
	}
	return p
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// nativeState is what Linux set up for a program stopped at its first
// instruction.
type nativeState struct {
	// maps are the lines of /proc/PID/maps, without the vDSO's and
	// vsyscall's.
	maps []string
	// stat are the fields of /proc/PID/stat; stat[i] is field i+1.
	stat []string
	// auxv is /proc/PID/auxv without AT_NULL.
	auxv []mm.AuxEntry
	// sp and pc are the registers.
	sp, pc uint64
	// stack holds [sp, stack top).
	stack []byte
	// pages holds the contents of every page of every vma but the stack
	// (nil for a page that cannot be read, such as one past end-of-file).
	pages map[hostarch.Addr][]byte
}

// statField returns field n (1-based) of /proc/PID/stat as a number.
func (s *nativeState) statField(t *testing.T, n int) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(s.stat[n-1], 10, 64)
	if err != nil {
		t.Fatalf("stat field %d %q: %v", n, s.stat[n-1], err)
	}
	return v
}

// personality(2)'s ADDR_NO_RANDOMIZE and ADDR_COMPAT_LAYOUT.
const (
	addrNoRandomize  = 0x0040000
	addrCompatLayout = 0x0200000
)

// runNative starts path with argv and envv under ptrace with ASLR off,
// stopped at the exec, and returns its state. It skips the test if ptrace
// is not allowed.
func runNative(t *testing.T, path string, argv, envv []string, stackTop hostarch.Addr, persona uintptr) *nativeState {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	old, _, errno := unix.RawSyscall(unix.SYS_PERSONALITY, 0xffffffff, 0, 0)
	if errno != 0 {
		t.Skipf("personality: %v", errno)
	}
	if _, _, errno := unix.RawSyscall(unix.SYS_PERSONALITY, old|addrNoRandomize|persona, 0, 0); errno != 0 {
		t.Skipf("personality(ADDR_NO_RANDOMIZE): %v", errno)
	}
	pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{Env: envv, Sys: &syscall.SysProcAttr{Ptrace: true}})
	unix.RawSyscall(unix.SYS_PERSONALITY, old, 0, 0)
	if err != nil {
		t.Skipf("starting %s under ptrace: %v", path, err)
	}
	defer func() {
		unix.Kill(pid, unix.SIGKILL)
		for {
			var ws unix.WaitStatus
			if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil || ws.Exited() || ws.Signaled() {
				return
			}
		}
	}()
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil || !ws.Stopped() || ws.StopSignal() != unix.SIGTRAP {
		t.Fatalf("waiting for the exec stop: %v, status %#x", err, ws)
	}
	proc := fmt.Sprintf("/proc/%d/", pid)
	read := func(name string) []byte {
		b, err := os.ReadFile(proc + name)
		if err != nil {
			t.Fatalf("%v", err)
		}
		return b
	}
	s := &nativeState{}
	for _, l := range strings.SplitAfter(string(read("maps")), "\n") {
		if l == "" || strings.Contains(l, "[vvar") || strings.Contains(l, "[vdso]") || strings.Contains(l, "[vsyscall]") {
			continue
		}
		s.maps = append(s.maps, l)
	}
	stat := string(read("stat"))
	i := strings.LastIndexByte(stat, ')')
	s.stat = append([]string{strconv.Itoa(pid), stat[strings.IndexByte(stat, '(') : i+1]}, strings.Fields(stat[i+1:])...)
	for b := read("auxv"); len(b) >= 16; b = b[16:] {
		k, v := binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:])
		if k == AT_NULL {
			break
		}
		s.auxv = append(s.auxv, mm.AuxEntry{Key: k, Value: v})
	}
	f := strings.Fields(string(read("syscall")))
	if len(f) < 2 {
		t.Fatalf("/proc/PID/syscall: %q", f)
	}
	s.sp, _ = strconv.ParseUint(strings.TrimPrefix(f[len(f)-2], "0x"), 16, 64)
	s.pc, _ = strconv.ParseUint(strings.TrimPrefix(f[len(f)-1], "0x"), 16, 64)
	mem, err := os.Open(proc + "mem")
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	if s.sp >= uint64(stackTop) || uint64(stackTop)-s.sp > 1<<20 {
		t.Fatalf("native sp %#x not below the stack top %v", s.sp, stackTop)
	}
	s.stack = make([]byte, uint64(stackTop)-s.sp)
	if _, err := mem.ReadAt(s.stack, int64(s.sp)); err != nil {
		t.Fatalf("reading the native stack: %v", err)
	}
	s.pages = make(map[hostarch.Addr][]byte)
	for _, l := range s.maps {
		var start, end uint64
		fmt.Sscanf(l, "%x-%x", &start, &end)
		if strings.HasSuffix(l, "[stack]\n") || end-start > 16<<20 {
			continue
		}
		for a := start; a < end; a += hostarch.PageSize {
			b := make([]byte, hostarch.PageSize)
			if _, err := mem.ReadAt(b, int64(a)); err != nil {
				b = nil
			}
			s.pages[hostarch.Addr(a)] = b
		}
	}
	return s
}

// newHostMM returns a manager with the host's limits (as vmscript does), so
// that it is laid out as a native process of this test.
func newHostMM(t *testing.T) (*mm.MemoryManager, *pgalloc.MemoryFile) {
	t.Helper()
	mf := newMF(t)
	lim := mm.HostLimits()
	m := mm.New(mm.Options{MemoryFile: mf, Limits: &lim})
	fds := countFDs(t)
	t.Cleanup(func() {
		if err := m.CheckInvariants(); err != nil {
			t.Errorf("CheckInvariants: %v", err)
		}
		m.DecUsers(ctx)
		if n := mf.UsageAllocated(); n != 0 {
			t.Errorf("memory file still has %d bytes allocated after release", n)
		}
		if n := countFDs(t); n != fds {
			t.Errorf("%d host descriptors open after release, %d before", n, fds)
		}
	})
	return m, mf
}

// compareNative loads path with argv and envv, runs it natively stopped at
// its first instruction, and checks that both agree: the maps (without the
// vDSO, which the loader does not map), the auxiliary vector (without
// AT_SYSINFO_EHDR), the /proc/PID/stat addresses, the entry point, and the
// initial stack (16 bytes lower natively, for AT_SYSINFO_EHDR's entry).
func compareNative(t *testing.T, path string, argv, envv []string) (*mm.MemoryManager, *Result) {
	t.Helper()
	return compareNativeLayout(t, path, argv, envv, false)
}

// compareNativeLayout is compareNative, with the legacy (bottom-up)
// layout if legacy is set.
func compareNativeLayout(t *testing.T, path string, argv, envv []string, legacy bool) (*mm.MemoryManager, *Result) {
	t.Helper()
	m, _ := newHostMM(t)
	res, err := Load(ctx, m, nil, Options{Path: path, Argv: argv, Envv: envv, LegacyLayout: legacy})
	if err != nil {
		t.Fatalf("Load(%s): %v", path, err)
	}
	var persona uintptr
	if legacy {
		persona = addrCompatLayout
	}
	nat := runNative(t, path, argv, envv, res.Stack.End, persona)

	got := strings.SplitAfter(m.MapsText(ctx), "\n")
	got = got[:len(got)-1]
	for i, l := range got {
		// Tolerate mm's naming of the vma ending at an empty heap's
		// start (see heapNameBug).
		if f := strings.Fields(l); len(f) == 6 && f[5] == "[heap]" {
			var start, end uint64
			fmt.Sscanf(f[0], "%x-%x", &start, &end)
			if heapNameBug(t, m, hostarch.Addr(end)) {
				got[i] = strings.Join(f[:5], " ") + " \n"
			}
		}
	}
	if vmas := m.VMAs(ctx); vmas[len(vmas)-1].Range != res.Stack {
		t.Errorf("Result.Stack %v, [stack] vma %v", res.Stack, vmas[len(vmas)-1].Range)
	}
	if !slices.Equal(got, nat.maps) {
		t.Errorf("maps differ:\nvmspace:\n%s\nLinux:\n%s", strings.Join(got, ""), strings.Join(nat.maps, ""))
	}
	var natAux []mm.AuxEntry
	for _, e := range nat.auxv {
		if e.Key != AT_SYSINFO_EHDR {
			natAux = append(natAux, e)
		}
	}
	if !slices.Equal(res.Auxv, natAux) {
		t.Errorf("auxv differs:\nvmspace: %v\nLinux:   %v", res.Auxv, natAux)
	}
	// Memory contents, page by page, as /proc/PID/mem reads them
	// (ignoring permissions).
	diff := 0
	for a, want := range nat.pages {
		got := make([]byte, hostarch.PageSize)
		_, err := m.CopyIn(ctx, a, got, mm.IOOpts{IgnorePermissions: true})
		switch {
		case (err != nil) != (want == nil):
			t.Errorf("page %v: vmspace read error %v, Linux readable %v", a, err, want != nil)
			diff++
		case want != nil && !bytes.Equal(got, want):
			t.Errorf("page %v differs", a)
			diff++
		}
		if diff > 5 {
			t.Fatalf("too many differences")
		}
	}
	if nat.pc != uint64(res.Entry) {
		t.Errorf("entry %v, Linux's pc %#x", res.Entry, nat.pc)
	}
	for _, f := range []struct {
		n    int
		name string
		got  hostarch.Addr
	}{
		{26, "start_code", res.StartCode}, {27, "end_code", res.EndCode},
		{45, "start_data", res.StartData}, {46, "end_data", res.EndData}, {47, "start_brk", res.Brk},
		{48, "arg_start", res.Argv.Start}, {49, "arg_end", res.Argv.End},
		{50, "env_start", res.Envv.Start}, {51, "env_end", res.Envv.End},
	} {
		if want := nat.statField(t, f.n); uint64(f.got) != want {
			t.Errorf("%s = %v, Linux's %#x", f.name, f.got, want)
		}
	}
	if want := nat.statField(t, 28); uint64(res.StackPointer) != want+16 {
		t.Errorf("stack pointer %v, Linux's %#x (+16 for AT_SYSINFO_EHDR)", res.StackPointer, want)
	}
	if nat.sp+16 != uint64(res.StackPointer) {
		t.Errorf("stack pointer %v, Linux's rsp %#x", res.StackPointer, nat.sp)
	}
	// The stacks: the same argc, argv and envp pointers; the same bytes
	// from AT_RANDOM's end to the top; zeros between the auxv and
	// AT_RANDOM in both.
	ours := readBytes(t, m, res.StackPointer, int(res.Stack.End-res.StackPointer))
	items := (max(len(argv), 1) + len(envv) + 3) * 8
	if !bytes.Equal(ours[:items], nat.stack[:items]) {
		t.Errorf("argc/argv/envp differ")
	}
	rnd := uint64(0)
	for _, e := range res.Auxv {
		if e.Key == AT_RANDOM {
			rnd = e.Value
		}
	}
	tail := uint64(res.Stack.End) - (rnd + 16)
	if !bytes.Equal(ours[uint64(len(ours))-tail:], nat.stack[uint64(len(nat.stack))-tail:]) {
		t.Errorf("the strings above AT_RANDOM differ")
	}
	auxEnd := items + (len(res.Auxv)+1)*16
	if pad := ours[auxEnd : rnd-uint64(res.StackPointer)]; bytes.Count(pad, []byte{0}) != len(pad) {
		t.Errorf("padding between the auxv and AT_RANDOM is not zero")
	}
	return m, res
}

// symbol returns the address of a symbol of the ELF file at path.
func symbol(t *testing.T, path, name string) (uint64, uint64) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatalf("%s: symbols: %v", path, err)
	}
	for _, s := range syms {
		if s.Name == name {
			return s.Value, s.Size
		}
	}
	t.Fatalf("%s: no symbol %s", path, name)
	return 0, 0
}

// TestCompiledPrograms loads each variant of the test program, compares it
// with Linux's own exec, and checks its data in memory.
func TestCompiledPrograms(t *testing.T) {
	for _, v := range progVariants {
		t.Run(v.name, func(t *testing.T) {
			path := progPath(t, v.name)
			argv := []string{path, "one", "two three"}
			envv := []string{"A=1", "PATH=/usr/bin:/bin", "LONG=" + strings.Repeat("x", 300)}
			m, res := compareNative(t, path, argv, envv)
			bias := uint64(res.LoadBias)
			// Initialised data, read-only data, and a zero bss.
			addr, _ := symbol(t, path, "data_var")
			if got := readBytes(t, m, hostarch.Addr(addr+bias), 4); binary.LittleEndian.Uint32(got) != 0x12345678 {
				t.Errorf("data_var = % x", got)
			}
			addr, _ = symbol(t, path, "rodata_str")
			if got := readCString(t, m, hostarch.Addr(addr+bias)); got != "vmspace-rodata" {
				t.Errorf("rodata_str = %q", got)
			}
			addr, size := symbol(t, path, "bss_buf")
			if got := readBytes(t, m, hostarch.Addr(addr+bias), int(size)); bytes.Count(got, []byte{0}) != len(got) {
				t.Errorf("bss_buf is not zero")
			}
			// AT_PHDR points at the program headers.
			f, err := elf.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			raw, _ := os.ReadFile(path)
			want := raw[64 : 64+uint64(len(f.Progs))*phdrSize]
			if got := readBytes(t, m, res.PHDR, len(want)); !bytes.Equal(got, want) {
				t.Errorf("AT_PHDR %v does not hold the program headers", res.PHDR)
			}
			// The break is right after the bss, or at ELF_ET_DYN_BASE for
			// a static PIE.
			var end uint64
			for _, p := range f.Progs {
				if p.Type == elf.PT_LOAD {
					end = max(end, p.Vaddr+p.Memsz)
				}
			}
			wantBrk := pageAlign(end + bias)
			if f.Type == elf.ET_DYN && res.Interpreter == "" {
				wantBrk = 0x555555555000
			}
			if uint64(res.Brk) != wantBrk || m.BrkRange().Start != res.Brk {
				t.Errorf("brk %v (manager's %v), want %#x", res.Brk, m.BrkRange(), wantBrk)
			}
		})
	}
}

// TestBinTrue loads /bin/true (a dynamic PIE on most systems) and the
// dynamic loader itself as a program (a static PIE: ET_DYN without
// PT_INTERP) running /bin/true, and compares both with Linux.
func TestBinTrue(t *testing.T) {
	prog := "/bin/true"
	if _, err := os.Stat(prog); err != nil {
		t.Skipf("%s: %v", prog, err)
	}
	envv := []string{"HOME=/", "TERM=dumb"}
	t.Run("dynamic", func(t *testing.T) {
		_, res := compareNative(t, prog, []string{"true"}, envv)
		t.Logf("%s: entry %v interpreter %q at %v, stack %v, brk %v", prog, res.Entry, res.Interpreter, res.InterpreterBase, res.StackPointer, res.Brk)
	})
	t.Run("no arguments", func(t *testing.T) {
		compareNative(t, prog, nil, envv)
	})
	t.Run("many arguments", func(t *testing.T) {
		// 160 KiB of pointers: the tables reach below the stack that
		// setup_arg_pages made, which grows to hold them.
		_, res := compareNative(t, prog, slices.Repeat([]string{"a"}, 20000), envv)
		if res.Stack.Start != res.StackPointer.RoundDown() {
			t.Errorf("stack %v was not grown to the stack pointer %v", res.Stack, res.StackPointer)
		}
	})
	t.Run("ld.so", func(t *testing.T) {
		f, err := elf.Open(prog)
		if err != nil {
			t.Fatal(err)
		}
		var interp string
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				b := make([]byte, p.Filesz)
				p.ReadAt(b, 0)
				interp = string(bytes.TrimRight(b, "\x00"))
			}
		}
		f.Close()
		if interp == "" {
			t.Skipf("%s has no interpreter", prog)
		}
		_, res := compareNative(t, interp, []string{interp, prog}, envv)
		if res.Interpreter != "" || res.Brk != 0x555555555000 {
			t.Errorf("ld.so as a program: interpreter %q, brk %v", res.Interpreter, res.Brk)
		}
	})
}

// TestNativeLayouts compares /bin/true and the dynamic test program with
// Linux under other layouts: the legacy bottom-up one, and stack limits
// that move mmap_base (RLIMIT_STACK is set on this process for the
// duration, so that both the native child and HostLimits see it).
func TestNativeLayouts(t *testing.T) {
	progs := []string{"/bin/true"}
	if _, err := exec.LookPath("gcc"); err == nil {
		buildProgs(t)
		if p, ok := built["nopie"]; ok {
			progs = append(progs, p)
		}
		if p, ok := built["static-pie"]; ok {
			progs = append(progs, p)
		}
	}
	envv := []string{"HOME=/"}
	for _, prog := range progs {
		t.Run(filepath.Base(prog)+"/legacy", func(t *testing.T) {
			_, res := compareNativeLayout(t, prog, []string{prog}, envv, true)
			if res.Layout.DefaultDirection != mm.MmapBottomUp {
				t.Errorf("layout %+v", res.Layout)
			}
		})
		for _, lim := range []uint64{256 << 20, 4 << 30, mm.RLimInfinity} {
			t.Run(fmt.Sprintf("%s/stack=%#x", filepath.Base(prog), lim), func(t *testing.T) {
				var old unix.Rlimit
				if err := unix.Getrlimit(unix.RLIMIT_STACK, &old); err != nil {
					t.Fatal(err)
				}
				if lim > old.Max {
					t.Skipf("hard RLIMIT_STACK %#x", old.Max)
				}
				if err := unix.Setrlimit(unix.RLIMIT_STACK, &unix.Rlimit{Cur: lim, Max: old.Max}); err != nil {
					t.Skipf("setrlimit: %v", err)
				}
				defer unix.Setrlimit(unix.RLIMIT_STACK, &old)
				_, res := compareNative(t, prog, []string{prog}, envv)
				if want := mmapBase(DefaultMapWindow, lim); res.Layout.TopDownBase != want {
					t.Errorf("mmap_base %v, want %v", res.Layout.TopDownBase, want)
				}
			})
		}
	}
}

// TestSyntheticNative runs the synthetic programs natively (they are never
// executed: the process is stopped before its first instruction) and
// compares them with the loader's: the small static program, the PIE with
// a synthetic interpreter, and the unusual segment shapes, including a
// read-only bss that Linux leaves unzeroed and a segment past end-of-file.
func TestSyntheticNative(t *testing.T) {
	dir := t.TempDir()
	interp := writeExe(t, dir, "ld.so", interpDyn().bytes())
	progs := map[string][]byte{
		"static": staticExec().bytes(),
		"pie":    pieExec(interp).bytes(),
	}
	for _, sh := range segmentShapes {
		progs[strings.ReplaceAll(sh.name, " ", "_")] = elfFile{hdr: header(elf.ET_EXEC, 0x400000), phdrs: sh.loads, size: sh.size, fill: 0xcd}.bytes()
	}
	for name, b := range progs {
		t.Run(name, func(t *testing.T) {
			path := writeExe(t, dir, name, b)
			compareNative(t, path, []string{name, "x"}, []string{"A=b"})
		})
	}
}

// nativeExecErrno executes path natively under ptrace (stopping it at its
// first instruction, then killing it) and returns execve's errno, or 0 if
// the exec went through (or failed after the point of no return, killing
// the process).
func nativeExecErrno(t *testing.T, path string) unix.Errno {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	pid, err := syscall.ForkExec(path, []string{path}, &syscall.ProcAttr{Sys: &syscall.SysProcAttr{Ptrace: true}})
	if err != nil {
		var en syscall.Errno
		if errors.As(err, &en) {
			return unix.Errno(en)
		}
		t.Fatalf("ForkExec: %v", err)
	}
	unix.Kill(pid, unix.SIGKILL)
	for {
		var ws unix.WaitStatus
		if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil || ws.Exited() || ws.Signaled() {
			return 0
		}
	}
}
