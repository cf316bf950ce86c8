package sandbox

import (
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// interruptProg sets a SIGUSR1 handler (no SA_RESTART) that says whether
// the page at 0x200000000000 is mapped, marks the moment with an msync
// of that page (not mapped yet: ENOMEM), then maps that page with a fast call. The
// test interrupts that call with SIGUSR1 before the server receives it:
// as on Linux, whose mmap no signal interrupts, the handler must run
// after the mapping is made.
const interruptProg = `
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#define X ((char *)0x200000000000)
static volatile int seen = -1;

static void onusr1(int sig) {
	unsigned char v;
	seen = mincore(X, 4096, &v) == 0;
}

int main(void) {
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = onusr1;
	sigaction(SIGUSR1, &sa, 0);
	msync(X, 4096, MS_ASYNC);
	char *p = mmap(X, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	p[0] = 1;
	printf("mapped %d, handler saw it mapped: %d\n", p == X, seen);
	return 0;
}
`

// TestFastPathInterrupted checks that a fast call that a signal
// interrupts before the server received it is made before the signal's
// handler runs (served at the signal's stop), as Linux makes its memory
// calls: made again after the handler instead, a call never completed
// while signals came faster than the server took it.
func TestFastPathInterrupted(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "interrupt", interruptProg, false)
	// Written by the tracer, read by the server (the kernel orders them:
	// atomics tell the race detector).
	var armed, fired atomic.Bool
	var tid atomic.Int64
	interrupted := make(chan int, 1)
	stopHook = func(s *Sandbox, tk *task) {
		if s.fetchRegs(tk) == nil && tk.regs.Orig_rax == unix.SYS_MSYNC && tk.regs.Rdi == 0x200000000000 {
			tid.Store(int64(tk.tid))
			armed.Store(true)
		}
	}
	// The server, woken by the mmap's notification, holds back until
	// the signal has interrupted the call.
	serveHook = func() {
		if !armed.Load() || fired.Load() {
			return
		}
		fired.Store(true)
		id := int(tid.Load())
		if err := unix.Tgkill(id, id, unix.SIGUSR1); err != nil {
			t.Errorf("tgkill: %v", err)
			return
		}
		<-interrupted
	}
	interruptedHook = func(tk *task, nr int) {
		if tk.tid == int(tid.Load()) && nr == unix.SYS_MMAP {
			select {
			case interrupted <- nr:
			default:
			}
		}
	}
	defer func() { stopHook, serveHook, interruptedHook = nil, nil, nil }()
	var got result
	withFastPath(t, func() { got, _ = sandboxRun(t, t.TempDir(), "", Options{}, exe) })
	want := "mapped 1, handler saw it mapped: 1\n"
	if got.code != 0 || got.stdout != want || !fired.Load() {
		t.Errorf("exit %d, stdout %q (signal sent: %v), want %q; stderr: %s", got.code, got.stdout, fired.Load(), want, got.stderr)
	}
}
