package sandbox

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestExecClosesOnce checks that the descriptors an exec opens in the
// process for its image's host mappings (the program's file and its
// interpreter's, at consecutive numbers) are closed with one injected
// close_range, not a close each: running a dynamically linked program
// takes at most two injected closing calls (that and start-up's close of
// the memory file's first number), and its output is Linux's.
func TestExecClosesOnce(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "hello", "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n", false)
	c := countInjected(t, exe)
	if n := c[unix.SYS_CLOSE] + c[unix.SYS_CLOSE_RANGE]; n > 2 {
		t.Errorf("a dynamically linked program took %d injected closes and %d close_ranges, want at most 2 in all", c[unix.SYS_CLOSE], c[unix.SYS_CLOSE_RANGE])
	}
}

// vdsoPlaceSrc prints how far below the interpreter's base the vDSO
// ([vdso], AT_SYSINFO_EHDR) is, which Linux's layout fixes (the vDSO
// block is mapped top-down right below the interpreter), and that a
// clock_gettime through the vDSO works.
const vdsoPlaceSrc = `
#include <stdio.h>
#include <sys/auxv.h>
#include <time.h>

int main(void) {
	unsigned long vdso = getauxval(AT_SYSINFO_EHDR), base = getauxval(AT_BASE);
	struct timespec ts;
	int r = clock_gettime(CLOCK_MONOTONIC, &ts);
	printf("vdso at base-%#lx, clock_gettime %d\n", base - vdso, r);
	return 0;
}
`

// TestFirstVDSOInPlace checks that the first process's layout is drawn
// so that its vDSO is where the host's exec of the stub image put the
// host's (ASLR on): no injected mremap moves it, and the program sees
// Linux's layout (the vDSO right below the interpreter) and a working
// vDSO.
func TestFirstVDSOInPlace(t *testing.T) {
	needPtrace(t)
	if v, ok := readSysctl("/proc/sys/kernel/randomize_va_space", 10); !ok || v == 0 {
		t.Skip("the host does not randomize layouts")
	}
	if vdsoLayout() == nil {
		t.Skip("the host has no vDSO")
	}
	exe := buildC(t, "vdsoplace", vdsoPlaceSrc, false)
	for range 3 {
		c := countInjected(t, exe)
		if c[unix.SYS_MREMAP] != 0 {
			t.Errorf("the first process took %d injected mremaps, want 0 (its vDSO where the host's is)", c[unix.SYS_MREMAP])
		}
	}
}
