package sandbox

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// layoutProgram prints where its code, break, a new mapping, the C
// library and its stack are.
const layoutProgram = `
#include <stdio.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv) {
	int local;
	void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	printf("code %p\nbrk %p\nmmap %p\nlibc %p\nvdso %#lx\n", (void *)main, sbrk(0), m, (void *)printf,
	       getauxval(AT_SYSINFO_EHDR));
	if (argc > 1) printf("stack %p\n", (void *)&local);
	return 0;
}
`

// randomizeVASpace returns kernel.randomize_va_space.
func randomizeVASpace(t *testing.T) int {
	b, err := os.ReadFile("/proc/sys/kernel/randomize_va_space")
	if err != nil {
		t.Skipf("kernel.randomize_va_space: %v", err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestASLROff: without randomization (vmspace run --no-aslr, or setarch
// -R inside the sandbox) a program gets Linux's fixed layout: the same
// addresses as natively under setarch -R, for a PIE and a static PIE.
func TestASLROff(t *testing.T) {
	needPtrace(t)
	need(t, "setarch")
	for _, static := range []bool{false, true} {
		name, extra := "pie", []string{"-pie", "-fPIE"}
		if static {
			name, extra = "staticpie", []string{"-static-pie", "-fPIE"}
		}
		exe := buildC(t, "layout-"+name, layoutProgram, false, extra...)
		t.Run(name, func(t *testing.T) {
			want := runNative(t, "", "", "setarch", "-R", exe)
			if want.code != 0 {
				t.Fatalf("native: %+v", want)
			}
			got, _ := sandboxRun(t, "", "", Options{NoASLR: true}, exe)
			if got.stdout != want.stdout {
				t.Errorf("--no-aslr:\n%s\nnative setarch -R:\n%s", got.stdout, want.stdout)
			}
			got, _ = sandboxRun(t, "", "", Options{}, "setarch", "-R", exe)
			if got.stdout != want.stdout {
				t.Errorf("setarch -R under vmspace:\n%s\nnative setarch -R:\n%s", got.stdout, want.stdout)
			}
		})
	}
}

// TestASLROn: with the host's randomization on, two runs of a program
// have different addresses for its code (a PIE), mapping base, C library
// and stack (and break), each within Linux's range.
func TestASLROn(t *testing.T) {
	needPtrace(t)
	rva := randomizeVASpace(t)
	if rva == 0 {
		t.Skip("kernel.randomize_va_space is 0")
	}
	exe := buildC(t, "layout", layoutProgram, false, "-pie", "-fPIE")
	parse := func(out string) map[string]uint64 {
		m := map[string]uint64{}
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			k, v, ok := strings.Cut(l, " ")
			n, err := strconv.ParseUint(strings.TrimPrefix(v, "0x"), 16, 64)
			if !ok || err != nil {
				t.Fatalf("bad line %q", l)
			}
			m[k] = n
		}
		return m
	}
	var runs []map[string]uint64
	for range 2 {
		got, _ := sandboxRun(t, "", "", Options{}, exe, "stack")
		if got.code != 0 {
			t.Fatalf("%+v", got)
		}
		runs = append(runs, parse(got.stdout))
	}
	for _, k := range []string{"code", "brk", "mmap", "libc", "vdso", "stack"} {
		if runs[0][k] == runs[1][k] {
			t.Errorf("%s is %#x in both runs", k, runs[0][k])
		}
	}
	const (
		etDynBase = 0x555555554aaa &^ 0xfff // ELF_ET_DYN_BASE, page-aligned
		pieSpan   = 1 << (28 + 12)          // mmap_rnd_bits of pages (at least 28)
		stackTop  = 0x7ffffffff000
		stackSpan = 0x3fffff<<12 + 2*4096 // STACK_RND_MASK pages, arch_align_stack
	)
	for _, r := range runs {
		if c := r["code"]; c < etDynBase || c >= etDynBase+pieSpan<<4 {
			t.Errorf("code at %#x: not a randomized ELF_ET_DYN_BASE", c)
		}
		if s := r["stack"]; s >= stackTop || s < stackTop-stackSpan-(1<<20) {
			t.Errorf("stack at %#x: not within 16 GiB below the top", s)
		}
		if m := r["mmap"]; m >= stackTop-stackSpan || m < stackTop-stackSpan-(1<<32)-(1<<46) {
			t.Errorf("mapping at %#x: not below a randomized mmap_base", m)
		}
	}
}
