// The vmscript agent (see agent.h): a small C program of its own, which the
// coordinator (native.go) builds from this file and execs, one per script
// (forked processes are its forks). It must never call malloc and never map
// memory of its own while a script runs (that would show in vmsize). It uses
// static buffers, a static stack, and raw system calls so that every answer
// is the kernel's.

#define _GNU_SOURCE
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <setjmp.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sched.h>
#include <ucontext.h>
#include <unistd.h>

#define SOCK_FD 3
#define PAGE 4096UL
#define WINDOW 0x200000000000UL     // W of the spec
#define WINDOW_SIZE 0x10000000000UL // 1 TiB

#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#define PR_SET_VMA_ANON_NAME 0
#endif
#ifndef SYS_mseal
#define SYS_mseal 462
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 1
#endif

// ---- static state (copied into forked children with the address space) ----

static char agent_stack[1 << 20] __attribute__((aligned(64)));
static ucontext_t agent_uc;
static char tmpdir[4096];

static struct vms_req req;
static unsigned char payload[1 << 20]; // request payload
static unsigned char iobuf[1 << 16];   // file contents, reads, sums
static unsigned char vecbuf[1 << 18];  // mincore vectors up to 1 GiB
static unsigned char readbuf[PAGE];    // read results

// Named objects: files and memfds (fds), shm segments (ids), AIO contexts.
#define NOBJ 256
struct obj {
	char name[VMS_NAME_MAX];
	long val;
	int used;
};
static struct obj files[NOBJ], shms[NOBJ], aios[NOBJ];

static long lookup(struct obj *t, const char *name, long unknown) {
	for (int i = 0; i < NOBJ; i++)
		if (t[i].used && strcmp(t[i].name, name) == 0)
			return t[i].val;
	return unknown;
}

// bind names an object, replacing an earlier binding (the old object stays).
static int obj_bind(struct obj *t, const char *name, long val) {
	int free_slot = -1;
	for (int i = 0; i < NOBJ; i++) {
		if (t[i].used && strcmp(t[i].name, name) == 0) {
			t[i].val = val;
			return 0;
		}
		if (!t[i].used && free_slot < 0)
			free_slot = i;
	}
	if (free_slot < 0)
		return -ENFILE;
	strncpy(t[free_slot].name, name, VMS_NAME_MAX - 1);
	t[free_slot].name[VMS_NAME_MAX - 1] = 0;
	t[free_slot].val = val;
	t[free_slot].used = 1;
	return 0;
}

static void obj_unbind(struct obj *t, const char *name) {
	for (int i = 0; i < NOBJ; i++)
		if (t[i].used && strcmp(t[i].name, name) == 0)
			t[i].used = 0;
}

// ---- I/O with the coordinator ----

static void die(void) __attribute__((noreturn));
static void die(void) {
	syscall(SYS_exit_group, 0);
	for (;;) {
	}
}

static int write_all(const void *p, size_t n) {
	const unsigned char *b = p;
	while (n > 0) {
		ssize_t w = send(SOCK_FD, b, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

static int read_all(void *p, size_t n) {
	unsigned char *b = p;
	while (n > 0) {
		ssize_t r = read(SOCK_FD, b, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

// read_req reads one request; *fd is set to a received descriptor or -1.
static int read_req(int *fd) {
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {&req, sizeof req};
	struct msghdr msg = {0};
	*fd = -1;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = ctl.buf;
	msg.msg_controllen = sizeof ctl.buf;
	ssize_t r;
	do
		r = recvmsg(SOCK_FD, &msg, 0);
	while (r < 0 && errno == EINTR);
	if (r <= 0)
		return -1;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
			memcpy(fd, CMSG_DATA(c), sizeof(int));
	if ((size_t)r < sizeof req && read_all((char *)&req + r, sizeof req - (size_t)r) < 0)
		return -1;
	req.name[VMS_NAME_MAX - 1] = 0;
	if (req.datalen > sizeof payload)
		return -1;
	return read_all(payload, req.datalen);
}

static void respond(struct vms_resp *r, const void *data, uint32_t n) {
	r->datalen = n;
	if (write_all(r, sizeof *r) < 0 || (n && write_all(data, n) < 0))
		die();
}

// ---- fault-tolerant memory access ----

static sigjmp_buf access_jb;
static volatile sig_atomic_t in_access;
static volatile int fault_sig;

static void on_fault(int sig, siginfo_t *si, void *uc) {
	(void)si;
	(void)uc;
	if (!in_access) {
		// A fault in the agent itself: die of it.
		struct sigaction sa = {0};
		sa.sa_handler = SIG_DFL;
		sigaction(sig, &sa, NULL);
		return;
	}
	in_access = 0;
	fault_sig = sig;
	siglongjmp(access_jb, 1);
}

enum { ACC_WRITE, ACC_FILL, ACC_READ, ACC_SUM };

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static uint64_t fnv(uint64_t h, const unsigned char *b, size_t n) {
	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= FNV_PRIME;
	}
	return h;
}

// access runs one access of len bytes at addr, a page at a time in
// increasing address order. Pages are all-or-nothing (a page is accessible or
// not), so on a fault the first inaccessible byte is the start of the chunk
// being accessed. Returns the fault kind; *done is the offset of the first
// byte not accessed (len when there was no fault).
static uint32_t access_mem(int kind, uint64_t addr, uint64_t len, const unsigned char *src, unsigned char b,
			   unsigned char *dst, uint64_t *hash, uint64_t *done) {
	static volatile uint64_t pos;
	static volatile uint64_t h;
	pos = 0;
	h = FNV_OFFSET;
	if (sigsetjmp(access_jb, 1)) {
		*done = pos;
		*hash = h;
		return fault_sig == SIGBUS ? VMS_FAULT_BUS : VMS_FAULT_SEGV;
	}
	in_access = 1;
	while (pos < len) {
		uint64_t a = addr + pos;
		uint64_t n = PAGE - (a & (PAGE - 1));
		if (n > len - pos)
			n = len - pos;
		switch (kind) {
		case ACC_WRITE:
			memcpy((void *)a, src + pos, n);
			break;
		case ACC_FILL:
			memset((void *)a, b, n);
			break;
		case ACC_READ:
			memcpy(dst + pos, (const void *)a, n);
			break;
		case ACC_SUM:
			memcpy(iobuf, (const void *)a, n);
			h = fnv(h, iobuf, n);
			break;
		}
		pos += n;
	}
	in_access = 0;
	*done = pos;
	*hash = h;
	return VMS_FAULT_NONE;
}

// ---- helpers ----

static size_t fmt_uint(char *p, unsigned long v) {
	char tmp[24];
	size_t n = 0;
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (size_t i = 0; i < n; i++)
		p[i] = tmp[n - 1 - i];
	return n;
}

// fill_pattern writes the file pattern for offsets [off, off+n) into iobuf.
static void fill_pattern(uint64_t off, size_t n, uint64_t seed) {
	unsigned v = (unsigned)(((off % 251) * 131 + seed % 251) % 251);
	for (size_t i = 0; i < n; i++) {
		iobuf[i] = (unsigned char)v;
		v += 131;
		if (v >= 251)
			v -= 251;
	}
}

// make_file creates an unlinked temporary file in tmpdir.
static int make_file(void) {
	int fd = open(tmpdir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0)
		return fd;
	// No O_TMPFILE: a named file, unlinked at once.
	static unsigned long seq;
	char path[4096 + 64];
	size_t n = strlen(tmpdir);
	if (n > 4000)
		return -ENAMETOOLONG;
	memcpy(path, tmpdir, n);
	memcpy(path + n, "/vmscript-", 10);
	n += 10;
	n += fmt_uint(path + n, (unsigned long)getpid());
	path[n++] = '-';
	n += fmt_uint(path + n, seq++);
	path[n] = 0;
	fd = open(path, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	unlink(path);
	return fd;
}

static long do_file(uint64_t size, int ro, uint64_t seed) {
	int fd = make_file();
	if (fd < 0)
		return fd;
	for (uint64_t off = 0; off < size;) {
		size_t n = sizeof iobuf;
		if (size - off < n)
			n = (size_t)(size - off);
		fill_pattern(off, n, seed);
		long w = syscall(SYS_pwrite64, fd, iobuf, n, off);
		if (w <= 0) {
			int e = w < 0 ? errno : EIO;
			close(fd);
			return -e;
		}
		off += (uint64_t)w;
	}
	if (ro) {
		char path[64] = "/proc/self/fd/";
		size_t n = strlen(path);
		n += fmt_uint(path + n, (unsigned long)fd);
		path[n] = 0;
		int rfd = open(path, O_RDONLY | O_CLOEXEC);
		int e = errno;
		close(fd);
		if (rfd < 0)
			return -e;
		fd = rfd;
	}
	return fd;
}

// ret_sys fills r from a raw syscall result (-1 and errno on failure).
static void ret_sys(struct vms_resp *r, long v) {
	if (v == -1) {
		r->err = errno;
		r->ret = -1;
	} else {
		r->ret = v;
	}
}

static void set_err(struct vms_resp *r, long neg) {
	if (neg < 0) {
		r->err = (int32_t)-neg;
		r->ret = -1;
	}
}

// ---- the request loop ----

static void serve(void) __attribute__((noreturn));

static void serve(void) {
	for (;;) {
		int fd;
		if (read_req(&fd) < 0)
			die();
		struct vms_resp r = {0};
		const void *out = NULL;
		uint32_t outn = 0;
		uint64_t *a = req.a;
		errno = 0;
		switch (req.op) {
		case VMS_OP_MMAP: {
			long f = req.name[0] ? lookup(files, req.name, -1) : -1;
			ret_sys(&r, syscall(SYS_mmap, a[0], a[1], a[2], a[3], f, a[4]));
			break;
		}
		case VMS_OP_MUNMAP:
			ret_sys(&r, syscall(SYS_munmap, a[0], a[1]));
			break;
		case VMS_OP_MPROTECT:
			ret_sys(&r, syscall(SYS_mprotect, a[0], a[1], a[2]));
			break;
		case VMS_OP_MREMAP:
			ret_sys(&r, syscall(SYS_mremap, a[0], a[1], a[2], a[3], a[4]));
			break;
		case VMS_OP_MADVISE:
			ret_sys(&r, syscall(SYS_madvise, a[0], a[1], a[2]));
			break;
		case VMS_OP_MLOCK:
			if (a[2])
				ret_sys(&r, syscall(SYS_mlock2, a[0], a[1], MLOCK_ONFAULT));
			else
				ret_sys(&r, syscall(SYS_mlock, a[0], a[1]));
			break;
		case VMS_OP_MUNLOCK:
			ret_sys(&r, syscall(SYS_munlock, a[0], a[1]));
			break;
		case VMS_OP_MLOCKALL:
			ret_sys(&r, syscall(SYS_mlockall, a[0]));
			break;
		case VMS_OP_MUNLOCKALL:
			ret_sys(&r, syscall(SYS_munlockall));
			break;
		case VMS_OP_MSYNC:
			ret_sys(&r, syscall(SYS_msync, a[0], a[1], a[2]));
			break;
		case VMS_OP_MINCORE: {
			uint64_t pages = a[1] / PAGE + (a[1] % PAGE != 0);
			unsigned char *vec = vecbuf;
			void *big = NULL;
			if (pages > sizeof vecbuf) {
				big = (void *)syscall(SYS_mmap, 0, pages, PROT_READ | PROT_WRITE,
						      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
				if (big == MAP_FAILED) {
					r.err = ENOMEM;
					break;
				}
				vec = big;
			}
			ret_sys(&r, syscall(SYS_mincore, a[0], a[1], vec));
			if (!r.err) {
				out = vec;
				outn = (uint32_t)pages;
			}
			respond(&r, out, outn);
			if (big)
				syscall(SYS_munmap, big, pages);
			continue;
		}
		case VMS_OP_MSEAL:
			ret_sys(&r, syscall(SYS_mseal, a[0], a[1], 0));
			break;
		case VMS_OP_ANONNAME: {
			const char *name = NULL;
			if (!a[2]) {
				payload[req.datalen < sizeof payload ? req.datalen : sizeof payload - 1] = 0;
				name = (const char *)payload;
			}
			ret_sys(&r, syscall(SYS_prctl, PR_SET_VMA, PR_SET_VMA_ANON_NAME, a[0], a[1], name));
			break;
		}
		case VMS_OP_BRK:
			r.ret = syscall(SYS_brk, a[0]);
			break;
		case VMS_OP_SETRLIMIT: {
			struct rlimit rl;
			if (syscall(SYS_prlimit64, 0, a[0], NULL, &rl) < 0) {
				r.err = errno;
				break;
			}
			rl.rlim_cur = a[1];
			ret_sys(&r, syscall(SYS_prlimit64, 0, a[0], &rl, NULL));
			break;
		}
		case VMS_OP_WRITE:
		case VMS_OP_FILL:
		case VMS_OP_READ:
		case VMS_OP_SUM: {
			int kind = req.op == VMS_OP_WRITE ? ACC_WRITE
				   : req.op == VMS_OP_FILL ? ACC_FILL
				   : req.op == VMS_OP_READ ? ACC_READ
							   : ACC_SUM;
			uint64_t len = kind == ACC_WRITE ? req.datalen : a[1];
			if (kind == ACC_READ && len > sizeof readbuf)
				len = sizeof readbuf;
			uint64_t hash, done;
			r.fault = access_mem(kind, a[0], len, payload, (unsigned char)a[2], readbuf, &hash, &done);
			r.v[0] = done;
			r.ret = (int64_t)hash;
			if (kind == ACC_READ) {
				out = readbuf;
				outn = (uint32_t)done;
			}
			break;
		}
		case VMS_OP_FILE: {
			long f = do_file(a[0], (int)a[1], a[2]);
			if (f < 0) {
				set_err(&r, f);
				break;
			}
			long e = obj_bind(files, req.name, f);
			if (e < 0) {
				close((int)f);
				set_err(&r, e);
			}
			break;
		}
		case VMS_OP_MEMFD: {
			long f = syscall(SYS_memfd_create, "vmscript", MFD_CLOEXEC);
			if (f < 0) {
				r.err = errno;
				break;
			}
			if (syscall(SYS_ftruncate, f, a[0]) < 0) {
				r.err = errno;
				close((int)f);
				break;
			}
			long e = obj_bind(files, req.name, f);
			if (e < 0) {
				close((int)f);
				set_err(&r, e);
			}
			break;
		}
		case VMS_OP_FTRUNCATE:
			ret_sys(&r, syscall(SYS_ftruncate, lookup(files, req.name, -1), a[0]));
			break;
		case VMS_OP_PWRITE: {
			long f = lookup(files, req.name, -1);
			long w = syscall(SYS_pwrite64, f, payload, req.datalen, a[0]);
			if (w < 0)
				r.err = errno;
			else if ((uint64_t)w != req.datalen)
				r.err = EIO;
			break;
		}
		case VMS_OP_PSUM: {
			long f = lookup(files, req.name, -1);
			uint64_t h = FNV_OFFSET, n = 0;
			while (n < a[1]) {
				size_t want = sizeof iobuf;
				if (a[1] - n < want)
					want = (size_t)(a[1] - n);
				long got = syscall(SYS_pread64, f, iobuf, want, a[0] + n);
				if (got < 0) {
					if (errno == EINTR)
						continue;
					r.err = errno;
					break;
				}
				if (got == 0)
					break;
				h = fnv(h, iobuf, (size_t)got);
				n += (uint64_t)got;
			}
			r.ret = (int64_t)h;
			r.v[1] = n;
			break;
		}
		case VMS_OP_CLOSE: {
			long f = lookup(files, req.name, -1);
			obj_unbind(files, req.name);
			ret_sys(&r, syscall(SYS_close, f));
			break;
		}
		case VMS_OP_SHMGET: {
			long id = syscall(SYS_shmget, IPC_PRIVATE, a[0], IPC_CREAT | 0600);
			if (id < 0) {
				r.err = errno;
				break;
			}
			r.ret = id;
			set_err(&r, obj_bind(shms, req.name, id));
			if (r.err)
				syscall(SYS_shmctl, id, IPC_RMID, NULL);
			break;
		}
		case VMS_OP_SHMAT:
			ret_sys(&r, syscall(SYS_shmat, lookup(shms, req.name, -1), a[0], a[1] ? SHM_RDONLY : 0));
			break;
		case VMS_OP_SHMDT:
			ret_sys(&r, syscall(SYS_shmdt, a[0]));
			break;
		case VMS_OP_SHMRM:
			ret_sys(&r, syscall(SYS_shmctl, lookup(shms, req.name, -1), IPC_RMID, NULL));
			break;
		case VMS_OP_IOSETUP: {
			unsigned long ctx = 0;
			if (syscall(SYS_io_setup, (unsigned)a[0], &ctx) < 0) {
				r.err = errno;
				break;
			}
			r.ret = (int64_t)ctx;
			set_err(&r, obj_bind(aios, req.name, (long)ctx));
			if (r.err)
				syscall(SYS_io_destroy, ctx);
			break;
		}
		case VMS_OP_IODESTROY:
			ret_sys(&r, syscall(SYS_io_destroy, lookup(aios, req.name, 0)));
			break;
		case VMS_OP_FORK: {
			if (fd < 0) {
				r.err = EINVAL;
				break;
			}
			// The child is the coordinator's child too (CLONE_PARENT), so
			// the coordinator reaps it and its pid cannot be reused before.
			long pid = syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, NULL, NULL, 0);
			if (pid == 0) {
				if (dup2(fd, SOCK_FD) < 0)
					die();
				close(fd);
				struct vms_resp hello = {0};
				respond(&hello, NULL, 0);
				continue;
			}
			if (pid < 0)
				r.err = errno;
			else
				r.ret = pid;
			close(fd);
			fd = -1;
			break;
		}
		default:
			r.err = ENOSYS;
		}
		if (fd >= 0)
			close(fd);
		respond(&r, out, outn);
	}
}

// ---- start-up in the child ----

// LIBC_HOLE is the gap the agent keeps between libc's last mapping and the
// mapping above it, where the first mappings placed top-down go: the
// dynamic loader leaves it by unmapping its view of /etc/ld.so.cache, so
// its size follows how many libraries the machine has installed, and a
// script's placements (which gap a moved mapping fits in) would follow it
// too. vmscript/vmspace's stand-in layout has a hole of this size
// (libcHole). Hex digits parsed by hand: the agent never calls malloc.
#define LIBC_HOLE 0x9000UL

static unsigned long parse_hex(const char **p) {
	unsigned long v = 0;
	for (;; (*p)++) {
		char c = **p;
		if (c >= '0' && c <= '9')
			v = v << 4 | (unsigned long)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v = v << 4 | (unsigned long)(c - 'a' + 10);
		else
			return v;
	}
}

static char maps_buf[64 << 10];

// fill_libc_hole maps a PROT_NONE filler at the bottom of the gap above
// libc (and its data) so that the gap is LIBC_HOLE bytes, whatever the
// size of the loader's cache was. A smaller gap is left as it is (a
// machine with very few libraries; scripts that depend on it then differ
// from their transcripts). The filler is file-less but never merges: its
// neighbours below are libc's writable data, above it the gap.
static int fill_libc_hole(void) {
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	size_t n = 0;
	for (;;) {
		ssize_t r = read(fd, maps_buf + n, sizeof maps_buf - 1 - n);
		if (r < 0) {
			int e = errno;
			close(fd);
			return e;
		}
		if (r == 0 || n + (size_t)r >= sizeof maps_buf - 1) {
			n += (size_t)(r > 0 ? r : 0);
			break;
		}
		n += (size_t)r;
	}
	close(fd);
	maps_buf[n] = 0;
	// Walk the lines: after the last line naming libc, skip the mapping
	// that directly follows it (libc's zero-filled data) if it has no
	// name; the next mapping's start ends the gap.
	unsigned long libc_end = 0, gap_end = 0;
	int after_libc = 0;
	for (const char *line = maps_buf; *line;) {
		const char *eol = strchr(line, '\n');
		const char *p = line;
		unsigned long start = parse_hex(&p);
		p++;
		unsigned long end = parse_hex(&p);
		const char *path = memchr(line, '/', (size_t)((eol ? eol : line + strlen(line)) - line));
		int is_libc = path && eol && eol - path >= 9 && memcmp(eol - 9, "libc.so.6", 9) == 0;
		if (is_libc) {
			libc_end = end;
			after_libc = 1;
			gap_end = 0;
		} else if (after_libc == 1 && start == libc_end && !path && !memchr(line, '[', (size_t)((eol ? eol : line + strlen(line)) - line))) {
			libc_end = end;
			after_libc = 2;
		} else if (after_libc) {
			gap_end = start;
			after_libc = 0;
		}
		if (!eol)
			break;
		line = eol + 1;
	}
	if (!libc_end || gap_end <= libc_end || gap_end - libc_end <= LIBC_HOLE)
		return 0;
	void *m = (void *)syscall(SYS_mmap, libc_end, gap_end - libc_end - LIBC_HOLE, PROT_NONE,
				  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
	if (m == MAP_FAILED)
		return errno;
	return 0;
}

static void agent_main(void) {
	struct vms_resp hello = {0};
	int err = 0;

	// Transparent huge pages off (inherited by forks).
	if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) < 0 && !err)
		err = errno;

	// One CPU for the agent and its forks: the kernel keeps pages in
	// per-CPU batches (pages new to the LRU, lazily freed ones) that
	// MADV_PAGEOUT drains on its own CPU only, and a page still in
	// another CPU's batch is not reclaimed. On one CPU what MADV_PAGEOUT
	// does no longer depends on where the scheduler moved the agent.
	cpu_set_t cpus;
	if (sched_getaffinity(0, sizeof cpus, &cpus) == 0) {
		for (int c = 0; c < CPU_SETSIZE; c++) {
			if (CPU_ISSET(c, &cpus)) {
				cpu_set_t one;
				CPU_ZERO(&one);
				CPU_SET(c, &one);
				if (sched_setaffinity(0, sizeof one, &one) < 0 && !err)
					err = errno;
				break;
			}
		}
	}

	// The same gap above libc on every machine.
	int herr = fill_libc_hole();
	if (herr && !err)
		err = herr;

	// Nothing in the window (a fresh program has nothing there; this
	// only makes sure). The agent itself never uses it.
	if (syscall(SYS_munmap, WINDOW, WINDOW_SIZE) < 0 && !err)
		err = errno;

	// No capabilities.
	struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct data[2];
	memset(data, 0, sizeof data);
	if (syscall(SYS_capset, &hdr, data) < 0 && !err)
		err = errno;

	// Fault handlers for accesses.
	struct sigaction sa = {0};
	sa.sa_sigaction = on_fault;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);

	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);

	hello.err = err;
	respond(&hello, NULL, 0);
	if (err)
		die();
	serve();
}

static void child(int sock, const char *dir) __attribute__((noreturn));

static void child(int sock, const char *dir) {
	// No signal handler or mask the coordinator may have passed on (an
	// ignored signal stays ignored across exec).
	sigset_t all;
	sigfillset(&all);
	syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, NULL, sizeof(unsigned long));
	struct sigaction dfl = {0};
	dfl.sa_handler = SIG_DFL;
	for (int s = 1; s < 65; s++)
		sigaction(s, &dfl, NULL);
	stack_t ss = {0};
	ss.ss_flags = SS_DISABLE;
	sigaltstack(&ss, NULL);

	// Only the socket stays open.
	if (sock != SOCK_FD && dup2(sock, SOCK_FD) < 0)
		die();
	syscall(SYS_close_range, SOCK_FD + 1, ~0U, 0);

	strncpy(tmpdir, dir, sizeof tmpdir - 1);

	// Run on a static stack, so that the agent's own stack never grows
	// (which would show in vmsize) whichever thread forked it.
	if (getcontext(&agent_uc) < 0)
		die();
	agent_uc.uc_stack.ss_sp = agent_stack;
	agent_uc.uc_stack.ss_size = sizeof agent_stack;
	agent_uc.uc_link = NULL;
	makecontext(&agent_uc, agent_main, 0);
	setcontext(&agent_uc);
	die();
}

// main serves on the socket at descriptor 3, creating files in argv[1].
int main(int argc, char **argv) {
	child(SOCK_FD, argc > 1 ? argv[1] : "/tmp");
}
