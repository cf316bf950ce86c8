package sandbox

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// manyFilesProgram maps host files after closing their descriptors:
// "many N" maps N distinct files (more than RLIMIT_NOFILE allows open at
// once) and reads each back, and writes private copies of some; "full"
// maps a file, then uses up every descriptor number, and only then
// touches the mappings, shared and private.
const manyFilesProgram = `
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>
int main(int argc, char **argv) {
	setvbuf(stdout, 0, _IONBF, 0);
	if (!strcmp(argv[1], "many")) {
		int n = atoi(argv[2]);
		char **maps = calloc(n, sizeof *maps);
		char name[64], want[64];
		for (int i = 0; i < n; i++) {
			snprintf(name, sizeof name, "f%d", i);
			int fd = open(name, O_RDWR | O_CREAT | O_TRUNC, 0644);
			if (fd < 0) { printf("open %d: %s\n", i, strerror(errno)); return 1; }
			dprintf(fd, "file %d", i);
			maps[i] = mmap(0, 4096, PROT_READ | PROT_WRITE, i % 2 ? MAP_SHARED : MAP_PRIVATE, fd, 0);
			if (maps[i] == MAP_FAILED) { printf("mmap %d: %s\n", i, strerror(errno)); return 1; }
			close(fd);
		}
		int ok = 0;
		for (int i = 0; i < n; i++) {
			snprintf(want, sizeof want, "file %d", i);
			if (!strcmp(maps[i], want)) ok++;
		}
		printf("%d of %d mappings read back\n", ok, n);
		ok = 0;
		for (int i = 0; i < n; i++) {
			maps[i][0] = i % 2 ? 'S' : 'P';
			snprintf(want, sizeof want, "%cile %d", i % 2 ? 'S' : 'P', i);
			if (!strcmp(maps[i], want)) ok++;
		}
		printf("%d of %d mappings written\n", ok, n);
		return 0;
	}
	int fd = open("g", O_RDWR | O_CREAT | O_TRUNC, 0644);
	char buf[8192];
	memset(buf, 'g', 4096);
	memset(buf + 4096, 'h', 4096);
	if (write(fd, buf, sizeof buf) != sizeof buf) return 1;
	char *m = mmap(0, 8192, PROT_READ, MAP_SHARED, fd, 0);
	char *p = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	close(fd);
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	printf("soft %s hard\n", rl.rlim_cur == rl.rlim_max ? "==" : "<");
	while (open("/dev/null", O_RDONLY) >= 0)
		;
	printf("then %s\n", strerror(errno));
	/* Whatever mmap mapped at once goes: the loads below fault. */
	madvise(m, 8192, MADV_DONTNEED);
	madvise(p, 8192, MADV_DONTNEED);
	printf("shared %c %c\n", m[0], m[4096]);
	p[4096 + 1] = 'P';
	printf("private %c %c %c\n", p[0], p[4096], p[4096 + 1]);
	return 0;
}
`

// TestMappedFileDescriptors compares mappings of host files natively and
// under vmspace (the command, built here) where descriptors are scarce:
// 2000 distinct files mapped at "ulimit -n 1100" (vmspace keeps no
// descriptor of its own per mapped file), and pages of a file first
// touched when the program has used every descriptor number up to a hard
// limit vmspace cannot raise.
func TestMappedFileDescriptors(t *testing.T) {
	needPtrace(t)
	need(t, "go", "sh")
	exe := buildC(t, "manyfiles", manyFilesProgram, false)
	vm := filepath.Join(t.TempDir(), "vmspace")
	if out, err := exec.Command("go", "build", "-o", vm, "github.com/vmspace/vmspace/cmd/vmspace").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, c := range []struct{ name, limit, args string }{
		{"many", "ulimit -n 1100", "many 2000"},
		{"hardlimit", "ulimit -n 64", "full"},
	} {
		t.Run(c.name, func(t *testing.T) {
			want := runNative(t, t.TempDir(), "", "sh", "-c", c.limit+`; exec "$0" `+c.args, exe)
			got := runNative(t, t.TempDir(), "", "sh", "-c", c.limit+`; exec "$0" run -- "$1" `+c.args, vm, exe)
			if got.code != want.code || got.stdout != want.stdout {
				t.Errorf("under vmspace (%d):\n%s%s\nnative (%d):\n%s%s", got.code, got.stdout, clip(got.stderr), want.code, want.stdout, want.stderr)
			}
		})
	}
}
