package sandbox

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// outsideTruncProgram maps a file of 3 pages shared and private, writes
// private copies of pages 0 and 2, says "ready", and once told "go" on its
// standard input (another process truncated the file to one page
// meanwhile), loads the pages: Linux drops the private copy of page 2
// (SIGBUS then) and keeps page 0's. With the argument "writer", a second
// thread writes to /dev/null without a pause from before "ready" (each
// write a stop under vmspace) until the main thread is done.
const outsideTruncProgram = fileProbeC + `
#include <pthread.h>
static volatile int writing = 1;
static int started[2];
static void *writer(void *arg) {
	int fd = open("/dev/null", O_WRONLY);
	if (write(fd, "w", 1) != 1 || write(started[1], "s", 1) != 1) exit(1);
	while (writing) write(fd, "w", 1);
	close(fd);
	return arg;
}
int main(int argc, char **argv) {
	pthread_t th;
	char c;
	int threaded = argc > 1 && !strcmp(argv[1], "writer");
	if (threaded && (pipe(started) || pthread_create(&th, 0, writer, 0) || read(started[0], &c, 1) != 1)) return 1;
	struct sigaction sa = {0};
	sa.sa_handler = onbus;
	sigaction(SIGBUS, &sa, 0);
	setvbuf(stdout, 0, _IONBF, 0);
	int fd = mkfile("f", 3, 'f');
	char *s = mmap(0, 3 * 4096, PROT_READ, MAP_SHARED, fd, 0);
	char *p = mmap(0, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	close(fd);
	p[0] = 'P';
	p[2 * 4096] = 'Q';
	show("before: shared page 2", load(s + 2 * 4096));
	show("before: private page 2", load(p + 2 * 4096));
	printf("ready\n");
	char line[16];
	if (!fgets(line, sizeof line, stdin)) { perror("fgets"); return 1; }
	show("private page 0", load(p));
	show("private page 2", load(p + 2 * 4096));
	show("shared page 2", load(s + 2 * 4096));
	show("private page 1", load(p + 4096));
	if (threaded) {
		writing = 0;
		pthread_join(th, 0);
		printf("writer joined\n");
	}
	return 0;
}
`

// TestOutsideTruncation: a mapped file truncated by a process outside the
// sandbox loses the program's private copies of the pages past its new
// end, as on Linux (before, the copy of page 2 kept its data). vmspace
// sees the truncation through inotify and applies it between two stops
// (outside.go): the test waits until it has, since it happens while the
// program waits in a read.
func TestOutsideTruncation(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "outsidetrunc", outsideTruncProgram, false, "-pthread")
	compareOutsideTrunc(t, exe, outsideTruncRun{})
}

// TestOutsideTruncationKeptStop: applying an outside truncation may stop
// a task (holder), and the wait for that stop may take another task's
// report first, which the sandbox keeps for its main loop. The main loop
// must serve it: before, the truncations were applied inside the main
// loop's wait (waitMain), which then waited again, and the kept report was
// never served: the writer thread stayed stopped at its write and the run
// hung. The hook makes the wait take the writer's report every time: it
// lets the writer reach a stop (unreported while the tracer is in the
// hook) before the sandbox stops the main thread, the first candidate,
// whose stop is reported after the writer's (the newer task's first).
func TestOutsideTruncationKeptStop(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "outsidetrunc", outsideTruncProgram, false, "-pthread")
	// The window is the slow path's: the fast path stops no task.
	fastPathFor(t, false)
	var truncating, fired atomic.Bool
	var tids sync.Map // the program's tasks, to end a hung run
	holderHook = func(cands []*task) {
		for _, c := range cands {
			tids.Store(c.tid, true)
		}
		if !truncating.Load() || fired.Load() || len(cands) < 2 {
			return
		}
		fired.Store(true)
		for _, c := range cands[1:] {
			for procState(c.tid) != 't' {
				time.Sleep(time.Millisecond)
			}
		}
	}
	defer func() { holderHook = nil }()
	hung := func() {
		tids.Range(func(k, _ any) bool {
			unix.Kill(k.(int), unix.SIGKILL)
			return true
		})
	}
	compareOutsideTrunc(t, exe, outsideTruncRun{args: []string{"writer"}, truncating: func() { truncating.Store(true) }, hung: hung})
	if !fired.Load() {
		t.Fatal("the sandbox never stopped a running thread to apply the truncation: the window was not reached")
	}
}

// outsideTruncRun says how compareOutsideTrunc runs the program.
type outsideTruncRun struct {
	// args are the program's arguments.
	args []string
	// truncating, if not nil, is called just before the file is
	// truncated under vmspace; hung, if not nil, is called to end a run
	// that has not ended 120 s after the truncation.
	truncating, hung func()
}

// compareOutsideTrunc runs exe natively and under vmspace, truncating its
// file when it is ready, and compares the output. Under vmspace, it waits
// until the sandbox has applied the truncation before telling the program
// to go on.
func compareOutsideTrunc(t *testing.T, exe string, r outsideTruncRun) {
	argv, truncating, hung := r.args, r.truncating, r.hung
	truncate := func(dir string) {
		if err := os.Truncate(filepath.Join(dir, "f"), 4096); err != nil {
			t.Fatal(err)
		}
	}
	// Natively.
	dir := t.TempDir()
	cmd := exec.Command(exe, argv...)
	cmd.Dir = dir
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	native := driveTrunc(t, out, in, func() { truncate(dir) })
	if err := cmd.Wait(); err != nil {
		t.Fatalf("natively: %v", err)
	}
	if !strings.Contains(native, "private page 2: SIGBUS") {
		t.Fatalf("natively:\n%s", native)
	}
	// Under vmspace.
	applied := make(chan struct{}, 1)
	outsideApplied = func() {
		select {
		case applied <- struct{}{}:
		default:
		}
	}
	defer func() { outsideApplied = nil }()
	dir = t.TempDir()
	inR, inW, outR, outW := controlPipes(t)
	done := make(chan error, 1)
	go func() {
		res, err := Run(Options{Argv: append([]string{exe}, argv...), Env: testEnv(), Dir: dir, Stdin: inR, Stdout: outW, Stderr: os.Stderr})
		if err == nil && res.ExitCode() != 0 {
			err = fmt.Errorf("exit status %d", res.ExitCode())
		}
		outW.Close()
		done <- err
	}()
	ended := make(chan struct{})
	got := driveTrunc(t, outR, inW, func() {
		if truncating != nil {
			truncating()
		}
		truncate(dir)
		select {
		case <-applied:
		case <-time.After(60 * time.Second):
			t.Error("vmspace did not apply the truncation within 60 s")
		}
		if hung != nil {
			go func() {
				select {
				case <-ended:
				case <-time.After(120 * time.Second):
					t.Error("the run did not end within 120 s of the truncation: killed")
					hung()
				}
			}()
		}
	})
	inW.Close()
	err = <-done
	close(ended)
	if err != nil {
		t.Fatalf("under vmspace: %v; output:\n%s", err, got)
	}
	inR.Close()
	outR.Close()
	if got != native {
		t.Errorf("under vmspace:\n%s\nnatively:\n%s", got, native)
	}
}

// driveTrunc reads the program's output until "ready", calls between,
// tells it "go", and returns all its output.
func driveTrunc(t *testing.T, out io.Reader, in io.Writer, between func()) string {
	t.Helper()
	r := bufio.NewReader(out)
	var all strings.Builder
	for {
		line, err := r.ReadString('\n')
		all.WriteString(line)
		if err != nil {
			t.Fatalf("no ready: %q", all.String())
		}
		if line == "ready\n" {
			break
		}
	}
	between()
	if _, err := io.WriteString(in, "go\n"); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(r)
	all.Write(rest)
	return all.String()
}

// outsidePunchProgram maps a file of 4 pages eight ways, makes private
// copies of page 0 of one mapping, says "ready", and once told "go" (a
// process outside punched a hole over pages 1 and 2 meanwhile) prints
// every page of every mapping. Linux shows the hole through the page
// cache: in shared mappings and in the pages of private ones not copied
// (read, or populated for reading), while private copies (written, or
// populated for writing: MAP_POPULATE or mlock of a writable mapping,
// MADV_POPULATE_WRITE) keep their data. With the argument "fork", a child
// forked before "ready" prints instead.
const outsidePunchProgram = fileProbeC + `
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#define MADV_POPULATE_WRITE 23
#endif
#define N 8
int main(int argc, char **argv) {
	struct sigaction sa = {0};
	sa.sa_handler = onbus;
	sigaction(SIGBUS, &sa, 0);
	sigaction(SIGSEGV, &sa, 0);
	setvbuf(stdout, 0, _IONBF, 0);
	int fd = mkfile("f", 4, 'f');
	const char *names[N] = {"shared", "private", "private-ro", "populate", "populate-ro", "mlock", "populate-read", "populate-write"};
	char *m[N];
	int rw = PROT_READ | PROT_WRITE;
	m[0] = mmap(0, 4 * 4096, PROT_READ, MAP_SHARED, fd, 0);
	m[1] = mmap(0, 4 * 4096, rw, MAP_PRIVATE, fd, 0);
	m[2] = mmap(0, 4 * 4096, PROT_READ, MAP_PRIVATE, fd, 0);
	m[3] = mmap(0, 4 * 4096, rw, MAP_PRIVATE | MAP_POPULATE, fd, 0);
	m[4] = mmap(0, 4 * 4096, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
	m[5] = mmap(0, 4 * 4096, rw, MAP_PRIVATE, fd, 0);
	m[6] = mmap(0, 4 * 4096, rw, MAP_PRIVATE, fd, 0);
	m[7] = mmap(0, 4 * 4096, rw, MAP_PRIVATE, fd, 0);
	for (int j = 0; j < N; j++) if (m[j] == MAP_FAILED) { perror("mmap"); return 1; }
	if (mlock(m[5], 4 * 4096)) perror("mlock");
	if (madvise(m[6], 4 * 4096, MADV_POPULATE_READ)) perror("MADV_POPULATE_READ");
	if (madvise(m[7], 4 * 4096, MADV_POPULATE_WRITE)) perror("MADV_POPULATE_WRITE");
	close(fd);
	m[1][0] = 'P';
	show("before: private page 1", load(m[1] + 4096));
	int pp[2];
	pid_t pid = -1;
	if (argc > 1 && !strcmp(argv[1], "fork")) {
		if (pipe(pp)) return 1;
		pid = fork();
		if (pid < 0) return 1;
		if (pid == 0) {
			char c;
			close(pp[1]);
			if (read(pp[0], &c, 1) != 0) return 1;
		}
	}
	if (pid != 0) {
		char line[16];
		printf("ready\n");
		if (!fgets(line, sizeof line, stdin)) { perror("fgets"); return 1; }
		if (pid > 0) {
			int st;
			close(pp[1]);
			if (waitpid(pid, &st, 0) != pid || st != 0) printf("child: %#x\n", st);
			return 0;
		}
	}
	for (int j = 0; j < N; j++) {
		printf("%s:", names[j]);
		for (int i = 0; i < 4; i++) {
			int v = load(m[j] + i * 4096);
			printf(" %d", v);
		}
		printf("\n");
	}
	return 0;
}
`

// TestOutsideHolePunch: a hole punched in a mapped file by a process
// outside the sandbox shows through at once where it does on Linux (the
// shared pages and the private pages not copied read zeros; private
// copies keep their data), in the process that mapped the file and in a
// child that inherited the mappings: vmspace maps host files from their
// host descriptors, so the host's page cache is the pages' truth (with
// its own page cache's copies the program read the old data).
func TestOutsideHolePunch(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "outsidepunch", outsidePunchProgram, false)
	punch := func(dir string) {
		fd, err := unix.Open(filepath.Join(dir, "f"), unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		if err := unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 4096, 2*4096); err != nil {
			t.Skipf("punching a hole: %v", err)
		}
	}
	for _, args := range [][]string{nil, {"fork"}} {
		t.Run(strings.Join(append([]string{"self"}, args...), "-"), func(t *testing.T) {
			native, got := compareOutside(t, exe, args, punch)
			if !strings.Contains(native, "shared: 102 0 0 102") || !strings.Contains(native, "private: 80 0 0 102") {
				t.Fatalf("natively, no hole seen:\n%s", native)
			}
			if got != native {
				t.Errorf("under vmspace:\n%s\nnatively:\n%s", got, native)
			}
		})
	}
}

// compareOutside runs exe with args natively and under vmspace, each in a
// directory of its own, calls act with the directory when the program is
// ready, and returns both outputs.
func compareOutside(t *testing.T, exe string, args []string, act func(dir string)) (native, got string) {
	t.Helper()
	run := func(start func(dir string, in, out *os.File) (wait func() error)) string {
		dir := t.TempDir()
		inR, inW, outR, outW := controlPipes(t)
		defer inR.Close()
		defer outR.Close()
		wait := start(dir, inR, outW)
		all := driveTrunc(t, outR, inW, func() { act(dir) })
		inW.Close()
		if err := wait(); err != nil {
			t.Fatalf("%v; output:\n%s", err, all)
		}
		return all
	}
	native = run(func(dir string, in, out *os.File) func() error {
		cmd := exec.Command(exe, args...)
		cmd.Dir, cmd.Stdin, cmd.Stdout, cmd.Stderr = dir, in, out, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		out.Close()
		return cmd.Wait
	})
	got = run(func(dir string, in, out *os.File) func() error {
		done := make(chan error, 1)
		go func() {
			res, err := Run(Options{Argv: append([]string{exe}, args...), Env: testEnv(), Dir: dir, Stdin: in, Stdout: out, Stderr: os.Stderr})
			if err == nil && res.ExitCode() != 0 {
				err = fmt.Errorf("exit status %d", res.ExitCode())
			}
			out.Close()
			done <- err
		}()
		return func() error { return <-done }
	})
	return native, got
}

// outsideTruncPrivateProgram maps 20 MiB of a file of 3 pages privately
// (more than the sandbox maps at once at the mmap), writes pages 0 and 2
// without reading the file through any mapping, says "ready", and once
// told "go" (another process truncated the file to one page meanwhile)
// loads the pages: Linux drops the private copy of page 2.
const outsideTruncPrivateProgram = fileProbeC + `
int main(void) {
	struct sigaction sa = {0};
	sa.sa_handler = onbus;
	sigaction(SIGBUS, &sa, 0);
	setvbuf(stdout, 0, _IONBF, 0);
	int fd = mkfile("f", 3, 'f');
	char *p = mmap(0, 20 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED) { perror("mmap"); return 1; }
	close(fd);
	p[0] = 'P';
	p[2 * 4096] = 'Q';
	printf("ready\n");
	char line[16];
	if (!fgets(line, sizeof line, stdin)) { perror("fgets"); return 1; }
	show("private page 0", load(p));
	show("private page 1", load(p + 4096));
	show("private page 2", load(p + 2 * 4096));
	return 0;
}
`

// TestOutsideTruncationPrivateOnly: the private copies of a file that the
// program only wrote (no mapping of it read) are dropped past the end
// that a process outside set, as on Linux: the file is watched from its
// first host mapping, made at the first write fault.
func TestOutsideTruncationPrivateOnly(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "outsidetruncpriv", outsideTruncPrivateProgram, false)
	applied := make(chan struct{}, 1)
	outsideApplied = func() {
		select {
		case applied <- struct{}{}:
		default:
		}
	}
	defer func() { outsideApplied = nil }()
	underVmspace := false
	native, got := compareOutside(t, exe, nil, func(dir string) {
		if err := os.Truncate(filepath.Join(dir, "f"), 4096); err != nil {
			t.Fatal(err)
		}
		if underVmspace {
			select {
			case <-applied:
			case <-time.After(60 * time.Second):
				t.Error("vmspace did not apply the truncation within 60 s")
			}
		}
		underVmspace = true
	})
	if !strings.Contains(native, "private page 2: SIGBUS") || !strings.Contains(native, "private page 0: 'P'") {
		t.Fatalf("natively:\n%s", native)
	}
	if got != native {
		t.Errorf("under vmspace:\n%s\nnatively:\n%s", got, native)
	}
}

// controlPipes returns the two pipes a test drives its program through:
// the program reads commands from inR and answers on outW; the test
// writes inW and reads outR.
func controlPipes(t *testing.T) (inR, inW, outR, outW *os.File) {
	t.Helper()
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err = os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		t.Fatal(err)
	}
	return inR, inW, outR, outW
}
