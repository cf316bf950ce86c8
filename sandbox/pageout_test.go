package sandbox

import "testing"

// pageOutProgram uses MADV_PAGEOUT on MAP_SHARED mappings of regular files
// it made (clean pages written back with fsync): pages only it maps are
// reclaimed, a page it wrote (dirty) and a page a forked child still maps
// are not, and the data stays intact.
const pageOutProgram = `
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGES 4
#define PS 4096

static void residency(const char *what, void *p) {
	unsigned char vec[PAGES];
	if (mincore(p, PAGES * PS, vec) != 0) { perror("mincore"); exit(2); }
	printf("%s ", what);
	for (int i = 0; i < PAGES; i++) putchar('0' + (vec[i] & 1));
	putchar('\n');
}

// newfile makes a file of PAGES pages, page i filled with 'a'+i, written
// back to disk so that its pages are clean.
static int newfile(const char *dir, const char *name) {
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0) { perror("open"); exit(2); }
	unlink(path);
	char buf[PS];
	for (int i = 0; i < PAGES; i++) {
		memset(buf, 'a' + i, PS);
		if (write(fd, buf, PS) != PS) { perror("write"); exit(2); }
	}
	if (fsync(fd) != 0) { perror("fsync"); exit(2); }
	return fd;
}

static unsigned sum(volatile char *p) {
	unsigned s = 0;
	for (int i = 0; i < PAGES * PS; i += 64) s += p[i];
	return s;
}

static void pageout(char *p) {
	if (madvise(p, PAGES * PS, MADV_PAGEOUT) != 0) { perror("madvise"); exit(2); }
}

int main(int argc, char **argv) {
	const char *dir = argv[1];

	// Clean pages, read only, mapped by this process alone.
	int fd = newfile(dir, "clean");
	char *p = mmap(NULL, PAGES * PS, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) { perror("mmap"); exit(2); }
	unsigned s0 = sum(p);
	residency("clean before", p);
	pageout(p);
	residency("clean after", p);
	printf("clean intact %d\n", sum(p) == s0);

	// Page 0 written through the shared mapping (dirty), page 1 read.
	fd = newfile(dir, "dirty");
	p = mmap(NULL, PAGES * PS, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) { perror("mmap"); exit(2); }
	p[0] = 'Z';
	(void)*(volatile char *)(p + PS);
	pageout(p);
	residency("dirty after", p);
	char c;
	if (pread(fd, &c, 1, 0) != 1) { perror("pread"); exit(2); }
	printf("dirty intact %c %c %c\n", p[0], c, p[PS]);

	// Page 0 also mapped (touched) by a forked child that is still alive.
	fd = newfile(dir, "shared");
	p = mmap(NULL, PAGES * PS, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) { perror("mmap"); exit(2); }
	s0 = sum(p);
	int ready[2], done[2];
	if (pipe(ready) != 0 || pipe(done) != 0) { perror("pipe"); exit(2); }
	pid_t pid = fork();
	if (pid == 0) {
		close(done[1]);
		char b = *(volatile char *)p;
		if (write(ready[1], &b, 1) != 1) _exit(3);
		if (read(done[0], &b, 1) < 0) _exit(3);
		_exit(0);
	}
	char b;
	if (read(ready[0], &b, 1) != 1) { perror("read"); exit(2); }
	pageout(p);
	residency("shared after", p);
	close(done[1]);
	int st;
	waitpid(pid, &st, 0);
	printf("child %d, shared intact %d\n", st, sum(p) == s0);
	return 0;
}
`

// TestPageOutSharedFile checks MADV_PAGEOUT of MAP_SHARED mappings of
// regular host files (mapped directly under vmspace run) against Linux:
// clean pages only this process maps leave the page cache; a dirty page
// and a page a forked child maps stay; the data is intact.
func TestPageOutSharedFile(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "pageout", pageOutProgram, false)
	dir := t.TempDir()
	want := runNative(t, dir, "", exe, dir)
	t.Logf("natively:\n%s", want.stdout)
	compare(t, dir, "", exe, dir)
}
