package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// The test binary is vmspace itself when VMSPACE_TEST_MAIN is set (so that
// tests can run "vmspace run" as a process of its own).
func TestMain(m *testing.M) {
	if os.Getenv("VMSPACE_TEST_MAIN") == "1" {
		os.Args = append([]string{"vmspace"}, os.Args[1:]...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// vmspaceCmd returns a command running "vmspace run -- argv".
func vmspaceCmd(t *testing.T, argv ...string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, append([]string{"run", "--"}, argv...)...)
	cmd.Env = append(os.Environ(), "VMSPACE_TEST_MAIN=1")
	return cmd
}

// buildC compiles a C program, or skips the test without gcc.
func buildC(t testing.TB, name, src string) string {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("no gcc")
	}
	dir := t.TempDir()
	c := filepath.Join(dir, name+".c")
	if err := os.WriteFile(c, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, name)
	if out, err := exec.Command("gcc", "-O2", "-o", exe, c).CombinedOutput(); err != nil {
		t.Skipf("gcc: %v\n%s", err, out)
	}
	return exe
}

// waiterSrc runs its arguments as a child and prints how the child ended,
// as a parent sees it with waitpid.
const waiterSrc = `
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv) {
	pid_t pid = fork();
	if (pid == 0) { execv(argv[1], argv + 1); _exit(127); }
	int st;
	if (waitpid(pid, &st, 0) != pid) return 1;
	if (WIFSIGNALED(st)) printf("killed by signal %d\n", WTERMSIG(st));
	else printf("exited %d\n", WEXITSTATUS(st));
	return 0;
}
`

// dieSrc ends as argv[1] says: "segv", "abort" or an exit code.
const dieSrc = `
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
	if (!strcmp(argv[1], "segv")) *(volatile int *)0 = 1;
	if (!strcmp(argv[1], "abort")) abort();
	return atoi(argv[1]);
}
`

// TestDiesOfSignal: a parent of vmspace sees what the parent of the program
// sees natively: killed by SIGSEGV or SIGABRT (WIFSIGNALED), or the exit
// code; vmspace leaves no core file of its own.
func TestDiesOfSignal(t *testing.T) {
	waiter := buildC(t, "waiter", waiterSrc)
	die := buildC(t, "die", dieSrc)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, how := range []string{"segv", "abort", "3", "0"} {
		native, err := exec.Command(waiter, die, how).Output()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(waiter, self, "run", "--", die, how)
		cmd.Env = append(os.Environ(), "VMSPACE_TEST_MAIN=1")
		cmd.Dir = dir
		got, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(native) {
			t.Errorf("%s: under vmspace %q, natively %q", how, got, native)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("vmspace left files: %v", ents)
	}
}

// familySrc forks three children that wait for signals, says "ready" and
// waits for signals itself. Its children hold its standard output.
const familySrc = `
#include <stdio.h>
#include <unistd.h>
int main(void) {
	for (int i = 0; i < 3; i++) if (fork() == 0) for (;;) pause();
	printf("ready\n");
	fflush(stdout);
	for (;;) pause();
}
`

// TestForwardSignals: SIGINT, SIGTERM or SIGHUP sent to vmspace alone (kill
// PID, timeout -s SIG) reaches every process of the program, as a terminal
// sends it to its foreground group: the program and its children end
// (their standard output closes) and vmspace dies of the signal that
// killed the program, as the program does natively when its process group
// is sent the signal. Before, SIGINT did nothing and SIGTERM reached the
// first process only, leaving its children running and vmspace waiting.
func TestForwardSignals(t *testing.T) {
	family := buildC(t, "family", familySrc)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP} {
		nws := runSignalled(t, fmt.Sprintf("%v natively", sig), exec.Command(family),
			func(pid int) { syscall.Kill(-pid, sig) })
		ws := runSignalled(t, fmt.Sprintf("%v under vmspace", sig), vmspaceCmd(t, family),
			func(pid int) { syscall.Kill(pid, sig) })
		if !nws.Signaled() || nws.Signal() != sig {
			t.Fatalf("%v: native status %#x", sig, nws)
		}
		if ws != nws {
			t.Errorf("%v: vmspace's status %#x, the program's natively %#x", sig, ws, nws)
		}
	}
}

// runSignalled starts cmd as the leader of a process group, waits for its
// "ready", calls send with its pid, and returns its wait status once its
// standard output is closed (by every process holding it).
func runSignalled(t *testing.T, name string, cmd *exec.Cmd, send func(pid int)) syscall.WaitStatus {
	t.Helper()
	g := startGroup(t, name, cmd)
	g.expect("ready")
	send(cmd.Process.Pid)
	return g.wait()
}
