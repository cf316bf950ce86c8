package main

import (
	"fmt"
	"os/exec"
	"syscall"
	"testing"
)

// countSigSrc counts the signals numbered argv[1] that it gets: it says
// "ready", waits for the first, says "got", and prints the count when
// SIGUSR2 comes. A second copy sent before SIGUSR2 is always counted
// (SIGUSR2 stays blocked until then, and every pending signal is
// delivered before sigsuspend returns).
//
// Both signals stay blocked except inside sigsuspend, so that one that
// comes between the test of the flag and the wait is not lost: with
// "while (!n) pause();" a signal whose handler ran after the test and
// before pause left the program in pause for good, under load about one
// run in 200, natively as under vmspace (TestGroupKill's flake; /proc
// showed the program sleeping in pause, the signal caught, unblocked and
// not pending).
const countSigSrc = `
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
static volatile sig_atomic_t n, done;
static void on(int s) { n++; }
static void onusr2(int s) { done = 1; }
int main(int argc, char **argv) {
	int sig = atoi(argv[1]);
	struct sigaction sa = {0};
	sa.sa_handler = on;
	sigaction(sig, &sa, 0);
	sa.sa_handler = onusr2;
	sigaction(SIGUSR2, &sa, 0);
	sigset_t m, first, second;
	sigemptyset(&m);
	sigaddset(&m, sig);
	sigaddset(&m, SIGUSR2);
	sigprocmask(SIG_BLOCK, &m, &second);
	first = second;
	sigaddset(&first, SIGUSR2);
	write(1, "ready\n", 6);
	while (!n) sigsuspend(&first);
	write(1, "got\n", 4);
	while (!done) sigsuspend(&second);
	printf("count %d\n", (int)n);
	return 0;
}
`

// TestGroupKill: a signal that another process sends to the whole
// process group holding vmspace and the program (kill -SIG -PGID, as a
// shell's kill of a job does) reaches the program once, as natively.
// vmspace, which passes the signals sent to it on to the program, must
// not pass on its own copy of one the program got itself (before, the
// program counted two, for SIGTERM and SIGUSR1 alike).
func TestGroupKill(t *testing.T) {
	prog := buildC(t, "countsig", countSigSrc)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGUSR1} {
		arg := fmt.Sprint(int(sig))
		native := groupKilled(t, fmt.Sprintf("%v natively", sig), exec.Command(prog, arg), sig)
		if native != "count 1" {
			t.Fatalf("%v natively: %q", sig, native)
		}
		for round := range 6 {
			name := fmt.Sprintf("%v round %d under vmspace", sig, round)
			if got := groupKilled(t, name, vmspaceCmd(t, prog, arg), sig); got != native {
				t.Fatalf("%s: %q, natively %q", name, got, native)
			}
		}
	}
}

// groupKilled starts cmd as the leader of a new process group, sends sig
// to the group once cmd is ready, then SIGUSR2 to cmd's process once it
// got the signal, and returns its "count" line.
func groupKilled(t *testing.T, name string, cmd *exec.Cmd, sig syscall.Signal) string {
	t.Helper()
	g := startGroup(t, name, cmd)
	g.expect("ready")
	if err := syscall.Kill(-g.pgid, sig); err != nil {
		t.Fatal(err)
	}
	g.expect("got")
	if err := cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	line := g.expect("count")
	g.wait()
	return line
}
