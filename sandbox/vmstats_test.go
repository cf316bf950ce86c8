package sandbox

import (
	"fmt"
	"strings"
	"testing"
)

// vmPTEProgram prints VmPTE at its start and after mappings placed and
// touched in regions of their own (so that the tables they need do not
// depend on the layout): Linux keeps a page-table page at each level
// for every region of that level's size (2 MiB, 1 GiB, 512 GiB) with a
// populated page, and munmap frees those no mapping shares.
const vmPTEProgram = `
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static char buf[8192];

static long pte(void) {
	int fd = open("/proc/self/status", O_RDONLY);
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	buf[n > 0 ? n : 0] = 0;
	return atol(strstr(buf, "VmPTE:") + 6);
}

static char *map(unsigned long at, size_t len) {
	char *p = mmap((void *)at, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (p == MAP_FAILED) { perror("mmap"); exit(1); }
	return p;
}

static long v[16];

int main(void) {
	int i = 0;
	v[i++] = pte();
	/* In a 512 GiB region of their own: one page in each 2 MiB of
	   64 MiB (32 PTE tables, a PMD and a PUD table). */
	char *a = map(0x200000000000UL, 64 << 20);
	for (size_t o = 0; o < 64 << 20; o += 2 << 20) a[o] = 1;
	v[i++] = pte();
	/* Every page of 4 MiB in the next GiB: two PTE tables, a PMD. */
	char *b = map(0x200040000000UL, 4 << 20);
	memset(b, 1, 4 << 20);
	v[i++] = pte();
	/* Mapped, untouched: no table. */
	char *c = map(0x200080000000UL, 64 << 20);
	v[i++] = pte();
	/* A page straddling nothing, in another 512 GiB: three tables. */
	char *d = map(0x300000000000UL, 4096);
	d[0] = 1;
	v[i++] = pte();
	/* Two pages either side of a 2 MiB boundary: two PTE tables. */
	char *e = map(0x3000001ff000UL, 8192);
	e[0] = e[4096] = 1;
	v[i++] = pte();
	/* munmap frees the tables no other mapping shares. */
	munmap(d, 4096);
	v[i++] = pte();
	munmap(e, 8192);
	v[i++] = pte();
	munmap(a, 64 << 20);
	v[i++] = pte();
	munmap(b, 4 << 20);
	munmap(c, 64 << 20);
	v[i++] = pte();
	printf("VmPTE at the start: %ld kB\n", v[0]);
	for (int j = 1; j < i; j++) printf("step %d: VmPTE %+ld kB\n", j, v[j] - v[0]);
	return 0;
}
`

// TestVmPTE: /proc/self/status's VmPTE is Linux's page-table size, at the
// start (the address space exec made, with ASLR off so that the layout is
// Linux's) and after each mapping.
func TestVmPTE(t *testing.T) {
	needPtrace(t)
	need(t, "setarch")
	exe := buildC(t, "vmpte", vmPTEProgram, false)
	compare(t, "", "", "setarch", "-R", exe)
}

// vmHWMProgram prints VmHWM and VmRSS (growth since its start) after
// touching memory sparsely and densely and dropping it.
const vmHWMProgram = `
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static char buf[8192];

/* status reads VmHWM and VmRSS (kB) without touching new memory. */
static void status(long *hwm, long *rss) {
	int fd = open("/proc/self/status", O_RDONLY);
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	buf[n > 0 ? n : 0] = 0;
	*hwm = atol(strstr(buf, "VmHWM:") + 6);
	*rss = atol(strstr(buf, "VmRSS:") + 6);
}

static long h[8], r[8];

int main(void) {
	const size_t big = 64 << 20, step = 256 << 10;
	status(&h[0], &r[0]);
	/* Sparse: one page every 256 KiB of 64 MiB (1 MiB resident). */
	char *p = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	for (size_t o = 0; o < big; o += step) p[o] = 1;
	status(&h[1], &r[1]);
	munmap(p, big);
	status(&h[2], &r[2]);
	/* Dense: 8 MiB touched, then dropped with MADV_DONTNEED. */
	p = mmap(NULL, 8 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(p, 1, 8 << 20);
	status(&h[3], &r[3]);
	madvise(p, 8 << 20, MADV_DONTNEED);
	status(&h[4], &r[4]);
	/* Grow again below the peak, then shrink: the peak stays. */
	memset(p, 1, 4 << 20);
	munmap(p, 8 << 20);
	status(&h[5], &r[5]);
	for (int i = 1; i <= 5; i++)
		printf("step %d: VmHWM %+ld kB VmRSS %+ld kB\n", i, h[i] - r[0], r[i] - r[0]);
	return 0;
}
`

// TestVmHWM: VmHWM is the peak of the resident set (Linux raises
// hiwater_rss to the RSS before every unmap), not of the memory vmspace
// has set aside for the program (2 MiB at a time for a large mapping).
// Linux's RSS counters are per-CPU and read approximately, so the figures
// are compared within a tolerance.
func TestVmHWM(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "vmhwm", vmHWMProgram, false)
	want, got := runBoth(t, exe)
	if got.code != 0 || want.code != 0 {
		t.Fatalf("exit %d natively, %d under vmspace: %s%s", want.code, got.code, want.stderr, got.stderr)
	}
	parse := func(out string) [][2]int {
		var r [][2]int
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			var step, hwm, rss int
			if _, err := fmt.Sscanf(l, "step %d: VmHWM %d kB VmRSS %d kB", &step, &hwm, &rss); err != nil {
				t.Fatalf("%q: %v", l, err)
			}
			r = append(r, [2]int{hwm, rss})
		}
		return r
	}
	w, g := parse(want.stdout), parse(got.stdout)
	if len(w) != len(g) {
		t.Fatalf("natively:\n%s\nunder vmspace:\n%s", want.stdout, got.stdout)
	}
	const tolerance = 512 // kB
	for i := range w {
		for j, name := range []string{"VmHWM", "VmRSS"} {
			if d := g[i][j] - w[i][j]; d > tolerance || d < -tolerance {
				t.Errorf("step %d: %s grew %d kB under vmspace, %d kB natively", i+1, name, g[i][j], w[i][j])
			}
		}
	}
	if t.Failed() {
		t.Logf("natively:\n%s\nunder vmspace:\n%s", want.stdout, got.stdout)
	}
}
