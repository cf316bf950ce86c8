package sandbox

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// result is what a run of a program produced.
type result struct {
	stdout, stderr string
	code           int
}

// testEnv is the environment of every test program, native or not.
func testEnv() []string {
	return []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LC_ALL=C", "HOME=/tmp", "TZ=UTC"}
}

// runNative runs argv on the host.
func runNative(t testing.TB, dir, stdin string, argv ...string) result {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = testEnv()
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		ws := ee.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			code = 128 + int(ws.Signal())
		} else {
			code = ws.ExitStatus()
		}
	case err != nil:
		t.Fatalf("native %q: %v", argv, err)
	}
	return result{out.String(), errb.String(), code}
}

// sandboxRun runs argv under vmspace, with opts' other fields as given.
func sandboxRun(t testing.TB, dir, stdin string, opts Options, argv ...string) (result, Stats) {
	t.Helper()
	tmp := t.TempDir()
	files := make([]*os.File, 3)
	for i, name := range []string{"stdin", "stdout", "stderr"} {
		f, err := os.Create(filepath.Join(tmp, name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		files[i] = f
	}
	if _, err := files[0].WriteString(stdin); err != nil {
		t.Fatal(err)
	}
	files[0].Seek(0, 0)
	opts.Argv = argv
	opts.Env = testEnv()
	opts.Dir = dir
	opts.Stdin, opts.Stdout, opts.Stderr = files[0], files[1], files[2]
	done := make(chan struct{})
	var code int
	var st Stats
	var err error
	go func() {
		defer close(done)
		var res Result
		res, err = Run(opts)
		code, st = res.ExitCode(), res.Stats
	}()
	select {
	case <-done:
	case <-time.After(120 * time.Second):
		t.Fatalf("vmspace run %q: no end after 120 s", argv)
	}
	if err != nil {
		t.Fatalf("vmspace run %q: %v", argv, err)
	}
	out, _ := os.ReadFile(files[1].Name())
	errb, _ := os.ReadFile(files[2].Name())
	return result{string(out), string(errb), code}, st
}

// compare runs argv natively and under vmspace and checks that standard
// output, standard error and the exit status agree.
func compare(t *testing.T, dir, stdin string, argv ...string) Stats {
	t.Helper()
	want := runNative(t, dir, stdin, argv...)
	got, st := sandboxRun(t, dir, stdin, Options{}, argv...)
	compareResults(t, argv, got, want)
	return st
}

// runBoth runs argv natively and under vmspace (default options), for a
// test that compares the two its own way.
func runBoth(t *testing.T, argv ...string) (want, got result) {
	t.Helper()
	want = runNative(t, "", "", argv...)
	got, _ = sandboxRun(t, "", "", Options{}, argv...)
	return want, got
}

// compareResults fails t where the run of argv under vmspace (got)
// differs from its native run (want): exit status, stdout, stderr.
func compareResults(t *testing.T, argv []string, got, want result) {
	t.Helper()
	if got.code != want.code {
		t.Errorf("%q: exit status %d under vmspace, %d natively\nstderr: %s", argv, got.code, want.code, got.stderr)
	}
	if got.stdout != want.stdout {
		t.Errorf("%q: stdout differs\nvmspace: %q\nnative:  %q", argv, clip(got.stdout), clip(want.stdout))
	}
	if got.stderr != want.stderr {
		t.Errorf("%q: stderr differs\nvmspace: %q\nnative:  %q", argv, clip(got.stderr), clip(want.stderr))
	}
}

func clip(s string) string {
	if len(s) > 600 {
		return s[:300] + " ... " + s[len(s)-300:]
	}
	return s
}

// need skips the test if a program is missing.
func need(t testing.TB, progs ...string) {
	t.Helper()
	for _, p := range progs {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s is not installed: %v", p, err)
		}
	}
}

// needPtrace skips the test if this host cannot run a sandbox at all.
func needPtrace(t testing.TB) {
	t.Helper()
	ptraceOnce.Do(func() {
		_, ptraceErr = Run(Options{Image: DemoImage(), Stdout: devNull(), Stderr: devNull()})
	})
	if ptraceErr != nil {
		if errors.Is(ptraceErr, syscall.EPERM) || errors.Is(ptraceErr, syscall.ENOSYS) {
			t.Skipf("ptrace is not permitted here: %v", ptraceErr)
		}
		t.Fatalf("vmspace cannot run its demonstration: %v", ptraceErr)
	}
}

var (
	ptraceOnce sync.Once
	ptraceErr  error
)

func devNull() *os.File {
	f, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		panic(err)
	}
	return f
}

// buildC compiles C source into an executable (static if static), or
// skips the test if that is not possible here.
func buildC(t testing.TB, name, src string, static bool, extra ...string) string {
	t.Helper()
	need(t, "gcc")
	dir := t.TempDir()
	c := filepath.Join(dir, name+".c")
	if err := os.WriteFile(c, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, name)
	args := []string{"-O2", "-o", exe, c, "-pthread"}
	if static {
		args = append([]string{"-static"}, args...)
	}
	args = append(args, extra...)
	if out, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
		t.Skipf("cannot build a C program with gcc %q: %v\n%s", args, err, out)
	}
	return exe
}

// buildGo compiles a static Go program from source.
func buildGo(t testing.TB, name, src string) string {
	t.Helper()
	need(t, "go")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module "+name+"\n\ngo 1.22\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", exe, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return exe
}
