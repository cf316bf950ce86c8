package sandbox

import "testing"

// stubReachProg hands the addresses of vmspace's two top pages
// ([StubStart, TASK_SIZE): unmapped on Linux) to system calls that read
// or write memory there, and prints what each returns.
const stubReachProg = `
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static void show(const char *what, long r) {
	printf("%s: %s\n", what, r < 0 ? strerrorname_np(errno) : "ok");
}

int main(void) {
	char *pages[] = {(char *)0x7fffffffd000UL, (char *)0x7fffffffe000UL, (char *)0x7fffffffef00UL};
	int null = open("/dev/null", O_WRONLY);
	int pfd[2];
	pipe(pfd);
	int zero = open("/dev/zero", O_RDONLY);
	int sv[2];
	socketpair(AF_UNIX, SOCK_DGRAM, 0, sv);
	char buf[64] = "local";
	for (int i = 0; i < 3; i++) {
		char *p = pages[i];
		printf("page %d\n", i);
		show("write", write(pfd[1], p, 8));
		show("write to /dev/null", write(null, p, 8));
		show("write to a closed descriptor", write(99, p, 8));
		printf("write of nothing: %ld\n", (long)write(pfd[1], p, 0));
		show("read", read(zero, p, 8));
		show("open", open(p, O_RDONLY));
		show("stat", syscall(SYS_newfstatat, AT_FDCWD, p, buf, 0));
		show("nanosleep", nanosleep((struct timespec *)p, NULL));
		show("writev array", writev(pfd[1], (struct iovec *)p, 1));
		printf("writev array of nothing: %ld\n", (long)writev(pfd[1], (struct iovec *)p, 0));
		struct iovec iov[2] = {{buf, 0}, {p, 8}};
		show("writev buffer", writev(pfd[1], iov, 2));
		show("writev buffer to /dev/null", writev(null, iov, 2));
		struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
		show("sendmsg buffer", sendmsg(sv[0], &mh, 0));
		show("sendmsg header", sendmsg(sv[0], (struct msghdr *)p, 0));
		struct iovec local = {buf, 8}, remote = {p, 8};
		show("process_vm_readv remote", process_vm_readv(getpid(), &local, 1, &remote, 1, 0));
		show("process_vm_readv remote array", process_vm_readv(getpid(), &local, 1, (struct iovec *)p, 1, 0));
		struct iovec there = {p, 8}, mine = {buf + 16, 8};
		show("process_vm_writev local", process_vm_writev(getpid(), &there, 1, &mine, 1, 0));
		show("process_vm_readv local", process_vm_readv(getpid(), &there, 1, &mine, 1, 0));
	}
	// The same calls below the pages work.
	struct iovec iov = {buf, 8};
	show("writev below", writev(pfd[1], &iov, 1));
	struct iovec local = {buf, 8}, remote = {buf + 16, 8};
	show("process_vm_readv below", process_vm_readv(getpid(), &local, 1, &remote, 1, 0));
	return 0;
}
`

// TestStubReach: system calls given an address in vmspace's own pages at
// the top of the address space fail with EFAULT, as natively where
// nothing is mapped there (issue 18: vmspace's pages out of the program's
// reach), among them those that only read there (write, writev, sendmsg,
// process_vm_writev, paths), which the host would let read vmspace's
// pages.
func TestStubReach(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "stubreach", stubReachProg, false)
	compare(t, t.TempDir(), "", exe)
}
