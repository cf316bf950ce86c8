// oddcalls issues a fixed pseudo-random sequence of odd mmap, munmap,
// madvise, mincore and remap_file_pages calls over regular files, devices,
// pipes, sockets and directories, printing one line per call with its
// result. Run natively and under vmspace, the two outputs must be equal.
//
// usage: oddcalls SEED COUNT
//
// Every call that can succeed is kept within the scratch area (or below the
// program) so that the program never damages itself; calls that must fail
// may name any address.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PG 4096ul
#define TASK_SIZE 0x7ffffffff000ul
// The scratch area: regions at S + i*REGION, then free space for fixed
// mappings at F.
#define S 0x300000000000ul
#define REGION 0x100000ul
#define NREG 12
#define F (S + 0x10000000ul)
#define FEND (F + 0x10000000ul)

static uint64_t st;
static uint64_t rnd(void) {
	st ^= st << 13;
	st ^= st >> 7;
	st ^= st << 17;
	return st;
}
#define N(a) (sizeof(a) / sizeof((a)[0]))
static int safe_walk(uint64_t a, uint64_t len);
#define PICK(a) ((a)[rnd() % N(a)])

struct fd {
	const char *name;
	int fd;
};
static struct fd fds[32];
static int nfds;

static void addfd(const char *name, int fd) {
	if (fd < 0) {
		printf("setup %s: %s\n", name, strerror(errno));
		exit(2);
	}
	fds[nfds].name = name;
	fds[nfds].fd = fd;
	nfds++;
}

static const char *ename(long r) {
	static char buf[32];
	if (r >= 0 || r < -4095) return NULL;
	switch (-r) {
#define E(x) case x: return #x;
	E(EPERM) E(ENOENT) E(EBADF) E(EAGAIN) E(ENOMEM) E(EACCES) E(EFAULT)
	E(EBUSY) E(EEXIST) E(ENODEV) E(EINVAL) E(ENFILE) E(EMFILE) E(ETXTBSY)
	E(EFBIG) E(ENOSPC) E(ESPIPE) E(EROFS) E(ENOSYS) E(EOVERFLOW) E(EOPNOTSUPP)
	E(ENXIO) E(EIO) E(EHWPOISON)
#undef E
	}
	snprintf(buf, sizeof buf, "E%ld", -r);
	return buf;
}

static long sys(long nr, long a, long b, long c, long d, long e, long f) {
	long r = syscall(nr, a, b, c, d, e, f);
	return r == -1 ? -errno : r;
}

static void result(long r) {
	const char *e = ename(r);
	if (e)
		printf(" = -%s\n", e);
	else
		printf(" = %#lx\n", (unsigned long)r);
}

// safe reports whether [a, a+len) may be changed: within the scratch area
// or in the low unused part, or certainly refused.
static int safe(uint64_t a, uint64_t len) {
	uint64_t l = (len + PG - 1) & ~(PG - 1);
	if (len == 0 || l == 0 || a & (PG - 1)) return 1;
	if (a + l < a || a + l > TASK_SIZE) return 1;
	return safe_walk(a, len);
}

// safe_walk is safe for calls that walk whatever is mapped in the range,
// however far (madvise): they must stay out of the program's own mappings.
static int safe_walk(uint64_t a, uint64_t len) {
	uint64_t l = (len + PG - 1) & ~(PG - 1);
	if (len == 0 || l == 0 || a & (PG - 1) || a + l < a) return 1;
	if (a >= S && a + l <= FEND) return 1;
	if (a >= 0x1000 && a + l <= 0x300000) return 1;
	return 0;
}

static const uint64_t lens[] = {0, 1, PG, 2 * PG, 3 * PG + 5, 16 * PG, 32 * PG, 0x200000, 0x400000,
	1ul << 40, 1ul << 46, 1ul << 47, TASK_SIZE, -1ul, -PG, -(2 * PG), 0x7fffffffffffffff};

static uint64_t pick_len(void) {
	if (rnd() % 3 == 0) return (rnd() % 40) * PG + (rnd() % 4 == 0 ? rnd() % PG : 0);
	return PICK(lens);
}

static uint64_t pick_addr(void) {
	static const uint64_t odd[] = {0, 1, PG, 0x10000, 0x10001, 0x40000000, 0x7ffff000,
		0x100000000, TASK_SIZE - PG, TASK_SIZE, TASK_SIZE + PG, 0x800000000000, -1ul, -PG,
		0xffff800000000000};
	switch (rnd() % 4) {
	case 0:
		return PICK(odd);
	case 1:
		return S + (rnd() % NREG) * REGION + (rnd() % 20) * PG;
	default:
		return F + (rnd() % 64) * PG + (rnd() % 8 == 0 ? 1 + rnd() % (PG - 1) : 0);
	}
}

static const int types[] = {0, MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE, 0x4, 0x5, 0xf,
	MAP_PRIVATE, MAP_SHARED, MAP_PRIVATE, MAP_SHARED};
static const int bits[] = {MAP_FIXED, MAP_ANONYMOUS, MAP_32BIT, MAP_GROWSDOWN, MAP_DENYWRITE,
	MAP_EXECUTABLE, MAP_LOCKED, MAP_NORESERVE, MAP_POPULATE, MAP_NONBLOCK, MAP_STACK,
	MAP_HUGETLB, MAP_FIXED_NOREPLACE, 0x200, 0x400, 0x80, 0x200000, 0x4000000,
	0x8000000};

static void do_mmap(int i) {
	uint64_t len = pick_len();
	uint64_t addr = pick_addr();
	int prot = rnd() % 8;
	if (rnd() % 10 == 0) prot |= PICK(((int[]){0x8 /* PROT_SEM */, PROT_GROWSDOWN, 0x10, 0x1000}));
	int flags = PICK(types);
	int nb = rnd() % 4;
	for (int k = 0; k < nb; k++) flags |= PICK(bits);
	if (rnd() % 3 == 0) flags |= MAP_ANONYMOUS;
	if (rnd() % 4 == 0) flags |= MAP_FIXED;
	uint64_t off = PICK(((uint64_t[]){0, 0, 0, PG, 1, 0x10000, 0x20000, 1ul << 40, -PG,
		0x7ffffffffffff000, 0xfffffffffffff000 >> 1}));
	int f = rnd() % (nfds + 1);
	int fd = f == nfds ? -1 : fds[f].fd;
	const char *fname = f == nfds ? "-1" : fds[f].name;
	if (len > 0x400000 && len < (1ul << 46)) flags &= ~(MAP_LOCKED | MAP_POPULATE);
	if (len >= (1ul << 46)) flags &= ~(MAP_LOCKED | MAP_POPULATE);
	// Known differences left alone: ext4 and xfs refuse MAP_SYNC on
	// their files (a file system's own mmap), and MAP_HUGETLB with
	// MAP_NORESERVE maps huge pages that are not there.
	if ((flags & MAP_HUGETLB) && (flags & MAP_NORESERVE)) flags &= ~MAP_NORESERVE;
	// Nor is ext4's placement of large file mappings at 2 MiB
	// boundaries matching their offset.
	if (f <= 5 && !(flags & (MAP_ANONYMOUS | MAP_FIXED)) && len >= 0x200000) len = 0x10000;
	// (vmspace keeps the top two pages for itself: there the program
	// cannot find what it did not map.)
	if ((flags & MAP_FIXED_NOREPLACE) && addr >= TASK_SIZE - 2 * PG && addr < TASK_SIZE) flags &= ~MAP_FIXED_NOREPLACE;
	if ((flags & MAP_FIXED) && !safe(addr, len)) addr = F + (rnd() % 64) * PG;
	if ((flags & MAP_FIXED) && !safe(addr, len)) return;
	if ((flags & MAP_32BIT) && !(flags & MAP_FIXED) && rnd() % 2) addr = 0;
	printf("%d mmap(%#lx, %#lx, %#x, %#x, %s, %#lx)", i, addr, len, prot, flags, fname, off);
	long r = sys(SYS_mmap, addr, len, prot, flags, fd, off);
	result(r);
	if (r < 0 && r > -4096) return;
	// Keep the scratch regions; remove anything else.
	uint64_t a = r;
	if (a >= S && a < F) return;
	long u = sys(SYS_munmap, a, len, 0, 0, 0, 0);
	if (u) printf("%d munmap = %ld\n", i, u);
}

static const int advices[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18,
	19, 20, 21, 22, 23, 24, 25, 26, 99, 102, 103, 104, -1, 0x7fffffff};

static void do_madvise(int i) {
	uint64_t addr, len;
	int adv = PICK(advices);
	if (rnd() % 4 == 0) {
		addr = pick_addr();
		len = pick_len();
	} else {
		addr = S + (rnd() % NREG) * REGION + (rnd() % 20) * PG;
		len = PICK(((uint64_t[]){0, 1, PG, 2 * PG, 8 * PG, 16 * PG, 20 * PG, REGION + PG}));
	}
	if (!safe_walk(addr, len)) return;
	printf("%d madvise(%#lx, %#lx, %d)", i, addr, len, adv);
	result(sys(SYS_madvise, addr, len, adv, 0, 0, 0));
}

static unsigned char vec[4096];

static void do_mincore(int i) {
	uint64_t addr = rnd() % 3 ? S + (rnd() % NREG) * REGION + (rnd() % 20) * PG : pick_addr();
	uint64_t len = rnd() % 3 ? (rnd() % 24) * PG : pick_len();
	// (TASK_SIZE - 1 would be in vmspace's own top pages, which the
	// program does not have.)
	uint64_t v = PICK(((uint64_t[]){(uint64_t)vec, (uint64_t)vec, 0, 8, TASK_SIZE,
		TASK_SIZE + PG, -PG, F + 0x8000000}));
	if (v == (uint64_t)vec && (len + PG - 1) / PG > sizeof vec) return;
	printf("%d mincore(%#lx, %#lx, %s)", i, addr, len, v == (uint64_t)vec ? "vec" : "bad");
	long r = sys(SYS_mincore, addr, len, v, 0, 0, 0);
	result(r);
	if (r == 0 && v == (uint64_t)vec && len) {
		// Residency itself is the kernel's business; that a page is
		// mapped is not.
		printf("%d  vec ok\n", i);
	}
}

static void do_remap(int i) {
	uint64_t addr = rnd() % 2 ? S + (rnd() % NREG) * REGION : pick_addr();
	uint64_t size = pick_len();
	int prot = rnd() % 3 ? 0 : rnd() % 8;
	uint64_t pgoff = rnd() % 4;
	int flags = rnd() % 3 ? 0 : PICK(((int[]){MAP_NONBLOCK, MAP_SHARED, 0x1000}));
	if (!safe(addr, size)) return;
	printf("%d remap_file_pages(%#lx, %#lx, %d, %lu, %#x)", i, addr, size, prot, pgoff, flags);
	result(sys(SYS_remap_file_pages, addr, size, prot, pgoff, flags, 0));
}

static void do_munmap(int i) {
	uint64_t addr = pick_addr();
	uint64_t len = pick_len();
	if (addr >= S && addr < F) return; // keep the regions
	if (!safe(addr, len)) return;
	printf("%d munmap(%#lx, %#lx)", i, addr, len);
	result(sys(SYS_munmap, addr, len, 0, 0, 0, 0));
}

static void region(int i, int prot, int flags, int fd) {
	uint64_t a = S + i * REGION;
	long r = sys(SYS_mmap, a, 16 * PG, prot, flags | MAP_FIXED, fd, 0);
	printf("region %d", i);
	result(r);
}

int main(int argc, char **argv) {
	if (argc < 3) {
		fprintf(stderr, "usage: oddcalls SEED COUNT\n");
		return 2;
	}
	// Natively, run without address randomization like vmspace.
	if (argc == 3) {
		personality(ADDR_NO_RANDOMIZE);
		execl("/proc/self/exe", argv[0], argv[1], argv[2], "norand", (char *)0);
		perror("exec");
		return 2;
	}
	st = strtoull(argv[1], 0, 0) * 2654435761u + 1;
	int count = atoi(argv[2]);
	setvbuf(stdout, 0, _IOLBF, 0);

	int f = open("oddcalls.data", O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (f < 0 || ftruncate(f, 0x10000) != 0) {
		perror("data file");
		return 2;
	}
	addfd("file_rw", f);
	addfd("file_ro", open("oddcalls.data", O_RDONLY));
	addfd("file_wo", open("oddcalls.data", O_WRONLY));
	addfd("file_append", open("oddcalls.data", O_RDWR | O_APPEND));
	addfd("file_path", open("oddcalls.data", O_PATH));
	int e = open("oddcalls.empty", O_RDWR | O_CREAT | O_TRUNC, 0644);
	addfd("file_empty", e);
	addfd("zero_rw", open("/dev/zero", O_RDWR));
	addfd("zero_ro", open("/dev/zero", O_RDONLY));
	addfd("zero_wo", open("/dev/zero", O_WRONLY));
	addfd("null", open("/dev/null", O_RDWR));
	int p[2];
	if (pipe(p) != 0) return 2;
	addfd("pipe_r", p[0]);
	addfd("pipe_w", p[1]);
	addfd("dir", open(".", O_RDONLY | O_DIRECTORY));
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return 2;
	addfd("socket", sv[0]);
	addfd("closed", 600);

	// Natively the vdso takes more pages than under vmspace: fill the
	// space below it down to a 2 MiB boundary, so that the highest free
	// address is the same.
	long probe = sys(SYS_mmap, 0, PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	sys(SYS_munmap, probe, PG, 0, 0, 0, 0);
	uint64_t top = probe + PG, base = top & ~0x1ffffful;
	if (top > base && sys(SYS_mmap, base, top - base, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) != (long)base) {
		printf("filler failed\n");
		return 2;
	}

	region(0, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
	region(1, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1);
	region(2, PROT_READ | PROT_WRITE, MAP_PRIVATE, f);
	region(3, PROT_READ | PROT_WRITE, MAP_SHARED, f);
	region(4, PROT_READ | PROT_WRITE, MAP_PRIVATE, fds[6].fd);
	region(5, PROT_READ | PROT_WRITE, MAP_SHARED, fds[6].fd);
	region(6, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
	region(7, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED, -1);
	region(8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN, -1);
	region(9, PROT_READ, MAP_PRIVATE, fds[1].fd);
	region(10, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1);
	region(11, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_SHARED, f);

	for (int i = 0; i < count; i++) {
		switch (rnd() % 10) {
		case 0: case 1: case 2: case 3:
			do_mmap(i);
			break;
		case 4: case 5: case 6:
			do_madvise(i);
			break;
		case 7:
			do_mincore(i);
			break;
		case 8:
			do_remap(i);
			break;
		default:
			do_munmap(i);
		}
	}
	printf("done\n");
	return 0;
}
