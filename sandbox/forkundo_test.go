package sandbox

import (
	"strings"
	"testing"

	"github.com/vmspace/vmspace/mm"
)

// forkUndoProgram maps and fills 64 MiB of private memory and makes raw
// clone calls for new processes with CLONE_PARENT_SETTID (its word in
// private memory) and with CLONE_PIDFD, printing what the program can see
// of each: the result, the word the clone was given, and the lowest free
// descriptor and the number of open ones. With "native", a seccomp filter
// makes the clones fail with ENOMEM, as Linux's do past CommitLimit.
const forkUndoProgram = `#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void failClones(void) {
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOMEM),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {sizeof f / sizeof f[0], f};
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) {
		perror("seccomp");
		_exit(2);
	}
}

static int lowestFree(void) {
	int fd = dup(0);
	close(fd);
	return fd;
}

static int *word;

static void try(const char *what, unsigned long flags) {
	*word = 0x5a5a;
	errno = 0;
	long r = syscall(SYS_clone, flags | SIGCHLD, 0, word, 0, 0);
	if (r == 0) _exit(9);
	int e = errno;
	if (r > 0) waitpid(r, NULL, 0);
	printf("%s: clone %s, errno %s; word %#x; lowest free descriptor %d\n", what, r < 0 ? "failed" : "ok",
	       strerrorname_np(e), *word, lowestFree());
}

int main(int argc, char **argv) {
	size_t n = 64 << 20;
	char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) { perror("mmap"); return 1; }
	memset(p, 7, n);
	word = (int *)(p + 4096);
	if (argc > 1 && !strcmp(argv[1], "native")) failClones();
	try("CLONE_PARENT_SETTID", CLONE_PARENT_SETTID);
	try("CLONE_PIDFD", CLONE_PIDFD);
	try("CLONE_PIDFD again", CLONE_PIDFD);
	return 0;
}
`

// TestForkENOMEMUndone: a fork that the memory manager refuses leaves
// nothing in the parent that the clone would have given it, as on Linux,
// whose fork fails before it writes CLONE_PARENT_SETTID's word or
// installs CLONE_PIDFD's descriptor: the word keeps its value, and no
// descriptor is left open. The native run makes its clones fail with a
// seccomp filter; under vmspace, mode 2 accounting with a 100 MiB
// CommitLimit does.
func TestForkENOMEMUndone(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "forkundo", forkUndoProgram, false)
	want := runNative(t, "", "", exe, "native")
	if want.code != 0 || strings.Count(want.stdout, "errno ENOMEM") != 3 {
		t.Fatalf("natively: exit %d, output:\n%s%s", want.code, want.stdout, want.stderr)
	}
	c := mm.NewCommit(mm.Overcommit{Mode: mm.OvercommitNever, Ratio: 50, TotalRAM: 200 << 20})
	testCommit = c
	got, _ := sandboxRun(t, "", "", Options{}, exe)
	testCommit = nil
	if got.code != want.code || got.stdout != want.stdout || got.stderr != "" {
		t.Errorf("exit %d, natively %d; output:\n%s%s\nnatively:\n%s", got.code, want.code, got.stdout, got.stderr, want.stdout)
	}
}
