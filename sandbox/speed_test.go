package sandbox

import (
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// sharedStoresSrc maps argv[1] pages of MAP_SHARED|MAP_ANONYMOUS memory
// and stores to each page once; then it forks, and the child reads back
// every page and stores again, which the parent checks.
const sharedStoresSrc = `
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
	long n = atol(argv[1]);
	if (n == 0) {
		printf("ok 0\n");
		return 0;
	}
	char *p = mmap(NULL, n * 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 1;
	for (long i = 0; i < n; i++)
		*(volatile uint64_t *)(p + i * 4096) = i + 1;
	pid_t pid = fork();
	if (pid == 0) {
		for (long i = 0; i < n; i++) {
			if (*(volatile uint64_t *)(p + i * 4096) != (uint64_t)(i + 1))
				_exit(2);
			*(volatile uint64_t *)(p + i * 4096 + 8) = 7 * i;
		}
		_exit(0);
	}
	int st;
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return 3;
	uint64_t sum = 0;
	for (long i = 0; i < n; i++)
		sum += *(volatile uint64_t *)(p + i * 4096 + 8);
	printf("ok %llu\n", (unsigned long long)sum);
	return 0;
}
`

// TestSharedFirstStoreOneFault checks that the first store to a page of
// shared anonymous memory costs vmspace one fault, not a read fault and
// then a write fault (the page is mapped writable at once, as Linux
// does), and that parent and child still share the pages as on Linux.
func TestSharedFirstStoreOneFault(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "sharedstores", sharedStoresSrc, false)
	const pages = 256
	compare(t, "", "", exe, strconv.Itoa(pages))
	_, base := sandboxRun(t, "", "", Options{}, exe, "0")
	_, st := sandboxRun(t, "", "", Options{}, exe, strconv.Itoa(pages))
	// The parent's stores fault once a page (the child keeps the
	// parent's host mappings of shared memory: fork.go). Both programs'
	// other faults (start-up, the fork) are the same give or take a few.
	extra := int64(st.Faults) - int64(base.Faults)
	if extra > pages+pages/4 || extra < pages-pages/16 {
		t.Errorf("%d pages stored took %d faults more than none (want about %d, one per page)", pages, extra, pages)
	}
}

// TestExecOpensEachFileOnce checks that an exec opens each file of its
// image once in the process for the host mappings of all its segments: a
// static program linked with its code in a segment of its own (four
// loadable segments) costs as many opens and closes as the same program
// linked with fewer (noseparate-code: two).
func TestExecOpensEachFileOnce(t *testing.T) {
	needPtrace(t)
	src := "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n"
	many := buildC(t, "manysegs", src, true, "-Wl,-z,separate-code")
	few := buildC(t, "fewsegs", src, true, "-Wl,-z,noseparate-code")
	var opens, closes int
	injectHook = func(nr uintptr) {
		switch nr {
		case unix.SYS_OPENAT:
			opens++
		case unix.SYS_CLOSE:
			closes++
		}
	}
	defer func() { injectHook = nil }()
	count := func(exe string) (int, int) {
		opens, closes = 0, 0
		compare(t, "", "", exe)
		return opens, closes
	}
	mo, mc := count(many)
	fo, fc := count(few)
	if mo != fo || mc != fc {
		t.Errorf("a static program of four segments took %d opens and %d closes, of two segments %d and %d: want the same", mo, mc, fo, fc)
	}
}
