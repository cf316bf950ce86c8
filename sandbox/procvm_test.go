package sandbox

import "testing"

// procVMProgram uses process_vm_readv and process_vm_writev on its own
// memory and between a parent and its child; argv[1] selects a case.
const procVMProgram = `
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static void show(const char *what, ssize_t r) {
	if (r < 0) printf("%s: -1 %s\n", what, strerrorname_np(errno));
	else printf("%s: %zd\n", what, r);
}

static void residency(const char *what, void *p, int pages) {
	unsigned char vec[64];
	if (mincore(p, pages * 4096, vec) != 0) { printf("mincore: %s\n", strerrorname_np(errno)); return; }
	printf("%s resident ", what);
	for (int i = 0; i < pages; i++) putchar('0' + (vec[i] & 1));
	putchar('\n');
}

static char *anon(size_t n) {
	return mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}

static int self(void) {
	size_t n = 64 * 4096;
	char *untouched = anon(n), *filled = anon(n), *buf = anon(n);
	memset(filled, 'x', n);
	struct iovec l = {buf, n}, r = {untouched, n};
	show("untouched", process_vm_readv(getpid(), &l, 1, &r, 1, 0));
	residency("untouched", untouched, 16);
	// One byte of local room: Linux still faults in the remote chunk.
	char *src = anon(16 * 4096);
	l.iov_len = 1; r.iov_base = src; r.iov_len = 16 * 4096;
	show("one byte", process_vm_readv(getpid(), &l, 1, &r, 1, 0));
	residency("one byte", src, 16);
	char *wdst = anon(16 * 4096);
	l.iov_base = filled; l.iov_len = 4096; r.iov_base = wdst; r.iov_len = 16 * 4096;
	show("write one page", process_vm_writev(getpid(), &l, 1, &r, 1, 0));
	residency("write one page", wdst, 16);
	printf("wrote %c %d\n", wdst[4095], wdst[4096]);
	// Guard and read-only pages.
	char *g = anon(3 * 4096);
	mprotect(g + 4096, 4096, PROT_NONE);
	memset(g, 'g', 4096);
	l.iov_base = buf; l.iov_len = n; r.iov_base = g; r.iov_len = 3 * 4096;
	show("guard", process_vm_readv(getpid(), &l, 1, &r, 1, 0));
	r.iov_base = g + 4096;
	show("guard first", process_vm_readv(getpid(), &l, 1, &r, 1, 0));
	char *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	r.iov_base = ro; r.iov_len = 4096;
	show("write read-only", process_vm_writev(getpid(), &l, 1, &r, 1, 0));
	show("read read-only", process_vm_readv(getpid(), &l, 1, &r, 1, 0));
	// Argument errors, in Linux's order.
	show("flags", process_vm_readv(getpid(), &l, 1, &r, 1, 1));
	show("no such pid", process_vm_readv(999999, &l, 1, &r, 1, 0));
	show("bad local array", process_vm_readv(getpid(), (void *)8, 1, &r, 1, 0));
	show("bad remote array", process_vm_readv(getpid(), &l, 1, (void *)8, 1, 0));
	show("zero local", process_vm_readv(999999, &l, 0, (void *)8, 1, 0));
	struct iovec z = {NULL, 0};
	show("zero remote", process_vm_readv(999999, &l, 1, &z, 1, 0));
	struct iovec neg = {buf, (size_t)-1};
	show("negative local", process_vm_readv(getpid(), &neg, 1, &r, 1, 0));
	show("negative remote", process_vm_readv(getpid(), &l, 1, &neg, 1, 0));
	show("1025 vectors", process_vm_readv(getpid(), &l, 1025, &r, 1, 0));
	r.iov_base = NULL; r.iov_len = 10;
	show("remote NULL", process_vm_readv(getpid(), &l, 1, &r, 1, 0));
	// Many vectors on both sides.
	static struct iovec li[1024], ri[1024];
	char *big = anon(1024 * 12288), *dst = anon(1024 * 8192);
	for (int i = 0; i < 1024; i++) {
		li[i].iov_base = dst + i * 8192; li[i].iov_len = 100;
		ri[i].iov_base = big + i * 12288 + 4090; ri[i].iov_len = 100;
	}
	show("1024 vectors", process_vm_readv(getpid(), li, 1024, ri, 1024, 0));
	residency("1024 vectors", big, 12);
	// A file mapping reaching past end-of-file.
	char path[] = "/tmp/pvmXXXXXX";
	int fd = mkstemp(path);
	unlink(path);
	if (ftruncate(fd, 4096 + 100) != 0) return 1;
	char *fm = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	l.iov_base = buf; l.iov_len = 4 * 4096; r.iov_base = fm; r.iov_len = 4 * 4096;
	show("file past EOF", process_vm_readv(getpid(), &l, 1, &r, 1, 0));
	show("write private file", process_vm_writev(getpid(), &l, 1, &r, 1, 0));
	char *sfm = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	memset(buf, 'S', 4096);
	r.iov_base = sfm; r.iov_len = 4096;
	show("write shared file", process_vm_writev(getpid(), &l, 1, &r, 1, 0));
	char c = 0;
	if (pread(fd, &c, 1, 10) != 1) return 1;
	printf("file byte %c\n", c);
	// The local side ends in an inaccessible page.
	char *lp = anon(3 * 4096);
	mprotect(lp + 2 * 4096, 4096, PROT_NONE);
	l.iov_base = lp + 100; l.iov_len = 3 * 4096 - 100; r.iov_base = filled; r.iov_len = 3 * 4096;
	show("local partial", process_vm_readv(getpid(), &l, 1, &r, 1, 0));
	show("local partial write", process_vm_writev(getpid(), &l, 1, &r, 1, 0));
	// Below the stack: not grown.
	char here;
	r.iov_base = (char *)(((unsigned long)&here - (1 << 20)) & ~4095UL); r.iov_len = 4096;
	show("below stack", process_vm_readv(getpid(), &l, 1, &r, 1, 0));
	return 0;
}

static int family(void) {
	size_t n = 64 * 4096;
	char *untouched = anon(n), *filled = anon(n);
	memset(filled, 'x', n);
	char *sh = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pid_t parent = getpid();
	pid_t ch = fork();
	if (ch == 0) {
		char *b = anon(n);
		struct iovec l = {b, n}, r = {untouched, n};
		show("child untouched", process_vm_readv(parent, &l, 1, &r, 1, 0));
		r.iov_base = filled;
		show("child filled", process_vm_readv(parent, &l, 1, &r, 1, 0));
		printf("child saw %c\n", b[10]);
		memset(b, 'w', n);
		r.iov_base = untouched + 4096; l.iov_len = n - 4096;
		show("child write", process_vm_writev(parent, &l, 1, &r, 1, 0));
		l.iov_len = 64; r.iov_base = sh + 500000; r.iov_len = 64;
		show("child write shared", process_vm_writev(parent, &l, 1, &r, 1, 0));
		r.iov_base = filled + 9 * 4096;
		show("child write private", process_vm_writev(parent, &l, 1, &r, 1, 0));
		fflush(stdout);
		_exit(0);
	}
	waitpid(ch, 0, 0);
	printf("parent sees %c %d shared %c private %c\n", untouched[4096], untouched[0], sh[500000], filled[9 * 4096]);
	residency("parent", untouched, 4);
	// The parent reads its child, stopped in a pipe read.
	int p[2];
	if (pipe(p) != 0) return 1;
	ch = fork();
	if (ch == 0) {
		filled[0] = 'C';
		char c;
		if (read(p[0], &c, 1) != 1) { printf("child read: %s\n", strerrorname_np(errno)); fflush(stdout); _exit(1); }
		printf("child got %c\n", untouched[8192]);
		fflush(stdout);
		_exit(0);
	}
	char v = 'P', got = 0;
	struct iovec l = {&got, 1}, r = {filled, 1};
	// The child writes filled[0] before blocking; wait for it.
	for (int i = 0; i < 100000 && got != 'C'; i++) {
		if (process_vm_readv(ch, &l, 1, &r, 1, 0) != 1) { printf("read child: %s\n", strerrorname_np(errno)); break; }
		if (got != 'C') usleep(100);
	}
	printf("parent read %c\n", got);
	l.iov_base = &v; r.iov_base = untouched + 8192;
	show("parent write child", process_vm_writev(ch, &l, 1, &r, 1, 0));
	if (write(p[1], "x", 1) != 1) return 1;
	waitpid(ch, 0, 0);
	ch = fork();
	if (ch == 0) _exit(0);
	waitpid(ch, 0, 0);
	l.iov_base = &got; r.iov_base = filled;
	show("dead child", process_vm_readv(ch, &l, 1, &r, 1, 0));
	// Without the right to attach: a child that gave up root.
	ch = fork();
	if (ch == 0) {
		if (setresuid(65534, 65534, 65534) != 0) { printf("setresuid: %s\n", strerrorname_np(errno)); _exit(0); }
		show("unprivileged child", process_vm_readv(parent, &l, 1, &r, 1, 0));
		fflush(stdout);
		_exit(0);
	}
	waitpid(ch, 0, 0);
	return 0;
}

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IONBF, 0);
	if (argc > 1 && strcmp(argv[1], "self") == 0) return self();
	if (argc > 1 && strcmp(argv[1], "family") == 0) return family();
	return 2;
}
`

// TestProcessVM: process_vm_readv and process_vm_writev on the program's
// own memory and between its processes behave as natively, memory the
// host has not mapped included (untouched pages, another process's shared
// memory, a file page next to one past end-of-file), with Linux's partial
// counts, errnos and faulting of the remote pages.
func TestProcessVM(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "procvm", procVMProgram, false)
	for _, c := range []string{"self", "family"} {
		t.Run(c, func(t *testing.T) { compare(t, "", "", exe, c) })
	}
}
