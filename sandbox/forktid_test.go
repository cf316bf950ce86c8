package sandbox

import "testing"

// parentTidProgram clones new processes (clone with SIGCHLD, as fork)
// with CLONE_PARENT_SETTID, then with CLONE_PIDFD, whose parent_tid word
// lies in the data segment, the bss, the stack, private and shared
// anonymous memory, first with nothing shared copy-on-write, then while
// another child shares every page; each side says what it sees there.
// Linux writes the word after it has copied the parent's memory: the
// parent sees the child's pid (a descriptor), the child the old word,
// except in shared memory.
const parentTidProgram = `#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int data_tid = 0x1234;
static int bss_tid;

/* clone(flags|SIGCHLD) as fork, with parent_tid = where. */
static void one(const char *what, int *where, unsigned long flags) {
	int old = *where;
	long pid = syscall(SYS_clone, flags | SIGCHLD, 0, where, 0, 0);
	if (pid < 0) { printf("%s: clone failed\n", what); return; }
	if (pid == 0) {
		printf("%s: child sees %s\n", what, *where == old ? "the old word" : *where == getpid() ? "its pid" : "something else");
		fflush(stdout);
		_exit(0);
	}
	int st;
	waitpid(pid, &st, 0);
	if (flags & CLONE_PIDFD)
		printf("%s: parent sees %s\n", what, *where == old ? "the old word" : *where >= 0 && *where < 1024 ? "a descriptor" : "something else");
	else
		printf("%s: parent sees %s\n", what, *where == old ? "the old word" : *where == pid ? "the pid" : "something else");
	if (flags & CLONE_PIDFD && *where != old) close(*where);
	*where = old;
}

static void all(const char *when) {
	char w[64];
	int stack_tid = 0x5678;
	int *shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	int *priv = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	*shared = 0x4321; *priv = 0x8765;
	unsigned long fl[2] = {CLONE_PARENT_SETTID, CLONE_PIDFD};
	const char *fn[2] = {"settid", "pidfd"};
	for (int i = 0; i < 2; i++) {
		snprintf(w, sizeof w, "%s %s data", when, fn[i]); one(w, &data_tid, fl[i]);
		snprintf(w, sizeof w, "%s %s bss", when, fn[i]); one(w, &bss_tid, fl[i]);
		snprintf(w, sizeof w, "%s %s stack", when, fn[i]); one(w, &stack_tid, fl[i]);
		snprintf(w, sizeof w, "%s %s private", when, fn[i]); one(w, priv, fl[i]);
		snprintf(w, sizeof w, "%s %s shared", when, fn[i]); one(w, shared, fl[i]);
	}
}

int main(void) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	all("first");
	/* Again, with the pages shared copy-on-write with a live child. */
	int p[2];
	if (pipe(p)) return 1;
	pid_t keep = fork();
	if (keep == 0) { char c; read(p[0], &c, 1); _exit(0); }
	all("shared");
	write(p[1], "x", 1);
	waitpid(keep, NULL, 0);
	return 0;
}
`

// TestForkParentTid compares parentTidProgram with Linux: under vmspace
// the host's clone wrote parent_tid before the managers forked, into the
// page then shared with the child, which saw the pid (or the descriptor)
// instead of its old word.
func TestForkParentTid(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "parenttid", parentTidProgram, false)
	compare(t, "", "", exe)
}
