package sandbox

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/pgalloc"
	"github.com/vmspace/vmspace/platform/ptrace"
	"golang.org/x/sys/unix"
)

// stubPageProg makes fast calls in its first process, a fork child and
// an image the child execs.
const stubPageProg = `
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static int calls(void) {
	int sum = 0;
	for (int i = 0; i < 50; i++) {
		char *p = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		p[0] = 1;
		sum += p[0];
		mprotect(p, 4096, PROT_READ);
		munmap(p, 8192);
	}
	return sum;
}

int main(int argc, char **argv) {
	if (argc > 1) {
		printf("exec'd %d\n", calls());
		return 0;
	}
	printf("start %d\n", calls());
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		printf("child %d\n", calls());
		fflush(stdout);
		execl("/proc/self/exe", argv[0], "x", (char *)0);
		_exit(127);
	}
	int st;
	waitpid(pid, &st, 0);
	printf("child status %d\n", WEXITSTATUS(st));
	return 0;
}
`

// TestFastPathHelperPage checks that with the fast path each process's
// page at scratchAddr (its helper's comm area) stays read-only in the
// host in every kind of process: the helper never changes its protection.
func TestFastPathHelperPage(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "stubpage", stubPageProg, false)
	perms := map[string]int{}
	pids := map[int]bool{}
	fastHook = func(s *Sandbox, tk *task, nr int, a [6]uint64) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", tk.p.pid))
		if err != nil {
			perms[err.Error()]++
			return
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "7fffffffd000-7fffffffe000 ") {
				perms[strings.Fields(l)[1]]++
				pids[tk.p.pid] = true
			}
		}
	}
	defer func() { fastHook = nil }()
	var got result
	var st Stats
	withFastPath(t, func() { got, st = sandboxRun(t, t.TempDir(), "", Options{}, exe) })
	want := "start 50\nchild 50\nexec'd 50\nchild status 0\n"
	if got.stdout != want || got.code != 0 {
		t.Errorf("exit %d, stdout %q, want %q; stderr: %s", got.code, got.stdout, want, got.stderr)
	}
	if st.FastCalls < 450 || len(pids) != 2 {
		t.Errorf("%d fast calls in %d processes, want at least 450 in 2", st.FastCalls, len(pids))
	}
	if len(perms) != 1 || perms["r--s"] == 0 {
		t.Errorf("the page at scratchAddr at the fast calls: %v, want r--s only", perms)
	}
}

// pageStoreProg stores to the page at 0x7fffffffd000 (unmapped on Linux,
// vmspace's scratch page under vmspace) over and over while another
// thread makes fast calls, and counts the stores that fault.
const pageStoreProg = `
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

static sigjmp_buf jb;
static volatile int faults, stop, stores;

static void onsegv(int sig) { faults++; siglongjmp(jb, 1); }

static void *caller(void *arg) {
	long n = 0;
	while (!stop) {
		char *p = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) return 0;
		p[0] = 1;
		mprotect(p, 4096, PROT_READ);
		munmap(p, 4096);
		n++;
	}
	return (void *)n;
}

int main(void) {
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = onsegv;
	sigaction(SIGSEGV, &sa, 0);
	pthread_t th;
	pthread_create(&th, 0, caller, 0);

	for (int i = 0; i < 3000; i++) {
		if (sigsetjmp(jb, 1) == 0) {
			*(volatile char *)(0x7fffffffd000UL + 16 * (i % 200)) = 1;
			stores++;
		}
	}
	stop = 1;
	void *n;
	pthread_join(th, &n);
	printf("stores %d, faults %d, calls %s\n", stores, faults, n ? "made" : "none");
	return 0;
}
`

// TestFastPathPageOutOfReach checks that the program cannot write its
// page at scratchAddr at any moment, even while fast calls are being
// served for another of its threads: every store faults, as on Linux,
// where nothing is mapped there. (The helper used to make the page
// writable for the moment of storing each result, and a store of the
// program's in that moment went through.)
func TestFastPathPageOutOfReach(t *testing.T) {
	needPtrace(t)
	if b, err := os.ReadFile("/proc/sys/kernel/randomize_va_space"); err != nil || strings.TrimSpace(string(b)) == "0" {
		t.Skip("without address space randomization the native stack is at the top of the user range")
	}
	exe := buildC(t, "pagestore", pageStoreProg, false)
	var st Stats
	withFastPath(t, func() { st = compare(t, "", "", exe) })
	if st.FastCalls < 100 {
		t.Errorf("%d fast calls, want at least 100", st.FastCalls)
	}
}

// TestFastPathScratchEnd checks that vmspace's writes of the arguments of
// injected calls to a process's page at scratchAddr stop before its
// helper's comm area (a long path written there would overwrite it).
func TestFastPathScratchEnd(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "stubpage", stubPageProg, false)
	var once sync.Once
	var errs []string
	stopHook = func(s *Sandbox, tk *task) {
		h := s.fp.scratchPage(tk.p)
		if h == nil || !s.fp.ownPage(tk.p) {
			return
		}
		once.Do(func() {
			comm := append([]byte(nil), h.mem[ptrace.HelperCommOff:]...)
			long := []byte(strings.Repeat("p", hostarch.PageSize-1) + "\x00")
			if err := s.writeMem(tk.p.pid, scratchAddr, long); !errors.Is(err, unix.EFAULT) {
				errs = append(errs, fmt.Sprintf("a page-long write: %v, want EFAULT", err))
			}
			if err := s.writeMem(tk.p.pid, scratchAddr+ptrace.HelperCommOff-8, make([]byte, 16)); !errors.Is(err, unix.EFAULT) {
				errs = append(errs, fmt.Sprintf("a write across the comm area's start: %v, want EFAULT", err))
			}
			if err := s.writeMem(tk.p.pid, scratchAddr, long[:ptrace.HelperCommOff]); err != nil {
				errs = append(errs, fmt.Sprintf("a write up to the comm area: %v", err))
			}
			if string(h.mem[ptrace.HelperCommOff:]) != string(comm) {
				errs = append(errs, "the comm area changed")
			}
		})
	}
	defer func() { stopHook = nil }()
	var got result
	withFastPath(t, func() { got, _ = sandboxRun(t, t.TempDir(), "", Options{}, exe) })
	if got.code != 0 {
		t.Errorf("exit %d, stderr %s", got.code, got.stderr)
	}
	called := false
	once.Do(func() { called = true })
	if called {
		t.Fatal("no stop in a process with a page of its own")
	}
	for _, e := range errs {
		t.Error(e)
	}
}

// TestFastPathPagesByProcess checks the records of the processes' pages:
// kept by process, so that a new process that reuses the pid of one not
// yet released (pid_max is 32768) gets a page and helper of its own and
// the old one's release leaves its page alone; a page shared by CLONE_VM
// processes lives until the last of them has exec'd or ended.
func TestFastPathPagesByProcess(t *testing.T) {
	mf, err := pgalloc.New(pgalloc.Options{Name: "vmspace-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer mf.Destroy()
	s := &Sandbox{mf: mf, stubPages: memmap.FileRange{Start: 0, End: 2 * hostarch.PageSize}}
	fp := &fastpath{s: s, pages: make(map[*process]*fpHelper)}
	s.fp = fp
	page := func(p *process) *fpHelper {
		h, err := fp.newPage()
		if err != nil {
			t.Fatal(err)
		}
		fp.set(p, h)
		h.proc, h.tid = p, p.pid+1
		return h
	}
	// A process that ended, and one with its pid (a fork child at its
	// first stop) before the old one is released.
	old := &process{pid: 4242}
	ho := page(old)
	nw := &process{pid: 4242}
	if fp.scratchPage(nw) != nil || fp.ownPage(nw) {
		t.Fatal("a new process with a reused pid has the old one's page")
	}
	hn := page(nw)
	fp.release(old)
	if ho.mem != nil || !ho.dead {
		t.Error("the old process's page was not freed at its release")
	}
	if fp.scratchPage(nw) != hn || hn.mem == nil || hn.dead || s.scratchOff(nw) != hn.page.Start {
		t.Error("the old process's release took the new one's page")
	}
	fp.release(nw)

	// A CLONE_VM child shares its parent's page; the parent execs (a
	// new page) and ends: the child keeps the old page until it ends.
	sp := &space{procs: make(map[*process]struct{})}
	par, ch := &process{pid: 100, sp: sp}, &process{pid: 101, sp: sp}
	sp.procs[par], sp.procs[ch] = struct{}{}, struct{}{}
	hp := page(par)
	if fp.scratchPage(ch) != hp || fp.helperOf(sp) != hp {
		t.Fatal("a CLONE_VM child does not share its parent's page and helper")
	}
	// The exec (fastpathImage's hand-off), then the new image's page.
	fp.handOff(par, hp)
	delete(fp.pages, par)
	fp.unref(hp)
	h2 := page(par)
	if hp.mem == nil || fp.scratchPage(ch) != hp || !hp.dead {
		t.Error("after its parent's exec a CLONE_VM child lost its page, or the old helper lives")
	}
	if fp.scratchPage(par) != h2 {
		t.Error("the exec'd process does not have its new page")
	}
	delete(sp.procs, par)
	par.sp = nil
	fp.release(par)
	if h2.mem != nil {
		t.Error("the exec'd process's page was not freed at its release")
	}
	if hp.mem == nil {
		t.Error("the CLONE_VM child's page was freed while it maps it")
	}
	fp.release(ch)
	if hp.mem != nil || fp.live != 0 || len(fp.pages) != 0 {
		t.Errorf("pages left: %d allocated, %d recorded", fp.live, len(fp.pages))
	}
}

// startFailProg forks children that make fast calls.
const startFailProg = `
#include <stdio.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
	for (int i = 0; i < 2; i++) {
		pid_t pid = fork();
		if (pid == 0) {
			char *p = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			p[0] = 1;
			_exit(p[0] + 1);
		}
		int st;
		waitpid(pid, &st, 0);
		printf("child %d: %s %d\n", i, WIFSIGNALED(st) ? "signal" : "exit", WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
	}
	return 0;
}
`

// TestFastPathStartFailure checks startHelper's failures: a fork child
// whose helper cannot be started is killed (at each step), the program
// runs on, and no page is left behind; a failure in the first process
// ends the run with an error (it used to hang in the fast path's
// shutdown, whose server was not started yet).
func TestFastPathStartFailure(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "startfail", startFailProg, false)
	defer func() { startHelperFault, fpShutdownHook = nil, nil }()
	for _, step := range []string{"page", "stubfd", "mmap", "sigmask", "clone"} {
		t.Run(step, func(t *testing.T) {
			first := 0
			failed := 0
			startHelperFault = func(p *process, what string) error {
				if first == 0 {
					first = p.pid
				}
				if p.pid != first && what == step {
					failed++
					return unix.ENOMEM
				}
				return nil
			}
			left := -1
			fpShutdownHook = func(fp *fastpath) { left = fp.live }
			var got result
			withFastPath(t, func() { got, _ = sandboxRun(t, t.TempDir(), "", Options{}, exe) })
			want := "child 0: signal 9\nchild 1: signal 9\n"
			if got.stdout != want || got.code != 0 {
				t.Errorf("exit %d, stdout %q, want %q", got.code, got.stdout, want)
			}
			if failed != 2 {
				t.Errorf("%d failures, want 2", failed)
			}
			if left != 0 {
				t.Errorf("%d pages left at the end", left)
			}
		})
	}
	t.Run("first", func(t *testing.T) {
		startHelperFault = func(p *process, what string) error {
			if what == "clone" {
				return unix.ENOMEM
			}
			return nil
		}
		fpShutdownHook = nil
		var err error
		done := make(chan struct{})
		withFastPath(t, func() {
			go func() {
				defer close(done)
				_, err = Run(Options{Argv: []string{exe}, Env: testEnv(), Stdout: devNull(), Stderr: devNull()})
			}()
			<-done
		})
		if err == nil || !errors.Is(err, unix.ENOMEM) {
			t.Errorf("run: %v, want the helper's failure", err)
		}
	})
}
