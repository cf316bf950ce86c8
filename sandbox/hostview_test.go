package sandbox

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// bufProgram calls many system calls with a buffer argument in memory of
// each kind (written, fresh, read-only, PROT_NONE, unmapped, moved by
// mremap, dropped by MADV_DONTNEED, a private file mapping only read, a
// fork child's copy, fresh read-only) and prints each result: the host
// kernel must see exactly the memory vmspace holds.
const bufProgram = `#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/time.h>
#include <sys/times.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <linux/capability.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/sendfile.h>
#include <sys/xattr.h>
#include <sys/inotify.h>
#include <sys/msg.h>
#include <sys/timerfd.h>

#define PG 4096
static int devnull, sv[2], pfd[2], efd, epfd, dirfd_, filefd;
static char *reserve;

static long r(long v) { return v < 0 ? -errno : v; }

/* Inputs: init writes what the call reads. */
static void i_path(char *p) { strcpy(p, "/dev/null"); }
static void i_fill(char *p) { memset(p, 'x', 2 * PG); }
static void i_iov(char *p) { struct iovec *v = (void *)p; v[0].iov_base = p + 1024; v[0].iov_len = 100; v[1].iov_base = p + PG; v[1].iov_len = 200; memset(p + 1024, 'a', 100); memset(p + PG, 'b', 200); }
static void i_msg(char *p) { struct msghdr *m = (void *)p; memset(m, 0, sizeof *m); struct iovec *v = (void *)(p + 512); v->iov_base = p + 1024; v->iov_len = 10; memset(p + 1024, 'm', 10); m->msg_iov = v; m->msg_iovlen = 1; }
static void i_len(char *p) { *(socklen_t *)(p + 512) = 64; }
static void i_pollfd(char *p) { struct pollfd *f = (void *)p; f->fd = pfd[1]; f->events = POLLOUT; }
static void i_fdset(char *p) { fd_set *s = (void *)p; FD_ZERO(s); FD_SET(pfd[1], s); }
static void i_ts0(char *p) { memset(p, 0, 32); }
static void i_open_how(char *p) { memset(p, 0, 24); strcpy(p + 64, "/dev/null"); }
static void i_epev(char *p) { struct epoll_event *e = (void *)p; e->events = EPOLLIN; e->data.u64 = 7; }
static void i_int(char *p) { *(int *)p = 1; }
static void i_sockaddr(char *p) { struct sockaddr_un *a = (void *)p; memset(a, 0, sizeof *a); a->sun_family = AF_UNIX; }
static void i_msgbuf(char *p) { *(long *)p = 1; memset(p + 8, 'q', 16); }
static void i_flock(char *p) { struct flock *l = (void *)p; memset(l, 0, sizeof *l); l->l_type = F_WRLCK; l->l_whence = SEEK_SET; }
static void i_timex(char *p) { memset(p, 0, 256); }

static void prep_data(void) { char c = 'd'; write(sv[1], &c, 1); }

/* Calls: p is the buffer under test. */
static long c_open(char *p) { long fd = r(open(p, O_RDONLY)); if (fd >= 0) close(fd); return fd >= 0 ? 0 : fd; }
static long c_access(char *p) { return r(access(p, F_OK)); }
static long c_stat_path(char *p) { struct stat st; return r(stat(p, &st)); }
static long c_stat_out(char *p) { return r(stat("/dev/null", (void *)p)); }
static long c_fstat(char *p) { return r(fstat(devnull, (void *)p)); }
static long c_newfstatat(char *p) { return r(fstatat(AT_FDCWD, "/", (void *)p, 0)); }
static long c_statx(char *p) { return r(syscall(SYS_statx, AT_FDCWD, "/", 0, 0x7ff, p)); }
static long c_statfs(char *p) { return r(statfs("/", (void *)p)); }
static long drain(long v) { char b[PG]; while (read(pfd[0], b, sizeof b) > 0) ; return v; }
static long c_write(char *p) { return drain(r(write(pfd[1], p, PG))); }
static long c_write_small(char *p) { return drain(r(write(pfd[1], p, 100))); }
static long c_pwrite(char *p) { return r(pwrite(filefd, p, 2 * PG, 3 * PG)); }
static long c_writev_in(char *p) { return drain(r(writev(pfd[1], (void *)p, 2))); }
static long c_writev_buf(char *p) { struct iovec v[2] = {{p, 100}, {p + PG, 200}}; return drain(r(writev(pfd[1], v, 2))); }
static long c_read(char *p) { return r(read(filefd, p, 2 * PG)); }
static long c_pread(char *p) { return r(pread(filefd, p, 100, 0)); }
static long c_readv(char *p) { struct iovec v[2] = {{p, 100}, {p + PG, 200}}; return r(preadv(filefd, v, 2, 0)); }
static long c_clock_gettime(char *p) { return r(syscall(SYS_clock_gettime, CLOCK_MONOTONIC, p)); }
static long c_clock_getres(char *p) { return r(syscall(SYS_clock_getres, CLOCK_MONOTONIC, p)); }
static long c_gettimeofday(char *p) { return r(syscall(SYS_gettimeofday, p, NULL)); }
static long c_time(char *p) { long v = syscall(SYS_time, p); return v < 0 ? -errno : 0; }
static long c_uname(char *p) { return r(uname((void *)p)); }
static long c_sysinfo(char *p) { return r(sysinfo((void *)p)); }
static long c_getrusage(char *p) { return r(getrusage(RUSAGE_SELF, (void *)p)); }
static long c_times(char *p) { long v = syscall(SYS_times, p); return v < 0 && errno ? -errno : 0; }
static long c_getrlimit(char *p) { return r(syscall(SYS_getrlimit, RLIMIT_NOFILE, p)); }
static long c_prlimit(char *p) { return r(syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, NULL, p)); }
static long c_pipe(char *p) { long v = r(pipe((int *)p)); if (v == 0) { close(((int *)p)[0]); close(((int *)p)[1]); } return v; }
static long c_socketpair(char *p) { long v = r(socketpair(AF_UNIX, SOCK_STREAM, 0, (int *)p)); if (v == 0) { close(((int *)p)[0]); close(((int *)p)[1]); } return v; }
static long c_getcwd(char *p) { long v = syscall(SYS_getcwd, p, PG); return v < 0 ? -errno : 0; }
static long c_readlink(char *p) { long v = readlink("/proc/self/cwd", p, PG); return v < 0 ? -errno : 0; }
static long c_getdents(char *p) { lseek(dirfd_, 0, SEEK_SET); long v = syscall(SYS_getdents64, dirfd_, p, PG); return v < 0 ? -errno : 0; }
static long c_sendmsg(char *p) { long v = r(sendmsg(sv[0], (void *)p, 0)); char b[64]; recv(sv[1], b, sizeof b, MSG_DONTWAIT); return v; }
static long c_recvmsg(char *p) { prep_data(); struct iovec v = {p, 100}; struct msghdr m = {0}; m.msg_iov = &v; m.msg_iovlen = 1; long n = r(recvmsg(sv[0], &m, MSG_DONTWAIT)); char b[8]; recv(sv[0], b, 8, MSG_DONTWAIT); return n; }
static long c_recvfrom(char *p) { prep_data(); long n = r(recvfrom(sv[0], p, 100, MSG_DONTWAIT, NULL, NULL)); char b[8]; recv(sv[0], b, 8, MSG_DONTWAIT); return n; }
static long c_sendto(char *p) { long v = r(sendto(sv[0], p, 10, 0, NULL, 0)); char b[64]; recv(sv[1], b, sizeof b, MSG_DONTWAIT); return v; }
static long c_nanosleep(char *p) { return r(syscall(SYS_nanosleep, p, NULL)); }
static long c_clock_nanosleep(char *p) { long e = syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, p, NULL); return e < 0 ? -errno : 0; }
static long c_sigaction_old(char *p) { return r(syscall(SYS_rt_sigaction, SIGUSR1, NULL, p, 8)); }
static long c_sigprocmask_old(char *p) { return r(syscall(SYS_rt_sigprocmask, SIG_BLOCK, NULL, p, 8)); }
static long c_sigaltstack_old(char *p) { return r(syscall(SYS_sigaltstack, NULL, p)); }
static long c_epoll_wait(char *p) { uint64_t one = 1; write(efd, &one, 8); long v = r(epoll_wait(epfd, (void *)p, 4, 0)); read(efd, &one, 8); return v; }
static long c_epoll_ctl(char *p) { int e = epoll_create1(0); long v = r(epoll_ctl(e, EPOLL_CTL_ADD, pfd[0], (void *)p)); close(e); return v; }
static long c_poll(char *p) { return r(poll((void *)p, 1, 0)); }
static long c_ppoll(char *p) { struct timespec ts = {0, 0}; return r(ppoll((void *)p, 1, &ts, NULL)); }
static long c_select(char *p) { struct timeval tv = {0, 0}; return r(select(pfd[1] + 1, NULL, (void *)p, NULL, &tv)); }
static long c_select_tv(char *p) { return r(syscall(SYS_select, 0, NULL, NULL, NULL, p)); }
static long c_ioctl_fionread(char *p) { return r(ioctl(pfd[0], FIONREAD, p)); }
static long c_getsockopt(char *p) { return r(getsockopt(sv[0], SOL_SOCKET, SO_TYPE, p, (socklen_t *)(p + 512))); }
static long c_setsockopt(char *p) { return r(setsockopt(sv[0], SOL_SOCKET, SO_KEEPALIVE, p, 4)); }
static long c_getsockname(char *p) { return r(getsockname(sv[0], (void *)p, (socklen_t *)(p + 512))); }
static long c_bind(char *p) { int s = socket(AF_UNIX, SOCK_DGRAM, 0); long v = r(bind(s, (void *)p, sizeof(sa_family_t))); close(s); return v; }
static long c_getrandom(char *p) { return r(syscall(SYS_getrandom, p, 64, 0)); }
static long c_sched_getaffinity(char *p) { long v = syscall(SYS_sched_getaffinity, 0, 128, p); return v < 0 ? -errno : 0; }
static long c_capget(char *p) { struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0}; return r(syscall(SYS_capget, &h, p)); }
static long c_getitimer(char *p) { return r(getitimer(ITIMER_REAL, (void *)p)); }
static long c_getcpu(char *p) { return r(syscall(SYS_getcpu, p, p + 4, NULL)); }
static long c_pvm_readv(char *p) { char b[100]; struct iovec l = {b, 100}, rm = {p, 100}; return r(process_vm_readv(getpid(), &l, 1, &rm, 1, 0)); }
static long c_pvm_writev(char *p) { char b[100] = "hello"; struct iovec l = {b, 100}, rm = {p, 100}; return r(process_vm_writev(getpid(), &l, 1, &rm, 1, 0)); }
static long c_wait4(char *p) { pid_t c = fork(); if (c == 0) _exit(3); return r(wait4(c, (int *)p, 0, NULL)) > 0 ? 0 : -errno; }
static long c_sched_getparam(char *p) { return r(syscall(SYS_sched_getparam, 0, p)); }
static long c_getgroups(char *p) { long v = syscall(SYS_getgroups, 64, p); return v < 0 ? -errno : 0; }
static long c_getresuid(char *p) { return r(syscall(SYS_getresuid, p, p + 4, p + 8)); }
static long c_chdir(char *p) { char cwd[PG]; getcwd(cwd, sizeof cwd); long v = r(chdir(p)); chdir(cwd); return v; }
static long c_futex(char *p) { struct timespec ts = {0, 0}; return r(syscall(SYS_futex, p, FUTEX_WAIT_PRIVATE, 1, &ts, NULL, 0)); }
static long c_prctl_name(char *p) { char old[16]; prctl(PR_GET_NAME, old); long v = r(syscall(SYS_prctl, PR_GET_NAME, p, 0, 0, 0)); return v; }
static long c_arch_prctl(char *p) { return r(syscall(SYS_arch_prctl, 0x1003 /* ARCH_GET_FS */, p)); }
static long c_fcntl_getlk(char *p) { return r(fcntl(filefd, F_GETLK, p)); }
static long c_openat2(char *p) { long fd = syscall(SYS_openat2, AT_FDCWD, "/dev/null", p, 24); if (fd >= 0) close(fd); return fd < 0 ? -errno : 0; }
static long c_sched_getattr(char *p) { return r(syscall(SYS_sched_getattr, 0, p, 56, 0)); }
static long c_timer_create(char *p) { long v = r(syscall(SYS_timer_create, CLOCK_MONOTONIC, NULL, p)); if (v == 0) syscall(SYS_timer_delete, *(int *)p); return v; }
static long c_adjtimex(char *p) { long v = syscall(SYS_adjtimex, p); return v < 0 ? -errno : 0; }
static long c_inotify(char *p) { int i = inotify_init1(0); long v = r(inotify_add_watch(i, p, 1)); close(i); return v < 0 ? v : 0; }
static long c_vmsplice(char *p) { struct iovec v = {p, 10}; long n = r(vmsplice(pfd[1], &v, 1, 0)); char b[16]; read(pfd[0], b, 16); return n; }
static long c_mincore(char *p) { static char *m; if (!m) m = mmap(NULL, PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); return r(mincore(m, PG, (unsigned char *)p)); }
static long c_sendmmsg(char *p) { long v = r(sendmmsg(sv[0], (void *)p, 1, 0)); char b[64]; recv(sv[1], b, sizeof b, MSG_DONTWAIT); return v; }
static long c_getxattr(char *p) { return r(getxattr("/", "user.nothere", p, 64)); }
static long c_readlinkat(char *p) { long v = readlinkat(AT_FDCWD, "/proc/self/cwd", p, PG); return v < 0 ? -errno : 0; }
static long c_sendfile(char *p) { int o = open("/dev/null", O_WRONLY); long v = r(sendfile(o, filefd, (off_t *)p, 10)); close(o); return v; }
static long c_utimensat(char *p) { return r(utimensat(AT_FDCWD, "/dev/null", (void *)p, 0)) == -EPERM ? -EPERM : 0; }
static long c_setitimer_old(char *p) { struct itimerval z = {0}; return r(setitimer(ITIMER_VIRTUAL, &z, (void *)p)); }
static long c_msgsnd(char *p) { int q = msgget(IPC_PRIVATE, 0600); long v = r(msgsnd(q, p, 16, IPC_NOWAIT)); msgctl(q, IPC_RMID, NULL); return v; }
static long c_rt_sigpending(char *p) { return r(syscall(SYS_rt_sigpending, p, 8)); }
static long c_timerfd_gettime(char *p) { int t = timerfd_create(CLOCK_MONOTONIC, 0); long v = r(syscall(SYS_timerfd_gettime, t, p)); close(t); return v; }

struct kase { const char *name; void (*init)(char *); long (*call)(char *); };
static struct kase cases[] = {
	{"open", i_path, c_open}, {"access", i_path, c_access}, {"stat_path", i_path, c_stat_path},
	{"chdir", i_path, c_chdir}, {"inotify", i_path, c_inotify},
	{"stat_out", 0, c_stat_out}, {"fstat", 0, c_fstat}, {"newfstatat", 0, c_newfstatat},
	{"statx", 0, c_statx}, {"statfs", 0, c_statfs},
	{"write", i_fill, c_write}, {"write_small", i_fill, c_write_small}, {"pwrite", i_fill, c_pwrite},
	{"writev_iov", i_iov, c_writev_in}, {"writev_buf", i_fill, c_writev_buf},
	{"read", 0, c_read}, {"pread", 0, c_pread}, {"preadv", 0, c_readv},
	{"clock_gettime", 0, c_clock_gettime}, {"clock_getres", 0, c_clock_getres},
	{"gettimeofday", 0, c_gettimeofday}, {"time", 0, c_time}, {"uname", 0, c_uname},
	{"sysinfo", 0, c_sysinfo}, {"getrusage", 0, c_getrusage}, {"times", 0, c_times},
	{"getrlimit", 0, c_getrlimit}, {"prlimit", 0, c_prlimit}, {"pipe", 0, c_pipe},
	{"socketpair", 0, c_socketpair}, {"getcwd", 0, c_getcwd}, {"readlink", 0, c_readlink},
	{"readlinkat", 0, c_readlinkat}, {"getdents64", 0, c_getdents},
	{"sendmsg", i_msg, c_sendmsg}, {"sendmmsg", i_msg, c_sendmmsg}, {"recvmsg", 0, c_recvmsg},
	{"recvfrom", 0, c_recvfrom}, {"sendto", i_fill, c_sendto},
	{"nanosleep", i_ts0, c_nanosleep}, {"clock_nanosleep", i_ts0, c_clock_nanosleep},
	{"sigaction_old", 0, c_sigaction_old}, {"sigprocmask_old", 0, c_sigprocmask_old},
	{"sigaltstack_old", 0, c_sigaltstack_old}, {"rt_sigpending", 0, c_rt_sigpending},
	{"epoll_wait", 0, c_epoll_wait}, {"epoll_ctl", i_epev, c_epoll_ctl},
	{"poll", i_pollfd, c_poll}, {"ppoll", i_pollfd, c_ppoll}, {"select", i_fdset, c_select},
	{"select_tv", i_ts0, c_select_tv}, {"ioctl_fionread", 0, c_ioctl_fionread},
	{"getsockopt", i_len, c_getsockopt}, {"setsockopt", i_int, c_setsockopt},
	{"getsockname", i_len, c_getsockname}, {"bind", i_sockaddr, c_bind},
	{"getrandom", 0, c_getrandom}, {"sched_getaffinity", 0, c_sched_getaffinity},
	{"capget", 0, c_capget}, {"getitimer", 0, c_getitimer}, {"setitimer_old", 0, c_setitimer_old},
	{"getcpu", 0, c_getcpu}, {"pvm_readv", i_fill, c_pvm_readv}, {"pvm_writev", 0, c_pvm_writev},
	{"wait4", 0, c_wait4}, {"sched_getparam", 0, c_sched_getparam}, {"getgroups", 0, c_getgroups},
	{"getresuid", 0, c_getresuid}, {"futex", 0, c_futex}, {"prctl_name", 0, c_prctl_name},
	{"arch_prctl", 0, c_arch_prctl}, {"fcntl_getlk", i_flock, c_fcntl_getlk},
	{"openat2", i_open_how, c_openat2}, {"sched_getattr", 0, c_sched_getattr},
	{"timer_create", 0, c_timer_create}, {"adjtimex", i_timex, c_adjtimex},
	{"vmsplice", i_fill, c_vmsplice}, {"mincore", 0, c_mincore}, {"getxattr", 0, c_getxattr},
	{"sendfile", i_ts0, c_sendfile}, {"utimensat", i_ts0, c_utimensat}, {"msgsnd", i_msgbuf, c_msgsnd},
	{"timerfd_gettime", 0, c_timerfd_gettime},
};

static const char *kinds[] = {"written", "fresh", "ro", "none", "unmapped", "moved", "dontneed", "filepriv", "cow", "rofresh"};

static char *fresh(int prot) {
	char *p = mmap(NULL, 2 * PG, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) { perror("mmap"); exit(2); }
	return p;
}

static void show(const char *name, const char *kind, long v) {
	if (v < 0) printf("%-18s %-9s %s\n", name, kind, strerrorname_np(-v));
	else printf("%-18s %-9s ok\n", name, kind);
}

int main(int argc, char **argv) {
	devnull = open("/dev/null", O_RDWR);
	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	pipe2(pfd, O_NONBLOCK);
	efd = eventfd(0, 0);
	epfd = epoll_create1(0);
	struct epoll_event ev = {EPOLLIN, {0}};
	epoll_ctl(epfd, EPOLL_CTL_ADD, efd, &ev);
	dirfd_ = open("/", O_RDONLY | O_DIRECTORY);
	char tmpl[] = "/tmp/hvfileXXXXXX";
	filefd = mkstemp(tmpl);
	unlink(tmpl);
	char zero[3 * PG] = {0};
	
	write(filefd, zero, sizeof zero);
	reserve = mmap(NULL, 64 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	const char *only = argc > 1 ? argv[1] : NULL;
	for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
		const char *kind = kinds[k];
		if (only && strcmp(only, kind)) continue;
		for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
			struct kase *c = &cases[i];
			char *p = NULL;
			fflush(stdout);
			if (!strcmp(kind, "written")) { p = fresh(PROT_READ | PROT_WRITE); memset(p, 0, 2 * PG); if (c->init) c->init(p); }
			else if (!strcmp(kind, "fresh")) { p = fresh(PROT_READ | PROT_WRITE); }
			else if (!strcmp(kind, "rofresh")) { p = fresh(PROT_READ); }
			else if (!strcmp(kind, "ro") || !strcmp(kind, "none") || !strcmp(kind, "unmapped") || !strcmp(kind, "dontneed")) {
				p = fresh(PROT_READ | PROT_WRITE); memset(p, 0, 2 * PG); if (c->init) c->init(p);
				if (!strcmp(kind, "ro")) mprotect(p, 2 * PG, PROT_READ);
				if (!strcmp(kind, "none")) mprotect(p, 2 * PG, PROT_NONE);
				if (!strcmp(kind, "unmapped")) munmap(p, 2 * PG);
				if (!strcmp(kind, "dontneed")) madvise(p, 2 * PG, MADV_DONTNEED);
			} else if (!strcmp(kind, "moved")) {
				char *q = fresh(PROT_READ | PROT_WRITE); memset(q, 0, 2 * PG);
				if (c->init) { c->init(q); }
				/* Pointers inside the buffer would dangle: move only call buffers without them. */
				p = mremap(q, 2 * PG, 2 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, reserve + 16 * PG);
				if (p == MAP_FAILED) { perror("mremap"); exit(2); }
				if (c->init == i_iov || c->init == i_msg) c->init(p);
			} else if (!strcmp(kind, "filepriv")) {
				p = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, filefd, 0);
				volatile char s = p[0] + p[PG]; (void)s;
			} else if (!strcmp(kind, "cow")) {
				p = fresh(PROT_READ | PROT_WRITE); memset(p, 0, 2 * PG); if (c->init) c->init(p);
				pid_t pid = fork();
				if (pid == 0) { show(c->name, kind, c->call(p)); fflush(stdout); _exit(0); }
				waitpid(pid, NULL, 0);
				munmap(p, 2 * PG);
				continue;
			}
			show(c->name, kind, c->call(p));
			munmap(p, 2 * PG);
		}
	}
	return 0;
}
`

// TestHostView runs bufProgram natively and under vmspace: every call
// must succeed or fail (EFAULT) as natively.
func TestHostView(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "bufs", bufProgram, false)
	dir := t.TempDir()
	want := runNative(t, dir, "", exe)
	got, _ := sandboxRun(t, dir, "", Options{}, exe)
	if got.code != want.code || want.code != 0 {
		t.Fatalf("exit status %d under vmspace, %d natively\nstderr: %s", got.code, want.code, got.stderr)
	}
	wl, gl := strings.Split(want.stdout, "\n"), strings.Split(got.stdout, "\n")
	if len(wl) < 500 || len(wl) != len(gl) {
		t.Fatalf("%d lines under vmspace, %d natively", len(gl), len(wl))
	}
	bad := 0
	for i := range wl {
		if wl[i] != gl[i] {
			bad++
			if bad <= 40 {
				t.Errorf("native %q, vmspace %q", wl[i], gl[i])
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d calls differ", bad, len(wl))
	}
}

// fdProgram looks for descriptors it did not open and uses the one where
// vmspace keeps the memory file (given as argv[1], or 1023) in every way,
// then counts how many files it can open.
const fdProgram = `
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
static void show(const char *what, long r) { printf("%s %s\n", what, r < 0 ? strerrorname_np(errno) : "ok"); }
int main(int argc, char **argv) {
	int open_ = 0;
	for (int fd = 3; fd < 4096; fd++) { struct stat st; if (fstat(fd, &st) == 0) open_++; }
	printf("open beyond stdio: %d\n", open_);
	for (int i = 1; i < argc; i++) {
		int fd = atoi(argv[i]);
		char b[16] = "x";
		struct stat st;
		show("read", read(fd, b, 1));
		show("write", write(fd, b, 1));
		show("pread", pread(fd, b, 1, 0));
		show("ftruncate", ftruncate(fd, 0));
		show("fstat", fstat(fd, &st));
		show("fcntl", fcntl(fd, F_GETFD));
		show("dupfd", fcntl(fd, F_DUPFD, 0));
		show("dup", dup(fd));
		show("mmap", mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0) == MAP_FAILED ? -1 : 0);
		show("openat", openat(fd, "x", O_RDONLY));
		show("lseek", lseek(fd, 0, SEEK_SET));
		show("close", close(fd));
		char path[64];
		snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
		show("open /proc/self/fd", open(path, O_RDWR));
		show("truncate /proc/self/fd", truncate(path, 0));
		snprintf(path, sizeof path, "/dev/fd/%d", fd);
		show("open /dev/fd", open(path, O_RDONLY));
		snprintf(path, sizeof path, "/proc/%d/fd/%d", getppid() == 1 ? 1 : getpid(), fd);
		show("open /proc/PID/fd", open(path, O_RDONLY));
		snprintf(path, sizeof path, "fd/%d", fd);
		int proc = open("/proc/self", O_RDONLY | O_DIRECTORY);
		show("openat fd/", openat(proc, path, O_RDONLY));
		int sv[2];
		socketpair(AF_UNIX, SOCK_DGRAM, 0, sv);
		char cbuf[CMSG_SPACE(2 * sizeof(int))] = {0};
		struct iovec iov = {b, 1};
		struct msghdr m = {0};
		m.msg_iov = &iov;
		m.msg_iovlen = 1;
		m.msg_control = cbuf;
		m.msg_controllen = sizeof cbuf;
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(2 * sizeof(int));
		int fds[2] = {1, fd};
		memcpy(CMSG_DATA(c), fds, sizeof fds);
		show("sendmsg SCM_RIGHTS", sendmsg(sv[0], &m, 0));
	}
	int n = 0;
	while (open("/dev/null", O_RDONLY) >= 0) n++;
	printf("opened %d more: %s\n", n, strerrorname_np(errno));
	return 0;
}
`

// TestMemFDHidden: the memory file's descriptor looks closed to the
// program, whatever it does with it, and vmspace's descriptors do not
// lower how many files the program can open.
func TestMemFDHidden(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "fds", fdProgram, false)
	for _, c := range []struct {
		name string
		soft uint64
	}{{"default", 0}, {"soft64", 64}} {
		t.Run(c.name, func(t *testing.T) {
			var old syscall.Rlimit
			if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
				t.Fatal(err)
			}
			slot := vmspaceFDSlot(unix.Rlimit{Cur: old.Cur, Max: old.Max}, false)
			if c.soft != 0 {
				if old.Max <= c.soft {
					t.Skip("hard limit too low")
				}
				nl := old
				nl.Cur = c.soft
				if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &nl); err != nil {
					t.Fatal(err)
				}
				defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old)
				slot = int(c.soft)
			}
			arg := strconv.Itoa(slot)
			want := runNative(t, "", "", exe, arg)
			got, _ := sandboxRun(t, "", "", Options{}, exe, arg)
			g, w := got.stdout, want.stdout
			if c.soft == 0 && old.Cur == old.Max {
				// Soft and hard limits equal, and vmspace may not
				// raise the hard one: the memory file takes the
				// program's top descriptor (vmspaceFDSlot).
				cut := func(s string) string { return s[:strings.LastIndex(s, "opened ")] }
				g, w = cut(g), cut(w)
			}
			if got.code != want.code || g != w {
				t.Errorf("vmspace (%d):\n%s\nnative (%d):\n%s", got.code, got.stdout, want.code, want.stdout)
			}
		})
	}
}

// asProgram maps growing amounts of memory and prints which fit.
const asProgram = `
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <sys/mman.h>
int main(void) {
	for (long mb = 256; mb <= 4096; mb *= 2) {
		void *p = mmap(NULL, mb << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		printf("%ld MiB: %s\n", mb, p == MAP_FAILED ? strerror(errno) : "ok");
		if (p != MAP_FAILED) munmap(p, mb << 20);
	}
	return 0;
}
`

// TestAddressSpaceLimit runs vmspace (the command, built here) under a
// soft RLIMIT_AS of 1.5 GiB and hard ones of about 2 and 1 GB: vmspace's
// own mappings are not charged to the program, which gets the limit it was
// given. Under the hard limits that leave the Go runtime no room for a
// second heap arena (1.28-1.32 GB), vmspace starts again when its heap's
// arena is nearly full (internal/runtimeroom): it died "out of memory" in
// about 1 start in 12 there. The runtime itself dies so before any of
// vmspace's code runs in about 1 start in 40 (runtimeDeath): such a run is
// made again.
func TestAddressSpaceLimit(t *testing.T) {
	needPtrace(t)
	need(t, "go", "sh")
	exe := buildC(t, "as", asProgram, false)
	vm := filepath.Join(t.TempDir(), "vmspace")
	if out, err := exec.Command("go", "build", "-o", vm, "github.com/vmspace/vmspace/cmd/vmspace").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// A soft limit, which vmspace raises for itself, and hard limits it
	// cannot raise without CAP_SYS_RESOURCE (1 GiB: the Go runtime alone
	// reserves about 800 MiB): its internal mappings are small (2 MiB per
	// small mapped file, 64 MiB chunks of the memory file, no cgo). At
	// 1.28-1.32 GB the runtime's reservations leave less than a chunk:
	// the memory file is then mapped in 2 MiB windows (it was "bad
	// address").
	for _, limit := range []string{`ulimit -S -v 1572864; `, `ulimit -v 2000000; `, `ulimit -v 1000000; `,
		`ulimit -v 1280000; `, `ulimit -v 1300000; `, `ulimit -v 1320000; `} {
		want := runNative(t, "", "", "sh", "-c", limit+`exec "$0"; `, exe)
		got := runNative(t, "", "", "sh", "-c", limit+`exec "$0" run -- "$1"`, vm, exe)
		for try := 1; try < 6 && runtimeDeath(got.code, got.stderr); try++ {
			t.Logf("%sthe Go runtime died starting (try %d)", limit, try)
			got = runNative(t, "", "", "sh", "-c", limit+`exec "$0" run -- "$1"`, vm, exe)
		}
		if got.code != want.code || got.stdout != want.stdout {
			t.Errorf("%sunder vmspace (%d):\n%s%s\nnative (%d):\n%s", limit, got.code, got.stdout, got.stderr, want.code, want.stdout)
		}
		if !strings.Contains(want.stdout, "2048 MiB: Cannot allocate memory") {
			t.Errorf("%sthe limit did not apply natively: %s", limit, want.stdout)
		}
	}
}

// runtimeDeath says whether vmspace, exiting with code and stderr, died in
// the Go runtime's start-up, out of address space, before any package of
// vmspace's was initialized (the runtime's own reservations under a hard
// RLIMIT_AS, and its random heap base: see internal/runtimeroom). The
// runtime exits with status 2, or, out of room even for its fatal error's
// own work, dies of SIGSEGV (the shell's 139: seen once in CI on
// 2026-12-08, with the same two lines and no trace).
func runtimeDeath(code int, stderr string) bool {
	return (code == 2 || code == 128+int(unix.SIGSEGV)) && strings.HasPrefix(stderr, "runtime: out of memory") &&
		strings.Contains(stderr, "fatal error: out of memory") &&
		!strings.Contains(stderr, "github.com/vmspace/vmspace/")
}
