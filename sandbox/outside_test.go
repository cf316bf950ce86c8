package sandbox

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// outsideTruncProgram maps a file of 3 pages shared and private, writes
// private copies of pages 0 and 2, says "ready", and once told "go" on its
// standard input (another process truncated the file to one page
// meanwhile), loads the pages: Linux drops the private copy of page 2
// (SIGBUS then) and keeps page 0's.
const outsideTruncProgram = fileProbeC + `
int main(void) {
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
	if (!fgets(line, sizeof line, stdin)) return 1;
	show("private page 0", load(p));
	show("private page 2", load(p + 2 * 4096));
	show("shared page 2", load(s + 2 * 4096));
	show("private page 1", load(p + 4096));
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
	exe := buildC(t, "outsidetrunc", outsideTruncProgram, false)
	truncate := func(dir string) {
		if err := os.Truncate(filepath.Join(dir, "f"), 4096); err != nil {
			t.Fatal(err)
		}
	}
	// Natively.
	dir := t.TempDir()
	cmd := exec.Command(exe)
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
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		res, err := Run(Options{Argv: []string{exe}, Env: testEnv(), Dir: dir, Stdin: inR, Stdout: outW, Stderr: os.Stderr})
		if err == nil && res.ExitCode() != 0 {
			err = exec.ErrNotFound
		}
		outW.Close()
		done <- err
	}()
	got := driveTrunc(t, outR, inW, func() {
		truncate(dir)
		select {
		case <-applied:
		case <-time.After(60 * time.Second):
			t.Error("vmspace did not apply the truncation within 60 s")
		}
	})
	inW.Close()
	if err := <-done; err != nil {
		t.Fatalf("under vmspace: %v", err)
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
