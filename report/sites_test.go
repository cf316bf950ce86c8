package report

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// TestFollowsCall: the bytes before a return address end with a call
// instruction, in each of its encodings, and nothing else passes.
func TestFollowsCall(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    [7]byte
		want bool
	}{
		{"call rel32", [7]byte{0x90, 0x90, 0xe8, 1, 2, 3, 4}, true},
		{"call *%rax", [7]byte{0, 0, 0, 0, 0, 0xff, 0xd0}, true},
		{"call *%r11", [7]byte{0, 0, 0, 0, 0x41, 0xff, 0xd3}, true},
		{"call *8(%rax)", [7]byte{0, 0, 0, 0, 0xff, 0x50, 0x08}, true},
		{"call *8(%rsp)", [7]byte{0, 0, 0, 0xff, 0x54, 0x24, 0x08}, true},
		{"call *0x100(%rbx)", [7]byte{0, 0xff, 0x93, 0, 1, 0, 0}, true},
		{"call *x(%rip)", [7]byte{0, 0xff, 0x15, 1, 2, 3, 4}, true},
		{"call *(%rax)", [7]byte{0, 0, 0, 0, 0, 0xff, 0x10}, true},
		{"jmp *%rax", [7]byte{0, 0, 0, 0, 0, 0xff, 0xe0}, false},
		{"push %rbp; mov", [7]byte{0x55, 0x48, 0x89, 0xe5, 0x48, 0x83, 0xec}, false},
		{"syscall", [7]byte{0, 0, 0, 0, 0, 0x0f, 0x05}, false},
		{"call *8(%rax) misplaced", [7]byte{0, 0, 0, 0, 0, 0xff, 0x50}, false},
	} {
		if got := followsCall(tc.b); got != tc.want {
			t.Errorf("%s: followsCall(% x) = %v, want %v", tc.name, tc.b, got, tc.want)
		}
	}
}

// TestSymbolLookup: an offset is named by the function covering it, a
// public alias preferred; a symbol without a size covers up to the next.
func TestSymbolLookup(t *testing.T) {
	st := &symTable{funcs: []symbol{
		{"__mmap", 0x100, 0x140}, {"mmap", 0x100, 0x140}, {"mmap64", 0x100, 0x140},
		{"outer", 0x200, 0x300}, {"inner", 0x220, 0x240},
		{"nosize", 0x400, 0x400},
	}}
	sortSymbols(st.funcs)
	for _, tc := range []struct {
		off  uint64
		name string
		at   uint64
		ok   bool
	}{
		{0x0ff, "", 0, false},
		{0x100, "mmap", 0, true},
		{0x127, "mmap", 0x27, true},
		{0x140, "", 0, false},
		{0x230, "inner", 0x10, true},
		{0x250, "outer", 0x50, true},
		{0x480, "nosize", 0x80, true},
	} {
		name, at, ok := st.lookup(tc.off)
		if name != tc.name || at != tc.at || ok != tc.ok {
			t.Errorf("lookup(%#x) = %q+%#x %v, want %q+%#x %v", tc.off, name, at, ok, tc.name, tc.at, tc.ok)
		}
	}
}

// TestReadSymbols: the symbols read straight from the symbol tables are
// exactly those debug/elf decodes, placed at their file offsets, for a
// shared library with only dynamic symbols and for a program with a full
// symbol table (static functions included).
func TestReadSymbols(t *testing.T) {
	files := []string{"/lib/x86_64-linux-gnu/libc.so.6"}
	if gcc, err := exec.LookPath("gcc"); err == nil {
		dir := t.TempDir()
		src := filepath.Join(dir, "p.c")
		if err := os.WriteFile(src, []byte("static int helper(int x) { return x * 3; }\nint main(int c, char **v) { return helper(c); }\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(gcc, "-O0", "-o", filepath.Join(dir, "p"), src).CombinedOutput(); err != nil {
			t.Fatalf("gcc: %v\n%s", err, out)
		}
		files = append(files, filepath.Join(dir, "p"))
	}
	for _, path := range files {
		f, err := elf.Open(path)
		if err != nil {
			t.Logf("%s: %v", path, err)
			continue
		}
		var want []symbol
		var syms []elf.Symbol
		if ss, err := f.Symbols(); err == nil {
			syms = append(syms, ss...)
		}
		if ss, err := f.DynamicSymbols(); err == nil {
			syms = append(syms, ss...)
		}
		for _, s := range syms {
			if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Value == 0 || s.Name == "" {
				continue
			}
			for _, p := range f.Progs {
				if p.Type == elf.PT_LOAD && s.Value >= p.Vaddr && s.Value < p.Vaddr+p.Filesz {
					off := s.Value - p.Vaddr + p.Off
					want = append(want, symbol{s.Name, off, off + s.Size})
					break
				}
			}
		}
		f.Close()
		sortSymbols(want)
		got := readSymbols(path).funcs
		if len(want) == 0 {
			t.Errorf("%s: debug/elf finds no function symbols", path)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: readSymbols gives %d symbols, debug/elf %d; first difference at %d", path, len(got), len(want), firstDiff(got, want))
		}
		if strings.HasSuffix(path, "/p") && !slices.ContainsFunc(got, func(s symbol) bool { return s.name == "helper" }) {
			t.Errorf("%s: the static function helper is missing", path)
		}
	}
}

func firstDiff(a, b []symbol) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestReadSymbolsNotRegular: a path that names a FIFO, a directory or
// nothing gives an empty table at once (a FIFO's open would block).
func TestReadSymbolsNotRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := dir + "/fifo"
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{fifo, dir, dir + "/none"} {
		if st := readSymbols(p); len(st.funcs) != 0 {
			t.Errorf("readSymbols(%s): %d symbols", p, len(st.funcs))
		}
	}
}
