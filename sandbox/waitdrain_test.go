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

// killedHeldSrc forks a child that makes uname calls without end (each
// stops for vmspace: a pointer argument), polls the child's pidfd until it
// says the child has ended (the test kills it), and then asks waitpid,
// with WNOHANG and with and without a status pointer, whether the child
// can be waited for.
const killedHeldSrc = `
#define _GNU_SOURCE
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
	int withStatus = argc > 1 && !strcmp(argv[1], "status");
	pid_t pid = fork();
	if (pid < 0) { perror("fork"); return 1; }
	if (pid == 0) {
		struct utsname u;
		for (;;) uname(&u);
	}
	int fd = syscall(SYS_pidfd_open, pid, 0);
	if (fd < 0) { perror("pidfd_open"); return 1; }
	if (argc > 2) kill(pid, SIGKILL); // natively: the test does it under vmspace
	struct pollfd pfd = {fd, POLLIN, 0};
	if (poll(&pfd, 1, -1) != 1) { perror("poll"); return 1; }
	int st = 0;
	pid_t w = withStatus ? waitpid(pid, &st, WNOHANG) : waitpid(pid, NULL, WNOHANG);
	printf("waitable at once: %s\n", w == pid ? "yes" : "no");
	if (w == 0) w = waitpid(pid, &st, 0);
	if (w != pid) { perror("waitpid"); return 1; }
	if (withStatus) printf("killed by %d\n", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
	return 0;
}
`

// procSyscall returns the system call number that task tid is blocked in
// (from /proc/PID/syscall), or -1.
func procSyscall(tid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/syscall", tid))
	if err != nil {
		return -1
	}
	var nr int
	if _, err := fmt.Sscan(string(b), &nr); err != nil {
		return -1
	}
	return nr
}

// procState returns the state letter of task tid (from /proc/PID/stat).
func procState(tid int) byte {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", tid))
	if err != nil {
		return 0
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2]
	}
	return 0
}

// TestWaitAfterKillWhileHeld forces the window of issue 11's pidfd item
// (TestPidfdWait's "children not waitable"): a child is killed while
// vmspace holds it at a system call stop, so that it leaves the stop for
// its exit-stop behind vmspace's back, and vmspace's resumption of the
// stop it served lets it go on from its exit-stop: it ends as a zombie
// still traced, which its parent cannot wait for until vmspace has reaped
// it, though its pidfd already says it has ended. The hooks kill the
// child while the parent polls its pidfd, and hold vmspace back until the
// parent, told by its pidfd that the child has ended, is at its waitpid.
// The parent must find the child waitable at once, with a status pointer
// or without one (a wait4 with no pointer does not stop for vmspace on its
// own).
func TestWaitAfterKillWhileHeld(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "killedheld", killedHeldSrc, false)
	for _, mode := range []string{"status", "nostatus"} {
		t.Run(mode, func(t *testing.T) {
			want := runNative(t, "", "", exe, mode, "kill")
			var fired, resumed atomic.Bool
			var unames atomic.Int32
			stopHook = func(s *Sandbox, tk *task) {
				var r unix.PtraceRegs
				if fired.Load() || tk.tid == s.root || ptraceGetRegs(tk.tid, &r) != nil || r.Orig_rax != unix.SYS_UNAME {
					return
				}
				if unames.Add(1) < 3 {
					return // the buffer's page is mapped by now
				}
				if procSyscall(s.root) != unix.SYS_POLL || procState(s.root) != 'S' {
					// The parent is not polling yet (its stops
					// wait for this one): at a later uname.
					return
				}
				fired.Store(true)
				unix.Kill(tk.tid, unix.SIGKILL)
				for !atExitStop(tk.tid, tk.tid) {
					time.Sleep(time.Millisecond)
				}
				root, s0 := s.root, s
				calls := 0
				afterResume = func() {
					calls++
					switch calls {
					case 1:
						// The child was let go from its exit-stop.
						// The parent's poll returns once it is a
						// zombie: wait for the parent's next stop
						// (its waitpid's, or, if that does not
						// stop, its printf's).
						for procState(root) != 't' {
							time.Sleep(time.Millisecond)
						}
						if st := procState(tk.tid); st != 'Z' {
							t.Errorf("the child is in state %c, not a zombie", st)
						}
						resumed.Store(true)
						if procSyscall(root) == unix.SYS_WAIT4 {
							// Serve the parent's stop first, as
							// when a wait for another task's
							// injected call has kept it.
							_, ws, err := wait4(root, 0)
							if err != nil {
								t.Errorf("wait4: %v", err)
								return
							}
							s0.keep(root, ws)
						}
					case 2:
						// The parent resumed from its waitpid's
						// stop: let its waitpid run before the
						// main loop waits again.
						for procState(root) != 't' {
							time.Sleep(time.Millisecond)
						}
					}
				}
			}
			defer func() { stopHook, afterResume = nil, nil }()
			got, _ := sandboxRun(t, "", "", Options{}, exe, mode)
			if !fired.Load() || !resumed.Load() {
				t.Fatal("the window was not reached")
			}
			if got != want {
				t.Errorf("under vmspace: exit %d\n%s%s\nnatively: exit %d\n%s%s", got.code, got.stdout, got.stderr, want.code, want.stdout, want.stderr)
			}
		})
	}
}
