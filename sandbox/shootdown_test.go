package sandbox

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// Memory freed by one thread or process must never show up anywhere else
// (issue 18, "Memory mixed up"): the sandbox's deferred host unmaps and
// fork children's inherited mappings against page reuse in the memory file
// (see Sandbox.shootdown and fork.go).

// freedPagesProgram has four threads write at random into a region while
// the main thread replaces it (MAP_FIXED), drops its pages (MADV_DONTNEED),
// write-protects it and unmaps it, checking every few rounds that fresh
// anonymous memory reads zero, and at the end in a forked child too. It
// prints only what differs from Linux, plus the final counts.
const freedPagesProgram = `#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <sched.h>

#define NPAGES 64
#define PAGE 4096
static char *region;
static atomic_int stop;

static void onsegv(int sig, siginfo_t *si, void *uc) { sched_yield(); }

static void *writer(void *arg) {
	unsigned s = (unsigned)(long)arg * 2654435761u + 1;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		s = s * 1103515245u + 12345u;
		volatile char *p = region + (s >> 8) % (NPAGES * PAGE);
		*p = (char)(0x41 + (s & 15));
	}
	return NULL;
}

static long dirty(char *p, size_t n) {
	long d = 0;
	for (size_t i = 0; i < n; i++) d += p[i] != 0;
	return d;
}

static long fresh(size_t n) {
	char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) { perror("mmap"); exit(2); }
	long d = dirty(p, n);
	munmap(p, n);
	return d;
}

int main(int argc, char **argv) {
	int iters = argc > 1 ? atoi(argv[1]) : 2000;
	struct sigaction sa = {0};
	sa.sa_sigaction = onsegv;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGSEGV, &sa, NULL);
	size_t len = NPAGES * PAGE;
	region = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	pthread_t th[4];
	for (long i = 0; i < 4; i++) pthread_create(&th[i], NULL, writer, (void *)i);
	for (int i = 0; i < iters; i++) {
		switch (i % 4) {
		case 0: mmap(region, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0); break;
		case 1: madvise(region, len, MADV_DONTNEED); break;
		case 2: mprotect(region, len, PROT_READ); mprotect(region, len, PROT_READ | PROT_WRITE); break;
		case 3: munmap(region, len); mmap(region, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0); break;
		}
		if (i % 8 == 7) {
			long d = fresh(1 << 20);
			if (d) { printf("iteration %d: %ld dirty bytes in fresh memory\n", i, d); }
		}
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
	munmap(region, len);
	long d = fresh(64 << 20);
	pid_t pid = fork();
	if (pid == 0) {
		long c = fresh(64 << 20);
		printf("child: %ld dirty\n", c); fflush(stdout);
		_exit(0);
	}
	waitpid(pid, NULL, 0);
	printf("parent: %ld dirty\n", d);
	return 0;
}
`

// sharedRemoveProgram: 8 shared pages filled with 'S' (MAP_SHARED|
// MAP_ANONYMOUS, a memfd or a /dev/shm file: argv[1]); the child removes
// them (MADV_REMOVE), then the parent writes 'T' on page 1, then the child
// prints the first byte of each page ('0' for a zero byte). Linux prints
// 0T000000 every round. The processes wait for each other spinning on a
// shared flag page (both running, neither faulting on it), so that the
// parent writes while the child runs on; the test also makes the tracer
// sleep after every resumption (afterResume), so that the parent writes
// before the tracer does anything else.
const sharedRemoveProgram = `#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

/* argv[1]: anon | memfd | shm */
static char *shared(const char *kind, size_t n) {
	int fd = -1, flags = MAP_SHARED;
	if (!strcmp(kind, "anon")) flags |= MAP_ANONYMOUS;
	else if (!strcmp(kind, "memfd")) fd = memfd_create("x", 0);
	else {
		char name[64];
		snprintf(name, sizeof name, "/dev/shm/vmspace-remove-%d", getpid());
		fd = open(name, O_RDWR | O_CREAT | O_TRUNC, 0600);
		unlink(name);
	}
	if (fd >= 0 && ftruncate(fd, n) != 0) { perror("ftruncate"); exit(2); }
	char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, flags, fd, 0);
	if (p == MAP_FAILED) { perror("mmap"); exit(2); }
	return p;
}

int main(int argc, char **argv) {
	int rounds = argc > 2 ? atoi(argv[2]) : 20;
	for (int r = 0; r < rounds; r++) {
		size_t n = 8 * 4096;
		char *p = shared(argv[1], n);
		memset(p, 'S', n);
		/* The two processes wait for each other spinning, so that each
		   acts the moment the other has. */
		volatile int *flag = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		pid_t pid = fork();
		if (pid == 0) {
			flag[48] = 1; /* no write fault later */
			while (!__atomic_load_n(&flag[32], __ATOMIC_SEQ_CST));
			if (madvise(p, n, MADV_REMOVE) != 0) { perror("madvise"); _exit(2); }
			__atomic_store_n(&flag[0], 1, __ATOMIC_SEQ_CST);
			while (!__atomic_load_n(&flag[16], __ATOMIC_SEQ_CST));
			char out[10];
			for (int i = 0; i < 8; i++) out[i] = p[i * 4096] ? p[i * 4096] : '0';
			out[8] = '\n';
			write(1, out, 9);
			_exit(0);
		}
		__atomic_store_n(&flag[32], 1, __ATOMIC_SEQ_CST);
		while (!__atomic_load_n(&flag[0], __ATOMIC_SEQ_CST));
		p[4096] = 'T';
		__atomic_store_n(&flag[16], 1, __ATOMIC_SEQ_CST);
		waitpid(pid, NULL, 0);
		munmap(p, n);
		munmap((void *)flag, 4096);
	}
	return 0;
}
`

// forkStaleProgram: a fork child's host mappings of memory its own manager
// does not map (a shared mapping it replaced; never-written private memory
// the parent frees and reuses) must not show the parent's data.
const forkStaleProgram = `#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define N (64 * 4096)

static long nonzero(const char *p, size_t n) {
	long d = 0;
	for (size_t i = 0; i < n; i++) d += p[i] != 0;
	return d;
}

int main(void) {
	/* A shared mapping the child replaces: the new memory reads zero. */
	char *s = mmap(NULL, N, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	memset(s, 'P', N);
	pid_t pid = fork();
	if (pid == 0) {
		munmap(s, N);
		char *q = mmap(s, N, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
		printf("replaced shared: %ld nonzero\n", nonzero(q, N));
		char *r = mmap(s, N, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
		printf("replaced again: %ld nonzero\n", nonzero(r, N));
		fflush(stdout);
		_exit(0);
	}
	waitpid(pid, NULL, 0);

	/* Memory the parent only read, then freed and reused: the child's
	   copy still reads zero. */
	char *ro = mmap(NULL, N, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	long sum = nonzero(ro, N);
	int go[2];
	pipe(go);
	pid = fork();
	if (pid == 0) {
		char c;
		read(go[0], &c, 1);
		printf("child's never-written memory: %ld nonzero\n", nonzero(ro, N) + sum);
		fflush(stdout);
		_exit(0);
	}
	munmap(ro, N);
	for (int i = 0; i < 20; i++) {
		char *x = mmap(NULL, 8 * N, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		memset(x, 'X', 8 * N);
		munmap(x, 8 * N);
	}
	char *x = mmap(NULL, 64 * N, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(x, 'X', 64 * N);
	write(go[1], "g", 1);
	waitpid(pid, NULL, 0);
	return 0;
}
`

// TestFreedPagesNotReused runs freedPagesProgram several times: a write by
// a thread racing with the unmapping of its page must never reach a page
// handed out since.
func TestFreedPagesNotReused(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "freed", freedPagesProgram, false)
	want := runNative(t, "", "", exe, "200")
	if want.code != 0 || strings.Contains(want.stdout, "dirty bytes") {
		t.Fatalf("natively: %d %q", want.code, want.stdout)
	}
	// Freed pages are released at once, so that any write through a
	// mapping that outlives the release lands in a free page.
	syncRelease = true
	defer func() { syncRelease = false }()
	for i := 0; i < 2; i++ {
		got, _ := sandboxRun(t, "", "", Options{}, exe, "200")
		if got.code != want.code || got.stdout != want.stdout {
			t.Errorf("run %d: exit %d, output:\n%s%s\nnatively:\n%s", i, got.code, got.stdout, got.stderr, want.stdout)
		}
	}
}

// TestSharedRemoveAcrossFork checks that MADV_REMOVE of shared memory by
// one process is seen by another that shares it, in every round, and that
// the other's later write lands in the shared object.
func TestSharedRemoveAcrossFork(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "remove", sharedRemoveProgram, false)
	for _, kind := range []string{"anon", "memfd", "shm"} {
		t.Run(kind, func(t *testing.T) {
			const rounds = 10
			want := strings.Repeat("0T000000\n", rounds)
			if got := runNative(t, "", "", exe, kind, fmt.Sprint(rounds)); got.stdout != want {
				t.Skipf("natively: %q", got.stdout)
			}
			// Give a resumed task time to run before the tracer
			// goes on: the parent's write must come after the
			// removal in every address space.
			afterResume = func() { time.Sleep(2 * time.Millisecond) }
			got, _ := sandboxRun(t, "", "", Options{}, exe, kind, fmt.Sprint(rounds))
			afterResume = nil
			if got.code != 0 || got.stdout != want {
				t.Errorf("exit %d, output:\n%s%s", got.code, got.stdout, got.stderr)
			}
		})
	}
}

// TestForkStaleMappings checks that a fork child's inherited host
// mappings never show memory its manager does not give it.
func TestForkStaleMappings(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "forkstale", forkStaleProgram, false)
	compare(t, "", "", exe)
}

// childTidProgram forks 50 times; the child checks that the thread id in
// its thread descriptor (set by the kernel through glibc's
// CLONE_CHILD_SETTID) is its own, and the parent that its own is unchanged.
const childTidProgram = `#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
int main(void) {
	int *self = (int *)pthread_self(), tid = syscall(SYS_gettid), off = -1;
	for (int i = 0; i < 1024; i++) if (self[i] == tid) { off = i; break; }
	int bad = 0;
	for (int i = 0; i < 50; i++) {
		pid_t pid = fork();
		if (pid == 0) _exit(self[off] != syscall(SYS_gettid));
		int st; waitpid(pid, &st, 0);
		if (self[off] != tid || WEXITSTATUS(st)) bad++;
	}
	printf("off %d bad %d\n", off >= 0, bad);
	return 0;
}
`

// TestForkChildTid checks that a fork child's CLONE_CHILD_SETTID write
// reaches only the child's memory, not its parent's.
func TestForkChildTid(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "childtid", childTidProgram, false)
	compare(t, "", "", exe)
}

// TestShadowsAgree runs programs that map, unmap, fork, share and remove
// memory in every way with the check that, after every stop, each host
// mapping maps the pages its memory manager maps there (verifyShadows).
func TestShadowsAgree(t *testing.T) {
	needPtrace(t)
	var mu sync.Mutex
	var errs []string
	checkShadow = func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if len(errs) < 10 {
			errs = append(errs, err.Error())
		}
	}
	defer func() { checkShadow = nil }()
	prog := buildC(t, "prog", cProgram, true)
	dir := fixtures(t)
	runs := [][]string{
		{buildC(t, "forkstale", forkStaleProgram, false)},
		{buildC(t, "remove", sharedRemoveProgram, false), "anon", "3"},
		{buildC(t, "freed", freedPagesProgram, false), "40"},
		{buildC(t, "childtid", childTidProgram, false)},
	}
	for _, c := range []string{"memory", "forks", "threads", "cow", "shm", "punch"} {
		runs = append(runs, []string{prog, c})
	}
	for _, argv := range runs {
		got, _ := sandboxRun(t, dir, "", Options{}, argv...)
		mu.Lock()
		if len(errs) > 0 {
			t.Errorf("%q: host mappings disagree with the manager:\n%s", argv, strings.Join(errs, "\n"))
			errs = nil
		}
		mu.Unlock()
		if want := runNative(t, dir, "", argv...); got.code != want.code || got.stdout != want.stdout {
			t.Errorf("%q: exit %d, natively %d; output:\n%s\nnatively:\n%s", argv, got.code, want.code, got.stdout, want.stdout)
		}
	}
}
