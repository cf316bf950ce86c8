package sandbox

import (
	"strings"
	"testing"
)

// sharedFutexProgram: a thread of the parent waits on a futex that is
// not private (FUTEX_WAIT, FUTEX_WAIT_BITSET, futex_wait, futex_waitv, or
// FUTEX_WAIT then requeued by its waker) in private memory (or in the bss
// with "bss") while the main thread forks; in the child, which shares the
// word's page copy-on-write, a thread waits on the same address and the
// child's main thread stores to the word and wakes it; then the parent's
// main thread stores and wakes its waiter (or first, with
// "parentfirst"). Each waiter must be woken by its own process's waker
// (on Linux the futex is keyed by address space and address). Which
// thread is blocked is read from /proc/self/task/TID/syscall, so nothing
// depends on timing; a lost wake-up ends in a 2 s time-out.
const sharedFutexProgram = `#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif
#ifndef SYS_futex_wait
#define SYS_futex_wait 455
#endif
struct waitv { uint64_t val, uaddr; uint32_t flags, rsv; };
static int *w, *w2;
static const char *how;
static int bss[2048];
static long waitw(void) {
	struct timespec rel = {2, 0}, abs;
	clock_gettime(CLOCK_MONOTONIC, &abs);
	abs.tv_sec += 2;
	if (!strcmp(how, "bitset")) return syscall(SYS_futex, w, FUTEX_WAIT_BITSET, 0, &abs, 0, -1);
	if (!strcmp(how, "futex2")) return syscall(SYS_futex_wait, w, 0, 0xffffffffUL, 2, &abs, CLOCK_MONOTONIC);
	if (!strcmp(how, "waitv")) {
		struct waitv v = {0, (uint64_t)(uintptr_t)w, 2, 0};
		long r = syscall(SYS_futex_waitv, &v, 1, 0, &abs, CLOCK_MONOTONIC);
		return r > 0 ? 0 : r;
	}
	return syscall(SYS_futex, w, FUTEX_WAIT, 0, &rel, 0, 0);
}
static void *waiter(void *who) {
	long r = waitw();
	printf("%s: waiter %s\n", (char *)who, r == 0 ? "woken" : strerror(errno));
	return 0;
}
// blocked waits until thread tid is in a system call (its futex wait).
static void blocked(pid_t tid) {
	char path[64], buf[64];
	snprintf(path, sizeof path, "/proc/self/task/%d/syscall", tid);
	for (int i = 0; i < 20000; i++) {
		FILE *f = fopen(path, "r");
		int n = f ? (int)fread(buf, 1, sizeof buf - 1, f) : 0;
		if (f) fclose(f);
		buf[n > 0 ? n : 0] = 0;
		long nr = atol(buf);
		if (nr == SYS_futex || nr == SYS_futex_wait || nr == SYS_futex_waitv) return;
		usleep(100);
	}
	printf("waiter never blocked\n");
	exit(1);
}
static pid_t tidof;
static void *start(void *who) {
	tidof = syscall(SYS_gettid);
	return waiter(who);
}
static pthread_t spawn(char *who) {
	pthread_t th;
	tidof = 0;
	pthread_create(&th, 0, start, who);
	while (!__atomic_load_n(&tidof, __ATOMIC_SEQ_CST)) usleep(100);
	blocked(tidof);
	return th;
}
static long wake(int v) {
	*w = v;
	if (strcmp(how, "requeue")) return syscall(SYS_futex, w, FUTEX_WAKE, 1, 0, 0, 0);
	long n = syscall(SYS_futex, w, FUTEX_CMP_REQUEUE, 0, 1, w2, v);
	*w2 = v;
	return n + syscall(SYS_futex, w2, FUTEX_WAKE, 1, 0, 0, 0);
}
static int has(int argc, char **argv, const char *opt) {
	for (int i = 2; i < argc; i++)
		if (!strcmp(argv[i], opt)) return 1;
	return 0;
}
int main(int argc, char **argv) {
	how = argv[1];
	int parentfirst = has(argc, argv, "parentfirst");
	int p[2];
	if (pipe(p)) return 1;
	if (has(argc, argv, "bss")) {
		w = &bss[100], w2 = &bss[1900];
	} else {
		char *m = mmap(0, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		w = (int *)(m + 64), w2 = (int *)(m + 8192 + 64);
	}
	*w = 0, *w2 = 0;
	setvbuf(stdout, 0, _IONBF, 0);
	pthread_t th = spawn("parent");
	pid_t c = fork();
	if (c == 0) {
		char b;
		if (parentfirst && read(p[0], &b, 1) != 1) _exit(1);
		pthread_t t2 = spawn("child");
		long n = wake(2);
		pthread_join(t2, 0);
		printf("child woke %ld\n", n);
		_exit(0);
	}
	if (!parentfirst) waitpid(c, 0, 0);
	long n = wake(1);
	pthread_join(th, 0);
	printf("parent woke %ld\n", n);
	if (parentfirst) {
		write(p[1], "", 1);
		waitpid(c, 0, 0);
	}
	return 0;
}
`

// TestSharedFutexAcrossFork: futexes that are not private, in private
// memory, wake their own process's waiters across a fork, as on Linux
// (issue 18, hangs: the host keyed them by the memory file's page, so a
// waiter queued before the fork, or before a copy-on-write break, slept
// on, and the parent's wake-up went to the child's waiter).
func TestSharedFutexAcrossFork(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "sharedfutex", sharedFutexProgram, false)
	for _, args := range [][]string{{"wait"}, {"wait", "bss"}, {"wait", "parentfirst"}, {"bitset"}, {"futex2"}, {"waitv"}, {"requeue"}, {"requeue", "parentfirst"}} {
		t.Run(strings.Join(args, "-"), func(t *testing.T) {
			compare(t, "", "", append([]string{exe}, args...)...)
		})
	}
}
