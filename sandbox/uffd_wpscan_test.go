package sandbox

import (
	"strings"
	"testing"

	"github.com/vmspace/vmspace/mm"
)

// uffdWPScanProgram exercises userfaultfd's asynchronous write protection
// as /proc/self/pagemap shows it (bit 57, PM_UFFD_WP, on present pages
// and on the markers of unpopulated ones) and PAGEMAP_SCAN with the
// write-protect categories and PM_SCAN_WP_MATCHING. Run with a case name,
// it prints what it sees, which must be the same natively and under
// vmspace.
const uffdWPScanProgram = `
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sched.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

` + pagemapScanDecls + `#define WP_MATCHING 1
#define CHECK_WPASYNC 2
#define WPALLOWED 1
#define WRITTEN 2
#define PRESENT 8
#define ALLC 0x1ff
#define F_WP_UNPOPULATED (1 << 13)
#define F_WP_ASYNC (1 << 15)
#define F_EVENT_FORK (1 << 1)
#define F_EVENT_REMAP (1 << 2)

static int pmfd, uffd;

// show prints a letter per page: p present, W present and write-protected,
// M a write-protect marker, s swapped, . nothing; raw prints the entries'
// flag bits (the frame only for markers, whose frame is fixed).
static void show(const char *what, char *b, int n) {
	printf("%-28s", what);
	for (int i = 0; i < n; i++) {
		uint64_t e = 0;
		if (pread(pmfd, &e, 8, (uintptr_t)(b + i * PG) / PG * 8) != 8) { printf("pread: %s", strerror(errno)); break; }
		int wp = (e >> 57) & 1, pres = (e >> 63) & 1, sw = (e >> 62) & 1;
		putchar(pres ? (wp ? 'W' : 'p') : sw ? (wp ? 'M' : 's') : wp ? '?' : '.');
	}
	putchar('\n');
}

static void raw(const char *what, char *b) {
	uint64_t e = 0;
	pread(pmfd, &e, 8, (uintptr_t)b / PG * 8);
	printf("%-28s%016llx\n", what, (unsigned long long)((e >> 62) == 1 ? e : e & ~((1ULL << 55) - 1)));
}

static long scan(const char *what, char *b, int n, uint64_t flags, uint64_t mask, uint64_t anyof, uint64_t inv, uint64_t ret, int veclen, uint64_t maxp) {
	struct page_region vec[64];
	struct pm_scan_arg a = { .size = sizeof(a), .flags = flags, .start = (uintptr_t)b, .end = (uintptr_t)(b + n * PG),
		.vec = veclen ? (uintptr_t)vec : 0, .vec_len = veclen, .max_pages = maxp,
		.category_inverted = inv, .category_mask = mask, .category_anyof_mask = anyof, .return_mask = ret };
	long r = ioctl(pmfd, PAGEMAP_SCAN, &a);
	printf("%-28s= %ld", what, r);
	if (r < 0) printf(" (%s)", strerror(errno));
	printf(" walk_end=%+ld:", (long)((char *)a.walk_end - b) / (long)PG);
	for (long i = 0; i < r; i++)
		printf(" [%ld,%ld)%#llx", (long)((char *)vec[i].start - b) / (long)PG, (long)((char *)vec[i].end - b) / (long)PG, (unsigned long long)vec[i].categories);
	printf("\n");
	return r;
}

static int setup(uint64_t features) {
	pmfd = open("/proc/self/pagemap", O_RDONLY);
	uffd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | ((features & F_EVENT_FORK) ? 0 : 1));
	if (uffd < 0) { printf("userfaultfd: %s\n", strerror(errno)); return -1; }
	struct uffdio_api api = { .api = UFFD_API, .features = features };
	if (ioctl(uffd, UFFDIO_API, &api)) { printf("API: %s\n", strerror(errno)); return -1; }
	return 0;
}

static int reg(char *b, unsigned long len) {
	struct uffdio_register r = { .range = { (uintptr_t)b, len }, .mode = UFFDIO_REGISTER_MODE_WP };
	int x = ioctl(uffd, UFFDIO_REGISTER, &r);
	printf("REGISTER = %d %s\n", x, x ? strerror(errno) : "");
	return x;
}

static char *aligned(void) {
	char *m = mmap(0, 4 * HP, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return (char *)(((uintptr_t)m + HP - 1) & ~(HP - 1));
}

// scancase: the categories of pages before and after registration, of a
// 2 MiB block without page tables, write protection by PAGEMAP_SCAN (all
// at once without an output vector; the written pages it reports, with
// max_pages; the generic walk), and how writes, reads (with reads set),
// MADV_DONTNEED and UFFDIO_WRITEPROTECT show. A page only read maps the
// shared zero page where the kernel has one (PAGE_IS_PFNZERO, 0x20).
static int scancase(int reads) {
	if (setup(F_WP_ASYNC | F_WP_UNPOPULATED)) return 0;
	char *base = aligned();
	for (int i = 0; i < 4; i++) base[i * PG] = 1;
	if (reads) (void)*(volatile char *)(base + 8 * PG);
	show(reads ? "touched 0-3, read 8" : "touched 0-3", base, 16);
	scan("unregistered CHECK", base, 16, CHECK_WPASYNC, WRITTEN, 0, 0, WRITTEN, 8, 0);
	scan("unregistered MATCHING", base, 16, WP_MATCHING, WRITTEN, 0, 0, WRITTEN, 8, 0);
	scan("unregistered all", base, 16, 0, 0, 0, 0, ALLC, 8, 0);
	scan("unregistered WPALLOWED", base, 16, 0, WPALLOWED, 0, 0, ALLC, 8, 0);
	if (reg(base, 2 * HP)) return 0;
	show("registered", base, 16);
	scan("all", base, 16, 0, 0, 0, 0, ALLC, 8, 0);
	scan("untouched block all", base + HP, 4, 0, 0, 0, 0, ALLC, 8, 0);
	scan("WRITTEN", base, 16, 0, WRITTEN, 0, 0, WRITTEN, 8, 0);
	scan("untouched block WRITTEN", base + HP, 4, 0, WRITTEN, 0, 0, WRITTEN, 8, 0);
	scan("CHECK all", base, 16, CHECK_WPASYNC, 0, 0, 0, ALLC, 8, 0);
	scan("WP all (no vector)", base, 16, WP_MATCHING | CHECK_WPASYNC, WRITTEN, 0, 0, WRITTEN, 0, 0);
	show("after", base, 16);
	raw("marker entry", base + 4 * PG);
	raw("protected entry", base);
	scan("all", base, 16, 0, 0, 0, 0, ALLC, 8, 0);
	base[1 * PG] = 2; base[5 * PG] = 2;
	if (reads) (void)*(volatile char *)(base + 6 * PG);
	show(reads ? "wrote 1,5 read 6" : "wrote 1,5", base, 16);
	scan("WRITTEN", base, 16, 0, WRITTEN, 0, 0, WRITTEN, 8, 0);
	scan("all (vector full)", base, 16, 0, 0, 0, 0, ALLC, 8, 0);
	scan("WP written", base, 16, WP_MATCHING, WRITTEN, 0, 0, WRITTEN, 8, 0);
	show("after", base, 16);
	base[2 * PG] = 3; base[3 * PG] = 3; base[9 * PG] = 3;
	scan("WP present+written generic", base, 16, WP_MATCHING, PRESENT, WRITTEN, 0, ALLC, 8, 0);
	show("after", base, 16);
	base[10 * PG] = 3; base[11 * PG] = 3; base[12 * PG] = 3;
	scan("WP written max_pages 2", base, 16, WP_MATCHING, WRITTEN, 0, 0, WRITTEN, 8, 2);
	show("after", base, 16);
	scan("not written", base, 16, 0, WRITTEN, 0, WRITTEN, ALLC, 8, 0);
	madvise(base + 2 * PG, 2 * PG, MADV_DONTNEED);
	show("DONTNEED 2-3", base, 16);
	scan("all", base, 16, 0, 0, 0, 0, ALLC, 8, 0);
	scan("untouched block WP", base + HP, 4, WP_MATCHING, WRITTEN, 0, 0, WRITTEN, 0, 0);
	show("untouched block after", base + HP, 4);
	scan("untouched block all", base + HP, 4, 0, 0, 0, 0, ALLC, 8, 0);
	base[HP + PG] = 1;
	show("wrote its page 1", base + HP, 4);
	scan("untouched block all", base + HP, 4, 0, 0, 0, 0, ALLC, 8, 0);
	struct uffdio_writeprotect w = { { (uintptr_t)base + 12 * PG, 4 * PG }, UFFDIO_WRITEPROTECT_MODE_WP };
	printf("WRITEPROTECT = %d\n", ioctl(uffd, UFFDIO_WRITEPROTECT, &w));
	show("protected 12-15", base, 16);
	w.mode = 0; w.range.start = (uintptr_t)base + 14 * PG; w.range.len = PG;
	printf("unprotect 14 = %d\n", ioctl(uffd, UFFDIO_WRITEPROTECT, &w));
	show("unprotected 14", base, 16);
	struct uffdio_range ur = { (uintptr_t)base, 2 * HP };
	printf("UNREGISTER = %d\n", ioctl(uffd, UFFDIO_UNREGISTER, &ur));
	show("unregistered", base, 16);
	return 0;
}

// patterncase: every other page of a protected region never populated is
// written; each write populates its page only, and the others stay
// protected.
static int patterncase(void) {
	if (setup(F_WP_ASYNC | F_WP_UNPOPULATED)) return 0;
	long n = 1000;
	char *mem = mmap(0, n * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (reg(mem, n * PG)) return 0;
	struct uffdio_writeprotect w = { { (uintptr_t)mem, n * PG }, UFFDIO_WRITEPROTECT_MODE_WP };
	printf("WRITEPROTECT = %d\n", ioctl(uffd, UFFDIO_WRITEPROTECT, &w));
	for (long i = 0; i < n; i += 2) mem[i * PG]++;
	struct page_region vec[500];
	struct pm_scan_arg a = { sizeof a, WP_MATCHING | CHECK_WPASYNC, (uintptr_t)mem, (uintptr_t)(mem + n * PG), 0, (uintptr_t)vec, 500, 0, 0, WRITTEN, 0, WRITTEN };
	long r = ioctl(pmfd, PAGEMAP_SCAN, &a);
	long odd = 0;
	for (long i = 0; i < r; i++) odd += (vec[i].start - (uintptr_t)mem) / PG % 2 + (vec[i].end - vec[i].start != PG);
	printf("written regions %ld, not single even pages %ld\n", r, odd);
	show("first pages", mem, 16);
	printf("again = %ld\n", (long)ioctl(pmfd, PAGEMAP_SCAN, &a));
	return 0;
}

// chunkcase: runs of written pages longer than a walk's chunk and many
// regions, found by one scan with a large vector and by a walk_end loop
// with a small one that write-protects what it reports (pagemap_ioctl's
// "Smaller vec").
static int chunkcase(void) {
	if (setup(F_WP_ASYNC | F_WP_UNPOPULATED)) return 0;
	long n = 3000;
	char *mem = mmap(0, n * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (reg(mem, n * PG)) return 0;
	scan("WP all", mem, n, WP_MATCHING, WRITTEN, 0, 0, WRITTEN, 0, 0);
	long want = 0;
	for (long i = 0; i < n; i++)
		if (i < 600 || (i >= 2000 && i < 2600) || i % 3 == 0) { mem[i * PG] = 1; want++; }
	static struct page_region vec[4096];
	struct pm_scan_arg a = { sizeof a, 0, (uintptr_t)mem, (uintptr_t)(mem + n * PG), 0, (uintptr_t)vec, 4096, 0, 0, WRITTEN, 0, WRITTEN };
	long r = ioctl(pmfd, PAGEMAP_SCAN, &a);
	unsigned long sum = 0, pages = 0;
	for (long i = 0; i < r; i++) {
		long s = (vec[i].start - (uintptr_t)mem) / PG, e = (vec[i].end - (uintptr_t)mem) / PG;
		sum = sum * 31 + s * 7 + e;
		pages += e - s;
		if (e - s > 1) printf("run [%ld,%ld)\n", s, e);
	}
	printf("written %ld pages: %ld regions, %lu pages, sum %lx\n", want, r, pages, sum);
	long calls = 0, found = 0;
	uintptr_t at = (uintptr_t)mem, end = (uintptr_t)(mem + n * PG);
	while (at < end && calls < 10000) {
		struct pm_scan_arg b = { sizeof b, WP_MATCHING | CHECK_WPASYNC, at, end, 0, (uintptr_t)vec, 7, 0, 0, WRITTEN, 0, WRITTEN };
		long k = ioctl(pmfd, PAGEMAP_SCAN, &b);
		if (k < 0) { printf("scan: %s\n", strerror(errno)); break; }
		for (long i = 0; i < k; i++) found += (vec[i].end - vec[i].start) / PG;
		calls++;
		at = b.walk_end;
	}
	printf("small vector: %ld calls, %ld pages\n", calls, found);
	scan("WRITTEN after", mem, n, 0, WRITTEN, 0, 0, WRITTEN, 8, 0);
	mem[511 * PG] = 2; mem[512 * PG] = 2; mem[2999 * PG] = 2;
	scan("WRITTEN 511-512, 2999", mem, n, 0, WRITTEN, 0, 0, WRITTEN, 8, 0);
	return 0;
}

// shmemhandler takes the events of the context: a write-protect fault is
// logged and resolved by removing the protection of its page; a fork is
// logged.
static char shlog[4096];
static char *shbase;
static volatile int forked;
static void *shmemhandler(void *arg) {
	for (;;) {
		struct pollfd p = { uffd, POLLIN };
		poll(&p, 1, -1);
		struct uffd_msg m;
		if (read(uffd, &m, sizeof m) != sizeof m) { if (errno == EAGAIN) continue; return 0; }
		char *l = shlog + strlen(shlog);
		if (m.event == UFFD_EVENT_PAGEFAULT) {
			long pg = (long)((char *)(uintptr_t)m.arg.pagefault.address - shbase) / (long)PG;
			snprintf(l, 64, "fault page %ld flags %#llx\n", pg, (unsigned long long)m.arg.pagefault.flags);
			struct uffdio_writeprotect w = { { (uintptr_t)shbase + pg * PG, PG }, 0 };
			ioctl(uffd, UFFDIO_WRITEPROTECT, &w);
		} else if (m.event == UFFD_EVENT_FORK) {
			snprintf(l, 64, "fork event\n");
			__atomic_store_n(&forked, 1, __ATOMIC_RELEASE);
		}
	}
}

// wpshow prints a letter per page: w if pagemap says userfaultfd
// write-protects it (a present page or a marker), else '.'. (Whether a
// page of shared memory outside registered ranges is present is not
// compared: vmspace maps the file's pages around a fault at once.)
static void wpshow(const char *what, char *b, int n) {
	printf("%-28s", what);
	for (int i = 0; i < n; i++) {
		uint64_t e = 0;
		pread(pmfd, &e, 8, (uintptr_t)(b + i * PG) / PG * 8);
		putchar((e >> 57) & 1 ? 'w' : '.');
	}
	putchar('\n');
}

// shmemcase: write protection of shared memory (a memfd): pages not
// mapped get markers, a read maps the page protected, a write is a
// write-protect fault, MADV_DONTNEED of a protected page leaves a marker,
// a fork's child sees the protection only with UFFD_EVENT_FORK, and
// removing the protection removes the markers.
static int shmemcase(uint64_t event) {
	if (setup((1 << 12) | event)) return 0;
	// Larger than the mappings vmspace maps at once (eagerFileMap).
	unsigned long len = 17UL << 20;
	int fd = memfd_create("wp", 0);
	ftruncate(fd, len);
	char *b = mmap(0, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	shbase = b;
	if (reg(b, len)) return 0;
	b[0] = 1; b[PG] = 1;
	show("touched 0-1", b, 8);
	pthread_t th;
	pthread_create(&th, 0, shmemhandler, 0);
	struct uffdio_writeprotect w = { { (uintptr_t)b, 8 * PG }, UFFDIO_WRITEPROTECT_MODE_WP };
	printf("WRITEPROTECT = %d\n", ioctl(uffd, UFFDIO_WRITEPROTECT, &w));
	show("protected", b, 8);
	printf("read 3: %d\n", *(volatile char *)(b + 3 * PG));
	show("read 3", b, 8);
	b[4 * PG] = 9;
	show("wrote 4", b, 8);
	printf("DONTNEED 0-1, 4 = %d %d\n", madvise(b, 2 * PG, MADV_DONTNEED), madvise(b + 4 * PG, PG, MADV_DONTNEED));
	show("dropped 0-1, 4", b, 8);
	raw("marker entry", b);
	b[PG] = 3;
	show("wrote 1", b, 8);
	printf("read 0: %d\n", *(volatile char *)b);
	show("read 0", b, 8);
	printf("DONTNEED 0 = %d\n", madvise(b, PG, MADV_DONTNEED));
	pid_t c = fork();
	if (c == 0) {
		pmfd = open("/proc/self/pagemap", O_RDONLY);
		wpshow("child", b, 8);
		_exit(0);
	}
	waitpid(c, 0, 0);
	// The fork waited for its event to be read, not for the log.
	while (event && !__atomic_load_n(&forked, __ATOMIC_ACQUIRE))
		sched_yield();
	show("parent after fork", b, 8);
	w.mode = 0;
	printf("unprotect = %d\n", ioctl(uffd, UFFDIO_WRITEPROTECT, &w));
	show("unprotected", b, 8);
	b[5 * PG] = 1; b[0] = 2;
	show("wrote 0, 5", b, 8);
	printf("page 0: %d, page 4: %d\n", b[0], b[4 * PG]);
	printf("%s", shlog);
	return 0;
}

// reader consumes the events of the context, which Linux's fork and mremap
// wait for when they are asked for.
static void *reader(void *arg) {
	for (;;) {
		struct pollfd p = { uffd, POLLIN };
		poll(&p, 1, -1);
		struct uffd_msg m;
		if (read(uffd, &m, sizeof m) < 0 && errno != EAGAIN) return 0;
	}
}

// movecase: protected pages and markers after mremap and fork, with and
// without the event that keeps the registration.
static int movecase(uint64_t event) {
	if (setup(F_WP_ASYNC | F_WP_UNPOPULATED | event)) return 0;
	pthread_t th;
	pthread_create(&th, 0, reader, 0);
	char *b = aligned();
	for (int i = 0; i < 4; i++) b[i * PG] = 1;
	if (reg(b, 16 * PG)) return 0;
	scan("WP all", b, 16, WP_MATCHING, WRITTEN, 0, 0, WRITTEN, 0, 0);
	b[2 * PG] = 1;
	show("wrote 2", b, 16);
	pid_t c = fork();
	if (c == 0) {
		pmfd = open("/proc/self/pagemap", O_RDONLY);
		show("child", b, 16);
		scan("child all", b, 16, 0, 0, 0, 0, ALLC, 8, 0);
		b[3 * PG] = 5;
		b[6 * PG] = 5;
		show("child wrote 3, 6", b, 16);
		_exit(0);
	}
	waitpid(c, 0, 0);
	show("parent after fork", b, 16);
	char *t = mmap(0, 16 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *nb = mremap(b + 2 * PG, 8 * PG, 8 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, t + 4 * PG);
	if (nb == MAP_FAILED) { printf("mremap: %s\n", strerror(errno)); return 0; }
	show("moved 2-9", nb, 8);
	scan("moved all", nb, 8, 0, 0, 0, 0, ALLC, 8, 0);
	nb[1 * PG] = 7;
	nb[5 * PG] = 7;
	show("wrote moved 1, 5", nb, 8);
	scan("moved all", nb, 8, 0, 0, 0, 0, ALLC, 8, 0);
	return 0;
}

int main(int argc, char **argv) {
	setvbuf(stdout, 0, _IOLBF, 0);
	if (argc < 2) return 2;
	if (!strcmp(argv[1], "scan")) return scancase(1);
	if (!strcmp(argv[1], "scan-written")) return scancase(0);
	if (!strcmp(argv[1], "pattern")) return patterncase();
	if (!strcmp(argv[1], "chunks")) return chunkcase();
	if (!strcmp(argv[1], "shmem")) return shmemcase(0);
	if (!strcmp(argv[1], "shmem-events")) return shmemcase(F_EVENT_FORK);
	if (!strcmp(argv[1], "move")) return movecase(0);
	if (!strcmp(argv[1], "move-events")) return movecase(F_EVENT_FORK | F_EVENT_REMAP);
	return 2;
}
`

// TestUffdWPScan compares, natively and under vmspace, what pagemap and
// PAGEMAP_SCAN show of userfaultfd's asynchronous write protection: bit
// 57 of present pages and of the markers of unpopulated ones, the
// WPALLOWED and WRITTEN categories, PM_SCAN_CHECK_WPASYNC's EPERM, and
// the protection PM_SCAN_WP_MATCHING applies (everything without an
// output vector, the reported written pages otherwise, within max_pages);
// and, after fork and mremap, the protection and markers the child and
// the moved range keep with UFFD_EVENT_FORK and UFFD_EVENT_REMAP and lose
// without; runs and regions beyond a walk's chunk, taken with a large
// vector and with a small one resumed at walk_end. The case "scan" reads
// pages nothing wrote, which show the zero page's PFNZERO where the host
// has one; "scan-written" is the same case without those reads.
func TestUffdWPScan(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "uffdwpscan", uffdWPScanProgram, true)
	for _, c := range []string{"scan", "scan-written", "pattern", "chunks", "move", "move-events", "shmem", "shmem-events"} {
		t.Run(c, func(t *testing.T) {
			if c == "scan" && !mm.HostLimits().NoZeroPage {
				// Known difference: vmspace maps the zero page for
				// reads (PAGE_IS_PFNZERO, TestZeroPage), but page 8
				// here is read after the write to page 0 allocated
				// and mapped its whole allocation unit, so the read
				// never reaches vmspace.
				t.Skip("the host has the shared zero page: this case reads page 8 after a write to page 0 of the same 2 MiB allocation unit; " +
					"Linux maps the zero page there (PAGE_IS_PFNZERO), vmspace the memory file's page, which the write mapped writable with the rest of the unit " +
					"(mapping it alone would cost a fault per page written); scan-written, the same case without the reads, runs on both kinds of host")
			}
			if r := runNative(t, "", "", exe, c); strings.Contains(r.stdout, "userfaultfd: ") || strings.Contains(r.stdout, "API: ") {
				t.Skipf("no asynchronous userfaultfd write protection here: %s", r.stdout)
			}
			compare(t, "", "", exe, c)
		})
	}
}
