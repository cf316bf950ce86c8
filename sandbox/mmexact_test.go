package sandbox

import "testing"

// mmexactProgram exercises process-wide memory state that a forked child
// inherits or not; argv[1] selects a case.
const mmexactProgram = `
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *err(void *p) { return p == MAP_FAILED ? strerror(errno) : "ok"; }

// A child makes shared anonymous memory; its own child writes it and the
// child sees the write; the parent hears of it through the exit status.
static int forkshared(void) {
	pid_t pid = fork();
	if (pid == 0) {
		char *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		printf("child mmap shared anon: %s\n", err(p));
		if (p == MAP_FAILED) { fflush(stdout); _exit(1); }
		strcpy(p + 4096, "before");
		pid_t g = fork();
		if (g == 0) {
			strcpy(p + 4096, "from the grandchild");
			char *q = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
			printf("grandchild mmap shared anon: %s\n", err(q));
			fflush(stdout);
			_exit(q == MAP_FAILED);
		}
		int st;
		waitpid(g, &st, 0);
		printf("child reads \"%s\" after its child exited %d\n", p + 4096, WEXITSTATUS(st));
		fflush(stdout);
		_exit(strcmp(p + 4096, "from the grandchild") == 0 ? 42 : 3);
	}
	int st;
	waitpid(pid, &st, 0);
	printf("parent: child exited %d\n", WEXITSTATUS(st));
	return 0;
}

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2) return 2;
	if (!strcmp(argv[1], "forkshared")) return forkshared();
	return 2;
}
`

// TestForkedChildSharedAnonymous: a forked child (and its child) can make
// MAP_SHARED|MAP_ANONYMOUS memory, shared with its own children.
func TestForkedChildSharedAnonymous(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "mmexact", mmexactProgram, true)
	compare(t, "", "", exe, "forkshared")
}
