package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestTerminalInterrupt: a Ctrl-C typed at the terminal reaches the
// program once, as natively. The terminal sends SIGINT to its foreground
// process group, vmspace and the program alike; vmspace, which passes
// signals sent to it on to the program, must not pass this one on too
// (before, the program counted two).
func TestTerminalInterrupt(t *testing.T) {
	prog := buildC(t, "countint", countSigSrc) // counts SIGINTs
	native, ok := typeCtrlC(t, exec.Command(prog, "2"), false)
	if !ok {
		t.Fatal("natively, the typed Ctrl-C brought no SIGINT within 20 s")
	}
	if native != "count 1" {
		t.Fatalf("natively: %q", native)
	}
	// The second copy came in about half the runs: try a few.
	for round := range 6 {
		if got, ok := typeCtrlC(t, vmspaceCmd(t, prog, "2"), true); !ok || got != native {
			t.Fatalf("round %d: under vmspace: %q, natively %q", round, got, native)
		}
	}
}

// typeCtrlC runs cmd as the session leader on a new terminal, types Ctrl-C
// once it is ready and, once it got a SIGINT, sends it SIGUSR2 (to its
// process, vmspace under vmspace: forwarded), and returns its "count"
// line.
//
// Every read waits at most 20 s: ok is false if a line did not come. (It
// was seen natively on a clean CI machine, the program asleep in pause()
// after a typed Ctrl-C, SIGINT caught and unblocked: countSigSrc's lost
// wake-up, since fixed.)
func typeCtrlC(t *testing.T, cmd *exec.Cmd, vmspace bool) (line string, ok bool) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	defer master.Close()
	// The ioctls go through the raw connection, not master.Fd(): Fd puts
	// the descriptor in blocking mode, after which a read deadline is
	// accepted and never fires (the CI run hung here for 20 min).
	rc, err := master.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var ioctlErr error
	if err := rc.Control(func(fd uintptr) {
		if ioctlErr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ioctlErr == nil {
			n, ioctlErr = unix.IoctlGetInt(int(fd), unix.TIOCGPTN)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if ioctlErr != nil {
		t.Fatal(ioctlErr)
	}
	slave, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		slave.Close()
		t.Fatal(err)
	}
	slave.Close()
	defer cmd.Wait()
	defer cmd.Process.Kill()
	if err := master.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Skipf("the terminal's master cannot time out reads: %v", err)
	}
	r := bufio.NewReader(master)
	timedOut := false
	expect := func(want string) string {
		for !timedOut {
			line, err := r.ReadString('\n')
			if errors.Is(err, os.ErrDeadlineExceeded) {
				timedOut = true
				break
			}
			if err != nil {
				t.Fatalf("%v (vmspace %v): waiting for %q: %v", cmd.Args, vmspace, want, err)
			}
			if strings.Contains(line, want) {
				return strings.TrimSpace(line[strings.Index(line, want):])
			}
		}
		return ""
	}
	expect("ready")
	if _, err := master.Write([]byte{3}); err != nil { // Ctrl-C
		t.Fatal(err)
	}
	expect("got")
	if timedOut {
		return "", false
	}
	if err := cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	line = expect("count")
	return line, !timedOut
}
