package sandbox

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/vmspace/vmspace/hostarch"
	"golang.org/x/sys/unix"
)

// brkShrinkSrc grows its (page-aligned) heap by two pages, writes them and
// shrinks it again argv[1] times (with argv[2] "thread", while a second
// thread waits), then checks what Linux promises about the freed tail:
// reading it is a SIGSEGV with SEGV_MAPERR at the address, mincore fails
// with ENOMEM, a write(2) from it fails with EFAULT, a regrow reads
// zeros, and a private file mapping placed there with MAP_FIXED (made
// accessible by mprotect) shows the file's later changes while it is only
// read. It prints what it saw.
const brkShrinkSrc = `
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static sigjmp_buf jb;
static volatile int code;
static void *volatile faddr;

static void onsegv(int sig, siginfo_t *si, void *uc) {
	code = si->si_code;
	faddr = si->si_addr;
	siglongjmp(jb, 1);
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void *waiter(void *arg) {
	pthread_mutex_lock(&mu);
	pthread_mutex_unlock(&mu);
	return NULL;
}

static char outbuf[1 << 16];

int main(int argc, char **argv) {
	// stdio must not take heap memory (malloc's brk) on its own.
	setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
	int n = atoi(argv[1]);
	pthread_t th;
	int threaded = argc > 2 && !strcmp(argv[2], "thread");
	if (threaded) {
		pthread_mutex_lock(&mu);
		if (pthread_create(&th, NULL, waiter, NULL))
			return 10;
	}
	long pg = 4096;
	char *b = sbrk(0);
	long pad = (pg - (long)b % pg) % pg;
	if (pad && sbrk(pad) == (void *)-1)
		return 1;
	char *base = sbrk(0);
	for (int i = 0; i < n; i++) {
		char *p = sbrk(2 * pg);
		if (p != base)
			return 2;
		memset(p, i + 1, 2 * pg);
		if (sbrk(-2 * pg) == (void *)-1 || sbrk(0) != base)
			return 3;
	}
	// Leave dirty pages in the tail, then free it.
	char *p = sbrk(2 * pg);
	memset(p, 0x5a, 2 * pg);
	if (sbrk(-2 * pg) == (void *)-1)
		return 4;
	struct sigaction sa = {0};
	sa.sa_sigaction = onsegv;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGSEGV, &sa, NULL);
	int faults = 0;
	for (int k = 0; k < 2; k++) {
		code = 0;
		if (sigsetjmp(jb, 1) == 0) {
			volatile char c = base[k * pg + 8];
			(void)c;
			printf("read %d: no fault\n", k);
		} else {
			faults++;
			printf("read %d: SIGSEGV code %d at base%+ld\n", k, code, (long)((char *)faddr - base));
		}
	}
	unsigned char vec[2];
	errno = 0;
	int r = mincore(base, 2 * pg, vec);
	printf("mincore: %d errno %d\n", r, errno);
	int fds[2];
	if (pipe(fds))
		return 5;
	errno = 0;
	ssize_t w = write(fds[1], base, 16);
	printf("write from the tail: %zd errno %d\n", w, errno);
	// Regrow: zeros.
	p = sbrk(2 * pg);
	if (p != base)
		return 6;
	int nonzero = 0;
	for (long i = 0; i < 2 * pg; i++)
		nonzero += p[i] != 0;
	printf("regrown: %d nonzero bytes\n", nonzero);
	memset(p, 0x33, 2 * pg);
	if (sbrk(-2 * pg) == (void *)-1)
		return 7;
	// A private file mapping over the freed tail.
	char path[] = "/tmp/brkshrinkXXXXXX";
	int fd = mkstemp(path);
	if (fd < 0)
		return 8;
	unlink(path);
	if (pwrite(fd, "first", 5, 0) != 5 || ftruncate(fd, pg))
		return 9;
	// Inaccessible first, so that nothing is mapped before the read.
	char *m = mmap(base, pg, PROT_NONE, MAP_PRIVATE | MAP_FIXED, fd, 0);
	if (m != base || mprotect(m, pg, PROT_READ | PROT_WRITE))
		return 11;
	printf("file: %.5s", m);
	if (pwrite(fd, "later", 5, 0) != 5)
		return 12;
	printf(" then %.5s\n", m);
	munmap(m, pg);
	if (threaded) {
		pthread_mutex_unlock(&mu);
		pthread_join(th, NULL);
	}
	printf("cycles %d faults %d\n", n, faults);
	return 0;
}
`

// TestBrkShrinkInPlace checks that a heap shrink costs no injected call
// (the program's own brk makes the host unmap: brk.go): 200 grow and
// shrink cycles take at most a few injected munmaps more than none, and
// what the program sees of the freed tail is Linux's (SIGSEGV with
// SEGV_MAPERR, mincore's ENOMEM, write's EFAULT, zeros at a regrow, a
// private file mapping over it that follows the file). With a second
// thread the shrinks take the injected unmap, and the program still sees
// Linux's behaviour.
func TestBrkShrinkInPlace(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "brkshrink", brkShrinkSrc, false, "-pthread")
	// On the fast path the shrinks do not stop: its helper thread makes
	// the unmaps (no injected call either), counted with the injected.
	helperUnmaps := 0
	helperHook = func(nr uintptr) {
		if nr == unix.SYS_MUNMAP {
			helperUnmaps++
		}
	}
	defer func() { helperHook = nil }()
	const cycles = 200
	none := countInjected(t, exe, "0")
	noneUnmaps := none[unix.SYS_MUNMAP] + helperUnmaps
	many := countInjected(t, exe, strconv.Itoa(cycles))
	if d := many[unix.SYS_MUNMAP] - none[unix.SYS_MUNMAP]; d > 4 {
		t.Errorf("%d heap shrinks took %d injected munmaps more than none, want at most 4", cycles, d)
	}
	if r := runNative(t, "", "", exe, "1"); r.stdout != brkShrinkWant(1) {
		t.Errorf("natively the program printed\n%s\nwant\n%s", r.stdout, brkShrinkWant(1))
	}
	helperUnmaps = 0
	threaded := countInjected(t, exe, strconv.Itoa(cycles), "thread")
	if d := threaded[unix.SYS_MUNMAP] + helperUnmaps - noneUnmaps; d < cycles {
		t.Errorf("%d heap shrinks with a second thread took %d injected munmaps more than none, want at least %d (the tail must not stay mapped while another thread runs)", cycles, d, cycles)
	}
}

// brkShrinkWant is what brkShrinkSrc prints on Linux after n cycles.
func brkShrinkWant(n int) string {
	return "read 0: SIGSEGV code 1 at base+8\n" +
		"read 1: SIGSEGV code 1 at base+4104\n" +
		"mincore: -1 errno 12\n" +
		"write from the tail: -1 errno 14\n" +
		"regrown: 0 nonzero bytes\n" +
		"file: first then later\n" +
		"cycles " + strconv.Itoa(n) + " faults 2\n"
}

// TestBrkShrinkRefused checks a heap shrink whose rewritten host call
// (brk.go) the host refuses, as it does past vm.max_map_count: the
// tail's pages stay held by the memory file until the call's result is
// seen (none is released while the host may still map them), the tail is
// unmapped by an injected call instead, and the program sees Linux's
// behaviour (brk returns the new break, the freed tail faults).
func TestBrkShrinkRefused(t *testing.T) {
	if fastpathOn {
		t.Skip("the fast path unmaps a heap tail with its helper thread")
	}
	needPtrace(t)
	exe := buildC(t, "brkshrink", brkShrinkSrc, false, "-pthread")
	calls := 0
	brkTailHook = func(s *Sandbox, r *unix.PtraceRegs) {
		calls++
		if held := s.mf.UsageHeld(); held < r.Rsi {
			t.Errorf("heap shrink of %#x bytes at %#x: %#x bytes held by the memory file when its host call is made, want the tail's at least", r.Rsi, r.Rdi, held)
		}
		r.Rsi = 0 // mmap fails (EINVAL), leaving the tail mapped
	}
	defer func() { brkTailHook = nil }()
	compare(t, "", "", exe, "3")
	if calls == 0 {
		t.Fatal("no heap shrink was rewritten")
	}
}

// TestBrkHolesCleared checks that the inaccessible reservations heap
// shrinks leave in the host (brk.go), which count against the host's
// vm.max_map_count, are noted and removed by clearHoles (what a refused
// host mapping does before its retry), leaving what the program sees
// Linux's.
func TestBrkHolesCleared(t *testing.T) {
	if fastpathOn {
		t.Skip("the fast path unmaps a heap tail with its helper thread")
	}
	needPtrace(t)
	exe := buildC(t, "brkshrink", brkShrinkSrc, false, "-pthread")
	checked := false
	stopHook = func(s *Sandbox, tk *task) {
		if checked || s.fetchRegs(tk) != nil || tk.regs.Orig_rax != unix.SYS_MINCORE {
			return
		}
		checked = true
		tail := hostarch.AddrRange{Start: hostarch.Addr(tk.regs.Rdi), End: hostarch.Addr(tk.regs.Rdi + tk.regs.Rsi)}
		as := tk.p.as
		if !as.holes.IsSupersetOf(tail) {
			t.Errorf("holes %v, want them to span the freed tail %v", as.holes, tail)
		}
		if !hostMapsAny(t, tk.p.pid, tail) {
			t.Errorf("no inaccessible host mapping at the freed tail %v before clearHoles", tail)
		}
		as.clearHoles()
		if hostMapsAny(t, tk.p.pid, tail) {
			t.Errorf("the host still maps the freed tail %v after clearHoles", tail)
		}
		if as.holes.Length() != 0 {
			t.Errorf("holes %v after clearHoles, want none", as.holes)
		}
	}
	defer func() { stopHook = nil }()
	compare(t, "", "", exe, "1")
	if !checked {
		t.Fatal("the program's mincore was not seen")
	}
}

// hostMapsAny reports whether the host process pid maps anything in ar.
func hostMapsAny(t *testing.T, pid int, ar hostarch.AddrRange) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		var start, end uint64
		if _, err := fmt.Sscanf(line, "%x-%x", &start, &end); err != nil {
			continue
		}
		if start < uint64(ar.End) && end > uint64(ar.Start) {
			return true
		}
	}
	return false
}
