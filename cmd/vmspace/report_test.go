package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmspace/vmspace/report"
)

// reportProg allocates and frees 50 MiB, maps shared memory, and forks a
// child that allocates 10 MiB of its own and exits with status 3.
const reportProg = `
import mmap, os
a = bytearray(50 << 20)
del a
keep = [bytes(1000) for i in range(2000)]
m = mmap.mmap(-1, 1 << 20)
m[0:5] = b"hello"
pid = os.fork()
if pid == 0:
    c = bytearray(10 << 20)
    os._exit(3)
_, st = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(st))
`

// python3 returns the system's python3 (not a shim that runs shells
// first), or skips the test.
func python3(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		return "/usr/bin/python3"
	}
	p, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3")
	}
	return p
}

// runReport runs prog under "vmspace run --report --report-json --stats"
// and returns the report as JSON says it and the HTML file's path. It
// checks that --stats gives the report's cost as the report has it.
func runReport(t *testing.T, wantOut string, argv ...string) (*report.Report, string) {
	t.Helper()
	return runReportEnv(t, nil, wantOut, argv...)
}

// runReportEnv is runReport with env added to vmspace's environment.
func runReportEnv(t *testing.T, env []string, wantOut string, argv ...string) (*report.Report, string) {
	t.Helper()
	dir := t.TempDir()
	htmlPath, jsonPath := filepath.Join(dir, "report.html"), filepath.Join(dir, "report.json")
	cmd := vmspaceCmd(t, argv...)
	cmd.Env = append(cmd.Env, env...)
	// vmspaceCmd's arguments are "run -- argv": put the flags first.
	cmd.Args = append([]string{cmd.Args[0], "run", "--stats", "--report", htmlPath, "--report-json", jsonPath}, cmd.Args[2:]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("vmspace run: %v\n%s%s", err, out.String(), errb.String())
	}
	if got := out.String(); got != wantOut {
		t.Fatalf("the program printed %q (stderr %q)", got, errb.String())
	}
	f, err := os.Open(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := report.ReadJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("report:              collected in %v (CPU), written in ", time.Duration(r.CollectNS).Round(10e3))
	if !strings.Contains(errb.String(), want) {
		t.Errorf("--stats does not say %q:\n%s", want, errb.String())
	}
	return r, htmlPath
}

// checkPythonReport checks that the report of reportProg tells its story:
// the processes, the fork, exec and exit, the vmas of each kind with
// their page runs, the 50 MiB coming and going on the timeline, and the
// memory calls.
func checkPythonReport(t *testing.T, r *report.Report) {
	t.Helper()
	if len(r.Processes) != 2 {
		t.Fatalf("%d processes in the report, want 2", len(r.Processes))
	}
	par, ch := r.Processes[0], r.Processes[1]
	if par.Parent != 0 || ch.Parent != par.PID || par.Exit != "exited 0" || ch.Exit != "exited 3" || r.Totals.Exit != "exited 0" {
		t.Errorf("processes: %d (parent %d, %s), %d (parent %d, %s); run %s", par.PID, par.Parent, par.Exit, ch.PID, ch.Parent, ch.Exit, r.Totals.Exit)
	}
	if !(par.StartNS <= ch.StartNS && ch.StartNS <= ch.EndNS && ch.EndNS <= par.EndNS) {
		t.Errorf("times: parent %d-%d, child %d-%d", par.StartNS, par.EndNS, ch.StartNS, ch.EndNS)
	}
	var events []string
	for _, e := range r.Events {
		events = append(events, e.Kind)
	}
	if strings.Join(events, " ") != "exec fork exit exit" {
		t.Errorf("events %v, want exec fork exit exit", events)
	}
	// The parent at the fork and at its exit; the child at its exit,
	// still sharing pages copy-on-write with its parent.
	var whys []string
	for _, s := range par.Snapshots {
		whys = append(whys, s.Why)
	}
	if strings.Join(whys, " ") != "fork exit" || len(ch.Snapshots) != 1 || ch.Snapshots[0].Why != "exit" {
		t.Fatalf("snapshots: parent %v, child %d", whys, len(ch.Snapshots))
	}
	if par.Snapshots[0].Shared == 0 || ch.Snapshots[0].Shared == 0 {
		t.Errorf("shared copy-on-write: parent at fork %d, child at exit %d", par.Snapshots[0].Shared, ch.Snapshots[0].Shared)
	}
	for _, p := range r.Processes {
		for _, s := range p.Snapshots {
			kinds := map[string]bool{}
			var rss uint64
			for _, v := range s.VMAs {
				kinds[v.Kind] = true
				rss += v.Rss
				var res, shared, guard uint64
				at := v.Start
				for _, run := range v.Runs {
					if run.Start < at || run.End <= run.Start || run.End > v.End {
						t.Errorf("%d at %s: vma %#x-%#x: run %#x-%#x out of place", p.PID, s.Why, v.Start, v.End, run.Start, run.End)
					}
					at = run.End
					switch run.State {
					case "resident":
						res += run.End - run.Start
					case "shared":
						shared += run.End - run.Start
					case "guard":
						guard += run.End - run.Start
					}
				}
				if res+shared != v.Rss || shared != v.Shared || guard != v.Guard || shared > v.SharedDirty {
					t.Errorf("%d at %s: vma %#x-%#x (%s): runs resident %d shared %d guard %d; Rss %d, Shared %d, Shared_Dirty %d, Guard %d",
						p.PID, s.Why, v.Start, v.End, v.Name, res, shared, guard, v.Rss, v.Shared, v.SharedDirty, v.Guard)
				}
			}
			if rss != s.RSS {
				t.Errorf("%d at %s: the vmas' Rss add up to %d, VmRSS is %d", p.PID, s.Why, rss, s.RSS)
			}
			for _, k := range []string{"text", "data", "heap", "stack", "file", "shared", "anonymous", "special"} {
				if !kinds[k] {
					t.Errorf("%d at %s: no %s vma", p.PID, s.Why, k)
				}
			}
		}
	}
	// The timeline sees the 50 MiB come and go.
	var peak uint64
	dropped := false
	for _, s := range r.Samples {
		peak = max(peak, s.RSS)
		if peak >= 50<<20 && s.RSS+40<<20 < peak {
			dropped = true
		}
	}
	if peak < 50<<20 || !dropped {
		t.Errorf("the timeline's RSS peaks at %d and drops by 40 MiB after: %v (%d samples)", peak, dropped, len(r.Samples))
	}
	var faults uint64
	for _, s := range r.Samples {
		faults += s.Faults
	}
	if faults == 0 || faults > r.Totals.Faults || par.Faults+ch.Faults != r.Totals.Faults {
		t.Errorf("faults: %d in the timeline, %d+%d in the processes, %d in the run", faults, par.Faults, ch.Faults, r.Totals.Faults)
	}
	var calls uint64
	var names []string
	for _, sc := range r.Syscalls {
		calls += sc.Count
		names = append(names, sc.Name)
	}
	if calls != r.Totals.MemCalls || calls != par.MemCalls+ch.MemCalls {
		t.Errorf("memory calls: %d in the table, %d+%d in the processes, %d in the run", calls, par.MemCalls, ch.MemCalls, r.Totals.MemCalls)
	}
	for _, n := range []string{"mmap", "munmap", "brk", "mprotect"} {
		if !slices.Contains(names, n) {
			t.Errorf("no %s in the memory calls %v", n, names)
		}
	}
}

// TestReport: "vmspace run --report --report-json" of a python3 program
// that allocates, frees and forks writes a report that tells that story,
// and a page that shows the JSON's numbers.
func TestReport(t *testing.T) {
	py := python3(t)
	dir := t.TempDir()
	prog := filepath.Join(dir, "prog.py")
	if err := os.WriteFile(prog, []byte(reportProg), 0o644); err != nil {
		t.Fatal(err)
	}
	r, htmlPath := runReport(t, "child 3\n", py, prog)
	checkPythonReport(t, r)
	page, err := os.ReadFile(htmlPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := report.CheckPage(string(page), r); err != nil {
		t.Errorf("the page differs from the JSON:\n%v", err)
	}
	if bytes.Contains(page, []byte("http://")) || bytes.Contains(page, []byte("https://")) || bytes.Contains(page, []byte(" src=")) {
		t.Error("the page refers to something outside it")
	}
	t.Run("chromium", func(t *testing.T) { checkInChromium(t, r, htmlPath) })
}

// sitesSrc makes memory calls from three functions of its own, through
// the C library's wrappers: 20 mmaps, 20 munmaps, 3 failing mprotects.
const sitesSrc = `
#include <stdio.h>
#include <sys/mman.h>
__attribute__((noinline)) void make_maps(void **v, int n) {
	for (int i = 0; i < n; i++) v[i] = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}
__attribute__((noinline)) void drop_maps(void **v, int n) {
	for (int i = 0; i < n; i++) munmap(v[i], 8192);
}
__attribute__((noinline)) int bad_protect(void) {
	int fails = 0;
	for (int i = 0; i < 3; i++) fails += mprotect((void *)1, 4096, PROT_READ) != 0;
	return fails;
}
int main(void) {
	void *v[20];
	make_maps(v, 20);
	drop_maps(v, 20);
	printf("%d\n", bad_protect());
	return 0;
}
`

// TestReportSites: the report names where the memory calls come from:
// the C library's wrapper (made at) and, for the calls served at a ptrace
// stop (VMSPACE_FASTPATH=0), the program's function that called it
// (called from), with their counts, errors and times, and the page shows
// the same. On the fast path (the default) vmspace sees no registers but
// the program counter: the calls are counted at their wrapper, with no
// caller.
func TestReportSites(t *testing.T) {
	exe := buildC(t, "sites", sitesSrc)
	want := map[string]struct {
		name   string
		count  uint64
		errors uint64
	}{
		"make_maps":   {"mmap", 20, 0},
		"drop_maps":   {"munmap", 20, 0},
		"bad_protect": {"mprotect", 3, 3},
	}
	// The fast path: the wrappers' sites count at least the program's
	// calls (the C library's own calls go through them too).
	fr, _ := runReport(t, "3\n", exe)
	atWrapper := map[string]uint64{}
	var total uint64
	for _, st := range fr.Sites {
		total += st.Count
		if name, ok := strings.CutPrefix(st.Where, "libc.so.6 "); ok {
			fn, _, _ := strings.Cut(name, "+")
			atWrapper[fn] += st.Count
		}
	}
	for _, w := range want {
		if atWrapper[w.name] < w.count {
			t.Errorf("fast path: %d calls at the C library's %s, want at least %d: %+v", atWrapper[w.name], w.name, w.count, fr.Sites)
		}
	}
	if total != fr.Totals.MemCalls {
		t.Errorf("fast path: the sites count %d calls, the run %d", total, fr.Totals.MemCalls)
	}

	r, htmlPath := runReportEnv(t, []string{"VMSPACE_FASTPATH=0"}, "3\n", exe)
	total = 0
	for _, st := range r.Sites {
		total += st.Count
		fn, _, _ := strings.Cut(strings.TrimPrefix(st.Caller, "sites "), "+")
		w, ok := want[fn]
		if !ok || !strings.HasPrefix(st.Caller, "sites ") {
			continue
		}
		delete(want, fn)
		if st.Name != w.name || st.Count != w.count || st.Errors != w.errors || st.TotalNS <= 0 {
			t.Errorf("site %+v: want %s called %d times from %s, %d failing", st, w.name, w.count, fn, w.errors)
		}
		if !strings.HasPrefix(st.Where, "libc.so.6 ") || !strings.Contains(st.Where, w.name) {
			t.Errorf("site %+v: made at %q, want the C library's %s", st, st.Where, w.name)
		}
	}
	for fn, w := range want {
		t.Errorf("no site of %s called from %s in %+v", w.name, fn, r.Sites)
	}
	if total != r.Totals.MemCalls {
		t.Errorf("the sites count %d calls, the run %d", total, r.Totals.MemCalls)
	}
	page, err := os.ReadFile(htmlPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := report.CheckPage(string(page), r); err != nil {
		t.Errorf("the page differs from the JSON:\n%v", err)
	}
}

// chromium returns the path of Debian's chromium, or skips the test
// outside CI (.ci/run installs it, and sets VMSPACE_CI).
func chromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/chromium", "chromium"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("VMSPACE_CI") != "" || os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed (.ci/run installs Debian's chromium package)")
	}
	t.Skip("chromium is not installed (apt-get install chromium): the report is not rendered in a browser")
	return ""
}

// checkInChromium renders the page in headless Chromium, with no network,
// takes a screenshot and checks from the DOM, after the page's script has
// run, that it shows the report: its processes, the timeline and every
// vma, with the JSON's numbers. VMSPACE_REPORT_SCREENSHOT, if set, is
// where to keep the screenshot (README's is made so).
func checkInChromium(t *testing.T, r *report.Report, htmlPath string) {
	browser := chromium(t)
	dir := t.TempDir()
	shot := filepath.Join(dir, "report.png")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+filepath.Join(dir, "profile"), "--window-size=1280,1500", "--hide-scrollbars",
		"--screenshot="+shot, "--dump-dom", "file://"+htmlPath+"#vma=0")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", browser, err, errb.String())
	}
	dom := out.String()
	if !strings.Contains(dom, `<body data-ready="1">`) {
		t.Errorf("the page's script did not run to its end (no data-ready on body); chromium said:\n%s", errb.String())
	}
	for _, want := range []string{`<svg id="tl-svg"`, `<polyline class="line" data-series="rss"`, `<table id="processes">`, `<g class="vma"`} {
		if !strings.Contains(dom, want) {
			t.Errorf("the DOM has no %s", want)
		}
	}
	if err := report.CheckPage(dom, r); err != nil {
		t.Errorf("the page in Chromium differs from the JSON:\n%v", err)
	}
	// "#vma=0" had the page click the first vma: its smaps entry shows.
	if len(r.Processes) > 0 && len(r.Processes[0].Snapshots) > 0 && len(r.Processes[0].Snapshots[0].VMAs) > 0 {
		v := r.Processes[0].Snapshots[0].VMAs[0]
		entry := section(dom, `<pre id="smaps">`, `</pre>`)
		for _, want := range []string{
			fmt.Sprintf("%08x-%08x %s %08x %s %d ", v.Start, v.End, v.Perms, v.Offset, v.Dev, v.Inode),
			fmt.Sprintf("Size:           %8d kB\n", (v.End-v.Start)/1024),
			fmt.Sprintf("Rss:            %8d kB\n", v.Rss/1024),
			fmt.Sprintf("Pss:            %8d kB\n", v.Pss/1024),
			fmt.Sprintf("Private_Dirty:  %8d kB\n", v.PrivateDirty/1024),
			fmt.Sprintf("Anonymous:      %8d kB\n", v.Anonymous/1024),
			fmt.Sprintf("Locked:         %8d kB\n", v.Locked/1024),
			"VmFlags: " + strings.Join(v.Flags, " ") + "\n",
		} {
			if !strings.Contains(entry, want) {
				t.Errorf("the clicked vma's smaps entry has no %q:\n%s", want, entry)
			}
		}
	}
	png, err := os.ReadFile(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v\n%s", err, errb.String())
	}
	// A blank page compresses to a few KiB.
	if w, h := pngSize(png); w != 1280 || h != 1500 || len(png) < 30000 {
		t.Errorf("screenshot: %dx%d, %d bytes", w, h, len(png))
	}
	if keep := os.Getenv("VMSPACE_REPORT_SCREENSHOT"); keep != "" {
		if err := os.WriteFile(keep, png, 0o644); err != nil {
			t.Error(err)
		}
	}
}

// section returns the text of page from open to the next close.
func section(page, open, close string) string {
	_, rest, ok := strings.Cut(page, open)
	if !ok {
		return ""
	}
	text, _, _ := strings.Cut(rest, close)
	return text
}

// pngSize returns the width and height of a PNG image, or 0, 0.
func pngSize(b []byte) (int, int) {
	if len(b) < 24 || !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) || string(b[12:16]) != "IHDR" {
		return 0, 0
	}
	return int(binary.BigEndian.Uint32(b[16:])), int(binary.BigEndian.Uint32(b[20:]))
}

// reportBenchSrc makes many memory calls and faults, and forks: 5000
// mmap, touch, munmap rounds, then a child that does the same.
const reportBenchSrc = `
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
static void work(void) {
	for (int i = 0; i < 5000; i++) {
		char *p = mmap(0, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) _exit(1);
		p[0] = 1; p[40000] = 2;
		munmap(p, 1 << 16);
	}
}
int main(void) {
	work();
	pid_t pid = fork();
	if (pid == 0) { work(); _exit(0); }
	int st;
	waitpid(pid, &st, 0);
	return 0;
}
`

// BenchmarkReportOverhead runs a program that makes many memory calls and
// faults and forks, and python3 allocating and forking, under "vmspace run"
// without and with --report (interleaved, alternating which goes first),
// and reports the medians of the wall times and of the CPU times (user and
// system, vmspace's and the program's) and their ratios (report/plain,
// which should stay below 1.02), and the report's own collection time
// (collect_ns) as a share of the wall time.
func BenchmarkReportOverhead(b *testing.B) {
	dir := b.TempDir()
	prog := filepath.Join(dir, "prog.py")
	if err := os.WriteFile(prog, []byte(reportProg), 0o644); err != nil {
		b.Fatal(err)
	}
	py := "/usr/bin/python3"
	for _, w := range []struct {
		name string
		argv func(b *testing.B) []string
	}{
		{"calls", func(b *testing.B) []string { return []string{buildC(b, "calls", reportBenchSrc)} }},
		{"python", func(b *testing.B) []string {
			if _, err := os.Stat(py); err != nil {
				b.Skip("no /usr/bin/python3")
			}
			return []string{py, prog}
		}},
	} {
		b.Run(w.name, func(b *testing.B) {
			argv := w.argv(b)
			var collect []float64
			run := func(withReport bool) (time.Duration, time.Duration) {
				args := []string{"run"}
				if withReport {
					args = append(args, "--report", filepath.Join(dir, "r.html"), "--report-json", filepath.Join(dir, "r.json"))
				}
				self, _ := os.Executable()
				cmd := exec.Command(self, append(append(args, "--"), argv...)...)
				cmd.Env = append(os.Environ(), "VMSPACE_TEST_MAIN=1")
				t0 := time.Now()
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("%v: %v\n%s", cmd.Args, err, out)
				}
				wall := time.Since(t0)
				if withReport {
					f, err := os.Open(filepath.Join(dir, "r.json"))
					if err != nil {
						b.Fatal(err)
					}
					r, err := report.ReadJSON(f)
					f.Close()
					if err != nil {
						b.Fatal(err)
					}
					collect = append(collect, float64(r.CollectNS)/float64(r.WallNS))
				}
				return wall, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
			}
			var plain, rep, plainCPU, repCPU []time.Duration
			one := func(withReport bool) {
				w, c := run(withReport)
				if withReport {
					rep, repCPU = append(rep, w), append(repCPU, c)
				} else {
					plain, plainCPU = append(plain, w), append(plainCPU, c)
				}
			}
			for i := 0; i < b.N; i++ {
				one(i%2 == 1)
				one(i%2 == 0)
			}
			median := func(ds []time.Duration) time.Duration {
				slices.Sort(ds)
				return ds[len(ds)/2]
			}
			mp, mr := median(plain), median(rep)
			cp, cr := median(plainCPU), median(repCPU)
			slices.Sort(collect)
			b.ReportMetric(float64(mp.Milliseconds()), "plain-ms")
			b.ReportMetric(float64(mr.Milliseconds()), "report-ms")
			b.ReportMetric(float64(mr)/float64(mp), "report/plain")
			b.ReportMetric(float64(cp.Milliseconds()), "plain-cpu-ms")
			b.ReportMetric(float64(cr.Milliseconds()), "report-cpu-ms")
			b.ReportMetric(float64(cr)/float64(cp), "cpu-report/plain")
			b.ReportMetric(100*collect[len(collect)/2], "collect-%")
		})
	}
}
