package sandbox

import (
	"regexp"
	"strings"
	"testing"
)

// procviewProgram reads its own memory views through /proc and prints what
// it finds about memory it maps at fixed addresses (so that the text is
// the same natively and under vmspace); argv[1] selects a case.
const procviewProgram = `
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define PG 4096
#define BASE ((char *)0x200000000000)
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

static char buf[1 << 20];

// slurp reads fd from its position to the end into buf.
static size_t slurp(int fd) {
	size_t n = 0;
	for (;;) {
		ssize_t r = read(fd, buf + n, 1000); // small reads: several calls
		if (r < 0) { printf("read: %s\n", strerror(errno)); exit(1); }
		if (r == 0) break;
		n += r;
	}
	buf[n] = 0;
	return n;
}

// ours prints the lines of buf (maps or numa_maps) that describe BASE's
// region, and for smaps the blocks of those lines (when block).
static void ours(const char *what, int block) {
	char *save, *l = strtok_r(buf, "\n", &save);
	int in = 0;
	while (l) {
		int hdr = (l[0] >= '0' && l[0] <= '9') || (l[0] >= 'a' && l[0] <= 'f');
		if (hdr) in = strncmp(l, "20000", 5) == 0;
		if (in && (hdr || block)) printf("%s: %s\n", what, l);
		l = strtok_r(NULL, "\n", &save);
	}
}

static char *map(long off, long len, int prot, int flags) {
	char *p = mmap(BASE + off, len, prot, flags | MAP_FIXED_NOREPLACE, -1, 0);
	if (p == MAP_FAILED) { printf("mmap: %s\n", strerror(errno)); exit(1); }
	return p;
}

// layout makes: 8 pages rw- (2 written), 4 pages r-- untouched, 2 pages
// ---, 4 pages shared rw- (1 written), 3 pages rw- with a guard page, 2
// pages locked.
static void layout(void) {
	char *a = map(0, 8 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
	a[0] = 1; a[5 * PG] = 2;
	map(8 * PG, 4 * PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS);
	map(12 * PG, 2 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS);
	char *s = map(20 * PG, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS);
	s[PG] = 3;
	char *g = map(30 * PG, 3 * PG, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS);
	g[0] = 4;
	if (madvise(g + PG, PG, MADV_GUARD_INSTALL)) printf("guard: %s\n", strerror(errno));
	char *l = map(40 * PG, 2 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
	if (mlock(l, 2 * PG)) printf("mlock: %s\n", strerror(errno));
	if (prctl(0x53564d41, 0, (unsigned long)(BASE + 40 * PG), PG, (unsigned long)"named")) printf("name: %s\n", strerror(errno));
}

// text reads a text file twice (rewinding in between), with a change
// to the layout in between: the second read sees it.
static void text(const char *path, int block) {
	int fd = open(path, O_RDONLY);
	if (fd < 0) { printf("open %s: %s\n", path, strerror(errno)); return; }
	layout();
	slurp(fd);
	ours(path, block);
	map(50 * PG, PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS);
	munmap(BASE + 12 * PG, PG);
	// Without a rewind, nothing more.
	printf("%s: more %zu\n", path, slurp(fd));
	lseek(fd, 0, SEEK_SET);
	slurp(fd);
	printf("%s: again\n", path);
	ours(path, block);
	// pread at 0 regenerates too.
	map(51 * PG, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
	ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
	buf[n > 0 ? n : 0] = 0;
	printf("%s: pread\n", path);
	ours(path, block);
	close(fd);
}

// field returns the value of "name:" in the file at path.
static long field(const char *path, const char *name) {
	int fd = open(path, O_RDONLY);
	slurp(fd);
	close(fd);
	char *p = strstr(buf, name);
	return p ? atol(p + strlen(name) + 1) : -1;
}

static void counts(void) {
	// stdio's buffer first: vmspace commits a heap's growth at once
	// (sandbox's eagerBrk), Linux page by page.
	printf("counts\n");
	// (VmRSS and RssFile also count the C library's pages, which vmspace
	// maps earlier than Linux's faults do.)
	const char *names[] = {"VmSize", "VmLck", "RssAnon", "RssShmem", "VmData", NULL};
	long before[8], rb[3];
	for (int i = 0; names[i]; i++) before[i] = field("/proc/self/status", names[i]);
	rb[0] = field("/proc/self/smaps_rollup", "Rss"); rb[1] = field("/proc/self/smaps_rollup", "Anonymous"); rb[2] = field("/proc/self/smaps_rollup", "Locked");
	long sb[7];
	int fd = open("/proc/self/statm", O_RDONLY);
	slurp(fd);
	sscanf(buf, "%ld %ld %ld %ld %ld %ld %ld", &sb[0], &sb[1], &sb[2], &sb[3], &sb[4], &sb[5], &sb[6]);
	layout();
	for (int i = 0; names[i]; i++) printf("status %s grew by %ld kB\n", names[i], field("/proc/self/status", names[i]) - before[i]);
	printf("rollup Anonymous grew by %ld kB\n", field("/proc/self/smaps_rollup", "Anonymous") - rb[1]);
	printf("rollup Locked grew by %ld kB\n", field("/proc/self/smaps_rollup", "Locked") - rb[2]);
	lseek(fd, 0, SEEK_SET);
	slurp(fd);
	long sa[7];
	sscanf(buf, "%ld %ld %ld %ld %ld %ld %ld", &sa[0], &sa[1], &sa[2], &sa[3], &sa[4], &sa[5], &sa[6]);
	printf("statm size +%ld data +%ld text %ld\n", sa[0] - sb[0], sa[5] - sb[5], sa[3]);
	printf("status VmExe %ld\n", field("/proc/self/status", "VmExe"));
	// The other lines of status are the host's.
	fd = open("/proc/self/status", O_RDONLY);
	slurp(fd);
	printf("status has Name %d Pid %d Threads %d HugetlbPages %d VmSwap %d\n", !!strstr(buf, "\nName:") || !strncmp(buf, "Name:", 5),
		!!strstr(buf, "\nPid:"), !!strstr(buf, "\nThreads:"), !!strstr(buf, "\nHugetlbPages:"), !!strstr(buf, "\nVmSwap:"));
}

static void *thread_paths(void *arg) {
	(void)arg;
	char path[64];
	sprintf(path, "/proc/thread-self/maps");
	int fd = open(path, O_RDONLY);
	slurp(fd);
	ours("thread-self", 0);
	close(fd);
	sprintf(path, "/proc/%d/task/%ld/maps", getpid(), (long)syscall(SYS_gettid));
	fd = open(path, O_RDONLY);
	slurp(fd);
	ours("task", 0);
	close(fd);
	return NULL;
}

static void paths(void) {
	layout();
	char path[64];
	sprintf(path, "/proc/%d/maps", getpid());
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	slurp(fd);
	ours("pid", 0);
	printf("cloexec %d\n", fcntl(fd, F_GETFD));
	int dfd = open("/proc/self", O_RDONLY | O_DIRECTORY);
	int rel = openat(dfd, "maps", O_RDONLY);
	slurp(rel);
	ours("relative", 0);
	int d = dup(rel);
	lseek(d, 0, SEEK_SET);
	munmap(BASE + 20 * PG, 4 * PG);
	slurp(rel);
	ours("dup", 0);
	pthread_t th;
	pthread_create(&th, NULL, thread_paths, NULL);
	pthread_join(th, NULL);
	// A child reads its parent's maps (another managed process), and
	// its own inherited descriptor.
	lseek(d, 0, SEEK_SET);
	pid_t pid = fork();
	if (pid == 0) {
		munmap(BASE, 8 * PG);
		slurp(d);
		ours("inherited", 0);
		sprintf(path, "/proc/%d/maps", getppid());
		int p = open(path, O_RDONLY);
		slurp(p);
		ours("parent", 0);
		fflush(stdout);
		_exit(0);
	}
	waitpid(pid, NULL, 0);
}

static void pagemap(void) {
	layout();
	int fd = open("/proc/self/pagemap", O_RDONLY);
	uint64_t e[44];
	if (pread(fd, e, sizeof e, (uintptr_t)BASE / PG * 8) != sizeof e) printf("pread: %s\n", strerror(errno));
	for (int i = 0; i < 44; i++) if (e[i]) printf("pagemap %d %016llx\n", i, (unsigned long long)(e[i] & ~((1ULL << 55) - 1)));
	errno = 0;
	printf("unaligned %zd %s\n", pread(fd, e, 8, 4), strerror(errno));
	errno = 0;
	printf("odd size %zd %s\n", pread(fd, e, 7, 0), strerror(errno));
	printf("past the end %zd\n", pread(fd, e, 8, 0x7ffffffff000 / PG * 8));
	lseek(fd, (uintptr_t)BASE / PG * 8, SEEK_SET);
	struct iovec iov[2] = {{e, 16}, {e + 2, 8}};
	printf("readv %zd pos %lld\n", readv(fd, iov, 2), (long long)(lseek(fd, 0, SEEK_CUR) - (uintptr_t)BASE / PG * 8));
	printf("readv entries %d %d %d\n", !!e[0], !!e[1], !!e[2]);
	errno = 0;
	printf("write %zd %s\n", write(fd, e, 8), strerror(errno));
}

static void mem(void) {
	layout();
	int fd = open("/proc/self/mem", O_RDWR);
	char b[2 * PG];
	char *ro = BASE + 8 * PG;
	errno = 0;
	printf("write read-only private %zd %s\n", pwrite(fd, "forced", 6, (uintptr_t)ro), strerror(errno));
	printf("it reads %.6s, protection kept %d\n", ro, mprotect(ro, PG, PROT_READ) == 0);
	errno = 0;
	printf("read PROT_NONE %zd %s\n", pread(fd, b, 4, (uintptr_t)BASE + 12 * PG), strerror(errno));
	errno = 0;
	printf("read across guard %zd %s\n", pread(fd, b, 2 * PG, (uintptr_t)BASE + 30 * PG), strerror(errno));
	errno = 0;
	printf("read guard %zd %s\n", pread(fd, b, 4, (uintptr_t)BASE + 31 * PG), strerror(errno));
	errno = 0;
	printf("read unmapped %zd %s\n", pread(fd, b, 4, (uintptr_t)BASE + 60 * PG), strerror(errno));
	char *sro = mmap(BASE + 70 * PG, PG, PROT_READ, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	errno = 0;
	printf("write read-only shared %zd %s\n", pwrite(fd, "no", 2, (uintptr_t)sro), strerror(errno));
	lseek(fd, (uintptr_t)BASE, SEEK_SET);
	printf("read at position %zd %d, position +%lld\n", read(fd, b, 2), b[0], (long long)(lseek(fd, 0, SEEK_CUR) - (uintptr_t)BASE));
	printf("write at position %zd, reads %d\n", write(fd, "\x09", 1), BASE[2]);
	// A fork child's copy is not changed by the parent's forced write.
	pid_t pid = fork();
	if (pid == 0) { sleep(0); usleep(200000); printf("child sees %.6s\n", ro); fflush(stdout); _exit(0); }
	pwrite(fd, "parent", 6, (uintptr_t)ro);
	waitpid(pid, NULL, 0);
	printf("parent sees %.6s\n", ro);
	// Another process's mem: the child writes the parent's memory.
	pid = fork();
	if (pid == 0) {
		char path[64];
		sprintf(path, "/proc/%d/mem", getppid());
		int m = open(path, O_RDWR);
		pwrite(m, "child!", 6, (uintptr_t)ro);
		_exit(0);
	}
	waitpid(pid, NULL, 0);
	printf("after the child's write %.6s\n", ro);
}
`

// procviewIoctls calls PROCMAP_QUERY and PAGEMAP_SCAN.
const procviewIoctls = `
struct procmap_query {
	uint64_t size, query_flags, query_addr, vma_start, vma_end, vma_flags, vma_page_size, vma_offset, inode;
	uint32_t dev_major, dev_minor, vma_name_size, build_id_size;
	uint64_t vma_name_addr, build_id_addr;
};
#define PROCMAP_QUERY _IOWR('f', 17, struct procmap_query)
struct page_region { uint64_t start, end, categories; };
struct pm_scan_arg { uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages, category_inverted, category_mask, category_anyof_mask, return_mask; };
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)

static long rel(uint64_t a) { return (long)(a - (uintptr_t)BASE); }

static void q(int fd, const char *what, uint64_t addr, uint64_t flags, uint32_t namesz, int build) {
	static char name[4096];
	static unsigned char bid[64];
	struct procmap_query a = {sizeof a, flags, addr};
	if (namesz) { a.vma_name_size = namesz; a.vma_name_addr = (uintptr_t)name; }
	if (build) { a.build_id_size = sizeof bid; a.build_id_addr = (uintptr_t)bid; }
	errno = 0;
	int r = ioctl(fd, PROCMAP_QUERY, &a);
	printf("query %s flags %llx: %d %s", what, (unsigned long long)flags, r, r ? strerror(errno) : "");
	if (r == 0) {
		// (Beyond BASE's region: the program, placed by ASLR natively.)
		if (rel(a.vma_start) < 0 || rel(a.vma_start) >= 0x100000) printf(" elsewhere");
		else printf(" [%lx,%lx)", rel(a.vma_start), rel(a.vma_end));
		printf(" flags %llx page %llu offset %llx inode %d dev %u:%u namesz %u",
			(unsigned long long)a.vma_flags, (unsigned long long)a.vma_page_size, (unsigned long long)a.vma_offset, a.inode != 0,
			a.dev_major, a.dev_minor, a.vma_name_size);
		if (namesz && a.vma_name_size) printf(" name %s", name);
		if (build) { printf(" build id %u:", a.build_id_size); for (unsigned i = 0; i < a.build_id_size; i++) printf("%02x", bid[i]); }
	}
	printf("\n");
}

static void query(void) {
	layout();
	int exe = open("/proc/self/exe", O_RDONLY);
	if (mmap(BASE + 80 * PG, 2 * PG, PROT_READ, MAP_PRIVATE | MAP_FIXED, exe, 0) == MAP_FAILED) printf("map exe: %s\n", strerror(errno));
	int fd = open("/proc/self/maps", O_RDONLY);
	struct { const char *what; long off; } at[] = {{"written", 0}, {"untouched", 3 * PG}, {"read-only", 9 * PG}, {"none", 12 * PG}, {"hole", 15 * PG},
		{"shared", 21 * PG}, {"guard", 31 * PG}, {"locked", 40 * PG}, {"file", 81 * PG}, {"beyond", 90 * PG}};
	uint64_t fl[] = {0, 0x10, 0x11, 0x12, 0x14, 0x18, 0x30, 0x03};
	for (unsigned i = 0; i < sizeof at / sizeof at[0]; i++)
		for (unsigned j = 0; j < sizeof fl / sizeof fl[0]; j++)
			q(fd, at[i].what, (uintptr_t)BASE + at[i].off, fl[j], 4096, 0);
	q(fd, "file build id", (uintptr_t)BASE + 80 * PG, 0, 0, 1);
	q(fd, "short name", (uintptr_t)BASE + 40 * PG, 0, 4, 0);
	q(fd, "no name", (uintptr_t)BASE + 40 * PG, 0, 0, 0);
	q(fd, "bad flag", (uintptr_t)BASE, 0x40, 0, 0);
	struct procmap_query a = {16, 0, (uintptr_t)BASE};
	errno = 0;
	printf("small size %d %s\n", ioctl(fd, PROCMAP_QUERY, &a), strerror(errno));
	a.size = 8; errno = 0;
	printf("tiny size %d %s\n", ioctl(fd, PROCMAP_QUERY, &a), strerror(errno));
	static char big[8192];
	memcpy(big, &a, sizeof a);
	((struct procmap_query *)big)->size = 200;
	errno = 0;
	printf("large size zeroed %d %s\n", ioctl(fd, PROCMAP_QUERY, big), strerror(errno));
	big[150] = 1; errno = 0;
	printf("large size not zeroed %d %s\n", ioctl(fd, PROCMAP_QUERY, big), strerror(errno));
	((struct procmap_query *)big)->size = 8192; errno = 0;
	printf("huge size %d %s\n", ioctl(fd, PROCMAP_QUERY, big), strerror(errno));
	struct procmap_query b = {sizeof b, 0, (uintptr_t)BASE};
	b.vma_name_size = 10; errno = 0;
	printf("name size without address %d %s\n", ioctl(fd, PROCMAP_QUERY, &b), strerror(errno));
	errno = 0;
	printf("bad pointer %d %s\n", ioctl(fd, PROCMAP_QUERY, (void *)8), strerror(errno));
	int sfd = open("/proc/self/smaps", O_RDONLY);
	errno = 0;
	printf("on smaps %d %s\n", ioctl(sfd, PROCMAP_QUERY, &b), strerror(errno));
}

static void s1(int fd, const char *what, uint64_t start, uint64_t end, uint64_t flags, uint64_t vlen, uint64_t maxp, uint64_t inv, uint64_t mask, uint64_t any, uint64_t ret) {
	struct page_region v[16];
	struct pm_scan_arg a = {sizeof a, flags, start, end, 0, vlen ? (uintptr_t)v : 0, vlen, maxp, inv, mask, any, ret};
	errno = 0;
	long n = ioctl(fd, PAGEMAP_SCAN, &a);
	printf("scan %s: %ld %s walk_end %lx\n", what, n, n < 0 ? strerror(errno) : "", rel(a.walk_end));
	for (long i = 0; i < n; i++) printf("  [%lx,%lx) %llx\n", rel(v[i].start), rel(v[i].end), (unsigned long long)v[i].categories);
}

static void scan(void) {
	layout();
	int fd = open("/proc/self/pagemap", O_RDONLY);
	uint64_t s = (uintptr_t)BASE, e = s + 44 * PG, all = 0x1ff;
	s1(fd, "all", s, e, 0, 16, 0, 0, 0, 0, all);
	s1(fd, "guard", s, e, 0, 16, 0, 0, 0x100, 0, all);
	s1(fd, "present or guard", s, e, 0, 16, 0, 0, 0, 0x108, 0x108);
	s1(fd, "not present", s, e, 0, 16, 0, 0x8, 0x8, 0, all);
	s1(fd, "max pages", s, e, 0, 16, 3, 0, 0, 0, all);
	s1(fd, "two regions", s, e, 0, 2, 0, 0, 0, 0, all);
	s1(fd, "unaligned end", s, e - 100, 0, 16, 0, 0, 0, 0, 0x8);
	s1(fd, "no vector", s, e, 0, 0, 0, 0, 0, 0, all);
	s1(fd, "wp matching", s, e, 1, 16, 0, 0, 0, 0, all);
	s1(fd, "check wpasync", s, e, 2, 16, 0, 0, 0, 0, all);
	s1(fd, "bad flags", s, e, 4, 16, 0, 0, 0, 0, all);
	s1(fd, "bad category", s, e, 0, 16, 0, 0, 0x200, 0, all);
	s1(fd, "unaligned start", s + 1, e, 0, 16, 0, 0, 0, 0, all);
	struct pm_scan_arg a = {sizeof a - 8, 0, s, e};
	errno = 0;
	printf("bad size %d %s\n", ioctl(fd, PAGEMAP_SCAN, &a), strerror(errno));
}
`

// procviewMain selects the case.
const procviewMain = `
int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	memset(buf, 1, sizeof buf); // resident from the start everywhere
	const char *c = argc > 1 ? argv[1] : "";
	if (!strcmp(c, "maps")) text("/proc/self/maps", 0);
	else if (!strcmp(c, "smaps")) text("/proc/self/smaps", 1);
	else if (!strcmp(c, "numa_maps")) text("/proc/self/numa_maps", 0);
	else if (!strcmp(c, "counts")) counts();
	else if (!strcmp(c, "paths")) paths();
	else if (!strcmp(c, "pagemap")) pagemap();
	else if (!strcmp(c, "mem")) mem();
	else if (!strcmp(c, "query")) query();
	else if (!strcmp(c, "scan")) scan();
	else { printf("unknown case %s\n", c); return 2; }
	return 0;
}
`

// procviewNorm removes what legitimately differs: numa_maps' active=
// field, which follows the host's page reclaim lists, and the inode number
// of shared anonymous memory.
var procviewNorm = regexp.MustCompile(` active=\d+|(00:01) \d+ +`)

// TestProcViews compares what a program reads about its own memory in
// /proc (maps, smaps, numa_maps, status, statm, smaps_rollup, by every
// path, rewound and re-read after a change) natively and under vmspace.
func TestProcViews(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "procview", procviewProgram+procviewIoctls+procviewMain, false)
	for _, c := range []string{"maps", "numa_maps", "paths", "pagemap", "mem", "query", "scan", "smaps", "counts"} {
		t.Run(c, func(t *testing.T) {
			want := runNative(t, "", "", exe, c)
			got, _ := sandboxRun(t, "", "", Options{}, exe, c)
			norm := func(s string) string { return procviewNorm.ReplaceAllString(s, "$1") }
			if got.code != want.code || norm(got.stdout) != norm(want.stdout) {
				t.Errorf("%s: exit %d, natively %d\nvmspace:\n%s\nnative:\n%s\nstderr: %s", c, got.code, want.code, got.stdout, want.stdout, got.stderr)
			}
			if strings.Contains(want.stdout, "unknown case") {
				t.Fatalf("the program does not know case %s", c)
			}
		})
	}
}
