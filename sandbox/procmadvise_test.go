package sandbox

import "testing"

// procMadviseProgram uses process_madvise on its own memory and on its
// parent's, and process_mrelease; argv[1] selects a case.
const procMadviseProgram = `
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/capability.h>

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#define MADV_GUARD_REMOVE 103
#endif

static long pmadv(int fd, struct iovec *v, size_t n, int adv, unsigned flags) {
	return syscall(SYS_process_madvise, fd, v, n, adv, flags);
}

static void show(const char *what, long r) {
	if (r < 0) printf("%s: -1 %s\n", what, strerrorname_np(errno));
	else printf("%s: %ld\n", what, r);
}

static void residency(const char *what, void *p, int pages) {
	unsigned char vec[64];
	if (mincore(p, pages * 4096, vec) != 0) { printf("%s mincore: %s\n", what, strerrorname_np(errno)); return; }
	printf("%s resident ", what);
	for (int i = 0; i < pages; i++) putchar('0' + (vec[i] & 1));
	putchar('\n');
}

static char *anon(size_t n, char fill) {
	char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (fill) memset(p, fill, n);
	return p;
}

static char *filemap(int pages) {
	char path[] = "/tmp/pmadvXXXXXX";
	int fd = mkstemp(path);
	unlink(path);
	char buf[4096];
	memset(buf, 'f', sizeof buf);
	for (int i = 0; i < pages; i++)
		if (write(fd, buf, sizeof buf) != sizeof buf) exit(3);
	fsync(fd);
	char *p = mmap(NULL, pages * 4096, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	for (int i = 0; i < pages; i++) (void)*(volatile char *)(p + i * 4096);
	return p;
}

// peek reads a byte through process_vm_readv: -1 if it faults.
static int peek(char *p) {
	char c;
	struct iovec l = {&c, 1}, r = {p, 1};
	if (process_vm_readv(getpid(), &l, 1, &r, 1, 0) != 1) return -1;
	return c;
}

static int self(void) {
	int me = syscall(SYS_pidfd_open, getpid(), 0);
	char *a = anon(8 * 4096, 'a');
	struct iovec v[3] = {{a, 2 * 4096}, {a + 4 * 4096, 4096}};
	show("dontneed", pmadv(me, v, 2, MADV_DONTNEED, 0));
	residency("dontneed", a, 8);
	printf("bytes %d %d %d %d\n", a[0], a[4096 * 2], a[4 * 4096], a[5 * 4096]);
	memset(a, 'b', 8 * 4096);
	v[0].iov_base = a; v[0].iov_len = 4096;
	show("self thread", pmadv(-10000, v, 1, MADV_DONTNEED, 0));
	printf("byte %d\n", a[0]);
	// A hole in the second vector: the first is advised, the count is
	// the first's; the error comes only without progress.
	char *hole = anon(3 * 4096, 'h');
	munmap(hole + 4096, 4096);
	memset(a, 'c', 8 * 4096);
	v[0].iov_base = a; v[0].iov_len = 4096;
	v[1].iov_base = hole; v[1].iov_len = 3 * 4096;
	v[2].iov_base = a + 4096; v[2].iov_len = 4096;
	show("hole second", pmadv(me, v, 3, MADV_DONTNEED, 0));
	printf("bytes %d %d %d %d\n", a[0], hole[0], hole[2 * 4096], a[4096]);
	show("hole first", pmadv(me, v + 1, 2, MADV_DONTNEED, 0));
	v[1].iov_base = a + 100;
	show("unaligned second", pmadv(me, v, 3, MADV_DONTNEED, 0));
	show("unknown advice", pmadv(me, v, 1, 999, 0));
	show("unknown advice, no vectors", pmadv(me, v, 0, 999, 0));
	show("flags", pmadv(me, v, 1, MADV_DONTNEED, 1));
	show("1025 vectors", pmadv(me, v, 1025, MADV_DONTNEED, 0));
	show("bad vector array", pmadv(me, (void *)8, 1, MADV_DONTNEED, 0));
	show("bad pidfd", pmadv(1234, v, 1, MADV_DONTNEED, 0));
	show("not a pidfd", pmadv(1, v, 1, MADV_DONTNEED, 0));
	show("PIDFD_SELF_PROCESS", pmadv(-20000, v, 1, MADV_DONTNEED, 0));
	struct iovec z = {a, 0};
	show("zero length", pmadv(me, &z, 1, MADV_DONTNEED, 0));
	show("zero length, unknown advice", pmadv(me, &z, 1, 999, 0));
	struct iovec e2[3] = {{a + 1, 0}, {a, 4096}, {a + 1, 0}};
	show("empty unaligned first vector", pmadv(me, e2, 2, MADV_DONTNEED, 0));
	show("empty unaligned later vector", pmadv(me, e2 + 1, 2, MADV_DONTNEED, 0));
	// Guard regions through process_madvise.
	char *g = anon(4 * 4096, 'g');
	v[0].iov_base = g + 4096; v[0].iov_len = 2 * 4096;
	show("guard install", pmadv(me, v, 1, MADV_GUARD_INSTALL, 0));
	printf("peek %d %d %d\n", peek(g), peek(g + 4096), peek(g + 3 * 4096));
	residency("guard", g, 4);
	show("guard remove", pmadv(me, v, 1, MADV_GUARD_REMOVE, 0));
	printf("peek %d %d\n", peek(g + 4096), peek(g + 2 * 4096));
	// MADV_FREE, MADV_COLD, MADV_PAGEOUT, MADV_WILLNEED, populate.
	char *f = anon(4 * 4096, 'F');
	v[0].iov_base = f; v[0].iov_len = 4 * 4096;
	show("free", pmadv(me, v, 1, MADV_FREE, 0));
	show("cold", pmadv(me, v, 1, MADV_COLD, 0));
	show("pageout", pmadv(me, v, 1, MADV_PAGEOUT, 0));
	printf("byte %c\n", f[4096]);
	char *u = anon(4 * 4096, 0);
	v[0].iov_base = u; v[0].iov_len = 4 * 4096;
	show("populate write", pmadv(me, v, 1, MADV_POPULATE_WRITE, 0));
	residency("populated", u, 4);
	char *fm = filemap(4);
	v[0].iov_base = fm; v[0].iov_len = 4 * 4096;
	show("file pageout", pmadv(me, v, 1, MADV_PAGEOUT, 0));
	// (Whether the file's pages stay resident afterwards is up to mm's
	// MADV_PAGEOUT, the same as madvise's.)
	show("file willneed", pmadv(me, v, 1, MADV_WILLNEED, 0));
	show("dontfork", pmadv(me, v, 1, MADV_DONTFORK, 0));
	return 0;
}

static int drop_nice(void) {
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct d[2];
	if (syscall(SYS_capget, &h, d) != 0) return -1;
	d[CAP_SYS_NICE / 32].effective &= ~(1u << (CAP_SYS_NICE % 32));
	return syscall(SYS_capset, &h, d);
}

static int remote(void) {
	char *a = anon(8 * 4096, 'a');
	char *fm = filemap(4);
	int parent = syscall(SYS_pidfd_open, getpid(), 0);
	pid_t ch = fork();
	if (ch == 0) {
		struct iovec v[2] = {{a, 8 * 4096}, {fm, 4 * 4096}};
		show("remote dontneed", pmadv(parent, v, 1, MADV_DONTNEED, 0));
		show("remote dontneed, no vectors", pmadv(parent, v, 0, MADV_DONTNEED, 0));
		show("remote unknown", pmadv(parent, v, 1, 999, 0));
		show("remote cold", pmadv(parent, v, 2, MADV_COLD, 0));
		show("remote willneed", pmadv(parent, v, 2, MADV_WILLNEED, 0));
		show("remote pageout", pmadv(parent, v + 1, 1, MADV_PAGEOUT, 0));
		struct iovec h = {(void *)4096, 4096};
		show("remote hole", pmadv(parent, &h, 1, MADV_COLD, 0));
		show("mrelease live", syscall(SYS_process_mrelease, parent, 0));
		show("mrelease flags", syscall(SYS_process_mrelease, parent, 1));
		show("mrelease not a pidfd", syscall(SYS_process_mrelease, 1, 0));
		if (drop_nice() != 0) printf("capset: %s\n", strerrorname_np(errno));
		show("no CAP_SYS_NICE cold", pmadv(parent, v, 1, MADV_COLD, 0));
		show("no CAP_SYS_NICE dontneed", pmadv(parent, v, 1, MADV_DONTNEED, 0));
		int me = syscall(SYS_pidfd_open, getpid(), 0);
		char *mine = anon(4096, 'm');
		struct iovec mv = {mine, 4096};
		show("no CAP_SYS_NICE self dontneed", pmadv(me, &mv, 1, MADV_DONTNEED, 0));
		printf("mine %d\n", mine[0]);
		if (setresuid(65534, 65534, 65534) != 0) printf("setresuid: %s\n", strerrorname_np(errno));
		show("unprivileged cold", pmadv(parent, v, 1, MADV_COLD, 0));
		show("unprivileged unknown", pmadv(parent, v, 1, 999, 0));
		_exit(0);
	}
	int st;
	waitpid(ch, &st, 0);
	printf("parent bytes %c %c\n", a[0], fm[0]);
	return 0;
}

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IONBF, 0);
	if (argc > 1 && strcmp(argv[1], "self") == 0) return self();
	if (argc > 1 && strcmp(argv[1], "remote") == 0) return remote();
	return 2;
}
`

// TestProcessMadvise: process_madvise on the program's own memory (every
// advice) and on its parent's (the remote ones), with Linux's permission
// checks, errnos and partial counts, acts on vmspace's memory as Linux's
// acts on the process's; process_mrelease refuses live processes.
func TestProcessMadvise(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "procmadvise", procMadviseProgram, false)
	for _, c := range []string{"self", "remote"} {
		t.Run(c, func(t *testing.T) { compare(t, "", "", exe, c) })
	}
}
