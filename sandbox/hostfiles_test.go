package sandbox

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Host files are mapped directly from the host under vmspace run, so that
// mappings, read/write and every other process see the same page cache.

// fileProbeC is the start of the C programs that probe file mappings:
// load returns the byte at an address or -SIGBUS/-SIGSEGV (with handlers
// installed), show prints it, mkfile makes a file of pages of one byte.
const fileProbeC = `
#define _GNU_SOURCE
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <errno.h>

static sigjmp_buf jb;
static void onbus(int sig) { siglongjmp(jb, sig); }

/* load returns the byte at p, or -SIGBUS/-SIGSEGV. */
static int load(volatile char *p) {
	int sig = sigsetjmp(jb, 1);
	if (sig) return -sig;
	return (unsigned char)*p;
}
static void show(const char *what, int v) {
	if (v == -SIGBUS) printf("%s: SIGBUS\n", what);
	else if (v == -SIGSEGV) printf("%s: SIGSEGV\n", what);
	else if (v >= 32 && v < 127) printf("%s: '%c'\n", what, v);
	else printf("%s: %d\n", what, v);
}
static int mkfile(const char *name, int pages, char fill) {
	int fd = open(name, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) { perror(name); exit(1); }
	char buf[4096];
	memset(buf, fill, sizeof buf);
	for (int i = 0; i < pages; i++) if (write(fd, buf, sizeof buf) != sizeof buf) { perror("write"); exit(1); }
	return fd;
}
`

// coherenceProgram checks that file mappings and file I/O agree, as on
// Linux: each line is one case's observation.
const coherenceProgram = fileProbeC + `
int main(void) {
	struct sigaction sa = {0};
	sa.sa_handler = onbus;
	sigaction(SIGBUS, &sa, 0);
	sigaction(SIGSEGV, &sa, 0);
	setvbuf(stdout, 0, _IONBF, 0);
	char c;

	/* 1: store through a shared mapping, then pread. */
	int fd = mkfile("f1", 2, 'x');
	char *m = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	m[10] = 'A';
	c = 0; pread(fd, &c, 1, 10);
	show("1 store then pread", c);
	/* 2: pwrite, then load through the mapping. */
	pwrite(fd, "B", 1, 4096 + 5);
	show("2 pwrite then load", load(m + 4096 + 5));
	/* 3: another process writes the file. */
	pid_t pid = fork();
	if (pid == 0) { pwrite(fd, "C", 1, 20); _exit(0); }
	waitpid(pid, 0, 0);
	show("3 other process writes", load(m + 20));
	/* 4: ftruncate shrink, then load. */
	ftruncate(fd, 4096);
	show("4 shrink then load", load(m + 4096 + 5));
	/* 5: ftruncate grow, then load. */
	munmap(m, 8192);
	int fd5 = mkfile("f5", 1, 'y');
	m = mmap(0, 8192, PROT_READ, MAP_SHARED, fd5, 0);
	show("5a past EOF", load(m + 4096));
	ftruncate(fd5, 8192);
	show("5 grow then load", load(m + 4096));
	/* 6: punch a hole, then load. */
	int fd6 = mkfile("f6", 2, 'z');
	char *m6 = mmap(0, 8192, PROT_READ, MAP_SHARED, fd6, 0);
	show("6a before", load(m6 + 100));
	if (fallocate(fd6, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096) != 0) perror("fallocate");
	show("6 punch then load", load(m6 + 100));
	/* 7: pwrite into a private mapping's page not yet written. */
	int fd7 = mkfile("f7", 2, 'w');
	char *m7 = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd7, 0);
	show("7a before", load(m7 + 4096));
	m7[0] = 'P'; /* copies page 0 only */
	pwrite(fd7, "N", 1, 4096);
	pwrite(fd7, "Q", 1, 1);
	show("7 pwrite into unwritten private page", load(m7 + 4096));
	show("7b written private page keeps its copy", load(m7 + 1));
	/* 8: a memfd of the program's own. */
	int mfd = memfd_create("t", 0);
	ftruncate(mfd, 8192);
	char *mm8 = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	mm8[7] = 'M';
	c = 0; pread(mfd, &c, 1, 7);
	show("8 memfd store then pread", c);
	pwrite(mfd, "m", 1, 4100);
	show("8b memfd pwrite then load", load(mm8 + 4100));
	/* 9: a system call reading a buffer past EOF. */
	ftruncate(fd5, 4096);
	int pfd[2]; pipe(pfd);
	errno = 0;
	long r = write(pfd[1], m + 4096, 1);
	printf("9 write from past EOF: %ld %s\n", r, r < 0 ? strerror(errno) : "");
	/* 10: two shared mappings of one file see each other. */
	char *a = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd6, 4096);
	char *b = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd6, 4096);
	a[3] = 'D';
	show("10 two mappings", load(b + 3));
	/* 11: private mapping written past EOF after shrink. */
	int fd11 = mkfile("f11", 2, 'v');
	char *m11 = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd11, 0);
	ftruncate(fd11, 4096);
	show("11 private load past EOF", load(m11 + 4096));
	/* 12: msync and read(2) into a mapping. */
	int fd12 = mkfile("f12", 1, 'u');
	char *m12 = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd12, 0);
	pwrite(fd6, "R", 1, 4096 + 50);
	pread(fd6, m12 + 9, 1, 4096 + 50);
	c = 0; pread(fd12, &c, 1, 9);
	show("12 read(2) into a mapping, then pread", c);
	printf("12b msync %d\n", msync(m12, 4096, MS_SYNC));
	return 0;
}
`

// TestFileCoherence compares the coherence of shared and private file
// mappings with pread, pwrite, another process's writes, ftruncate and hole
// punching, natively and under vmspace.
func TestFileCoherence(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "coherence", coherenceProgram, false)
	compare(t, t.TempDir(), "", exe)
}

// TestSqliteMmap runs sqlite3 with memory-mapped I/O (reads through a
// shared mapping of the database, writes with pwrite): writing a database,
// then reading it back in a second process.
func TestSqliteMmap(t *testing.T) {
	needPtrace(t)
	need(t, "sh", "sqlite3")
	script := `rm -f t.db t.db-journal
sqlite3 t.db "pragma mmap_size=268435456; create table t(a integer primary key, b text); with recursive c(x) as (select 1 union all select x+1 from c where x < 20000) insert into t(b) select printf('row %d %08x%08x', x, (x * 2654435761) % 4294967296, (x * 40503) % 65536) from c; update t set b = 'changed ' || a where a % 7 = 0; select count(*), sum(length(b)), sum(b like 'changed%') from t;" | sed 's/|/ /g'
sqlite3 t.db "pragma mmap_size=268435456; delete from t where a % 3 = 0; select count(*) from t; pragma integrity_check;"
sqlite3 t.db "pragma mmap_size=268435456; select b from t where a in (7, 8, 14, 20000); select count(*) from t where b like 'row%';"`
	compare(t, t.TempDir(), "", "sh", "-c", script)
}

// TestPythonMmap maps a file with python3's mmap module and watches another
// process write it: the mapping sees every write at once, and the other
// process sees the mapping's writes.
func TestPythonMmap(t *testing.T) {
	needPtrace(t)
	need(t, "python3")
	py, _ := exec.LookPath("python3")
	// python3 on PATH may be a wrapper script (pyenv's shim); run the
	// interpreter itself.
	if out, err := exec.Command(py, "-c", "import sys; print(sys.executable)").Output(); err == nil {
		py = strings.TrimSpace(string(out))
	}
	compare(t, t.TempDir(), "", py, "-c", `
import mmap, os, subprocess, sys
with open("f", "wb") as f:
    f.write(b"." * 8192)
fd = os.open("f", os.O_RDWR)
m = mmap.mmap(fd, 8192, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
print(m[0:4], m[4096:4100])
for i in range(5):
    subprocess.run([sys.executable, "-c", "import os; fd = os.open('f', os.O_RDWR); os.pwrite(fd, b'w%d' % " + str(i) + ", 4096 + " + str(i) + " * 10)"], check=True)
    print(i, m[4096 + i * 10:4096 + i * 10 + 2])
m[100:105] = b"hello"
print(subprocess.run([sys.executable, "-c", "print(open('f', 'rb').read()[100:105])"], capture_output=True).stdout.decode().strip())
os.ftruncate(fd, 16384)
m.resize(16384)
subprocess.run(["sh", "-c", "printf grown | dd of=f bs=1 seek=12288 conv=notrunc 2>/dev/null"], check=True)
print(m[12288:12293], m[8192:8196])
m.close()
`)
}

// fileFDProgram maps a file, closes it, and then either uses up its soft
// RLIMIT_NOFILE (argument "l": lowered to 16; "L": as it is) or becomes
// nobody (argument "u") before
// touching the mappings: the pages vmspace maps then still come from the
// file.
const fileFDProgram = `
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>
int main(int argc, char **argv) {
	int fd = open("big", O_RDWR | O_CREAT | O_TRUNC, 0644);
	ftruncate(fd, 64 << 20);
	pwrite(fd, "hello", 5, 40 << 20);
	char *m = mmap(0, 64 << 20, PROT_READ, MAP_SHARED, fd, 0);
	char *p = mmap(0, 64 << 20, PROT_READ|PROT_WRITE, MAP_PRIVATE, fd, 0);
	close(fd);
	if (argv[1][0] == 'l' || argv[1][0] == 'L') {
		struct rlimit rl; getrlimit(RLIMIT_NOFILE, &rl); rl.rlim_cur = 16;
		if (argv[1][0] == 'l') setrlimit(RLIMIT_NOFILE, &rl);
		int n = 0;
		while (open("/dev/null", O_RDONLY) >= 0) n++;
		printf("opened %d more\n", n);
	} else {
		if (setgid(65534) || setuid(65534)) { perror("setuid"); return 1; }
		printf("uid %d\n", getuid());
	}
	printf("%.5s\n", m + (40 << 20));
	p[(40 << 20) + 1] = 'E';
	printf("%.5s\n", p + (40 << 20));
	return 0;
}
`

// TestFileMappingFDs checks that host file pages are mapped whatever the
// program did to its descriptors and credentials since the mmap: at its
// soft RLIMIT_NOFILE (lowered by the program, or the one vmspace started
// with, at which vmspace keeps the memory file), and after changing its
// user id (then vmspace's
// descriptors are out of its reach, and the file is opened by its path,
// which must be reachable by the new user: the program and its directory
// are made so).
func TestFileMappingFDs(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "fds", fileFDProgram, false)
	compare(t, t.TempDir(), "", exe, "l")
	// At the soft limit vmspace was started with, where it keeps the
	// memory file's descriptor: the open must go past it.
	vm := filepath.Join(t.TempDir(), "vmspace")
	if out, err := exec.Command("go", "build", "-o", vm, "github.com/vmspace/vmspace/cmd/vmspace").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	const lower = "ulimit -S -n 64; exec "
	want := runNative(t, t.TempDir(), "", "sh", "-c", lower+exe+" L")
	got := runNative(t, t.TempDir(), "", "sh", "-c", lower+vm+" run -- "+exe+" L")
	if got != want {
		t.Errorf("at a soft RLIMIT_NOFILE of 64: %+v under vmspace, %+v natively", got, want)
	}
	if os.Geteuid() != 0 {
		t.Skip("changing user ids needs root")
	}
	dir, exe := reachableByNobody(t, exe)
	compare(t, dir, "", exe, "u")
}
