package sandbox

import (
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// keptFaultSrc forks a child that takes two kinds of SIGSEGV in a loop: a
// general-protection fault (a load from a non-canonical address: si_code
// SI_KERNEL, si_addr 0), which a JVM takes for an implicit null check, and
// a page fault at address 8 (SEGV_MAPERR, si_addr 8). Its handler checks
// each signal's details and steps over the load. Meanwhile the parent
// writes a shared page and removes it (MADV_REMOVE) over and over, which
// makes vmspace unmap it in the child too, stopping the child for that.
const keptFaultSrc = `
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#define PAGES 4
#define ROUNDS 1500

static volatile long expect_code, expect_addr;
static volatile int good, bad;
static volatile long bad_code, bad_addr;
static volatile int usr_bad;
static volatile long usr_bad_code;

static void onusr1(int sig, siginfo_t *si, void *ucv) {
	(void)ucv;
	if (sig != SIGUSR1 || si->si_code != SI_QUEUE || si->si_pid != getpid() || si->si_value.sival_int != 42) {
		if (!usr_bad) usr_bad_code = si->si_code;
		usr_bad++;
	}
}

/* "mov (%rax), %rax": 48 8b 00. */
static long load(long addr) {
	long v;
	__asm__ volatile("movq (%%rax), %%rax" : "=a"(v) : "a"(addr) : "memory");
	return v;
}

static void onsegv(int sig, siginfo_t *si, void *ucv) {
	ucontext_t *uc = ucv;
	unsigned char *ip = (unsigned char *)uc->uc_mcontext.gregs[REG_RIP];
	int at = ip[0] == 0x48 && ip[1] == 0x8b && ip[2] == 0x00;
	if (sig == SIGSEGV && si->si_signo == SIGSEGV && si->si_code == expect_code &&
	    (long)si->si_addr == expect_addr && at) {
		good++;
	} else {
		if (!bad) {
			bad_code = si->si_code;
			bad_addr = (long)si->si_addr;
		}
		bad++;
	}
	if (at) {
		uc->uc_mcontext.gregs[REG_RIP] += 3;
		uc->uc_mcontext.gregs[REG_RAX] = 0;
	}
}

static volatile int *done;

/* Queues SIGUSR1 to its own process, which only the main thread takes. */
static void *sender(void *arg) {
	(void)arg;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	union sigval v = {.sival_int = 42};
	while (*done != 1) {
		sigqueue(getpid(), SIGUSR1, v);
		usleep(100);
	}
	return NULL;
}

int main(void) {
	char *shared = mmap(NULL, PAGES * 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	done = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shared == MAP_FAILED || done == MAP_FAILED) { perror("mmap"); return 1; }
	pid_t pid = fork();
	if (pid < 0) { perror("fork"); return 1; }
	if (pid == 0) {
		struct sigaction sa;
		memset(&sa, 0, sizeof sa);
		sa.sa_sigaction = onsegv;
		sa.sa_flags = SA_SIGINFO | SA_NODEFER;
		sigaction(SIGSEGV, &sa, NULL);
		sa.sa_sigaction = onusr1;
		sa.sa_flags = SA_SIGINFO | SA_RESTART;
		sigaction(SIGUSR1, &sa, NULL);
		pthread_t th;
		pthread_create(&th, NULL, sender, NULL);
		long sum = 0;
		for (int i = 0; i < ROUNDS; i++) {
			for (int p = 0; p < PAGES; p++) sum += shared[p * 4096];
			expect_code = SI_KERNEL; expect_addr = 0;
			load((long)0x8000000000000000UL);
			expect_code = SEGV_MAPERR; expect_addr = 8;
			load(8);
			expect_code = SI_KERNEL; expect_addr = 0;
			load((long)0x8000000000000000UL);
		}
		*done = 1;
		pthread_join(th, NULL);
		printf("child: %d signals as expected, %d not", good, bad);
		if (bad) printf(" (first: si_code %ld si_addr %#lx)", bad_code, bad_addr);
		printf("; SIGUSR1 with other details: %d", usr_bad);
		if (usr_bad) printf(" (first: si_code %ld)", usr_bad_code);
		printf("\n");
		fflush(stdout);
		_exit(sum == -1);
	}
	while (*done != 1) {
		madvise(shared, PAGES * 4096, MADV_REMOVE);
		for (int p = 0; p < PAGES; p++) shared[p * 4096] = 1;
	}
	int st;
	waitpid(pid, &st, 0);
	printf("parent: child status %#x\n", st);
	return 0;
}
`

// TestKeptSignalKeepsSiginfo checks that a signal vmspace keeps while it
// stops a thread reaches the program with its own details. vmspace stops a
// running thread with a SIGSTOP (stopTask) to change its host mappings;
// a signal that comes first is kept and delivered when the thread
// resumes. A general-protection fault is such a signal (its si_code is
// SI_KERNEL, not a page fault's, which is dropped to come back when the
// thread runs on). It used to be sent again with tgkill, so the program's
// handler saw si_code SI_TKILL and vmspace's pid in place of si_addr:
// TestJava's JVM, whose implicit null checks take such faults, died of
// "SIGSEGV (sent by kill)". The hook makes every stop of the child take
// the window: it waits until the child is stopped at its next fault,
// unreported, before vmspace sends its SIGSTOP.
func TestKeptSignalKeepsSiginfo(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "keptfault", keptFaultSrc, false)
	fastPathFor(t, false)
	var forced atomic.Int64
	holderHook = func(cands []*task) {
		// The child's main thread, which takes the faults and the
		// SIGUSR1s, is the first candidate.
		if len(cands) != 2 || !waitTracingStop(cands[0].tid) {
			return
		}
		// Its other thread queues a SIGUSR1 (that thread does not
		// stop for it).
		for i := 0; i < 500 && !signalPending(cands[0].p.pid, unix.SIGUSR1); i++ {
		}
		forced.Add(1)
	}
	defer func() { holderHook = nil }()
	compare(t, "", "", exe)
	if forced.Load() < 10 {
		t.Fatalf("the child was found stopped before vmspace stopped it only %d times: the window was not reached", forced.Load())
	}
	t.Logf("%d stops of the child forced into the window", forced.Load())
}

// waitTracingStop waits (a bounded number of looks) until thread tid is in
// a ptrace stop ('t' in /proc/TID/stat), and reports whether it got there.
func waitTracingStop(tid int) bool {
	for i := 0; i < 200000; i++ {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", tid))
		if err != nil {
			return false
		}
		s := string(b)
		if j := strings.LastIndexByte(s, ')'); j >= 0 && j+2 < len(s) {
			switch s[j+2] {
			case 't':
				return true
			case 'Z', 'X':
				return false
			}
		}
	}
	return false
}

// childSignalSrc forks children from its main thread, which waits for each
// with waitpid, while a second thread sleeps; neither blocks SIGCHLD,
// whose handler counts the signals, and those the forking thread took.
const childSignalSrc = `
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define FORKS 300

static volatile int handled, inforker, stop;
static pid_t forker;

static void onchld(int sig) {
	(void)sig;
	handled++;
	if (syscall(SYS_gettid) == forker) inforker++;
}

static void *sleeper(void *arg) {
	(void)arg;
	while (!stop) usleep(1000);
	return NULL;
}

int main(void) {
	alarm(60); /* a SIGCHLD that never comes ends the run (exit 142) */
	forker = syscall(SYS_gettid);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = onchld;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGCHLD, &sa, NULL);
	pthread_t th;
	pthread_create(&th, NULL, sleeper, NULL);
	for (int i = 0; i < FORKS; i++) {
		pid_t pid = fork();
		if (pid < 0) { perror("fork"); return 1; }
		if (pid == 0) _exit(0);
		int st;
		if (waitpid(pid, &st, 0) != pid) { perror("waitpid"); return 1; }
		while (handled != i + 1)
			;
	}
	stop = 1;
	pthread_join(th, NULL);
	/* Linux gives a process-directed signal to another thread now and
	   then (complete_signal passes over a thread that is not running and
	   has a signal pending): natively 299 of 300 were seen once. A few
	   elsewhere are Linux's; more are not (vmspace sent 9 there). */
	if (inforker >= FORKS - 3)
		printf("%d forks: %d SIGCHLDs, all but at most 3 in the forking thread\n", FORKS, handled);
	else
		printf("%d forks: %d SIGCHLDs, %d in the forking thread\n", FORKS, handled, inforker);
	return 0;
}
`

// TestChildSignalToForker checks that a child's SIGCHLD reaches the thread
// that forked it when that thread can take it, as on Linux, although
// vmspace often holds that thread in a ptrace stop when the child ends
// (the kernel then gave the signal to the other thread: 9 of 300 went
// there before).
func TestChildSignalToForker(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "childsig", childSignalSrc, false)
	compare(t, "", "", exe)
}

// TestKeptSignalAfterSIGCONT checks that a SIGCONT sent to the program
// does not leave signals vmspace keeps for a thread undelivered (review
// finding A1). The SIGCONT discards the SIGSTOP of vmspace's that is to
// stop the thread for them (carryPending), as it discards every pending
// stop signal; the forking thread of childSignalSrc, kept a SIGCHLD that
// another thread took, then spun for ever waiting for its handler (the
// alarm ended it). The hook sends the SIGCONT right after each of the
// first SIGSTOPs vmspace sends to carry kept signals.
func TestKeptSignalAfterSIGCONT(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "childsig", childSignalSrc, false)
	var sent atomic.Int64
	afterCarry = func(tk *task) {
		if sent.Add(1) <= 20 {
			unix.Kill(tk.p.pid, unix.SIGCONT)
		}
	}
	defer func() { afterCarry = nil }()
	compare(t, "", "", exe)
	if sent.Load() == 0 {
		t.Fatal("vmspace kept no SIGCHLD for the forking thread: the window was not reached")
	}
	t.Logf("%d SIGSTOPs carrying kept signals, the first 20 followed by a SIGCONT", sent.Load())
}

// exitKeptSrc has a second thread take a SIGALRM that its main thread
// blocks, and exit right after: the signal was sent to the process, so
// the main thread gets it when it unblocks it if the second thread is
// gone first. The second thread arms the timer, then unmaps a page (the
// marker call, 5 pages long), and exits with the exit system call.
const exitKeptSrc = `
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

static volatile int handled;
static void onalrm(int sig) { (void)sig; handled++; }

static void *second(void *arg) {
	(void)arg;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGALRM);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	char *p = mmap(NULL, 5 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) return NULL;
	memset(p, 1, 5 * 4096);
	struct itimerval it = {.it_value = {0, 20000}};
	setitimer(ITIMER_REAL, &it, NULL);
	munmap(p, 5 * 4096);
	syscall(SYS_exit, 0);
	return NULL;
}

int main(void) {
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = onalrm;
	sigaction(SIGALRM, &sa, NULL);
	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, SIGALRM);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	pthread_t th;
	pthread_create(&th, NULL, second, NULL);
	pthread_join(th, NULL);
	usleep(100000); /* the timer has fired */
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	printf("SIGALRM handled %d times\n", handled);
	return 0;
}
`

// TestKeptSignalHandedOver checks that a signal sent to the process that
// vmspace keeps for a thread is not lost when that thread exits before it
// is delivered (review finding A2): Linux would give it to another thread.
// The hooks force the window: at the second thread's marker munmap, vmspace
// waits until the timer fired (the SIGALRM pends for the process: the
// main thread blocks it and the second is in a ptrace stop), so the calls
// vmspace injects into the thread take it (kept); and when vmspace carries
// it (carryPending), it waits until the thread is at its exit-stop.
// Without the hand-over the program printed "handled 0 times".
func TestKeptSignalHandedOver(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "exitkept", exitKeptSrc, false)
	fastPathFor(t, false)
	var marked *task
	var forced atomic.Int64
	stopHook = func(s *Sandbox, tk *task) {
		if tk.tid != tk.p.pid && s.fetchRegs(tk) == nil &&
			tk.regs.Orig_rax == unix.SYS_MUNMAP && tk.regs.Rsi == 5*4096 {
			marked = tk
			time.Sleep(80 * time.Millisecond)
		}
	}
	beforeCarry = func(tk *task) {
		if tk == marked && len(tk.pending) > 0 {
			marked = nil
			if waitTracingStop(tk.tid) {
				forced.Add(1)
			}
		}
	}
	defer func() { stopHook, beforeCarry = nil, nil }()
	compare(t, "", "", exe)
	if forced.Load() != 1 {
		t.Fatalf("the second thread exited with a kept signal %d times, want 1: the window was not reached", forced.Load())
	}
}

// childWaitSrc forks children from its main thread, which waits for each
// with waitpid while a second thread sleeps, and counts the waits that
// returned before the SIGCHLD handler had run for that child: none on
// Linux, which sends a child's exit signal before its parent can reap it
// and runs the handler on the way back from waitpid. Its argument picks
// the wait: wait4 or waitid.
const childWaitSrc = `
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define FORKS 300

static volatile int handled, stop;

static void onchld(int sig) { (void)sig; handled++; }

static void *sleeper(void *arg) {
	(void)arg;
	while (!stop) usleep(1000);
	return NULL;
}

int main(int argc, char **argv) {
	alarm(60);
	int use_waitid = argc > 1 && !strcmp(argv[1], "waitid");
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = onchld;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGCHLD, &sa, NULL);
	pthread_t th;
	pthread_create(&th, NULL, sleeper, NULL);
	int late = 0;
	for (int i = 0; i < FORKS; i++) {
		pid_t pid = fork();
		if (pid < 0) { perror("fork"); return 1; }
		if (pid == 0) _exit(0);
		if (use_waitid) {
			siginfo_t si;
			if (waitid(P_PID, pid, &si, WEXITED) != 0 || si.si_pid != pid) { perror("waitid"); return 1; }
		} else {
			int st;
			if (waitpid(pid, &st, 0) != pid) { perror("waitpid"); return 1; }
		}
		if (handled != i + 1) late++;
		while (handled != i + 1)
			;
	}
	stop = 1;
	pthread_join(th, NULL);
	printf("%d forks: %d SIGCHLDs, %d handled after the wait returned\n", FORKS, handled, late);
	return 0;
}
`

// TestChildSignalBeforeWait checks that a SIGCHLD handler runs before the
// wait that reaps the child returns, as on Linux (issue 11: 11 to 26 of
// 300 ran after it under vmspace).
func TestChildSignalBeforeWait(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "childwait", childWaitSrc, false)
	for _, wait := range []string{"wait4", "waitid"} {
		compare(t, "", "", exe, wait)
	}
}
