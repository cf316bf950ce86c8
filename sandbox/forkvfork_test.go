package sandbox

import "testing"

// vforkDuringForkProgram: a thread vforks, and its child blocks reading a
// pipe that the main thread writes only once its own fork has returned;
// the main thread forks while the other thread waits in vfork. On Linux
// all of it ends; the fork child and the parent write what they share
// copy-on-write.
const vforkDuringForkProgram = `#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
static int p[2];
static volatile pid_t vtid;
static char *heap;
static int vstatus;
static void *vforker(void *x) {
	vtid = syscall(SYS_gettid);
	pid_t c = vfork();
	if (c == 0) {
		char b;
		if (read(p[0], &b, 1) != 1) _exit(1);
		_exit(7);
	}
	int st;
	waitpid(c, &st, 0);
	vstatus = WEXITSTATUS(st);
	return 0;
}
int main(void) {
	setvbuf(stdout, 0, _IONBF, 0);
	if (pipe(p)) return 1;
	heap = mmap(0, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(heap, 'P', 1 << 20);
	pthread_t th;
	pthread_create(&th, 0, vforker, 0);
	while (!vtid) usleep(100);
	char path[64], buf[64];
	snprintf(path, sizeof path, "/proc/self/task/%d/syscall", vtid);
	for (;;) {
		FILE *f = fopen(path, "r");
		int n = f ? (int)fread(buf, 1, sizeof buf - 1, f) : 0;
		if (f) fclose(f);
		buf[n > 0 ? n : 0] = 0;
		if (atol(buf) == SYS_vfork) break;
		usleep(100);
	}
	pid_t c = fork();
	if (c == 0) {
		memset(heap, 'C', 1 << 20);
		_exit(heap[12345] == 'C' ? 3 : 4);
	}
	memset(heap, 'Q', 4096);
	if (write(p[1], "x", 1) != 1) return 1;
	int st;
	waitpid(c, &st, 0);
	printf("fork child: %d\n", WEXITSTATUS(st));
	pthread_join(th, 0);
	printf("vfork child: %d\n", vstatus);
	printf("heap %c %c\n", heap[0], heap[8192]);
	return 0;
}
`

// TestForkWhileVforkWaits: a fork while another thread of the process
// waits in vfork for a child that waits for the fork's return ends, as on
// Linux (issue 18, hangs: vmspace stopped the vfork-waiting thread to make
// the fork's mprotect through it, and waited forever, since that thread
// cannot stop before its child execs or exits; SIGTERM did not end the
// run either). The fork is served through another task of the address
// space (here the vfork child, blocked in its read).
func TestForkWhileVforkWaits(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "vforkfork", vforkDuringForkProgram, false)
	compare(t, "", "", exe)
}
