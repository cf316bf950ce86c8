package sandbox

import "testing"

// forkResidentSrc prints, in the parent and in fork children, which pages
// of a 16-page private anonymous region are present (mincore and
// /proc/self/pagemap), across a sequence where Linux's child has only
// the pages the parent touched: pages 0-3 written, made read-only, a
// fork, made writable again, another fork; and a region whose pages were
// never touched, made read-only, then forked.
const forkResidentSrc = `
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#define PG 4096
#define N 16

static void show(const char *who, char *b) {
	int pm = open("/proc/self/pagemap", O_RDONLY);
	unsigned char v[N];
	char mc[N + 1], pp[N + 1];
	if (mincore(b, N * PG, v))
		v[0] = 0xff;
	for (int i = 0; i < N; i++) {
		uint64_t e = 0;
		if (pm < 0 || pread(pm, &e, 8, ((uintptr_t)b / PG + i) * 8) != 8)
			e = 0;
		mc[i] = v[i] & 1 ? 'p' : '.';
		pp[i] = e >> 63 ? 'p' : '.';
	}
	mc[N] = pp[N] = 0;
	printf("%-8s mincore %s pagemap %s\n", who, mc, pp);
	fflush(stdout);
	if (pm >= 0)
		close(pm);
}

static void forkShow(const char *who, char *b) {
	pid_t pid = fork();
	if (pid < 0)
		_exit(1);
	if (pid == 0) {
		show(who, b);
		_exit(0);
	}
	waitpid(pid, 0, 0);
}

int main(void) {
	char *b = mmap(0, N * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *u = mmap(0, N * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (b == MAP_FAILED || u == MAP_FAILED)
		return 2;
	for (int i = 0; i < 4; i++)
		b[i * PG] = 1;
	if (mprotect(b, 4 * PG, PROT_READ))
		return 3;
	show("parent", b);
	forkShow("child1", b);
	if (mprotect(b, 4 * PG, PROT_READ | PROT_WRITE))
		return 4;
	show("parent", b);
	forkShow("child2", b);
	show("parent", b);
	u[5 * PG] = 1;
	if (mprotect(u, N * PG, PROT_READ))
		return 5;
	forkShow("child3", u);
	if (mprotect(u, N * PG, PROT_READ | PROT_WRITE))
		return 6;
	forkShow("child4", u);
	show("parent", u);
	return 0;
}
`

// TestForkResidentPages checks that a fork child has only the pages its
// parent had (mincore and pagemap as on Linux), also for memory the
// parent could not write at the fork: fixFork maps what the child's
// manager has there and faults nothing in.
func TestForkResidentPages(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "forkresident", forkResidentSrc, false)
	compare(t, "", "", exe)
}
