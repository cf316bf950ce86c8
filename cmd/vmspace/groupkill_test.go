package main

import (
	"bufio"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// countSigSrc counts the signals numbered argv[1] that it gets: it says
// "ready", waits for the first, says "got", and prints the count when
// SIGUSR2 comes. A second copy sent before SIGUSR2 is always counted
// (SIGUSR2 stays blocked until then, and every pending signal is
// delivered before sigsuspend returns).
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
	sigset_t m, wait;
	sigemptyset(&m);
	sigaddset(&m, SIGUSR2);
	sigprocmask(SIG_BLOCK, &m, &wait);
	write(1, "ready\n", 6);
	while (!n) pause();
	write(1, "got\n", 4);
	while (!done) sigsuspend(&wait);
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
		native := groupKilled(t, exec.Command(prog, arg), sig)
		if native != "count 1" {
			t.Fatalf("%v natively: %q", sig, native)
		}
		for round := range 6 {
			if got := groupKilled(t, vmspaceCmd(t, prog, arg), sig); got != native {
				t.Fatalf("%v round %d: under vmspace %q, natively %q", sig, round, got, native)
			}
		}
	}
}

// groupKilled starts cmd as the leader of a new process group, sends sig
// to the group once cmd is ready, then SIGUSR2 to cmd's process once it
// got the signal, and returns its "count" line. A line that does not come
// within a generous limit fails the test (a hang detector).
func groupKilled(t *testing.T, cmd *exec.Cmd, sig syscall.Signal) string {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	defer cmd.Wait()
	defer syscall.Kill(-pgid, syscall.SIGKILL)
	lines := make(chan string)
	go func() {
		defer close(lines)
		r := bufio.NewReader(out)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				io.Copy(io.Discard, r)
				return
			}
			lines <- strings.TrimSpace(line)
		}
	}()
	expect := func(want string) string {
		for {
			select {
			case line, ok := <-lines:
				if !ok {
					t.Fatalf("%v: output ended waiting for %q", cmd.Args, want)
				}
				if strings.HasPrefix(line, want) {
					return line
				}
			case <-time.After(60 * time.Second):
				syscall.Kill(-pgid, syscall.SIGKILL)
				t.Fatalf("%v: no %q within 60 s", cmd.Args, want)
			}
		}
	}
	expect("ready")
	if err := syscall.Kill(-pgid, sig); err != nil {
		t.Fatal(err)
	}
	expect("got")
	if err := cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	return expect("count")
}
