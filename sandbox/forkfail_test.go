package sandbox

import (
	"strings"
	"testing"

	"github.com/vmspace/vmspace/mm"
)

// forkENOMEMProgram maps and fills 64 MiB of private memory and forks three
// times, printing what the program can see of each fork: its result, a
// child to wait for, SIGCHLD pending or handled, glibc's thread id word
// (CLONE_CHILD_SETTID) and its memory. Then it frees the memory and forks
// once more, from a second thread. With "blocked", SIGCHLD is blocked in
// every thread; with "native" as well, a seccomp filter makes the first
// thread's forks fail with ENOMEM, as Linux's do past CommitLimit
// (vm.overcommit_memory=2, which cannot be set here).
const forkENOMEMProgram = `#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
static volatile int chld;
static void onchld(int sig) { (void)sig; chld++; }

// failForks makes fork and clone fail with ENOMEM, as Linux's do when the
// child's memory cannot be committed.
static void failForks(void) {
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_fork, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOMEM),
	};
	struct sock_fprog prog = {sizeof f / sizeof f[0], f};
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) {
		perror("seccomp");
		_exit(2);
	}
}

static int go[2];

// later forks once the main thread has freed the memory: a thread started
// before the main thread's filter, which it does not inherit.
static void *later(void *arg) {
	(void)arg;
	char c;
	if (read(go[0], &c, 1) != 1) return NULL;
	pid_t pid = fork();
	if (pid == 0) _exit(9);
	int st = 0, w = waitpid(pid, &st, 0);
	sigset_t set;
	sigpending(&set);
	printf("fork after munmap %s; waitpid %s, status %d; SIGCHLD pending %d, handled %d\n", pid > 0 ? "ok" : "failed",
	       w == pid ? "ok" : "failed", WEXITSTATUS(st), sigismember(&set, SIGCHLD), chld);
	return NULL;
}

int main(int argc, char **argv) {
	int *self = (int *)pthread_self(), tid = syscall(SYS_gettid), off = -1;
	for (int i = 0; i < 1024; i++) if (self[i] == tid) { off = i; break; }
	signal(SIGCHLD, onchld);
	if (argc > 1 && !strcmp(argv[1], "blocked")) {
		// SIGCHLD stays pending (in every thread: the mask is
		// inherited).
		sigset_t b;
		sigemptyset(&b);
		sigaddset(&b, SIGCHLD);
		sigprocmask(SIG_BLOCK, &b, NULL);
	}
	size_t n = 64 << 20;
	char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) { perror("mmap"); return 1; }
	memset(p, 7, n);
	pthread_t th;
	if (pipe(go) || pthread_create(&th, NULL, later, NULL)) { perror("thread"); return 1; }
	if (argc > 2 && !strcmp(argv[2], "native")) failForks();
	for (int i = 0; i < 3; i++) {
		errno = 0;
		pid_t pid = fork();
		if (pid == 0) _exit(9);
		int e = errno;
		int st, w = waitpid(-1, &st, WNOHANG), we = errno;
		sigset_t set;
		sigpending(&set);
		printf("fork %d errno %s; waitpid %d %s; SIGCHLD pending %d, handled %d; tid word %s; memory %d\n",
		       pid, strerrorname_np(e), w, w < 0 ? strerrorname_np(we) : "-", sigismember(&set, SIGCHLD), chld,
		       self[off] == tid ? "kept" : "changed", p[n - 1]);
	}
	munmap(p, n);
	fflush(stdout);
	if (write(go[1], "x", 1) != 1 || pthread_join(th, NULL)) return 1;
	return 0;
}
`

// TestForkENOMEM checks that a fork whose child's memory cannot be
// committed fails as on Linux: fork returns ENOMEM, and the program sees
// no child (nothing to wait for), no SIGCHLD (handled, or pending while
// blocked), and no change to its memory; a later fork works. The native
// run makes its forks fail with a seccomp filter; under vmspace, mode 2
// accounting with a 100 MiB CommitLimit does.
func TestForkENOMEM(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "forkenomem", forkENOMEMProgram, false)
	for _, mode := range []string{"unblocked", "blocked"} {
		want := runNative(t, "", "", exe, mode, "native")
		if want.code != 0 || strings.Count(want.stdout, "errno ENOMEM") != 3 {
			t.Fatalf("%s natively: exit %d, output:\n%s%s", mode, want.code, want.stdout, want.stderr)
		}
		c := mm.NewCommit(mm.Overcommit{Mode: mm.OvercommitNever, Ratio: 50, TotalRAM: 200 << 20})
		testCommit = c
		got, _ := sandboxRun(t, "", "", Options{}, exe, mode)
		testCommit = nil
		if got.code != want.code || got.stdout != want.stdout || got.stderr != "" {
			t.Errorf("%s: exit %d, natively %d; output:\n%s%s\nnatively:\n%s", mode, got.code, want.code, got.stdout, got.stderr, want.stdout)
		}
		if n := c.Committed(); n != 0 {
			t.Errorf("%s: %d pages still committed after the run", mode, n)
		}
	}
}
