package sandbox

import "testing"

// robustProgram has threads die holding robust mutexes after a fork:
// in the parent and in a child (whose pages a grandchild shares), a
// thread locks a robust mutex in the bss or in private anonymous memory,
// a child is forked while it holds it, and the thread ends; then a child
// dies holding a process-shared robust mutex in shared memory, and a
// child's thread does. Each time the survivor prints whether the futex
// word has FUTEX_OWNER_DIED (written by the kernel at the holder's exit)
// and what pthread_mutex_trylock returns (EOWNERDEAD on Linux).
const robustProgram = `#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static pthread_mutex_t bss_mutex __attribute__((aligned(4096)));
static char pad[4096] __attribute__((used));
static int locked[2], go[2];

static void init(pthread_mutex_t *m, int pshared) {
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	if (pshared) pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	pthread_mutex_init(m, &a);
}

/* A thread that locks m, says so, and ends holding it when told to. */
static void *holder(void *arg) {
	pthread_mutex_t *m = arg;
	char c = 1;
	if (pthread_mutex_lock(m)) return NULL;
	if (write(locked[1], &c, 1) != 1 || read(go[0], &c, 1) != 1) return NULL;
	return NULL;
}

static const char *owner_died(pthread_mutex_t *m) {
	/* The futex word is the mutex's first int. */
	return (*(volatile int *)m & FUTEX_OWNER_DIED) ? "OWNER_DIED set" : "OWNER_DIED clear";
}

static void report(const char *what, pthread_mutex_t *m) {
	const char *w = owner_died(m);
	int r = pthread_mutex_trylock(m);
	printf("%s: %s, trylock %s\n", what, w, r == EOWNERDEAD ? "EOWNERDEAD" : r == EBUSY ? "EBUSY" : r ? strerror(r) : "0");
	if (r == EOWNERDEAD) pthread_mutex_consistent(m);
	if (r == EOWNERDEAD || r == 0) pthread_mutex_unlock(m);
}

/* A thread of this process dies holding m, private memory shared
   copy-on-write with a child forked while it held it. */
static void thread_dies_after_fork(const char *what, pthread_mutex_t *m) {
	char c = 1;
	pthread_t th;
	init(m, 0);
	if (pipe(locked) || pipe(go) || pthread_create(&th, NULL, holder, m)) exit(80);
	if (read(locked[0], &c, 1) != 1) exit(81);
	int hold[2];
	if (pipe(hold)) exit(82);
	pid_t pid = fork();
	if (pid == 0) {
		/* Keeps the pages shared until the parent is done. */
		read(hold[0], &c, 1);
		_exit(0);
	}
	if (write(go[1], &c, 1) != 1) exit(83);
	pthread_join(th, NULL);
	report(what, m);
	write(hold[1], &c, 1);
	waitpid(pid, NULL, 0);
	close(locked[0]); close(locked[1]); close(go[0]); close(go[1]); close(hold[0]); close(hold[1]);
}

int main(void) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	pthread_mutex_t *anon = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	pthread_mutex_t *shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (anon == MAP_FAILED || shared == MAP_FAILED) return 84;
	thread_dies_after_fork("parent, bss", &bss_mutex);
	thread_dies_after_fork("parent, private anonymous", anon);
	/* The same in a child, whose pages are shared with its parent and
	   with a grandchild. */
	pid_t pid = fork();
	if (pid == 0) {
		thread_dies_after_fork("child, bss", &bss_mutex);
		thread_dies_after_fork("child, private anonymous", anon);
		_exit(0);
	}
	int st;
	waitpid(pid, &st, 0);
	/* A child dies holding a process-shared robust mutex. */
	init(shared, 1);
	pid = fork();
	if (pid == 0) {
		pthread_mutex_lock(shared);
		_exit(0);
	}
	waitpid(pid, &st, 0);
	report("parent, shared, after the child's death", shared);
	/* A thread of a child dies holding it, the child lives on. */
	pid = fork();
	if (pid == 0) {
		thread_dies_after_fork("child's thread, shared", shared);
		_exit(0);
	}
	waitpid(pid, &st, 0);
	return 0;
}
`

// TestForkRobustOwnerDied compares robustProgram with Linux: the kernel's
// FUTEX_OWNER_DIED write into a private page shared copy-on-write since a
// fork (read-only in the host) was dropped, and trylock said EBUSY.
func TestForkRobustOwnerDied(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "robust", robustProgram, false, "-lpthread")
	compare(t, "", "", exe)
}
