package sandbox

import (
	"os"
	"path/filepath"
	"testing"
)

// unreachableProgram maps a file, closes it, gives up root for an
// unprivileged user that can reach neither the file nor the program's own
// image (both in a directory only root may enter), and then reads and
// writes pages of the mapping that it never touched before, and runs code
// in pages of its own image that were not touched before either (a
// function placed far from the rest). With an argument N, it first uses
// up every descriptor number below a RLIMIT_NOFILE of 64 (soft and hard)
// but N.
const unreachableProgram = `
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

__attribute__((noinline, aligned(65536))) static int far(int x) { return x * 3 + 1; }
static char pad[1 << 20] __attribute__((used)) = {1};

int main(int argc, char **argv) {
	int fd = open("big", O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0) { perror("open"); return 1; }
	if (ftruncate(fd, 64 << 20) || pwrite(fd, "hello", 5, 40 << 20) != 5) { perror("write"); return 1; }
	char *m = mmap(0, 64 << 20, PROT_READ, MAP_SHARED, fd, 0);
	char *p = mmap(0, 64 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	if (m == MAP_FAILED || p == MAP_FAILED) { perror("mmap"); return 1; }
	close(fd);
	if (setgroups(0, NULL) || setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534)) { perror("setresuid"); return 1; }
	printf("uid %d; the file %s\n", getuid(), open("big", O_RDONLY) < 0 ? "is out of reach" : "can be opened");
	if (argc > 1) {
		struct rlimit rl = {64, 4096};
		if (setrlimit(RLIMIT_NOFILE, &rl)) { perror("setrlimit"); return 1; }
		int fds[64], n = 0, last;
		while ((last = dup(0)) >= 0) fds[n++] = last;
		for (int i = 0; i < atoi(argv[1]) && n > 0; i++) close(fds[--n]);
		printf("%d free below the limit\n", atoi(argv[1]));
	}
	printf("%.5s\n", m + (40 << 20));
	p[(40 << 20) + 1] = 'E';
	printf("%.5s\n", p + (40 << 20));
	printf("far %d, pad %d\n", far(4), pad[(1 << 20) - 4096 * 3] + pad[0]);
	return 0;
}
`

// TestUnreachableMappedFile: a program that changed its user ids and can
// no longer reach a mapped file by any path (nor its own image) still gets
// the file's pages at its faults, as on Linux, where a mapping holds its
// file. vmspace passes its own descriptor of the file to the program for
// the moment of the host mapping (over a socket: fdpass.go), since
// neither vmspace's descriptor (/proc/PID/fd of another user's process)
// nor the file's path can be opened by the program then.
func TestUnreachableMappedFile(t *testing.T) {
	needPtrace(t)
	if os.Geteuid() != 0 {
		t.Skip("changing user ids needs root")
	}
	exe := buildC(t, "unreachable", unreachableProgram, false)
	dir := filepath.Join(t.TempDir(), "private")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	exe = filepath.Join(dir, "unreachable")
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	compare(t, dir, "", exe)
	// With one descriptor number free, and none: passing the descriptor
	// needs two at once (before, three), so vmspace raises the limit for
	// the moment (the program's mmap needs none).
	for _, free := range []string{"1", "0"} {
		compare(t, dir, "", exe, free)
	}
}
