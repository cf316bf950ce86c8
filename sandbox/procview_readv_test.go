package sandbox

import "testing"

// procviewReadvProgram reads /proc/self/maps (made longer than a page
// by many vmas) and /proc/self/status with readv and preadv into two
// iovecs of more than a page together, and prints what Linux's seq_file
// guarantees of each call: whole lines (a record never cut), more than a
// page (the first iovec's buffer left over, then a new one), the next
// call starting a line, the same text in all as read gives; then the
// sizes of small readvs of status.
const procviewReadvProgram = `
#define _GNU_SOURCE
#include <ctype.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

static char whole[1 << 20], byv[1 << 20];

static size_t readall(const char *path) {
	int fd = open(path, O_RDONLY);
	size_t n = 0;
	ssize_t r;
	while ((r = read(fd, whole + n, sizeof whole - n)) > 0) n += r;
	close(fd);
	return n;
}

static void check(const char *path, int positional, int stable) {
	static char a[100], b[6000];
	struct iovec iov[2] = {{a, sizeof a}, {b, sizeof b}};
	int fd = open(path, O_RDONLY);
	size_t n = 0;
	int calls = 0, big = 0, cut = 0, midline = 0;
	for (;;) {
		ssize_t r = positional ? preadv(fd, iov, 2, n) : readv(fd, iov, 2);
		if (r < 0) { perror("readv"); return; }
		if (r == 0) break;
		calls++;
		if (r > 4096) big++;
		char last = r > (ssize_t)sizeof a ? b[r - sizeof a - 1] : a[r - 1];
		if (last != '\n') cut++;
		if (n > 0 && byv[n - 1] != '\n') midline++;
		memcpy(byv + n, a, r < (ssize_t)sizeof a ? r : sizeof a);
		if (r > (ssize_t)sizeof a) memcpy(byv + n + sizeof a, b, r - sizeof a);
		n += r;
	}
	close(fd);
	size_t m = readall(path);
	printf("%s %s: more than one call %d, over a page %d, cut %d, started mid-line %d, same text %d\n",
		positional ? "preadv" : "readv", path, calls > 1, big, cut, midline, !stable || (m == n && !memcmp(whole, byv, n)));
}

int main(void) {
	char *p = mmap(0, 400 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) return 1;
	for (int i = 0; i < 400; i += 2) mprotect(p + i * 4096, 4096, PROT_READ);
	check("/proc/self/maps", 0, 1);
	check("/proc/self/maps", 1, 1);
	check("/proc/self/status", 0, 0); /* its counts of switches move */
	/* The sizes of each call, which depend on the lines' lengths. */
	int fd = open("/proc/self/status", O_RDONLY);
	static char a[10], b[20];
	struct iovec iov[2] = {{a, sizeof a}, {b, sizeof b}};
	printf("status readv %zd, then %zd\n", readv(fd, iov, 2), readv(fd, iov, 2));
	iov[0].iov_len = 0;
	printf("status readv after an empty iovec %zd\n", readv(fd, iov, 2));
	return 0;
}
`

// TestProcViewReadv: readv and preadv of a text view return what Linux's
// /proc files return, one seq_file read per iovec (whole lines, a page of
// them at a time, after what was left of the last), not the memfd's fill
// of every iovec (before: records cut in the middle, and as much as the
// iovecs hold).
func TestProcViewReadv(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "procviewreadv", procviewReadvProgram, false)
	want, got := runBoth(t, exe)
	if got.code != want.code || want.code != 0 || got.stdout != want.stdout {
		t.Errorf("exit %d, natively %d\nvmspace:\n%s\nnative:\n%s\nstderr: %s", got.code, want.code, got.stdout, want.stdout, got.stderr)
	}
}
