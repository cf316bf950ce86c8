package sandbox

import (
	"testing"

	"golang.org/x/sys/unix"
)

// robustExitSrc has a thread die holding a robust mutex whose page the
// host no longer maps when the thread exits (the manager dropped every
// host mapping of the process after the host refused one: the test
// forces it at the marker madvise), then a child process die so while
// its other thread holds a process-shared robust mutex. The survivor
// prints whether the futex word has FUTEX_OWNER_DIED (written at the
// holder's exit) and what pthread_mutex_trylock returns (EOWNERDEAD on
// Linux).
const robustExitSrc = `#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static pthread_mutex_t *m;
static int locked[2], go[2];

static void *holder(void *arg) {
	char c = 1;
	if (pthread_mutex_lock(m)) return NULL;
	if (write(locked[1], &c, 1) != 1 || read(go[0], &c, 1) != 1) return NULL;
	return NULL;
}

static void init(int pshared) {
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	if (pshared) pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	pthread_mutex_init(m, &a);
}

/* The marker at which the test makes the host refuse the next mapping,
   and a fault that takes it: every host mapping of the process goes. */
static void evict(void) {
	char *p = mmap(0, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) _exit(20);
	madvise(p, 3 * 4096, MADV_NORMAL);
	p[0] = 1;
}

static void report(const char *what) {
	int died = *(volatile int *)m & 0x40000000;
	int r = pthread_mutex_trylock(m);
	printf("%s: %s, trylock %s\n", what, died ? "OWNER_DIED set" : "OWNER_DIED clear",
	       r == EOWNERDEAD ? "EOWNERDEAD" : r == EBUSY ? "EBUSY" : r ? strerror(r) : "0");
	if (r == EOWNERDEAD) pthread_mutex_consistent(m);
	if (r == EOWNERDEAD || r == 0) pthread_mutex_unlock(m);
}

int main(void) {
	char c;
	pthread_t th;
	setvbuf(stdout, NULL, _IONBF, 0);
	if (pipe(locked) || pipe(go)) return 2;
	m = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) return 3;
	init(0);
	if (pthread_create(&th, NULL, holder, NULL) || read(locked[0], &c, 1) != 1) return 4;
	evict();
	if (write(go[1], &c, 1) != 1 || pthread_join(th, NULL)) return 5;
	report("thread");

	m = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) return 6;
	init(1);
	pid_t pid = fork();
	if (pid < 0) return 7;
	if (pid == 0) {
		if (pthread_create(&th, NULL, holder, NULL) || read(locked[0], &c, 1) != 1) _exit(8);
		evict();
		_exit(0);
	}
	int st;
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st)) return 9;
	report("process");
	return 0;
}
`

// TestRobustOwnerDiedAtExit checks that the futex words of the robust
// mutexes a thread holds are marked FUTEX_OWNER_DIED at its exit, as on
// Linux, even where the host no longer maps them then (every host mapping
// of the process dropped, as after the host refused one): at the thread's
// exit stop they are mapped again through another thread, or, when the
// whole process exits, marked through the manager (keepRobustAtExit).
func TestRobustOwnerDiedAtExit(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "robustexit", robustExitSrc, false, "-pthread")
	var evicting *stubAS
	marks := 0
	marker := func(tk *task, nr int, length, advice uint64) {
		if nr == unix.SYS_MADVISE && length == 3*4096 && advice == unix.MADV_NORMAL {
			evicting = tk.p.as
			marks++
		}
	}
	stopHook = func(s *Sandbox, tk *task) {
		if s.fetchRegs(tk) == nil {
			marker(tk, int(tk.regs.Orig_rax), tk.regs.Rsi, tk.regs.Rdx)
		}
	}
	// With the fast path on, the madvise takes no stop.
	fastHook = func(s *Sandbox, tk *task, nr int, a [6]uint64) { marker(tk, nr, a[1], a[2]) }
	mapFileHook = func(as *stubAS) error {
		if as != evicting {
			return nil
		}
		if _, pending := as.s.unflushed[as]; pending {
			// The manager dropped its host mappings: map again.
			evicting = nil
			return nil
		}
		return unix.ENOMEM
	}
	defer func() { stopHook, fastHook, mapFileHook = nil, nil, nil }()
	compare(t, "", "", exe)
	if marks != 2 {
		t.Errorf("saw %d marker madvises, want 2", marks)
	}
}
