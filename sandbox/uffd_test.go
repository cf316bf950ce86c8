package sandbox

import (
	"strings"
	"testing"
)

// uffdProgram exercises userfaultfd: run with a case name, it prints what
// it sees, which must be the same natively and under vmspace.
const uffdProgram = `
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/memfd.h>
#include <linux/userfaultfd.h>
#include <poll.h>
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

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif
struct my_uffdio_poison { struct uffdio_range range; __u64 mode; __s64 updated; };
#define MY_UFFDIO_POISON _IOWR(0xAA, 0x08, struct my_uffdio_poison)
struct my_uffdio_move { __u64 dst, src, len, mode; __s64 move; };
#define MY_UFFDIO_MOVE _IOWR(0xAA, 0x05, struct my_uffdio_move)
#define F_POISON (1<<14)
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1<<13)
#endif
#define F_MOVE (1<<16)

#define PG 4096L
static char *base;
static int uffd;

// Lines a resolving thread writes while the woken thread runs on are kept
// in deferred and printed at the end, so that the output does not depend
// on which thread runs first.
static char deferred[8192];
static int deferring;
#define out(...) (deferring ? (void)snprintf(deferred + strlen(deferred), sizeof deferred - strlen(deferred), __VA_ARGS__) : (void)printf(__VA_ARGS__))

static int mkuffd(int flags) { return syscall(SYS_userfaultfd, flags | UFFD_USER_MODE_ONLY); }

static int api(int fd, __u64 features) {
	struct uffdio_api a = { .api = UFFD_API, .features = features };
	int r = ioctl(fd, UFFDIO_API, &a);
	printf("API(%#llx) = %d %s features&0x1ffff=%#llx ioctls=%#llx\n", (unsigned long long)features, r, r ? strerror(errno) : "",
		(unsigned long long)(a.features & 0x1ffff), (unsigned long long)a.ioctls);
	return r;
}

static int reg(int fd, void *p, long len, __u64 mode) {
	struct uffdio_register r = { .range = { (unsigned long)p, len }, .mode = mode };
	int ret = ioctl(fd, UFFDIO_REGISTER, &r);
	printf("REGISTER(+%#lx, %#lx, %llu) = %d %s ioctls=%#llx\n", (long)((char *)p - base), len, (unsigned long long)mode,
		ret, ret ? strerror(errno) : "", ret ? 0ULL : (unsigned long long)r.ioctls);
	return ret;
}

static long copy(int fd, void *dst, void *src, long len, __u64 mode) {
	struct uffdio_copy c = { (unsigned long)dst, (unsigned long)src, len, mode, 12345 };
	int r = ioctl(fd, UFFDIO_COPY, &c);
	out("COPY(+%#lx, %#lx) = %d %s copy=%lld\n", (long)((char *)dst - base), len, r, r ? strerror(errno) : "", (long long)c.copy);
	return r;
}

static long zero(int fd, void *dst, long len, __u64 mode) {
	struct uffdio_zeropage z = { { (unsigned long)dst, len }, mode, 12345 };
	int r = ioctl(fd, UFFDIO_ZEROPAGE, &z);
	out("ZEROPAGE(+%#lx, %#lx) = %d %s zeropage=%lld\n", (long)((char *)dst - base), len, r, r ? strerror(errno) : "", (long long)z.zeropage);
	return r;
}

static struct uffd_msg getmsg(int fd) {
	struct uffd_msg m;
	struct pollfd p = { fd, POLLIN };
	if (poll(&p, 1, -1) != 1) { perror("poll"); exit(1); }
	if (read(fd, &m, sizeof m) != sizeof m) { perror("read"); exit(1); }
	return m;
}

static void printmsg(struct uffd_msg *m) {
	switch (m->event) {
	case UFFD_EVENT_PAGEFAULT:
		printf("msg PAGEFAULT +%#lx flags %#llx\n", (long)((char *)m->arg.pagefault.address - base), (unsigned long long)m->arg.pagefault.flags);
		break;
	case UFFD_EVENT_REMOVE: case UFFD_EVENT_UNMAP:
		printf("msg %s +%#lx-+%#lx\n", m->event == UFFD_EVENT_REMOVE ? "REMOVE" : "UNMAP",
			(long)((char *)m->arg.remove.start - base), (long)((char *)m->arg.remove.end - base));
		break;
	case UFFD_EVENT_REMAP:
		printf("msg REMAP +%#lx -> +%#lx len %#llx\n", (long)((char *)m->arg.remap.from - base), (long)((char *)m->arg.remap.to - base),
			(unsigned long long)m->arg.remap.len);
		break;
	case UFFD_EVENT_FORK:
		printf("msg FORK ufd valid %d\n", fcntl(m->arg.fork.ufd, F_GETFD) >= 0);
		break;
	default:
		printf("msg event %#x\n", m->event);
	}
	fflush(stdout);
}

// missing: a handler thread resolves the missing faults of the main
// thread: COPY for pages 0 and 1, ZEROPAGE for 2, COPY with DONTWAKE then
// WAKE for 3.
static char srcpage[PG] __attribute__((aligned(4096)));
static void *missing_handler(void *arg) {
	for (int i = 0; i < 4; i++) {
		struct uffd_msg m = getmsg(uffd);
		printmsg(&m);
		char *pg = (char *)(m.arg.pagefault.address & ~(PG - 1));
		memset(srcpage, 'a' + i, PG);
		if (i == 2) {
			zero(uffd, pg, PG, 0);
		} else if (i == 3) {
			copy(uffd, pg, srcpage, PG, UFFDIO_COPY_MODE_DONTWAKE);
			struct uffdio_range r = { (unsigned long)pg, PG };
			int rc = ioctl(uffd, UFFDIO_WAKE, &r);
			out("WAKE = %d\n", rc);
		} else {
			copy(uffd, pg, srcpage, PG, 0);
		}
		fflush(stdout);
	}
	return 0;
}

static int c_missing(void) {
	base = mmap(0, 8 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uffd = mkuffd(O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0) { printf("userfaultfd: %s\n", strerror(errno)); return 0; }
	api(uffd, UFFD_FEATURE_THREAD_ID);
	reg(uffd, base, 8 * PG, UFFDIO_REGISTER_MODE_MISSING);
	fflush(stdout);
	deferring = 1;
	pthread_t th;
	pthread_create(&th, 0, missing_handler, 0);
	for (int i = 0; i < 4; i++) {
		volatile char *p = base + i * PG + 100;
		char c = *p;
		printf("read page %d: %d\n", i, c);
		fflush(stdout);
	}
	pthread_join(th, 0);
	printf("%s", deferred);
	return 0;
}

// unprotect_faults takes two write-protect faults' messages and removes
// the protection of their pages.
static void *unprotect_faults(void *arg) {
	for (int i = 0; i < 2; i++) {
		struct uffd_msg m = getmsg(uffd);
		printmsg(&m);
		struct uffdio_writeprotect u = { { m.arg.pagefault.address & ~(PG - 1), PG }, 0 };
		int rc = ioctl(uffd, UFFDIO_WRITEPROTECT, &u);
		out("un-protect = %d\n", rc);
	}
	return arg;
}

// A thread writes to pages the main thread write-protects; the handler
// un-protects them.
static void *wp_writer(void *arg) {
	for (int i = 0; i < 2; i++) {
		base[i * PG + 8] = 'W';
		printf("wrote page %d\n", i);
		fflush(stdout);
	}
	return 0;
}

static int c_wp(void) {
	base = mmap(0, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(base, 'x', 4 * PG);
	uffd = mkuffd(O_CLOEXEC);
	if (uffd < 0) { printf("userfaultfd: %s\n", strerror(errno)); return 0; }
	api(uffd, UFFD_FEATURE_PAGEFAULT_FLAG_WP);
	reg(uffd, base, 4 * PG, UFFDIO_REGISTER_MODE_WP);
	struct uffdio_writeprotect w = { { (unsigned long)base, 4 * PG }, UFFDIO_WRITEPROTECT_MODE_WP };
	printf("WRITEPROTECT = %d\n", ioctl(uffd, UFFDIO_WRITEPROTECT, &w));
	w.mode = UFFDIO_WRITEPROTECT_MODE_WP | UFFDIO_WRITEPROTECT_MODE_DONTWAKE;
	int rc = ioctl(uffd, UFFDIO_WRITEPROTECT, &w);
	printf("WRITEPROTECT WP|DONTWAKE = %d %s\n", rc, strerror(errno));
	printf("read while protected: %c\n", base[PG]);
	fflush(stdout);
	deferring = 1;
	pthread_t th;
	pthread_create(&th, 0, wp_writer, 0);
	unprotect_faults(0);
	pthread_join(th, 0);
	printf("%s", deferred);
	printf("page 0 %c page 1 %c page 2 %c\n", base[8], base[PG + 8], base[2 * PG + 8]);
	return 0;
}

// events: a monitor thread reads the events of madvise, munmap, mremap and
// fork, and serves the child's missing fault through the forked context.
static int ack[2];
static void *event_monitor(void *arg) {
	for (;;) {
		struct uffd_msg m = getmsg(uffd);
		printmsg(&m);
		if (m.event == UFFD_EVENT_FORK) {
			int cfd = m.arg.fork.ufd;
			struct uffd_msg cm = getmsg(cfd);
			printf("child ");
			printmsg(&cm);
			memset(srcpage, 'c', PG);
			copy(cfd, (char *)(cm.arg.pagefault.address & ~(PG - 1)), srcpage, PG, 0);
			close(cfd);
		}
		fflush(stdout);
		char c = 1;
		if (write(ack[1], &c, 1) != 1) exit(1);
		if (m.event == UFFD_EVENT_FORK)
			return 0;
	}
}

static void waitack(void) { char c; if (read(ack[0], &c, 1) != 1) exit(1); }

static int c_events(void) {
	base = mmap(0, 16 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	munmap(base + 8 * PG, 8 * PG);
	memset(base, 'p', 8 * PG);
	uffd = mkuffd(O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0) { printf("userfaultfd: %s\n", strerror(errno)); return 0; }
	if (api(uffd, UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP))
		return 0;
	reg(uffd, base, 8 * PG, UFFDIO_REGISTER_MODE_MISSING);
	if (pipe(ack)) return 1;
	pthread_t th;
	pthread_create(&th, 0, event_monitor, 0);
	// Linux's calls return once the monitor has read their events;
	// vmspace's do not wait: the acknowledgement orders the output.
	int rc = madvise(base + PG, 2 * PG, MADV_DONTNEED);
	waitack();
	printf("madvise = %d\n", rc); fflush(stdout);
	rc = munmap(base + 7 * PG, PG);
	waitack();
	printf("munmap = %d\n", rc); fflush(stdout);
	char *to = base + 9 * PG;
	char *r = mremap(base + 4 * PG, 2 * PG, 2 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, to);
	waitack();
	waitack();
	printf("mremap moved %d\n", r == to); fflush(stdout);
	pid_t pid = fork();
	if (pid == 0)
		_exit(base[PG]);
	waitack();
	int st;
	waitpid(pid, &st, 0);
	printf("child read %c\n", WEXITSTATUS(st));
	pthread_join(th, 0);
	return 0;
}

// errnos of registrations and ioctls.
static int c_errnos(void) {
	base = mmap(0, 8 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	munmap(base + 4 * PG, PG);
	int rc = mkuffd(0x4000);
	printf("userfaultfd(bad) = %d %s\n", rc, strerror(errno));
	int fd = mkuffd(O_CLOEXEC);
	if (fd < 0) { printf("userfaultfd: %s\n", strerror(errno)); return 0; }
	struct uffdio_range rng = { (unsigned long)base, PG };
	rc = ioctl(fd, UFFDIO_WAKE, &rng);
	printf("WAKE before API = %d %s\n", rc, strerror(errno));
	reg(fd, base, PG, UFFDIO_REGISTER_MODE_MISSING);
	struct uffdio_api a = { .api = 0xAB };
	rc = ioctl(fd, UFFDIO_API, &a);
	printf("API(bad) = %d %s api=%#llx\n", rc, strerror(errno), (unsigned long long)a.api);
	a.api = UFFD_API; a.features = 1ULL << 40;
	rc = ioctl(fd, UFFDIO_API, &a);
	printf("API(bad feature) = %d %s api=%#llx\n", rc, strerror(errno), (unsigned long long)a.api);
	api(fd, F_POISON | F_MOVE);
	api(fd, 0);
	rc = ioctl(fd, _IOWR(0xAA, 0x20, struct uffdio_range), &rng);
	printf("ioctl(bad) = %d %s\n", rc, strerror(errno));
	reg(fd, base, PG, 0);
	reg(fd, base, PG, 8);
	reg(fd, base + 1, PG, UFFDIO_REGISTER_MODE_MISSING);
	reg(fd, base, 100, UFFDIO_REGISTER_MODE_MISSING);
	reg(fd, base + 4 * PG, PG, UFFDIO_REGISTER_MODE_MISSING);
	reg(fd, base, PG, UFFDIO_REGISTER_MODE_MINOR);
	reg(fd, base, 2 * PG, UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP);
	reg(fd, base + 3 * PG, 3 * PG, UFFDIO_REGISTER_MODE_MISSING);
	int fd2 = mkuffd(O_CLOEXEC);
	api(fd2, 0);
	reg(fd2, base, PG, UFFDIO_REGISTER_MODE_MISSING);
	// A private file mapping, and a shared read-only one.
	int f = open("/etc/passwd", O_RDONLY);
	char *fm = mmap(0, PG, PROT_READ, MAP_PRIVATE, f, 0);
	struct uffdio_register r = { { (unsigned long)fm, PG }, UFFDIO_REGISTER_MODE_MISSING };
	rc = ioctl(fd, UFFDIO_REGISTER, &r);
	printf("REGISTER(file) = %d %s\n", rc, strerror(errno));
	int mfd = memfd_create("m", 0);
	if (ftruncate(mfd, PG)) return 1;
	char *sm = mmap(0, PG, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	struct uffdio_register r2 = { { (unsigned long)sm, PG }, UFFDIO_REGISTER_MODE_MINOR };
	rc = ioctl(fd, UFFDIO_REGISTER, &r2);
	printf("REGISTER(memfd, minor) = %d ioctls=%#llx\n", rc, (unsigned long long)r2.ioctls);
	int ro = open("/etc/passwd", O_RDONLY);
	char *rom = mmap(0, PG, PROT_READ, MAP_SHARED, ro, 0);
	struct uffdio_register r3 = { { (unsigned long)rom, PG }, UFFDIO_REGISTER_MODE_MISSING };
	rc = ioctl(fd, UFFDIO_REGISTER, &r3);
	printf("REGISTER(read-only shared) = %d %s\n", rc, strerror(errno));
	// COPY and ZEROPAGE errors.
	memset(srcpage, 's', PG);
	copy(fd, base, srcpage, PG, 0);
	copy(fd, base, srcpage, PG, 0);
	copy(fd, base + PG, srcpage, PG, 4);
	copy(fd, base + PG + 1, srcpage, PG, 0);
	copy(fd, base + 3 * PG, srcpage, 2 * PG, 0);
	copy(fd, base + 7 * PG, srcpage, PG, 0);
	copy(fd, base + PG, (void *)8, PG, 0);
	zero(fd, base, 2 * PG, 0);
	zero(fd, base + PG, PG, 2);
	zero(fd, base + PG, PG, 0);
	printf("base[PG+5] = %d base[5] = %c\n", base[PG + 5], base[5]);
	struct uffdio_writeprotect w = { { (unsigned long)base + 3 * PG, PG }, UFFDIO_WRITEPROTECT_MODE_WP };
	rc = ioctl(fd, UFFDIO_WRITEPROTECT, &w);
	printf("WRITEPROTECT(missing only) = %d %s\n", rc, strerror(errno));
	struct my_uffdio_poison po = { { (unsigned long)base + 3 * PG, PG }, 0, 7 };
	rc = ioctl(fd, MY_UFFDIO_POISON, &po);
	printf("POISON = %d updated=%lld\n", rc, (long long)po.updated);
	rc = ioctl(fd, MY_UFFDIO_POISON, &po);
	printf("POISON again = %d %s updated=%lld\n", rc, strerror(errno), (long long)po.updated);
	char *mv = mmap(0, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	mv[0] = 'M';
	struct my_uffdio_move m = { (unsigned long)base + 5 * PG, (unsigned long)mv, PG, 0, 7 };
	rc = ioctl(fd, MY_UFFDIO_MOVE, &m);
	printf("MOVE = %d move=%lld\n", rc, (long long)m.move);
	printf("moved %c, source %d\n", base[5 * PG], mv[0]);
	rc = ioctl(fd, UFFDIO_UNREGISTER, &(struct uffdio_range){ (unsigned long)base + 4 * PG, PG });
	printf("UNREGISTER(hole) = %d %s\n", rc, strerror(errno));
	rc = ioctl(fd, UFFDIO_UNREGISTER, &(struct uffdio_range){ (unsigned long)base, 8 * PG });
	printf("UNREGISTER = %d %s\n", rc, rc ? strerror(errno) : "");
	printf("read after UNREGISTER: %d\n", base[6 * PG]);
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev < 0) {
		printf("/dev/userfaultfd: %s\n", strerror(errno));
	} else {
		rc = ioctl(dev, USERFAULTFD_IOC_NEW, 0x4000);
		printf("IOC_NEW(bad) = %d %s\n", rc, strerror(errno));
		int nfd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC);
		printf("IOC_NEW ok %d\n", nfd > 0);
		api(nfd, 0);
		rc = ioctl(dev, _IO(0xAA, 1), 0);
		printf("ioctl(dev, other) = %d %s\n", rc, strerror(errno));
	}
	return 0;
}

// shmem: a memfd whose page 0 is in its page cache: a read of page 0 is a
// minor fault, resolved with CONTINUE. (Missing faults of shmem are the
// memory manager's too, but vmspace run maps small file mappings at once,
// which puts every page of the memfd in its page cache.)
static void *shmem_handler(void *arg) {
	struct uffd_msg m = getmsg(uffd);
	printmsg(&m);
	char *pg = (char *)(m.arg.pagefault.address & ~(PG - 1));
	struct uffdio_continue c = { { (unsigned long)pg, PG }, 0, 7 };
	int rc = ioctl(uffd, UFFDIO_CONTINUE, &c);
	out("CONTINUE = %d mapped=%lld\n", rc, (long long)c.mapped);
	rc = ioctl(uffd, UFFDIO_CONTINUE, &c);
	out("CONTINUE again = %d %s mapped=%lld\n", rc, strerror(errno), (long long)c.mapped);
	return 0;
}

static int c_shmem(void) {
	int mfd = memfd_create("uffd", 0);
	if (ftruncate(mfd, 4 * PG) || pwrite(mfd, "cached", 6, 0) != 6) return 1;
	base = mmap(0, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	uffd = mkuffd(O_CLOEXEC);
	if (uffd < 0) { printf("userfaultfd: %s\n", strerror(errno)); return 0; }
	api(uffd, UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_MISSING_SHMEM);
	reg(uffd, base, 4 * PG, UFFDIO_REGISTER_MODE_MINOR);
	fflush(stdout);
	deferring = 1;
	pthread_t th;
	pthread_create(&th, 0, shmem_handler, 0);
	// Faults outside printf, which holds stdout's lock.
	char p0[7] = { 0 };
	memcpy(p0, base, 6);
	printf("page 0: %s\n", p0);
	fflush(stdout);
	pthread_join(th, 0);
	printf("%s", deferred);
	return 0;
}

// access: the main thread faults on missing pages with reads, stores,
// read-modify-writes and string instructions; the handler prints each
// message's flags (UFFD_PAGEFAULT_FLAG_WRITE for the writes) and
// resolves it with COPY.
#define NACCESS 9
static void *access_handler(void *arg) {
	for (int i = 0; i < NACCESS; i++) {
		struct uffd_msg m = getmsg(uffd);
		printmsg(&m);
		memset(srcpage, 'a' + i, PG);
		copy(uffd, (char *)(m.arg.pagefault.address & ~(PG - 1)), srcpage, PG, 0);
	}
	return 0;
}

static int c_access(void) {
	base = mmap(0, 16 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uffd = mkuffd(O_CLOEXEC);
	if (uffd < 0) { printf("userfaultfd: %s\n", strerror(errno)); return 0; }
	api(uffd, 0);
	reg(uffd, base, 16 * PG, UFFDIO_REGISTER_MODE_MISSING);
	fflush(stdout);
	deferring = 1;
	pthread_t th;
	pthread_create(&th, 0, access_handler, 0);
	char local[256];
	volatile char *p;
	p = base + 0 * PG + 10; char c = *p;
	printf("read: %c\n", c);
	p = base + 1 * PG + 10; *p = 'S';
	printf("store: %c\n", base[PG + 10]);
	memset(base + 2 * PG + 100, 'm', 200);
	printf("memset: %c %c\n", base[2 * PG + 100], base[2 * PG + 99]);
	int old = __atomic_fetch_add((int *)(base + 3 * PG + 8), 1, __ATOMIC_SEQ_CST);
	printf("atomic add: old %#x\n", old);
	memcpy(local, base + 4 * PG + 64, sizeof local);
	printf("memcpy from: %c\n", local[0]);
	memset(local, 'L', sizeof local);
	memcpy(base + 5 * PG + 64, local, sizeof local);
	printf("memcpy to: %c %c\n", base[5 * PG + 64], base[5 * PG]);
	char *d = base + 6 * PG; long n = 100;
	asm volatile("rep stosb" : "+D"(d), "+c"(n) : "a"('R') : "memory");
	printf("rep stosb: %c\n", base[6 * PG]);
	const char *src = base + 7 * PG; d = local; n = 100;
	asm volatile("rep movsb" : "+S"(src), "+D"(d), "+c"(n) : : "memory");
	printf("rep movsb from: %c\n", local[0]);
	src = local; d = base + 8 * PG; n = 100;
	asm volatile("rep movsb" : "+S"(src), "+D"(d), "+c"(n) : : "memory");
	printf("rep movsb to: %c %c\n", base[8 * PG], base[8 * PG + 100]);
	pthread_join(th, 0);
	printf("%s", deferred);
	return 0;
}

// syscall: system calls whose buffers lie in missing pages of a context
// made without UFFD_USER_MODE_ONLY wait for the handler (read writes the
// page, write reads it); with UFFD_USER_MODE_ONLY they fail with EFAULT.
static void *syscall_handler(void *arg) {
	for (int i = 0; i < 2; i++) {
		struct uffd_msg m = getmsg(uffd);
		printmsg(&m);
		memset(srcpage, 'a' + i, PG);
		copy(uffd, (char *)(m.arg.pagefault.address & ~(PG - 1)), srcpage, PG, 0);
	}
	return 0;
}

static int c_syscall(void) {
	base = mmap(0, 8 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uffd = syscall(SYS_userfaultfd, O_CLOEXEC);
	if (uffd < 0) { printf("userfaultfd: %s\n", strerror(errno)); return 0; }
	api(uffd, 0);
	reg(uffd, base, 4 * PG, UFFDIO_REGISTER_MODE_MISSING);
	int um = mkuffd(O_CLOEXEC);
	api(um, 0);
	reg(um, base + 4 * PG, 4 * PG, UFFDIO_REGISTER_MODE_MISSING);
	int p[2];
	if (pipe(p) || write(p[1], "hello from the pipe", 19) != 19) return 1;
	fflush(stdout);
	deferring = 1;
	pthread_t th;
	pthread_create(&th, 0, syscall_handler, 0);
	ssize_t n = read(p[0], base + PG + 10, 19);
	printf("read = %zd: %.19s, before %c\n", n, base + PG + 10, base[PG + 9]);
	n = write(p[1], base + 2 * PG + 4, 5);
	char local[8] = { 0 };
	ssize_t m = read(p[0], local, 5);
	printf("write = %zd, read back %zd: %s\n", n, m, local);
	pthread_join(th, 0);
	if (write(p[1], "more", 4) != 4) return 1;
	n = read(p[0], base + 5 * PG, 4);
	printf("read into user-mode-only = %zd %s\n", n, n < 0 ? strerror(errno) : "");
	n = write(p[1], base + 6 * PG, 4);
	printf("write from user-mode-only = %zd %s\n", n, n < 0 ? strerror(errno) : "");
	printf("%s", deferred);
	return 0;
}

// hugetlb: mmap of a MFD_HUGETLB memfd succeeds or fails as the host's
// huge page pool allows (ENOMEM without huge pages, EINVAL for an offset
// that is not a multiple of the huge page size).
static int c_hugetlb(void) {
	long hp = 2L << 20;
	int fd = memfd_create("h", MFD_HUGETLB);
	if (fd < 0) { printf("memfd_create(MFD_HUGETLB): %s\n", strerror(errno)); return 0; }
	printf("ftruncate = %d\n", ftruncate(fd, hp));
	struct { const char *name; long len, off; int flags; } cs[] = {
		{ "shared", hp, 0, MAP_SHARED }, { "private", hp, 0, MAP_PRIVATE },
		{ "shared 4k", PG, 0, MAP_SHARED }, { "offset 4k", hp, PG, MAP_SHARED },
		{ "shared noreserve", hp, 0, MAP_SHARED | MAP_NORESERVE },
	};
	for (int i = 0; i < 5; i++) {
		void *p = mmap(0, cs[i].len, PROT_READ | PROT_WRITE, cs[i].flags, fd, cs[i].off);
		printf("mmap %s: %s\n", cs[i].name, p == MAP_FAILED ? strerror(errno) : "ok");
		if (p != MAP_FAILED)
			munmap(p, cs[i].len);
	}
	return 0;
}

// wpunpop: with UFFD_FEATURE_WP_UNPOPULATED, UFFDIO_WRITEPROTECT protects
// pages never touched (a write is a write-protect fault, a read is not)
// but a page MADV_DONTNEED drops is not; without it, a never touched
// page is not protected.
static void *wpunpop_handler(void *arg) { return unprotect_faults(arg); }

static int c_wpunpop(void) {
	base = mmap(0, 16 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	base[0] = 'x';
	uffd = mkuffd(O_CLOEXEC);
	if (uffd < 0) { printf("userfaultfd: %s\n", strerror(errno)); return 0; }
	api(uffd, UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_WP_UNPOPULATED);
	reg(uffd, base, 8 * PG, UFFDIO_REGISTER_MODE_WP);
	struct uffdio_writeprotect w = { { (unsigned long)base, 8 * PG }, UFFDIO_WRITEPROTECT_MODE_WP };
	printf("WRITEPROTECT = %d\n", ioctl(uffd, UFFDIO_WRITEPROTECT, &w));
	printf("read untouched page 2: %d\n", base[2 * PG]);
	fflush(stdout);
	deferring = 1;
	pthread_t th;
	pthread_create(&th, 0, wpunpop_handler, 0);
	base[3 * PG] = 'a';
	printf("wrote untouched page 3\n");
	base[2 * PG] = 'b';
	printf("wrote read page 2\n");
	printf("DONTNEED page 0 = %d\n", madvise(base, PG, MADV_DONTNEED));
	base[0] = 'c';
	printf("wrote dropped page 0: %c\n", base[0]);
	pthread_join(th, 0);
	printf("%s", deferred);
	deferred[0] = 0;
	// Without the feature: untouched pages are not protected.
	int u2 = mkuffd(O_CLOEXEC);
	api(u2, UFFD_FEATURE_PAGEFAULT_FLAG_WP);
	reg(u2, base + 8 * PG, 8 * PG, UFFDIO_REGISTER_MODE_WP);
	struct uffdio_writeprotect w2 = { { (unsigned long)base + 8 * PG, 8 * PG }, UFFDIO_WRITEPROTECT_MODE_WP };
	printf("WRITEPROTECT = %d\n", ioctl(u2, UFFDIO_WRITEPROTECT, &w2));
	base[9 * PG] = 'd';
	printf("wrote untouched page 9 without the feature: %c\n", base[9 * PG]);
	// Unregistering drops the markers.
	printf("WRITEPROTECT = %d\n", ioctl(uffd, UFFDIO_WRITEPROTECT, &w));
	printf("UNREGISTER = %d\n", ioctl(uffd, UFFDIO_UNREGISTER, &w.range));
	base[5 * PG] = 'e';
	printf("wrote page 5 after UNREGISTER: %c\n", base[5 * PG]);
	return 0;
}

// A move across several vmas (Linux 6.17's remap_move) refuses a vma
// registered with a userfaultfd (vma_multi_allowed) with EFAULT: nothing
// moves when the first one is registered, and the vmas before the first
// registered one move when it is not the first. A registered vma alone
// still moves.
static void movedpages(const char *what, char *tgt) {
	unsigned char v;
	printf("%s: target pages mapped:", what);
	for (int i = 0; i < 10; i++)
		printf(" %d", mincore(tgt + i * PG, PG, &v) == 0);
	printf("\n");
}

static void multimove(const char *what, char *tgt, long len) {
	char *r = mremap(base, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, tgt);
	printf("%s: mremap = %s\n", what, r == tgt ? "target" : r == MAP_FAILED ? strerror(errno) : "elsewhere");
	movedpages(what, tgt);
}

static int c_multimove(void) {
	uffd = mkuffd(O_NONBLOCK);
	if (uffd < 0) {
		printf("userfaultfd: %s\n", strerror(errno));
		return 0;
	}
	api(uffd, 0);
	base = mmap(NULL, 10 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *tgt = mmap(NULL, 10 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	munmap(tgt, 10 * PG);
	for (int i = 0; i < 10; i += 2) {
		reg(uffd, base + i * PG, PG, UFFDIO_REGISTER_MODE_MISSING);
		munmap(base + (i + 1) * PG, PG);
	}
	multimove("all registered", tgt, 10 * PG);
	mmap(base, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	multimove("first unregistered", tgt, 10 * PG);
	munmap(tgt, 10 * PG);
	munmap(base, 8 * PG);
	for (int i = 0; i < 8; i += 2)
		mmap(base + i * PG, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	multimove("last registered", tgt, 10 * PG);
	char *r = mremap(base + 8 * PG, PG, PG, MREMAP_MAYMOVE | MREMAP_FIXED, tgt + 8 * PG);
	printf("one registered vma alone: mremap = %s\n", r == tgt + 8 * PG ? "target" : strerror(errno));
	movedpages("one registered vma alone", tgt);
	return 0;
}

// An operation that raises an event waits until the event is read
// (userfaultfd_event_wait_completion): the thread's madvise(MADV_REMOVE)
// over a registered range does not return before the REMOVE message is
// read, its /proc/TID/status says disk sleep meanwhile, and the ioctls
// that fill pages fail with EAGAIN (mmap_changing), their result field
// -EAGAIN (uffd-unit-tests' mmap-changing).
static volatile int ew_tid, ew_done;
static void *ew_thread(void *a) {
	ew_tid = syscall(SYS_gettid);
	long r = madvise(base, PG, MADV_REMOVE);
	ew_done = 1;
	return (void *)r;
}

static int c_eventwait(void) {
	uffd = mkuffd(O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0) {
		printf("userfaultfd: %s\n", strerror(errno));
		return 0;
	}
	api(uffd, UFFD_FEATURE_EVENT_REMOVE);
	int fd = memfd_create("ew", 0);
	ftruncate(fd, 4 * PG);
	base = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	reg(uffd, base, 4 * PG, UFFDIO_REGISTER_MODE_MISSING);
	pthread_t th;
	pthread_create(&th, NULL, ew_thread, NULL);
	while (!ew_tid)
		usleep(1000);
	char path[64], line[256], state = '?';
	snprintf(path, sizeof path, "/proc/%d/status", ew_tid);
	for (int i = 0; i < 5000 && state != 'D'; i++) {
		FILE *f = fopen(path, "r");
		while (f && fgets(line, sizeof line, f))
			if (!strncmp(line, "State:\t", 7))
				state = line[7];
		if (f)
			fclose(f);
		if (state != 'D')
			usleep(1000);
	}
	printf("waiting thread's state: %c, madvise returned: %d\n", state, ew_done);
	struct uffdio_copy c = { .copy = 1 };
	int r = ioctl(uffd, UFFDIO_COPY, &c);
	int e = errno;
	printf("COPY while waiting = %d %s copy=%lld\n", r, r ? strerror(e) : "", (long long)c.copy);
	struct uffdio_zeropage z = { .zeropage = 1 };
	r = ioctl(uffd, UFFDIO_ZEROPAGE, &z);
	e = errno;
	printf("ZEROPAGE while waiting = %d %s zeropage=%lld\n", r, r ? strerror(e) : "", (long long)z.zeropage);
	usleep(20000);
	printf("madvise returned before the read: %d\n", ew_done);
	struct uffd_msg m;
	r = read(uffd, &m, sizeof m);
	printf("read = %d event %d\n", r, m.event);
	void *ret;
	pthread_join(th, &ret);
	printf("madvise = %ld\n", (long)ret);
	c.copy = 1;
	r = ioctl(uffd, UFFDIO_COPY, &c);
	e = errno;
	printf("COPY after the read = %d %s copy=%lld\n", r, r ? strerror(e) : "", (long long)c.copy);
	return 0;
}

int main(int argc, char **argv) {
	setvbuf(stdout, 0, _IOLBF, 0);
	if (argc < 2) return 2;
	if (!strcmp(argv[1], "missing")) return c_missing();
	if (!strcmp(argv[1], "wp")) return c_wp();
	if (!strcmp(argv[1], "events")) return c_events();
	if (!strcmp(argv[1], "errnos")) return c_errnos();
	if (!strcmp(argv[1], "shmem")) return c_shmem();
	if (!strcmp(argv[1], "access")) return c_access();
	if (!strcmp(argv[1], "syscall")) return c_syscall();
	if (!strcmp(argv[1], "hugetlb")) return c_hugetlb();
	if (!strcmp(argv[1], "wpunpop")) return c_wpunpop();
	if (!strcmp(argv[1], "multimove")) return c_multimove();
	if (!strcmp(argv[1], "eventwait")) return c_eventwait();
	return 2;
}
`

// TestUserfaultfd compares the uffd program's cases natively and under
// vmspace: missing faults of one thread resolved by another with COPY,
// ZEROPAGE and WAKE; write-protect faults; the madvise, munmap, mremap and
// fork events with the child's fault resolved through the forked context;
// the errnos of bad registrations and ioctls; a minor fault of a memfd
// resolved with CONTINUE; the access type (UFFD_PAGEFAULT_FLAG_WRITE) of
// missing faults by reads, stores, read-modify-writes and string
// instructions; system calls whose buffers wait for the handler; mmap of a
// hugetlbfs memfd (uffd-unit-tests' hugetlb cases); write protection of
// unpopulated pages (UFFD_FEATURE_WP_UNPOPULATED); a move across several
// vmas with registered ones (mremap_test's "multiple invalid vmas"); a
// madvise whose REMOVE event waits for its reading (uffd-unit-tests'
// mmap-changing), served at a ptrace stop ("eventwait-slow") and on the
// fast path, whose answer waits ("eventwait" when the fast path is on).
func TestUserfaultfd(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "uffd", uffdProgram, true)
	for _, c := range []string{"missing", "wp", "events", "errnos", "shmem", "access", "syscall", "hugetlb", "wpunpop", "multimove", "eventwait", "eventwait-slow"} {
		t.Run(c, func(t *testing.T) {
			arg, slow := strings.CutSuffix(c, "-slow")
			if slow {
				fastPathFor(t, false)
			}
			if r := runNative(t, "", "", exe, arg); strings.Contains(r.stdout, "userfaultfd: ") {
				t.Skipf("no userfaultfd here: %s", r.stdout)
			}
			compare(t, "", "", exe, arg)
		})
	}
}
