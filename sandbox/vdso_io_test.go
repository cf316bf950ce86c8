package sandbox

import (
	"bytes"
	"debug/elf"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// vdsoReadProgram reads its vDSO pieces through the kernel:
// process_vm_readv and /proc/self/mem (whole pieces, and across the
// boundary of [vvar_vclock] and [vdso]), writes [vdso] through
// /proc/self/mem (a forced write breaks copy-on-write) and
// process_vm_writev (refused), and checks that clock_gettime still works.
const vdsoReadProgram = `
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static int find(const char *name, unsigned long *lo, unsigned long *hi) {
	FILE *f = fopen("/proc/self/maps", "r");
	char l[512];
	*lo = *hi = 0;
	while (fgets(l, sizeof l, f)) {
		char *n = strrchr(l, ' ');
		if (n && !strncmp(n + 1, name, strlen(name)) && n[1 + strlen(name)] == '\n') {
			sscanf(l, "%lx-%lx", lo, hi);
			break;
		}
	}
	fclose(f);
	return *lo != 0;
}

static void show(const char *what, long n, void *buf, void *at) {
	printf("%s: %ld %s", what, n, n < 0 ? strerrorname_np(errno) : "");
	if (n > 0) printf(" same %d", memcmp(buf, at, n) == 0);
	printf("\n");
}

int main(void) {
	const char *names[] = {"[vdso]", "[vvar]", "[vvar_vclock]"};
	int mem = open("/proc/self/mem", O_RDWR);
	if (mem < 0) { perror("open"); return 2; }
	char buf[65536];
	for (int i = 0; i < 3; i++) {
		unsigned long lo, hi;
		if (!find(names[i], &lo, &hi)) { printf("%s absent\n", names[i]); continue; }
		size_t len = hi - lo;
		struct iovec l = {buf, len}, r = {(void *)lo, len};
		char what[64];
		errno = 0;
		snprintf(what, sizeof what, "%s process_vm_readv", names[i]);
		show(what, process_vm_readv(getpid(), &l, 1, &r, 1, 0), buf, (void *)lo);
		errno = 0;
		snprintf(what, sizeof what, "%s /proc/self/mem", names[i]);
		show(what, pread(mem, buf, len, lo), buf, (void *)lo);
		errno = 0;
		snprintf(what, sizeof what, "%s /proc/self/mem, last 8 bytes on", names[i]);
		show(what, pread(mem, buf, 16, hi - 8), buf, (void *)(hi - 8));
		errno = 0;
		snprintf(what, sizeof what, "%s process_vm_writev", names[i]);
		l.iov_len = r.iov_len = 1;
		show(what, process_vm_writev(getpid(), &l, 1, &r, 1, 0), buf, (void *)lo);
	}
	unsigned long lo, hi;
	if (find("[vdso]", &lo, &hi)) {
		// Byte 9 of the ELF header (e_ident padding) is never used.
		volatile unsigned char *p = (unsigned char *)lo + 9;
		unsigned char was = *p, c = was ^ 0x5a;
		errno = 0;
		long n = pwrite(mem, &c, 1, lo + 9);
		printf("forced write of [vdso]: %ld %s, program sees %s\n", n, n < 0 ? strerrorname_np(errno) : "",
			*p == c ? "the new byte" : *p == was ? "the old byte" : "something else");
		unsigned char back = 0;
		n = pread(mem, &back, 1, lo + 9);
		printf("read back: %ld %s\n", n, back == c ? "the new byte" : "the old byte");
	}
	struct timespec ts;
	printf("clock_gettime %d\n", clock_gettime(CLOCK_MONOTONIC, &ts));
	return 0;
}
`

// TestVDSORead: a program reads its vDSO through the kernel as natively:
// [vdso] is read by process_vm_readv and /proc/self/mem, the data pages
// are not (EFAULT, EIO), a forced write lands in the program's [vdso].
func TestVDSORead(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "vdsoread", vdsoReadProgram, false)
	want := runNative(t, "", "", exe)
	t.Logf("natively:\n%s", want.stdout)
	compare(t, "", "", exe)
}

// vdsoAdviseProgram madvises each vDSO piece, all of it and its first page
// only, with every advice, each in a fork child, and prints the result and
// whether the piece was split.
const vdsoAdviseProgram = `
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static int find(const char *name, unsigned long *lo, unsigned long *hi) {
	FILE *f = fopen("/proc/self/maps", "r");
	char l[512];
	int n = 0;
	while (fgets(l, sizeof l, f)) {
		char *s = strrchr(l, ' ');
		if (s && !strncmp(s + 1, name, strlen(name)) && s[1 + strlen(name)] == '\n' && !n++)
			sscanf(l, "%lx-%lx", lo, hi);
	}
	fclose(f);
	return n;
}

int main(void) {
	const char *names[] = {"[vdso]", "[vvar]", "[vvar_vclock]"};
	int advs[] = {0, 1, 2, 3, 4, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 25, 102, 103};
	for (int i = 0; i < 3; i++) {
		unsigned long lo, hi;
		if (!find(names[i], &lo, &hi)) continue;
		for (int whole = 0; whole < 2; whole++) {
			if (!whole && hi - lo == 4096) continue;
			printf("%s %s:", names[i], whole ? "whole" : "first page");
			fflush(stdout);
			for (unsigned a = 0; a < sizeof advs / sizeof advs[0]; a++) {
				pid_t pid = fork();
				if (pid == 0) {
					errno = 0;
					int rc = madvise((void *)lo, whole ? hi - lo : 4096, advs[a]);
					unsigned long l2, h2;
					int n = find(names[i], &l2, &h2);
					printf(" %d=%s%s", advs[a], rc ? strerrorname_np(errno) : "0", n > 1 ? "/split" : "");
					fflush(stdout);
					_exit(0);
				}
				int st;
				waitpid(pid, &st, 0);
				if (!WIFEXITED(st)) printf(" %d=signal %d", advs[a], WTERMSIG(st));
			}
			printf("\n");
		}
	}
	return 0;
}
`

// TestVDSOAdvise: madvise of the vDSO pieces answers as Linux's: an advice
// that would change the flags of part of a piece fails (special mappings
// are never split), the data pages refuse what VM_PFNMAP|VM_IO refuse.
func TestVDSOAdvise(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "vdsoadvise", vdsoAdviseProgram, false)
	compare(t, "", "", exe)
}

// vdsoCoreProgram saves its [vdso] to argv[1], prints its address and
// aborts.
const vdsoCoreProgram = `
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
	FILE *f = fopen("/proc/self/maps", "r");
	char l[512];
	unsigned long lo = 0, hi = 0;
	while (fgets(l, sizeof l, f))
		if (strstr(l, "[vdso]")) sscanf(l, "%lx-%lx", &lo, &hi);
	if (!lo) return 2;
	FILE *o = fopen(argv[1], "w");
	fwrite((void *)lo, 1, hi - lo, o);
	fclose(o);
	printf("%lx\n", lo);
	fflush(stdout);
	abort();
}
`

// TestVDSOCore: a core dump holds the program's [vdso] pages, as Linux's
// (which always dumps special mappings).
func TestVDSOCore(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "vdsocore", vdsoCoreProgram, false)
	dir := t.TempDir()
	saved, core := filepath.Join(dir, "vdso"), filepath.Join(dir, "core")
	out, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	res, err := Run(Options{Argv: []string{exe, saved}, CoreFile: core, Stdout: out})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode() != 128+6 || !res.Stats.CoreDumped {
		t.Fatalf("status %d, core dumped %v (%v)", res.ExitCode(), res.Stats.CoreDumped, res.Stats.CoreErr)
	}
	want, err := os.ReadFile(saved)
	if err != nil || len(want) == 0 {
		t.Fatalf("saved vDSO: %v", err)
	}
	printed, err := os.ReadFile(out.Name())
	if err != nil {
		t.Fatal(err)
	}
	addr, err := strconv.ParseUint(strings.TrimSpace(string(printed)), 16, 64)
	if err != nil {
		t.Fatalf("address %q: %v", printed, err)
	}
	f, err := elf.Open(core)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD || p.Vaddr != addr {
			continue
		}
		if p.Filesz != uint64(len(want)) {
			t.Fatalf("the core holds %d bytes of [vdso] at %#x, want %d", p.Filesz, addr, len(want))
		}
		got := make([]byte, p.Filesz)
		if _, err := p.ReadAt(got, 0); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("the core's [vdso] at %#x differs from the program's (first bytes %q, want %q)", addr, got[:8], want[:8])
		}
		return
	}
	t.Errorf("no PT_LOAD of the core at [vdso] (%#x)", addr)
}
