package sandbox

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestOddCalls runs a generator of odd mmap, munmap, madvise, mincore and
// remap_file_pages calls over files, devices, pipes, sockets and
// directories (testdata/oddcalls.c) natively and under vmspace: every
// call's result must be the same.
func TestOddCalls(t *testing.T) {
	needPtrace(t)
	src, err := os.ReadFile("testdata/oddcalls.c")
	if err != nil {
		t.Fatal(err)
	}
	exe := buildC(t, "oddcalls", string(src), true)
	seeds, count := 4, 600
	if testing.Short() {
		seeds = 1
	}
	if n, err := strconv.Atoi(os.Getenv("ODDCALLS_SEEDS")); err == nil && n > 0 {
		// More seeds, for hunting.
		seeds = n
	}
	calls, diffs := 0, 0
	for seed := 1; seed <= seeds; seed++ {
		args := []string{exe, fmt.Sprint(seed), fmt.Sprint(count)}
		want := runNative(t, t.TempDir(), "", args...)
		got, _ := sandboxRun(t, t.TempDir(), "", Options{}, args...)
		if want.code != 0 || !strings.HasSuffix(want.stdout, "done\n") {
			t.Fatalf("seed %d: native run failed (%d): %s%s", seed, want.code, clip(want.stdout), want.stderr)
		}
		wl, gl := strings.Split(want.stdout, "\n"), strings.Split(got.stdout, "\n")
		calls += len(wl)
		for i, w := range wl {
			g := "(nothing)"
			if i < len(gl) {
				g = gl[i]
			}
			if g == w {
				continue
			}
			diffs++
			if diffs <= 40 {
				t.Errorf("seed %d line %d:\nnative:  %s\nvmspace: %s", seed, i+1, w, g)
			}
			if !strings.HasPrefix(g, strings.SplitN(w, "=", 2)[0]) {
				// The sequences diverged: the rest cannot compare.
				t.Errorf("seed %d: vmspace's output diverges here (exit %d, stderr %q)", seed, got.code, clip(got.stderr))
				break
			}
		}
	}
	if diffs > 0 {
		t.Errorf("%d of %d calls differ from Linux", diffs, calls)
	}
}
