package bench

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The program workloads (docs/programs.md): real programs run natively,
// under "vmspace run" and, if given, under gVisor's runsc, interleaved
// (each round runs every system once, in an order that rotates from round
// to round), with the median, the spread (min and max) and the ratio of
// each system's median to the native one.

// Program systems: the "system" field of a ProgramResult's samples.
const (
	SystemNative  = "native"
	SystemVmspace = "vmspace"
	SystemRunsc   = "runsc"
	// SystemBaseline is a second vmspace binary (ProgramOptions.Baseline),
	// to measure a change before and after in one run.
	SystemBaseline = "baseline"
)

// DefaultProgramRounds is how many timed runs each system gets per
// workload when ProgramOptions.Rounds is 0.
const DefaultProgramRounds = 5

// ProgramOptions configure RunPrograms.
type ProgramOptions struct {
	// Names selects workloads by name (all if empty).
	Names []string
	// Rounds is the number of timed runs per system (0: the default).
	Rounds int
	// Vmspace is the vmspace binary that runs programs ("vmspace run");
	// VmspaceEnv is added to the environment of its commands only (tests
	// use it to make their own binary act as vmspace).
	Vmspace    string
	VmspaceEnv []string
	// Baseline, if not "", is another vmspace binary, run like Vmspace
	// as the system "baseline" (a change's before, Vmspace its after).
	Baseline string
	// Runsc, if not "", is gVisor's runsc binary: the programs also run
	// as "runsc --network=none do ARGV".
	Runsc string
	// Dir is where the workloads' files are made; "" means a temporary
	// directory, removed at the end.
	Dir string
	// Progress receives a line per run; nil discards them.
	Progress io.Writer
}

// ProgramSample is one system's figures for one workload.
type ProgramSample struct {
	// System is SystemNative, SystemVmspace, SystemBaseline or
	// SystemRunsc.
	System string
	// Values are the timed runs, in ms, in the order they ran.
	Values []float64
	// Median, Min and Max summarise Values.
	Median, Min, Max float64
	// Ratio is Median over the native Median (0 for native itself, or
	// if either is missing).
	Ratio float64
	// Stats are the medians of the figures "vmspace run --stats" printed
	// (vmspace only; nil otherwise).
	Stats *RunStats
	// Err is why the system's runs failed, if they did.
	Err error
}

// RunStats are the figures "vmspace run --stats" prints.
type RunStats struct {
	Faults, MemCalls, Stops, Injected float64
	// ManagerMs is the time spent serving stops, in ms.
	ManagerMs float64
}

// ProgramResult is the outcome of one program workload.
type ProgramResult struct {
	// Workload is the workload's name; Unit the unit of the figures
	// ("ms").
	Workload string
	Unit     string
	// Skipped says why the workload did not run (a missing tool), or
	// is "".
	Skipped string
	// Err is why the workload could not be set up.
	Err error
	// Samples are one per system, native first.
	Samples []ProgramSample
}

// program is one program workload.
type program struct {
	// name is the workload's name.
	name string
	// tools are the programs it needs, looked up on PATH.
	tools []string
	// setup makes what the workload needs in w's directory (untimed).
	setup func(w *progWork) error
	// argv is the command that runs the workload.
	argv func(w *progWork) []string
	// selfTimed workloads time their own region and print "ns N" on
	// stdout: the figure is N (in ms), not the command's wall time.
	selfTimed bool
}

// progWork is the state of a run of the program workloads.
type progWork struct {
	// dir is where workloads make their files.
	dir string
	// tools are the tools found, by name.
	tools map[string]string
	// built are the C programs compiled so far, by name.
	built map[string]string
}

// tool returns the path of a tool the workload declared.
func (w *progWork) tool(name string) string { return w.tools[name] }

// cprog compiles the C program src (once) as dir/name and returns its path.
func (w *progWork) cprog(name, src string) (string, error) {
	if p, ok := w.built[name]; ok {
		return p, nil
	}
	c := filepath.Join(w.dir, name+".c")
	if err := os.WriteFile(c, []byte(src), 0o644); err != nil {
		return "", err
	}
	exe := filepath.Join(w.dir, name)
	if out, err := exec.Command(w.tool("gcc"), "-O2", "-o", exe, c).CombinedOutput(); err != nil {
		return "", fmt.Errorf("gcc %s: %v: %s", name, err, bytes.TrimSpace(out))
	}
	w.built[name] = exe
	return exe, nil
}

// programs are the workloads, in canonical order (docs/programs.md).
var programs = []*program{
	{
		name:  "true",
		tools: []string{"true"},
		argv:  func(w *progWork) []string { return []string{w.tool("true")} },
	},
	{
		name:  "python_bytearrays",
		tools: []string{"python3"},
		argv: func(w *progWork) []string {
			return []string{w.tool("python3"), "-c", "a = [bytearray(4096) for _ in range(50000)]"}
		},
	},
	{
		name:  "sort_pipeline",
		tools: []string{"sh", "seq", "sort", "sha256sum"},
		argv: func(w *progWork) []string {
			return []string{w.tool("sh"), "-c", fmt.Sprintf("%s 1 200000 | %s -n | %s >/dev/null",
				w.tool("seq"), w.tool("sort"), w.tool("sha256sum"))}
		},
	},
	{
		name:  "python_pass",
		tools: []string{"python3"},
		argv:  func(w *progWork) []string { return []string{w.tool("python3"), "-c", "pass"} },
	},
	{
		name:  "gcc_one",
		tools: []string{"gcc"},
		setup: func(w *progWork) error {
			return os.WriteFile(filepath.Join(w.dir, "one.c"), []byte(gccOneSource()), 0o644)
		},
		argv: func(w *progWork) []string {
			return []string{w.tool("gcc"), "-O2", "-c", filepath.Join(w.dir, "one.c"), "-o", filepath.Join(w.dir, "one.o")}
		},
	},
	{
		name:  "git_log",
		tools: []string{"git"},
		setup: setupGitRepo,
		argv: func(w *progWork) []string {
			return []string{w.tool("git"), "-C", filepath.Join(w.dir, "repo"), "--no-pager", "log", "-p"}
		},
	},
	{
		name:  "gzip_50m",
		tools: []string{"gzip"},
		setup: func(w *progWork) error { return writeGzipInput(filepath.Join(w.dir, "gzip.in")) },
		argv: func(w *progWork) []string {
			return []string{w.tool("gzip"), "-c", filepath.Join(w.dir, "gzip.in")}
		},
	},
	{
		name:  "fork_exec_300",
		tools: []string{"gcc", "true"},
		setup: func(w *progWork) error {
			_, err := w.cprog("forkexec", strings.ReplaceAll(forkExecSource, "TRUE", w.tool("true")))
			return err
		},
		argv: func(w *progWork) []string { return []string{w.built["forkexec"], "300"} },
	},
	{
		name:  "gcc_24",
		tools: []string{"gcc", "sh"},
		setup: func(w *progWork) error {
			for i := range 24 {
				if err := os.WriteFile(filepath.Join(w.dir, fmt.Sprintf("small%02d.c", i)), []byte(gccSmallSource(i)), 0o644); err != nil {
					return err
				}
			}
			return nil
		},
		argv: func(w *progWork) []string {
			var b strings.Builder
			fmt.Fprintf(&b, "cd %s && for i in", w.dir)
			for i := range 24 {
				fmt.Fprintf(&b, " %02d", i)
			}
			fmt.Fprintf(&b, "; do %s -c small$i.c -o small$i.o || exit 1; done", w.tool("gcc"))
			return []string{w.tool("sh"), "-c", b.String()}
		},
	},
	selfTimedC("shm_anon_256m", "shmanon", shmAnonSource),
	selfTimedC("fork_1g", "fork1g", fork1GSource),
}

// selfTimedC is a self-timed workload running C program src, built as bin.
func selfTimedC(name, bin, src string) *program {
	return &program{
		name:      name,
		tools:     []string{"gcc"},
		selfTimed: true,
		setup: func(w *progWork) error {
			_, err := w.cprog(bin, src)
			return err
		},
		argv: func(w *progWork) []string { return []string{w.built[bin]} },
	}
}

// ProgramWorkloads returns the names of the program workloads, in
// canonical order.
func ProgramWorkloads() []string {
	var ns []string
	for _, p := range programs {
		ns = append(ns, p.name)
	}
	return ns
}

// selectPrograms returns the workloads names select (all if none), in
// canonical order, and the names that match none.
func selectPrograms(names []string) (ps []*program, unknown []string) {
	if len(names) == 0 {
		return programs, nil
	}
	for _, n := range names {
		if !slices.ContainsFunc(programs, func(p *program) bool { return p.name == n }) {
			unknown = append(unknown, n)
		}
	}
	for _, p := range programs {
		if slices.Contains(names, p.name) {
			ps = append(ps, p)
		}
	}
	return ps, unknown
}

// findTool returns the first executable called name on PATH that is a
// binary (an ELF file), not a script: version managers' shims (pyenv's
// python3 is a shell script running the real one) would add a shell to
// every run. A script is used if no binary is found.
func findTool(name string) (string, error) {
	var script string
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		st, err := os.Stat(p)
		if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			continue
		}
		if f, err := elf.Open(p); err == nil {
			f.Close()
			abs, err := filepath.Abs(p)
			if err != nil {
				return "", err
			}
			return abs, nil
		}
		if script == "" {
			script, _ = filepath.Abs(p)
		}
	}
	if script != "" {
		return script, nil
	}
	return "", fmt.Errorf("%s not found on PATH", name)
}

// RunPrograms runs the program workloads opts selects and returns their
// results in canonical order (unknown names are error results).
func RunPrograms(ctx context.Context, opts ProgramOptions) []ProgramResult {
	progress := opts.Progress
	if progress == nil {
		progress = io.Discard
	}
	rounds := opts.Rounds
	if rounds <= 0 {
		rounds = DefaultProgramRounds
	}
	ps, unknown := selectPrograms(opts.Names)
	var out []ProgramResult
	for _, n := range unknown {
		out = append(out, ProgramResult{Workload: n, Unit: "ms", Err: errors.New("unknown workload")})
	}
	dir := opts.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "vmspace-programs-")
		if err != nil {
			for _, p := range ps {
				out = append(out, ProgramResult{Workload: p.name, Unit: "ms", Err: err})
			}
			return out
		}
		defer os.RemoveAll(d)
		dir = d
	}
	w := &progWork{dir: dir, tools: make(map[string]string), built: make(map[string]string)}
	systems := opts.systems()
	for _, p := range ps {
		r := ProgramResult{Workload: p.name, Unit: "ms"}
		if err := ctx.Err(); err != nil {
			r.Err = err
			out = append(out, r)
			continue
		}
		var missing []string
		for _, t := range p.tools {
			if _, ok := w.tools[t]; ok {
				continue
			}
			path, err := findTool(t)
			if err != nil {
				missing = append(missing, t)
				continue
			}
			w.tools[t] = path
		}
		if len(missing) > 0 {
			r.Skipped = "missing " + strings.Join(missing, ", ")
			fmt.Fprintf(progress, "bench: %s: skipped (%s)\n", p.name, r.Skipped)
			out = append(out, r)
			continue
		}
		if p.setup != nil {
			if err := p.setup(w); err != nil {
				r.Err = fmt.Errorf("setup: %w", err)
				fmt.Fprintf(progress, "bench: %s: %v\n", p.name, r.Err)
				out = append(out, r)
				continue
			}
		}
		argv := p.argv(w)
		samples := make([]ProgramSample, len(systems))
		stats := make([][]RunStats, len(systems))
		for i, sys := range systems {
			samples[i].System = sys
		}
		// One untimed run per system first (page cache, lazy binding).
		for i, sys := range systems {
			if _, _, err := runOnce(ctx, opts, w, sys, p, argv); err != nil {
				samples[i].Err = err
				fmt.Fprintf(progress, "bench: %s %s: %v\n", p.name, sys, err)
			}
		}
		for round := range rounds {
			for k := range systems {
				i := (k + round) % len(systems)
				if samples[i].Err != nil || ctx.Err() != nil {
					continue
				}
				v, st, err := runOnce(ctx, opts, w, systems[i], p, argv)
				if err != nil {
					samples[i].Err = err
					fmt.Fprintf(progress, "bench: %s %s: %v\n", p.name, systems[i], err)
					continue
				}
				samples[i].Values = append(samples[i].Values, v)
				if st != nil {
					stats[i] = append(stats[i], *st)
				}
				fmt.Fprintf(progress, "bench: %s %s round %d: %.1f ms\n", p.name, systems[i], round+1, v)
			}
		}
		for i := range samples {
			s := &samples[i]
			if s.Err == nil && len(s.Values) == 0 {
				s.Err = ctx.Err()
			}
			if s.Err != nil {
				continue
			}
			s.Median, s.Min, s.Max = summarize(s.Values)
			if len(stats[i]) > 0 {
				s.Stats = medianStats(stats[i])
			}
		}
		if nat := samples[0]; nat.Err == nil && nat.Median > 0 {
			for i := 1; i < len(samples); i++ {
				if samples[i].Err == nil {
					samples[i].Ratio = samples[i].Median / nat.Median
				}
			}
		}
		r.Samples = samples
		out = append(out, r)
	}
	return out
}

// systems returns the systems opts runs, native first.
func (opts ProgramOptions) systems() []string {
	systems := []string{SystemNative, SystemVmspace}
	if opts.Baseline != "" {
		systems = append(systems, SystemBaseline)
	}
	if opts.Runsc != "" {
		systems = append(systems, SystemRunsc)
	}
	return systems
}

// runOnce runs argv once on sys and returns its figure in ms, and for
// vmspace the run's statistics.
func runOnce(ctx context.Context, opts ProgramOptions, w *progWork, sys string, p *program, argv []string) (float64, *RunStats, error) {
	var cmd *exec.Cmd
	switch sys {
	case SystemNative:
		cmd = exec.CommandContext(ctx, argv[0], argv[1:]...)
	case SystemVmspace, SystemBaseline:
		bin := opts.Vmspace
		if sys == SystemBaseline {
			bin = opts.Baseline
		}
		if bin == "" {
			return 0, nil, errors.New("no vmspace binary")
		}
		cmd = exec.CommandContext(ctx, bin, append([]string{"run", "--stats", "--"}, argv...)...)
		if len(opts.VmspaceEnv) > 0 {
			cmd.Env = append(os.Environ(), opts.VmspaceEnv...)
		}
	case SystemRunsc:
		cmd = exec.CommandContext(ctx, opts.Runsc, append([]string{"--network=none", "do"}, argv...)...)
	}
	cmd.Dir = w.dir
	var stdout, stderr bytes.Buffer
	if p.selfTimed {
		cmd.Stdout = &stdout
	}
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if err != nil {
		return 0, nil, fmt.Errorf("%v: %s", err, lastLines(stderr.String(), 3))
	}
	v := float64(wall.Nanoseconds()) / 1e6
	if p.selfTimed {
		ns, err := parseSelfTime(stdout.String())
		if err != nil {
			return 0, nil, err
		}
		v = ns / 1e6
	}
	var st *RunStats
	if sys == SystemVmspace || sys == SystemBaseline {
		st = parseRunStats(stderr.String())
	}
	return v, st, nil
}

// parseSelfTime returns N from a self-timed program's "ns N" line.
func parseSelfTime(out string) (float64, error) {
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "ns "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("no \"ns N\" line in the program's output %q", lastLines(out, 2))
}

// parseRunStats reads the figures of "vmspace run --stats" from its
// stderr, or returns nil if there are none.
func parseRunStats(errOut string) *RunStats {
	i := strings.LastIndex(errOut, "=== vmspace stats ===")
	if i < 0 {
		return nil
	}
	var st RunStats
	sc := bufio.NewScanner(strings.NewReader(errOut[i:]))
	num := func(s string) float64 {
		f, _ := strconv.ParseFloat(strings.Fields(s + " 0")[0], 64)
		return f
	}
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		switch key {
		case "faults served":
			st.Faults = num(val)
		case "memory calls served":
			st.MemCalls = num(val)
		case "system call stops":
			st.Stops = num(val)
		case "injected calls":
			st.Injected = num(val)
		case "time in vmspace":
			if d, err := time.ParseDuration(strings.Fields(val + " 0")[0]); err == nil {
				st.ManagerMs = float64(d.Nanoseconds()) / 1e6
			}
		}
	}
	return &st
}

// medianStats returns the median of each figure.
func medianStats(sts []RunStats) *RunStats {
	pick := func(f func(RunStats) float64) float64 {
		vs := make([]float64, len(sts))
		for i, s := range sts {
			vs[i] = f(s)
		}
		m, _, _ := summarize(vs)
		return m
	}
	return &RunStats{
		Faults:    pick(func(s RunStats) float64 { return s.Faults }),
		MemCalls:  pick(func(s RunStats) float64 { return s.MemCalls }),
		Stops:     pick(func(s RunStats) float64 { return s.Stops }),
		Injected:  pick(func(s RunStats) float64 { return s.Injected }),
		ManagerMs: pick(func(s RunStats) float64 { return s.ManagerMs }),
	}
}

// summarize returns the median, minimum and maximum of vs (not empty);
// the median of an even count is the mean of the middle two.
func summarize(vs []float64) (median, lo, hi float64) {
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		median = s[n/2]
	} else {
		median = (s[n/2-1] + s[n/2]) / 2
	}
	return median, s[0], s[n-1]
}

// lastLines returns the last n lines of s, trimmed.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
