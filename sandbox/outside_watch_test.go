package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestOutsideTruncationRegrown: a file truncated by a process outside the
// sandbox and grown again before vmspace applied the truncation still
// loses the program's private copies past the truncation's end, as on
// Linux, where the copies go at the truncation and the regrown file reads
// zeros there. The watching goroutine's hook grows the file again right
// after it saw the shrink, so the tracer applies the truncation when the
// file is long again: before, it dropped only the copies past the file's
// end then (none), and private page 2 kept its 'Q'.
func TestOutsideTruncationRegrown(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "outsidetrunc", outsideTruncProgram, false, "-pthread")
	applied := make(chan struct{}, 1)
	outsideApplied = func() {
		select {
		case applied <- struct{}{}:
		default:
		}
	}
	defer func() { outsideApplied = nil }()
	// hookDir is the directory of the run under vmspace, set once its
	// file is about to be truncated; regrown is set once it was grown
	// again.
	var (
		hookMu  sync.Mutex
		hookDir string
		regrown bool
	)
	outsideNoted = func(string, int64) {
		hookMu.Lock()
		defer hookMu.Unlock()
		if hookDir == "" || regrown {
			return
		}
		regrown = true
		if err := os.Truncate(filepath.Join(hookDir, "f"), 3*4096); err != nil {
			t.Error(err)
		}
	}
	defer func() { outsideNoted = nil }()
	underVmspace := false
	native, got := compareOutside(t, exe, nil, func(dir string) {
		f := filepath.Join(dir, "f")
		if !underVmspace {
			underVmspace = true
			if err := os.Truncate(f, 4096); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(f, 3*4096); err != nil {
				t.Fatal(err)
			}
			return
		}
		hookMu.Lock()
		hookDir = dir
		hookMu.Unlock()
		if err := os.Truncate(f, 4096); err != nil {
			t.Fatal(err)
		}
		select {
		case <-applied:
		case <-time.After(60 * time.Second):
			t.Error("vmspace did not apply the truncation within 60 s")
		}
		hookMu.Lock()
		defer hookMu.Unlock()
		if !regrown {
			t.Error("the file was not grown again after the watch saw it shrink")
		}
	})
	if !strings.Contains(native, "private page 2: 0") || !strings.Contains(native, "private page 0: 'P'") {
		t.Fatalf("natively:\n%s", native)
	}
	if got != native {
		t.Errorf("under vmspace:\n%s\nnatively:\n%s", got, native)
	}
}

// TestOutsideWatchOverflow: when inotify's event queue overflowed, the
// events that would have said that a watched file changed are lost; the
// watch then checks every watched file's size. Events of two other files
// fill the queue before the first file is truncated; before, the
// overflow event was skipped and the truncation never seen.
func TestOutsideWatchOverflow(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/fs/inotify/max_queued_events")
	if err != nil {
		t.Skip(err)
	}
	maxEvents, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || maxEvents > 1<<20 {
		t.Skipf("max_queued_events %q", b)
	}
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Skip(err)
	}
	w := &outsideWatch{
		f:        os.NewFile(uintptr(fd), "inotify"),
		files:    make(map[int32]*watchedFile),
		watching: make(map[[2]uint64]int32),
		shrunk:   make(map[[2]uint64]int64),
	}
	defer w.f.Close()
	dir := t.TempDir()
	var files [3]*os.File
	for i := range files {
		f, err := os.Create(filepath.Join(dir, fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Write(make([]byte, 3*4096)); err != nil {
			t.Fatal(err)
		}
		files[i] = f
		w.watch(f.Name())
	}
	if w.watched() != 3 {
		t.Fatalf("%d files watched, want 3", w.watched())
	}
	// Alternate between two files: consecutive equal events merge.
	for i := 0; i <= maxEvents; i++ {
		if _, err := files[1+i%2].WriteAt([]byte{'x'}, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := files[0].Truncate(4096); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	shrank, overflowed := false, false
	for {
		n, err := unix.Read(fd, buf)
		if err != nil {
			break
		}
		for b := buf[:n]; len(b) >= unix.SizeofInotifyEvent; b = b[unix.SizeofInotifyEvent:] {
			if int32(b[0])|int32(b[1])<<8|int32(b[2])<<16|int32(b[3])<<24 == -1 {
				overflowed = true
			}
		}
		shrank = w.note(buf[:n]) || shrank
	}
	if !overflowed {
		t.Fatal("the queue did not overflow")
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(files[0].Fd()), &st); err != nil {
		t.Fatal(err)
	}
	low, ok := w.shrunk[[2]uint64{uint64(st.Dev), st.Ino}]
	if !shrank || !ok || low != 4096 {
		t.Fatalf("after the overflow: shrank %v, noted %v at %d; want the truncation to 4096 noted", shrank, ok, low)
	}
}

// outsideUnmapProgram maps three files privately and writes a page of
// each, says "mapped", and once told to go on unmaps them all and says
// "unmapped", then waits to be told to end.
const outsideUnmapProgram = fileProbeC + `
int main(void) {
	setvbuf(stdout, 0, _IONBF, 0);
	char *m[3];
	for (int i = 0; i < 3; i++) {
		char name[2] = {'a' + i, 0};
		int fd = mkfile(name, 2, 'f');
		m[i] = mmap(0, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
		if (m[i] == MAP_FAILED) { perror("mmap"); return 1; }
		close(fd);
		m[i][0] = 'P';
		if (load(m[i] + 4096) != 'f') return 1;
	}
	printf("mapped\n");
	char line[16];
	if (!fgets(line, sizeof line, stdin)) return 1;
	for (int i = 0; i < 3; i++) munmap(m[i], 2 * 4096);
	printf("unmapped\n");
	if (!fgets(line, sizeof line, stdin)) return 1;
	return 0;
}
`

// TestOutsideWatchRemoved: the inotify watch of a mapped file goes when
// the program's last mapping of it goes (watches count against
// fs.inotify.max_user_watches: before, they stayed until the run ended,
// and a program mapping many files in turn used them up). The kernel's
// count (the inotify descriptor's fdinfo) is checked, and vmspace's.
func TestOutsideWatchRemoved(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "outsideunmap", outsideUnmapProgram, false)
	var (
		mu sync.Mutex
		w  *outsideWatch
	)
	outsideStarted = func(ow *outsideWatch) {
		mu.Lock()
		w = ow
		mu.Unlock()
	}
	defer func() { outsideStarted = nil }()
	kernelWatches := func(w *outsideWatch) int {
		b, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", w.f.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(b), "inotify wd:")
	}
	dir := t.TempDir()
	inR, inW, outR, outW := controlPipes(t)
	defer inR.Close()
	defer outR.Close()
	done := make(chan error, 1)
	go func() {
		res, err := Run(Options{Argv: []string{exe}, Env: testEnv(), Dir: dir, Stdin: inR, Stdout: outW, Stderr: os.Stderr})
		if err == nil && res.ExitCode() != 0 {
			err = fmt.Errorf("exit status %d", res.ExitCode())
		}
		outW.Close()
		done <- err
	}()
	buf := make([]byte, 64)
	expect := func(want string) {
		t.Helper()
		var got []byte
		for !strings.Contains(string(got), want) {
			n, err := outR.Read(buf)
			if err != nil {
				t.Fatalf("output %q, want %q: %v", got, want, err)
			}
			got = append(got, buf[:n]...)
		}
	}
	expect("mapped\n")
	mu.Lock()
	ow := w
	mu.Unlock()
	if ow == nil || ow.f == nil {
		t.Skip("no inotify")
	}
	// The program's own files, and whatever else it maps from the host
	// (its executable, the C library): at least three.
	mapped, inKernel := ow.watched(), kernelWatches(ow)
	if mapped < 3 || inKernel != mapped {
		t.Fatalf("mapped: %d files watched, %d watches in the kernel; want at least 3, the same", mapped, inKernel)
	}
	inW.WriteString("go\n")
	expect("unmapped\n")
	unmapped, inKernelAfter := ow.watched(), kernelWatches(ow)
	if unmapped != mapped-3 || inKernelAfter != unmapped {
		t.Errorf("unmapped: %d files watched (%d before), %d watches in the kernel; want 3 fewer, the same", unmapped, mapped, inKernelAfter)
	}
	inW.WriteString("end\n")
	inW.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
