package sandbox

import (
	"strings"
	"testing"
)

// vdsoProgram looks at its vDSO: AT_SYSINFO_EHDR, the [vvar],
// [vvar_vclock] and [vdso] lines of /proc/self/maps, clock_gettime in it
// and in a fork child, and what munmap, mprotect, mremap and mmap do to
// it.
const vdsoProgram = `
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static sigjmp_buf jb;
static void onsegv(int sig) { siglongjmp(jb, 1); }

// readable reports whether the byte at p can be read by the program.
static int readable(volatile char *p) {
	if (sigsetjmp(jb, 1)) return 0;
	(void)*p;
	return 1;
}

struct piece { unsigned long start, end; char perms[5]; char name[32]; };

static int pieces(struct piece *out) {
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	int n = 0;
	while (fgets(line, sizeof line, f)) {
		struct piece p;
		char name[256] = "";
		if (sscanf(line, "%lx-%lx %4s %*s %*s %*s %255s", &p.start, &p.end, p.perms, name) < 3) continue;
		if (strcmp(name, "[vdso]") && strcmp(name, "[vvar]") && strcmp(name, "[vvar_vclock]")) continue;
		snprintf(p.name, sizeof p.name, "%s", name);
		out[n++] = p;
	}
	fclose(f);
	return n;
}

static void show(const char *what, long r) {
	if (r < 0) printf("%s: -1 %s\n", what, strerrorname_np(errno));
	else printf("%s: %ld\n", what, r);
}

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IONBF, 0);
	signal(SIGSEGV, onsegv);
	unsigned long ehdr = getauxval(AT_SYSINFO_EHDR);
	printf("AT_SYSINFO_EHDR %s\n", ehdr ? "present" : "absent");
	struct piece p[8];
	int n = pieces(p);
	unsigned long vdso = 0, lo = ~0UL, hi = 0;
	for (int i = 0; i < n; i++) {
		printf("%s %s %lu pages%s\n", p[i].name, p[i].perms, (p[i].end - p[i].start) / 4096,
		       i > 0 && p[i].start == p[i - 1].end ? " (follows)" : "");
		if (!strcmp(p[i].name, "[vdso]")) vdso = p[i].start;
		if (p[i].start < lo) lo = p[i].start;
		if (p[i].end > hi) hi = p[i].end;
	}
	printf("[vdso] at AT_SYSINFO_EHDR: %d\n", vdso == ehdr);
	printf("ELF magic: %d\n", vdso && memcmp((void *)vdso, "\177ELF", 4) == 0);
	struct timespec ts;
	printf("clock_gettime: %d\n", clock_gettime(CLOCK_MONOTONIC, &ts) == 0 && ts.tv_sec + ts.tv_nsec > 0);
	pid_t ch = fork();
	if (ch == 0) {
		struct piece q[8];
		int m = pieces(q);
		printf("child: %d pieces, same place %d, clock %d\n", m, m == n && q[0].start == p[0].start,
		       clock_gettime(CLOCK_REALTIME, &ts) == 0 && ts.tv_sec > 1000000000);
		_exit(0);
	}
	waitpid(ch, NULL, 0);
	if (!vdso) return 0;
	// Linux does not split special mappings, nor grow them.
	show("munmap part of [vdso]", munmap((void *)vdso + 4096, 4096));
	show("mprotect part of [vdso]", mprotect((void *)vdso, 4096, PROT_READ));
	show("mprotect [vvar] writable", mprotect((void *)lo, 4096 * 4, PROT_READ | PROT_WRITE));
	show("mremap grow [vdso]", (long)mremap((void *)vdso, 2 * 4096, 3 * 4096, MREMAP_MAYMOVE));
	// Made writable, written (a private copy), made read-only again.
	show("mprotect [vdso] rw", mprotect((void *)vdso, 2 * 4096, PROT_READ | PROT_WRITE | PROT_EXEC));
	((char *)vdso)[4095] ^= 1;
	show("mprotect [vdso] r-x", mprotect((void *)vdso, 2 * 4096, PROT_READ | PROT_EXEC));
	printf("after: %d pieces\n", pieces(p));
	// Moved whole, block by block, somewhere else.
	char *dst = mmap(NULL, hi - lo, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	for (int i = 0; i < n; i++) {
		void *r = mremap((void *)p[i].start, p[i].end - p[i].start, p[i].end - p[i].start,
				 MREMAP_MAYMOVE | MREMAP_FIXED, dst + (p[i].start - lo));
		if (r == MAP_FAILED) printf("mremap %s: %s\n", p[i].name, strerrorname_np(errno));
	}
	unsigned long nvdso = (unsigned long)dst + (vdso - lo);
	int np = pieces(p);
	printf("moved: readable old %d new %d, magic %d, %d pieces, [vdso] moved %d\n", readable((char *)vdso),
	       readable((char *)nvdso), memcmp((void *)nvdso, "\177ELF", 4) == 0, np, p[np - 1].start == nvdso);
	// Unmapped: gone.
	show("munmap [vdso]", munmap((void *)nvdso, 2 * 4096));
	printf("unmapped: readable %d, %d pieces\n", readable((char *)nvdso), pieces(p));
	// A mapping placed over [vvar].
	void *over = mmap(dst, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	printf("mapped over part of [vvar]: %d, %d pieces\n", over == dst, pieces(p));
	return 0;
}
`

// TestVDSO: a program has the host's vDSO as natively: AT_SYSINFO_EHDR
// names it, /proc/self/maps shows its pieces, clock_gettime works in it
// and in a fork child, and munmap, mprotect, mremap and mmap treat it as
// Linux treats special mappings (no splitting, no growing, moved whole,
// gone when unmapped).
func TestVDSO(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "vdso", vdsoProgram, false)
	compare(t, "", "", exe)
}

// TestLddVDSO: ldd lists linux-vdso.so.1 under vmspace, as natively.
func TestLddVDSO(t *testing.T) {
	needPtrace(t)
	need(t, "ldd")
	exe := buildC(t, "layout", layoutProgram, false)
	want := runNative(t, "", "", "ldd", exe)
	if !strings.Contains(want.stdout, "linux-vdso.so.1") {
		t.Skipf("natively ldd does not list linux-vdso.so.1:\n%s", want.stdout)
	}
	got, _ := sandboxRun(t, "", "", Options{}, "ldd", exe)
	if !strings.Contains(got.stdout, "linux-vdso.so.1") {
		t.Errorf("ldd under vmspace lists no linux-vdso.so.1:\n%s", got.stdout)
	}
}
