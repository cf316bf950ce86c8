package sandbox

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestTargets measures the speed targets of "vmspace run" against the
// same commands run natively (median of 5 wall times), with the faults
// served and peak RSS as vmspace counts them against the native peak RSS
// of /usr/bin/time -v. It takes about a minute, so it runs only with
// VMSPACE_TARGETS=1:
//
//	VMSPACE_TARGETS=1 go test -run TestTargets -v ./sandbox
func TestTargets(t *testing.T) {
	if os.Getenv("VMSPACE_TARGETS") == "" {
		t.Skip("set VMSPACE_TARGETS=1 to measure the speed targets")
	}
	needPtrace(t)
	need(t, "sh", "seq", "sort", "sha256sum", "gzip", "python3")
	dir := t.TempDir()
	vmspace := filepath.Join(dir, "vmspace")
	build := exec.Command("go", "build", "-o", vmspace, "github.com/vmspace/vmspace/cmd/vmspace")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building vmspace: %v\n%s", err, out)
	}
	text := filepath.Join(dir, "text.txt")
	if err := writeText(text, 50<<20); err != nil {
		t.Fatal(err)
	}
	py, _ := exec.LookPath("python3")
	// python3 on PATH may be a wrapper script (pyenv's shim runs bash a
	// dozen times); measure the interpreter itself too.
	interp := py
	if out, err := exec.Command(py, "-c", "import sys; print(sys.executable)").Output(); err == nil {
		interp = strings.TrimSpace(string(out))
	}
	targets := []struct {
		name  string
		argv  []string
		limit float64 // ratio, or milliseconds for startup
	}{
		{"startup /bin/true (ms)", []string{"/bin/true"}, 20},
		{"python3 bytearrays", []string{py, "-c", "x=[bytearray(4096) for _ in range(50000)]; print(len(x))"}, 1.5},
		{"  same, " + filepath.Base(interp), []string{interp, "-c", "x=[bytearray(4096) for _ in range(50000)]; print(len(x))"}, 1.5},
		{"seq | sort | sha256sum", []string{"sh", "-c", "seq 1 200000 | sort -n | sha256sum"}, 2},
		{"gzip -c 50 MiB", []string{"sh", "-c", "gzip -c " + text + " > /dev/null"}, 1.05},
	}
	fmt.Printf("%-26s %10s %10s %8s %8s %8s %12s %12s\n", "workload", "native", "vmspace", "ratio", "target", "faults", "peakRSS vm", "peakRSS nat")
	for _, tg := range targets {
		nat := medianWall(t, 5, tg.argv)
		vm := medianWall(t, 5, append([]string{vmspace, "run", "--"}, tg.argv...))
		faults, rss := vmspaceFigures(t, vmspace, tg.argv)
		natRSS := nativeRSS(t, tg.argv)
		ratio := float64(vm) / float64(nat)
		shown := fmt.Sprintf("%.2fx", ratio)
		ok := ratio <= tg.limit
		if strings.HasPrefix(tg.name, "startup") {
			shown = fmt.Sprintf("%.1fms", float64(vm)/1e6)
			ok = float64(vm)/1e6 <= tg.limit
		}
		mark := ""
		if !ok {
			mark = " (missed)"
		}
		fmt.Printf("%-26s %10v %10v %8s %8v %8d %10dKiB %10dKiB%s\n", tg.name, nat.Round(time.Millisecond/10),
			vm.Round(time.Millisecond/10), shown, tg.limit, faults, rss, natRSS, mark)
	}
}

// writeText writes n bytes of text made of numbered words.
func writeText(path string, n int) error {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "line %d of some text with words %x and %d more\n", i, i*2654435761, i%977)
	}
	return os.WriteFile(path, []byte(b.String()[:n]), 0o644)
}

// medianWall runs argv n times and returns the median wall time.
func medianWall(t *testing.T, n int, argv []string) time.Duration {
	t.Helper()
	var ds []time.Duration
	for i := 0; i < n; i++ {
		cmd := exec.Command(argv[0], argv[1:]...)
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%q: %v\n%s", argv, err, out)
		}
		ds = append(ds, time.Since(start))
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[n/2]
}

// vmspaceFigures returns the faults served and the peak RSS (KiB) of a
// run, from --stats.
func vmspaceFigures(t *testing.T, vmspace string, argv []string) (uint64, uint64) {
	out, err := exec.Command(vmspace, append([]string{"run", "--stats", "--"}, argv...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("vmspace --stats %q: %v\n%s", argv, err, out)
	}
	get := func(re string) uint64 {
		m := regexp.MustCompile(re).FindSubmatch(out)
		if m == nil {
			return 0
		}
		v, _ := strconv.ParseUint(string(m[1]), 10, 64)
		return v
	}
	return get(`faults served: +(\d+)`), get(`peak RSS: +(\d+) KiB`)
}

// nativeRSS returns the peak RSS (KiB) of a native run, as /usr/bin/time
// -v reports it (the largest of the process and its children).
func nativeRSS(t *testing.T, argv []string) uint64 {
	if _, err := os.Stat("/usr/bin/time"); err != nil {
		return 0
	}
	out, _ := exec.Command("/usr/bin/time", append([]string{"-v"}, argv...)...).CombinedOutput()
	m := regexp.MustCompile(`Maximum resident set size \(kbytes\): (\d+)`).FindSubmatch(out)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseUint(string(m[1]), 10, 64)
	return v
}
