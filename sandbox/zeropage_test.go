package sandbox

import (
	"testing"

	"github.com/vmspace/vmspace/mm"
)

// zeroPageProgram shows, for private anonymous memory that is read before
// it is written, what Linux's shared zero page makes visible: the resident
// set (RssAnon) does not grow with pages only read, mincore says 1 for
// them (and 0 for their untouched neighbours), pagemap shows them present
// and not exclusive, PAGEMAP_SCAN's PAGE_IS_PFNZERO finds them; MADV_PAGEOUT
// and MADV_FREE leave them, MADV_DONTNEED drops them; a write replaces the
// page written alone; fork copies them only in a vma that has an anon_vma;
// mremap moves them. Run with a case name, it prints what it sees.
const zeroPageProgram = `#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>

` + pagemapScanDecls + `#define PFNZERO 0x20
#define PRESENT 8

static int pmfd;
// barrier keeps the compiler from moving a store before the reads that
// come first in the source (a write first would allocate the unit).
#define barrier() __asm__ volatile("" ::: "memory")
static volatile char sink;

// rss returns the field (kB) of /proc/self/status.
static long status(const char *field) {
	char buf[8192];
	int fd = open("/proc/self/status", O_RDONLY);
	int n = read(fd, buf, sizeof buf - 1);
	close(fd);
	buf[n > 0 ? n : 0] = 0;
	char *p = strstr(buf, field);
	return p ? atol(p + strlen(field) + 1) : -1;
}

// state prints a letter per page: z present zero page, x present
// exclusive, p present shared, . absent; then mincore's answer.
static void state(const char *what, char *b, int n) {
	printf("%-22s", what);
	for (int i = 0; i < n; i++) {
		uint64_t e = 0;
		pread(pmfd, &e, 8, (uintptr_t)(b + i * PG) / PG * 8);
		struct page_region r;
		struct pm_scan_arg a = { sizeof a, 0, (uintptr_t)(b + i * PG), (uintptr_t)(b + (i + 1) * PG), 0, (uintptr_t)&r, 1, 0, 0, 0, PFNZERO, PFNZERO };
		long z = ioctl(pmfd, PAGEMAP_SCAN, &a);
		putchar(!(e >> 63) ? '.' : z == 1 ? 'z' : (e >> 56) & 1 ? 'x' : 'p');
	}
	unsigned char vec[64];
	mincore(b, n * PG, vec);
	printf(" mincore ");
	for (int i = 0; i < n; i++) putchar('0' + (vec[i] & 1));
	putchar('\n');
}

static char *aligned(unsigned long len) {
	char *m = mmap(0, len + HP, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return (char *)(((uintptr_t)m + HP - 1) & ~(HP - 1));
}

int main(int argc, char **argv) {
	setvbuf(stdout, 0, _IOLBF, 0);
	pmfd = open("/proc/self/pagemap", O_RDONLY);
	const char *c = argc > 1 ? argv[1] : "";
	if (!strcmp(c, "rss")) {
		// RSS after reading many fresh pages: the zero page is not counted.
		long n = 400;
		char *b = mmap(0, n * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		long r0 = status("RssAnon:");
		for (long i = 0; i < n; i++) sink = b[i * PG];
		long r1 = status("RssAnon:");
		long zero = 0;
		for (long i = 0; i < n; i++) zero += b[i * PG] == 0;
		unsigned char *vec = malloc(n);
		mincore(b, n * PG, vec);
		long res = 0;
		for (long i = 0; i < n; i++) res += vec[i] & 1;
		struct page_region r[4];
		struct pm_scan_arg a = { sizeof a, 0, (uintptr_t)b, (uintptr_t)(b + n * PG), 0, (uintptr_t)r, 4, 0, 0, 0, PFNZERO, PFNZERO };
		long k = ioctl(pmfd, PAGEMAP_SCAN, &a);
		printf("read %ld pages: RssAnon %+ld kB, %ld zero, %ld resident, PFNZERO regions %ld pages %ld\n", n, r1 - r0, zero, res, k, k == 1 ? (long)(r[0].end - r[0].start) / (long)PG : -1);
		for (long i = 0; i < n; i += 2) b[i * PG] = 1;
		state("first pages", b, 8);
		return 0;
	}
	char *b = aligned(HP);
	if (!strcmp(c, "pages")) {
		// mincore and pagemap after reads; pageout, free, dontneed; a write.
		sink = b[1 * PG]; sink = b[3 * PG]; sink = b[4 * PG]; sink = b[5 * PG];
		state("read 1,3,4,5", b, 8);
		printf("pageout 3 = %d\n", madvise(b + 3 * PG, PG, MADV_PAGEOUT));
		printf("free 4 = %d\n", madvise(b + 4 * PG, PG, MADV_FREE));
		state("pageout 3, free 4", b, 8);
		printf("dontneed 5 = %d\n", madvise(b + 5 * PG, PG, MADV_DONTNEED));
		state("dontneed 5", b, 8);
		b[3 * PG] = 7;
		state("wrote 3", b, 8);
		printf("page 3 %d, page 4 %d\n", b[3 * PG], b[4 * PG]);
		printf("populate_read 6-7 = %d\n", madvise(b + 6 * PG, 2 * PG, MADV_POPULATE_READ));
		state("populated 6-7", b, 8);
		printf("mprotect ro = %d\n", mprotect(b, 8 * PG, PROT_READ));
		state("read-only", b, 8);
		printf("mprotect rw = %d\n", mprotect(b, 8 * PG, PROT_READ | PROT_WRITE));
		b[1 * PG] = 1;
		state("wrote 1", b, 8);
		return 0;
	}
	if (!strcmp(c, "fork")) {
		// A vma only read has no anon_vma: the child gets no entries;
		// one written too copies its zero-page entries.
		char *w = aligned(HP);
		sink = b[1 * PG]; sink = b[2 * PG];
		sink = w[1 * PG]; barrier(); w[3 * PG] = 1;
		state("parent read", b, 4);
		state("parent read, wrote 3", w, 4);
		pid_t p = fork();
		if (p == 0) {
			pmfd = open("/proc/self/pagemap", O_RDONLY);
			state("child read", b, 4);
			state("child read, wrote 3", w, 4);
			w[1 * PG] = 2;
			state("child wrote 1", w, 4);
			_exit(0);
		}
		waitpid(p, 0, 0);
		state("parent after", w, 4);
		printf("parent page 1: %d\n", w[1 * PG]);
		return 0;
	}
	if (!strcmp(c, "mremap")) {
		sink = b[0]; sink = b[PG]; barrier(); b[2 * PG] = 1;
		char *t = mmap(0, 8 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		char *m = mremap(b, 4 * PG, 4 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, t + 2 * PG);
		state("moved", m, 4);
		m[0] = 3;
		state("wrote moved 0", m, 4);
		return 0;
	}
	return 2;
}
`

// pagemapScanDecls are the C declarations of PAGEMAP_SCAN (linux/fs.h's,
// which older headers lack) and the page sizes, for the test programs.
const pagemapScanDecls = `#define PG 4096UL
#define HP (2UL << 20)
struct page_region { uint64_t start, end, categories; };
struct pm_scan_arg { uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages, category_inverted, category_mask, category_anyof_mask, return_mask; };
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
`

// TestZeroPage compares zeroPageProgram's cases natively and under
// vmspace, on hosts whose kernel has the shared zero page.
//
// Known difference left: a page read after a write allocated its
// allocation unit (the huge page around the written page, mapped whole so
// that a first store costs one fault per unit under ptrace, not one or two
// per page) reads the memory file's page, not the zero page: it counts in
// RSS and has no PAGE_IS_PFNZERO (TestUffdWPScan's "scan" case).
func TestZeroPage(t *testing.T) {
	needPtrace(t)
	if mm.HostLimits().NoZeroPage {
		t.Skip("the host has no shared zero page")
	}
	exe := buildC(t, "zeropage", zeroPageProgram, true)
	for _, c := range []string{"rss", "pages", "fork", "mremap"} {
		t.Run(c, func(t *testing.T) {
			compare(t, "", "", exe, c)
		})
	}
}
