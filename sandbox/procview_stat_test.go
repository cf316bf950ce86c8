package sandbox

import "testing"

// procStatProgram asks what a /proc file's descriptor is, by every call that
// can: fstat, fstatat(AT_EMPTY_PATH), statx, fstatfs, stat, statx and statfs
// of its /proc/self/fd link, readlink of that link by every path a program
// uses (pid and tid replaced, as they differ between runs), lseek, and a
// reopen through the link. Inode numbers differ between runs: the program
// prints whether the ones it sees agree with each other.
const procStatProgram = `
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/statfs.h>

static char pidstr[32], tidstr[32];

/* Prints link text with this process's pid and tid replaced. */
static void showlink(const char *what, const char *l, ssize_t n) {
	char buf[512], out[512] = "";
	if (n < 0) { printf("%s: %s\n", what, strerrorname_np(errno)); return; }
	memcpy(buf, l, n); buf[n] = 0;
	char *p = buf;
	while (*p) {
		if (!strncmp(p, tidstr, strlen(tidstr)) && strcmp(pidstr, tidstr) && (p[strlen(tidstr)] == '/' || !p[strlen(tidstr)])) { strcat(out, "TID"); p += strlen(tidstr); continue; }
		if (!strncmp(p, pidstr, strlen(pidstr)) && (p[strlen(pidstr)] == '/' || !p[strlen(pidstr)])) { strcat(out, "PID"); p += strlen(pidstr); continue; }
		strncat(out, p, 1); p++;
	}
	printf("%s: %zd %s\n", what, n, out);
}

static void showstat(const char *what, int r, struct stat *st) {
	if (r < 0) { printf("%s: %s\n", what, strerrorname_np(errno)); return; }
	printf("%s: mode %o nlink %lu size %ld blksize %ld blocks %ld uid %d gid %d rdev %lu\n", what, st->st_mode,
	       (unsigned long)st->st_nlink, (long)st->st_size, (long)st->st_blksize, (long)st->st_blocks, st->st_uid, st->st_gid, (unsigned long)st->st_rdev);
}

int main(void) {
	snprintf(pidstr, sizeof pidstr, "%d", getpid());
	snprintf(tidstr, sizeof tidstr, "%d", gettid());
	const char *files[] = {"/proc/self/maps", "/proc/self/smaps", "/proc/self/status", "/proc/self/statm", "/proc/self/mem",
		"/proc/self/pagemap", "/proc/thread-self/smaps_rollup", "/proc/self/numa_maps"};
	int fdd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY);
	for (unsigned i = 0; i < sizeof files / sizeof files[0]; i++) {
		printf("== %s\n", files[i]);
		int fd = open(files[i], O_RDONLY);
		if (fd < 0) { printf("open: %s\n", strerrorname_np(errno)); continue; }
		struct stat st, ps, ls;
		showstat("fstat", fstat(fd, &st), &st);
		struct stat st2;
		showstat("fstatat empty", fstatat(fd, "", &st2, AT_EMPTY_PATH), &st2);
		int r = stat(files[i], &ps);
		printf("same inode as the path: %d %d\n", r == 0 && ps.st_ino == st.st_ino && ps.st_dev == st.st_dev, st2.st_ino == st.st_ino);
		char l[256], lp[64];
		snprintf(lp, sizeof lp, "/proc/self/fd/%d", fd);
		struct stat fs;
		r = stat(lp, &fs);
		showstat("stat fd link", r, &fs);
		printf("  same inode: %d\n", r == 0 && fs.st_ino == st.st_ino && fs.st_dev == st.st_dev);
		showstat("lstat fd link mode only", lstat(lp, &ls), &ls);
		struct statx sx;
		r = statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS | STATX_MNT_ID, &sx);
		if (r < 0) printf("statx: %s\n", strerrorname_np(errno));
		else printf("statx: mask %x mode %o nlink %u size %llu blksize %u blocks %llu ino-same %d\n", sx.stx_mask & ~0x1000u, sx.stx_mode, sx.stx_nlink,
			    (unsigned long long)sx.stx_size, sx.stx_blksize, (unsigned long long)sx.stx_blocks, sx.stx_ino == st.st_ino);
		r = statx(AT_FDCWD, lp, 0, STATX_BASIC_STATS, &sx);
		printf("statx link: %d mode %o ino-same %d\n", r, sx.stx_mode, sx.stx_ino == st.st_ino);
		struct statfs sf;
		r = fstatfs(fd, &sf);
		printf("fstatfs: %d type %lx bsize %ld\n", r, (long)sf.f_type, (long)sf.f_bsize);
		r = statfs(lp, &sf);
		printf("statfs link: %d type %lx\n", r, (long)sf.f_type);
		showlink("readlink", l, readlink(lp, l, sizeof l));
		showlink("readlink 6", l, readlink(lp, l, 6));
		char nm[16]; snprintf(nm, sizeof nm, "%d", fd);
		showlink("readlinkat", l, readlinkat(fdd, nm, l, sizeof l));
		snprintf(lp, sizeof lp, "/dev/fd/%d", fd);
		showlink("readlink /dev/fd", l, readlink(lp, l, sizeof l));
		snprintf(lp, sizeof lp, "/proc/%d/fd/%d", getpid(), fd);
		showlink("readlink /proc/PID/fd", l, readlink(lp, l, sizeof l));
		snprintf(lp, sizeof lp, "/proc/thread-self/fd/%d", fd);
		showlink("readlink thread-self", l, readlink(lp, l, sizeof l));
		/* lseek as the file's own llseek answers. */
		char buf[100];
		ssize_t n = i == 4 || i == 5 ? 0 : read(fd, buf, sizeof buf);
		printf("read %zd; lseek cur %lld", n, (long long)lseek(fd, 0, SEEK_CUR));
		errno = 0;
		printf(" set-big %lld", (long long)lseek(fd, 1 << 20, SEEK_SET));
		errno = 0;
		if (i != 4 && i != 5) printf(" read-there %zd", read(fd, buf, sizeof buf));
		if (i == 4 || i == 5) {
			/* mem_lseek's negative positions: a limit (procview.go). */
			printf("\n");
			goto reopen;
		}
		errno = 0;
		off_t o = lseek(fd, -1, SEEK_SET);
		printf(" set-neg %lld %s", (long long)o, o < 0 ? strerrorname_np(errno) : "");
		lseek(fd, 3, SEEK_SET);
		errno = 0;
		o = lseek(fd, -5, SEEK_CUR);
		printf(" cur-neg %lld %s", (long long)o, o < 0 ? strerrorname_np(errno) : "");
		printf(" cur-back %lld\n", (long long)lseek(fd, -2, SEEK_CUR));
	reopen:
		/* A reopen through the link is a reader of its own. */
		snprintf(lp, sizeof lp, "/proc/self/fd/%d", fd);
		int fd2 = open(lp, O_RDONLY);
		if (fd2 < 0) printf("reopen: %s\n", strerrorname_np(errno));
		else {
			struct stat s3;
			fstat(fd2, &s3);
			showlink("reopened readlink", l, readlink((snprintf(lp, sizeof lp, "/proc/self/fd/%d", fd2), lp), l, sizeof l));
			printf("reopened: same inode %d pos %lld\n", s3.st_ino == st.st_ino, (long long)lseek(fd2, 0, SEEK_CUR));
			if (i != 4 && i != 5) {
				/* Each reader has its own buffer: a read of the
				   reopened file leaves the first's pending. */
				lseek(fd, 0, SEEK_SET);
				ssize_t a = read(fd, buf, sizeof buf), b = read(fd2, buf, 50), c = read(fd, buf, sizeof buf);
				printf("reads %zd %zd %zd\n", a, b, c);
			}
			close(fd2);
		}
		close(fd);
	}
	return 0;
}
`

// TestProcViewStat: stat-like calls, readlink and lseek of a /proc view's
// descriptor answer as Linux's for the /proc file (a regular file of
// mode 0444, size 0, on proc, its link reading /proc/PID/maps), not as for
// the memfd that serves it; so does its /proc/self/fdinfo (fdinfo: the
// /proc file's inode and mount).
func TestProcViewStat(t *testing.T) {
	needPtrace(t)
	for _, c := range []struct{ name, src string }{{"procstat", procStatProgram}, {"fdinfo", procFdinfoProgram}} {
		t.Run(c.name, func(t *testing.T) { compare(t, "", "", buildC(t, c.name, c.src, false)) })
	}
}

// procFdinfoProgram prints whether /proc/self/fdinfo of each view's
// descriptor names the /proc file (its inode as fstat gives it, and the
// mount of /proc, that of a descriptor of /proc/self/cmdline), and its
// flags, also through /proc/PID/task/TID/fdinfo.
const procFdinfoProgram = `
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/stat.h>

static void info(const char *path, unsigned long *mnt, unsigned long *ino, char *flags) {
	char l[256];
	FILE *f = fopen(path, "r");
	*mnt = *ino = 0;
	strcpy(flags, "?");
	while (f && fgets(l, sizeof l, f)) {
		sscanf(l, "mnt_id: %lu", mnt);
		sscanf(l, "ino: %lu", ino);
		if (!strncmp(l, "flags:", 6))
			sscanf(l, "flags: %31s", flags);
	}
	if (f)
		fclose(f);
}

int main(void) {
	const char *names[] = { "maps", "smaps", "status", "pagemap", "mem" };
	char p[96], rf[32], fl[32];
	unsigned long rm, ri, m, ino;
	int ref = open("/proc/self/cmdline", O_RDONLY);
	snprintf(p, sizeof p, "/proc/self/fdinfo/%d", ref);
	info(p, &rm, &ri, rf);
	for (int i = 0; i < 5; i++) {
		snprintf(p, sizeof p, "/proc/self/%s", names[i]);
		int fd = open(p, O_RDONLY | (i % 2 ? O_CLOEXEC : 0));
		struct stat st;
		fstat(fd, &st);
		snprintf(p, sizeof p, "/proc/self/fdinfo/%d", fd);
		info(p, &m, &ino, fl);
		printf("%s: ino is the file's: %d, mnt_id is /proc's: %d, flags %s\n", names[i], ino == st.st_ino, m == rm, fl);
		snprintf(p, sizeof p, "/proc/%d/task/%d/fdinfo/%d", getpid(), getpid(), fd);
		info(p, &m, &ino, fl);
		printf("%s through task: ino is the file's: %d, mnt_id is /proc's: %d\n", names[i], ino == st.st_ino, m == rm);
		close(fd);
	}
	return 0;
}
`
