package sandbox

import (
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// cowForkProgram forks in ways that copy-on-write must serve as Linux
// does (argv[1] picks one):
//
//   - writes: parent and child (and a grandchild) write private memory of
//     every kind (an anonymous mapping, the heap, the data and bss
//     segments, the stack) after a fork, in turn, and each checks that it
//     sees its own writes and none of the others';
//   - kernel: after a fork, the host kernel writes into memory shared
//     copy-on-write on the program's behalf: a signal frame and the rseq
//     area at its delivery, a thread made on a stack glibc cached before
//     the fork (clear_child_tid, robust list, rseq), read() into a heap
//     buffer, pipe() and clock_gettime into stack and data words;
//   - thread: a thread other than the main one forks while the main
//     thread waits, and both sides write after it;
//   - usage: 64 MiB written before a fork; the child writes 16 MiB of it;
//     marker calls (madvise of length 0 at addresses 0x10000*N) let the
//     test read the memory file's usage at each step;
//   - scatter: 64 MiB written before a fork; the child writes one byte in
//     each of 40 scattered pages, checks what each side sees, and prints
//     its smaps' Private_Dirty and Shared_Dirty of the region (Linux
//     copies the 40 pages written, one at a time); markers as for usage.
const cowForkProgram = `#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGES 256
static char bss[PAGES * 4096];
static char data[64 * 4096] = {1};
static char *anon, *heap;
static int bad;

static void fill(char *p, size_t pages, char c) {
	for (size_t i = 0; i < pages; i++) p[i * 4096] = c, p[i * 4096 + 4095] = c;
}
/* Pages i with i % 2 == parity (parity -1: all) must hold c. */
static void expect(const char *what, char *p, size_t pages, int parity, char c) {
	for (size_t i = 0; i < pages; i++) {
		if (parity >= 0 && (int)(i % 2) != parity) continue;
		if (p[i * 4096] != c || p[i * 4096 + 4095] != c) {
			printf("%s: page %zu holds %c, want %c\n", what, i, p[i * 4096], c);
			bad++;
			return;
		}
	}
}
static void all(char *stack, int parity, char c, const char *who) {
	char w[64];
	snprintf(w, sizeof w, "%s anon", who); expect(w, anon, PAGES, parity, c);
	snprintf(w, sizeof w, "%s heap", who); expect(w, heap, PAGES, parity, c);
	snprintf(w, sizeof w, "%s bss", who); expect(w, bss, PAGES, parity, c);
	snprintf(w, sizeof w, "%s data", who); expect(w, data, 64, parity, c);
	snprintf(w, sizeof w, "%s stack", who); expect(w, stack, 16, parity, c);
}
static void fillall(char *stack, int parity, char c) {
	for (int i = 0; i < PAGES; i++) {
		if (parity >= 0 && i % 2 != parity) continue;
		fill(anon + i * 4096, 1, c); fill(heap + i * 4096, 1, c); fill(bss + i * 4096, 1, c);
		if (i < 64) fill(data + i * 4096, 1, c);
		if (i < 16) fill(stack + i * 4096, 1, c);
	}
}
static void sync_write(int fd) { char c = 1; if (write(fd, &c, 1) != 1) exit(90); }
static void sync_read(int fd) { char c; if (read(fd, &c, 1) != 1) exit(91); }

static int writes(void) {
	char stack[16 * 4096];
	anon = mmap(NULL, PAGES * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	heap = malloc(PAGES * 4096);
	if (anon == MAP_FAILED || !heap) return 80;
	fillall(stack, -1, 'P');
	int c2p[2], p2c[2];
	if (pipe(c2p) || pipe(p2c)) return 81;
	pid_t pid = fork();
	if (pid < 0) return 82;
	if (pid == 0) {
		all(stack, -1, 'P', "child at start");
		fillall(stack, 0, 'C');
		all(stack, 0, 'C', "child after its writes");
		all(stack, 1, 'P', "child after its writes");
		/* A grandchild shares the child's pages and the parent's. */
		pid_t g = fork();
		if (g == 0) {
			all(stack, 0, 'C', "grandchild");
			all(stack, 1, 'P', "grandchild");
			fillall(stack, -1, 'G');
			all(stack, -1, 'G', "grandchild after its writes");
			_exit(bad);
		}
		int st;
		if (waitpid(g, &st, 0) != g || !WIFEXITED(st) || WEXITSTATUS(st)) bad++, printf("grandchild %#x\n", st);
		all(stack, 0, 'C', "child after the grandchild");
		all(stack, 1, 'P', "child after the grandchild");
		sync_write(c2p[1]);
		sync_read(p2c[0]);
		/* The parent wrote 'Q' over every page. */
		all(stack, 0, 'C', "child after the parent's writes");
		all(stack, 1, 'P', "child after the parent's writes");
		fflush(stdout);
		_exit(bad);
	}
	sync_read(c2p[0]);
	all(stack, -1, 'P', "parent after the child's writes");
	fillall(stack, -1, 'Q');
	sync_write(p2c[1]);
	int st;
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st)) bad++, printf("child %#x\n", st);
	all(stack, -1, 'Q', "parent at the end");
	printf("writes: %d bad\n", bad);
	return 0;
}

static volatile sig_atomic_t got;
static void onusr1(int sig) { (void)sig; got++; }
static void *thread(void *arg) { *(int *)arg += 1; return arg; }

static int kernel(void) {
	anon = mmap(NULL, PAGES * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	heap = malloc(PAGES * 4096);
	if (anon == MAP_FAILED || !heap) return 80;
	memset(heap, 'P', PAGES * 4096);
	signal(SIGUSR1, onusr1);
	/* A thread made and joined: glibc caches its stack for the next. */
	pthread_t th;
	int n = 0;
	if (pthread_create(&th, NULL, thread, &n) || pthread_join(th, NULL)) return 83;
	int fds[2];
	if (pipe(fds)) return 84;
	if (write(fds[1], "from the pipe", 13) != 13) return 85;
	pid_t pid = fork();
	if (pid < 0) return 82;
	int r = 0;
	/* Both sides: a signal delivered at once (frame and rseq). */
	raise(SIGUSR1);
	if (got != 1) r |= 1;
	if (pid == 0) {
		/* read() into a heap page shared copy-on-write. */
		if (read(fds[0], heap + 8 * 4096, 13) != 13 || memcmp(heap + 8 * 4096, "from the pipe", 13)) r |= 2;
		/* A thread on the cached stack: its descriptor, robust list,
		   clear_child_tid word are in pages shared with the parent. */
		if (pthread_create(&th, NULL, thread, &n) || pthread_join(th, NULL) || n != 2) r |= 4;
		int more[2];
		if (pipe(more) || more[0] < 0) r |= 8;
		struct timespec ts = {0, 0};
		if (syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts) || ts.tv_sec == 0 && ts.tv_nsec == 0) r |= 16;
		for (int i = 0; i < 100; i++) sched_yield();
		_exit(r);
	}
	int st;
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st)) return 86;
	/* The parent: its heap still holds 'P' where the child read. */
	if (heap[8 * 4096] != 'P') r |= 32;
	if (write(fds[1], "again", 5) != 5 || read(fds[0], heap + 9 * 4096, 5) != 5 || memcmp(heap + 9 * 4096, "again", 5)) r |= 64;
	if (pthread_create(&th, NULL, thread, &n) || pthread_join(th, NULL) || n != 2) r |= 128;
	printf("kernel: child %d parent %d\n", WEXITSTATUS(st), r);
	return 0;
}

static int fds[2], back[2];
static void *forker(void *arg) {
	(void)arg;
	char stack[4 * 4096];
	fill(stack, 4, 'T');
	pid_t pid = fork();
	if (pid == 0) {
		expect("child bss", bss, PAGES, -1, 'M');
		expect("child stack", stack, 4, -1, 'T');
		fill(bss, PAGES, 'c');
		fill(stack, 4, 'c');
		sync_write(fds[1]);
		sync_read(back[0]);
		expect("child bss at the end", bss, PAGES, -1, 'c');
		fflush(stdout);
		_exit(bad);
	}
	sync_read(fds[0]);
	expect("thread's stack", stack, 4, -1, 'T');
	fill(stack, 4, 't');
	return (void *)(long)pid;
}

static int threadfork(void) {
	fill(bss, PAGES, 'M');
	if (pipe(fds) || pipe(back)) return 81;
	pthread_t th;
	void *ret;
	if (pthread_create(&th, NULL, forker, NULL) || pthread_join(th, &ret)) return 83;
	expect("main's bss", bss, PAGES, -1, 'M');
	fill(bss, PAGES, 'm');
	sync_write(back[1]);
	int st;
	pid_t pid = (pid_t)(long)ret;
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st)) bad++, printf("child %#x\n", st);
	expect("main's bss at the end", bss, PAGES, -1, 'm');
	printf("thread: %d bad\n", bad);
	return 0;
}

static void marker(int n) { madvise((void *)(0x10000UL * n), 0, MADV_NORMAL); }

static int usage(void) {
	size_t len = 64 << 20;
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) return 80;
	fill(p, len / 4096, 'P');
	marker(1);
	int c2p[2], p2c[2];
	if (pipe(c2p) || pipe(p2c)) return 81;
	pid_t pid = fork();
	if (pid < 0) return 82;
	if (pid == 0) {
		marker(2);
		fill(p, 4096, 'C'); /* 16 MiB */
		marker(3);
		expect("child", p, 4096, -1, 'C');
		expect("child", p + (16 << 20), len / 4096 - 4096, -1, 'P');
		fflush(stdout);
		_exit(bad);
	}
	int st;
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st)) bad++;
	expect("parent", p, len / 4096, -1, 'P');
	printf("usage: %d bad\n", bad);
	return 0;
}

/* The kB of field in the smaps block of the vma starting at start. */
static long smaps_kb(void *start, const char *field) {
	FILE *f = fopen("/proc/self/smaps", "r");
	if (!f) return -1;
	char line[512];
	int in = 0;
	long v = -1;
	size_t n = strlen(field);
	while (fgets(line, sizeof line, f)) {
		unsigned long a, b;
		if (sscanf(line, "%lx-%lx ", &a, &b) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			in = a == (unsigned long)start;
			continue;
		}
		if (in && !strncmp(line, field, n) && line[n] == ':') {
			v = atol(line + n + 1);
			break;
		}
	}
	fclose(f);
	return v;
}

static int scatter(void) {
	size_t len = 64 << 20, pages = len / 4096;
	/* PROT_NONE pages around keep the vma apart from any other. */
	char *q = mmap(NULL, len + 2 * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (q == MAP_FAILED) return 80;
	char *p = q + 4096;
	if (mprotect(p, len, PROT_READ | PROT_WRITE)) return 80;
	fill(p, pages, 'P');
	int go[2];
	if (pipe(go)) return 81;
	marker(1);
	pid_t pid = fork();
	if (pid < 0) return 82;
	if (pid == 0) {
		/* The parent's writes after the fork come before marker 2: it
		   then waits without writing memory. */
		sync_read(go[0]);
		marker(2);
		for (size_t i = 0; i < 40; i++) p[(i * 7919 % pages) * 4096 + 17] = 'C';
		marker(3);
		for (size_t i = 0; i < pages; i++) {
			int w = 0;
			for (size_t j = 0; j < 40; j++) w |= j * 7919 % pages == i;
			if (p[i * 4096] != 'P' || p[i * 4096 + 4095] != 'P' || p[i * 4096 + 17] != (w ? 'C' : 0)) {
				printf("child: page %zu holds %c %c %c\n", i, p[i * 4096], p[i * 4096 + 17], p[i * 4096 + 4095]);
				bad++;
				break;
			}
		}
		printf("child: Private_Dirty %ld kB, Shared_Dirty %ld kB\n", smaps_kb(p, "Private_Dirty"), smaps_kb(p, "Shared_Dirty"));
		fflush(stdout);
		_exit(bad);
	}
	sync_write(go[1]);
	if (syscall(SYS_waitid, P_PID, pid, NULL, WEXITED | WNOWAIT, NULL)) bad++;
	int st;
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st)) bad++;
	for (size_t i = 0; i < pages; i++) {
		if (p[i * 4096] != 'P' || p[i * 4096 + 4095] != 'P' || p[i * 4096 + 17] != 0) {
			printf("parent: page %zu holds %c %c %c\n", i, p[i * 4096], p[i * 4096 + 17], p[i * 4096 + 4095]);
			bad++;
			break;
		}
	}
	printf("scatter: %d bad\n", bad);
	return 0;
}

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2) return 99;
	if (!strcmp(argv[1], "writes")) return writes();
	if (!strcmp(argv[1], "kernel")) return kernel();
	if (!strcmp(argv[1], "thread")) return threadfork();
	if (!strcmp(argv[1], "usage")) return usage();
	if (!strcmp(argv[1], "scatter")) return scatter();
	return 99;
}
`

// TestForkCopyOnWrite compares cowForkProgram's forks with Linux: each
// process sees only its own writes after a fork, and the memory the host
// kernel writes for the program after a fork (signal frames, rseq,
// threads' kernel areas on a stack cached before the fork, system call
// results) is written, not refused or fatal.
func TestForkCopyOnWrite(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "cowfork", cowForkProgram, false, "-lpthread")
	for _, c := range []string{"writes", "kernel", "thread"} {
		t.Run(c, func(t *testing.T) { compare(t, "", "", exe, c) })
	}
}

// TestForkMemoryNotDoubled checks, with the memory file's own counter,
// that a fork does not copy the parent's written private memory: after
// the fork the child's 64 MiB are shared, and its writes to 16 MiB of
// them grow the usage by about that much.
func TestForkMemoryNotDoubled(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "cowfork", cowForkProgram, false, "-lpthread")
	want := runNative(t, "", "", exe, "usage")
	if want.code != 0 || want.stdout != "usage: 0 bad\n" {
		t.Fatalf("natively: %d %q", want.code, want.stdout)
	}
	got, marks := runWithUsageMarks(t, exe, "usage")
	if got.code != want.code || got.stdout != want.stdout {
		t.Fatalf("exit %d, output %q%s", got.code, got.stdout, got.stderr)
	}
	if len(marks) != 3 {
		t.Fatalf("markers seen: %v", marks)
	}
	const mib = 1 << 20
	before, forked, written := marks[1], marks[2], marks[3]
	var msg []string
	// The fork copies the pages the kernel writes for the threads (a
	// few 2 MiB units at most), not the 64 MiB.
	if forked > before+8*mib {
		msg = append(msg, fmt.Sprintf("the fork grew the memory file's usage from %d to %d MiB", before/mib, forked/mib))
	}
	// The child's writes copy what they write.
	if written < forked+16*mib || written > forked+20*mib {
		msg = append(msg, fmt.Sprintf("the child's writes to 16 MiB grew the usage from %d to %d MiB", forked/mib, written/mib))
	}
	t.Logf("memory file usage: %d MiB before the fork, %d after, %d after the child's writes", before/mib, forked/mib, written/mib)
	if len(msg) > 0 {
		t.Error(strings.Join(msg, "; "))
	}
}

// runWithUsageMarks runs exe arg under vmspace and returns the memory
// file's usage at each of cowForkProgram's markers (madvise of length 0 at
// 0x10000*N, N from 1 to 3), by N.
func runWithUsageMarks(t *testing.T, exe, arg string) (result, map[uint64]uint64) {
	var mu sync.Mutex
	marks := map[uint64]uint64{}
	mark := func(s *Sandbox, nr int, addr, length uint64) {
		if nr != unix.SYS_MADVISE || length != 0 || addr%0x10000 != 0 || addr == 0 || addr > 0x30000 {
			return
		}
		mu.Lock()
		marks[addr/0x10000] = s.mf.UsageAllocated()
		mu.Unlock()
	}
	// A marker stops, or is served on the fast path (fastpath.go).
	stopHook = func(s *Sandbox, tk *task) {
		var r unix.PtraceRegs
		if ptraceGetRegs(tk.tid, &r) == nil {
			mark(s, int(r.Orig_rax), r.Rdi, r.Rsi)
		}
	}
	fastHook = func(s *Sandbox, tk *task, nr int, a [6]uint64) { mark(s, nr, a[0], a[1]) }
	defer func() { stopHook, fastHook = nil, nil }()
	got, _ := sandboxRun(t, "", "", Options{}, exe, arg)
	stopHook, fastHook = nil, nil
	mu.Lock()
	defer mu.Unlock()
	return got, maps.Clone(marks)
}

// TestForkCOWBreaksOnePage compares with Linux a child that writes one
// byte in each of 40 scattered pages of 64 MiB shared copy-on-write: both
// sides see what they should, the child's smaps count 40 private pages
// and the rest shared, and the memory file's usage grows by 40 pages
// (Linux breaks copy-on-write a page at a time; mm's 2 MiB units made it
// 80 MiB, and smaps 64 MiB private).
func TestForkCOWBreaksOnePage(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "cowfork", cowForkProgram, false, "-lpthread")
	want := runNative(t, "", "", exe, "scatter")
	if want.code != 0 || !strings.HasSuffix(want.stdout, "scatter: 0 bad\n") {
		t.Fatalf("natively: %d %q", want.code, want.stdout)
	}
	got, marks := runWithUsageMarks(t, exe, "scatter")
	if got.code != want.code || got.stdout != want.stdout {
		t.Errorf("exit %d, output %q%s; natively %q", got.code, got.stdout, got.stderr, want.stdout)
	}
	if len(marks) != 3 {
		t.Fatalf("markers seen: %v", marks)
	}
	if grew := marks[3] - marks[2]; grew != 40*4096 {
		t.Errorf("the child's writes to 40 pages grew the memory file's usage by %d KiB, want 160", grew>>10)
	}
}
