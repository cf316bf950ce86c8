package bench

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
)

// usage is Main's help text.
const usage = `usage: vmspace bench [--json] [-w NAME,...] [--scale F] [--no-pin] [--cpuprofile FILE]
       vmspace bench --programs [--json] [-w NAME,...] [--rounds N] [--runsc PATH] [--baseline PATH]

Runs the benchmark workloads of shared/spec/workloads.md on vmspace, in
canonical order (all of them unless -w names some), and prints a table
against the reference figures, or with --json one JSON object per line.
Progress goes to stderr.

With --programs, runs the program workloads of docs/programs.md instead:
real programs natively, under "vmspace run" and (with --runsc) under
gVisor's runsc, interleaved, with medians, spreads and ratios to native.

flags:
`

// namesFlag collects comma-separated workload names from one or more -w.
type namesFlag []string

func (n *namesFlag) String() string { return strings.Join(*n, ",") }

func (n *namesFlag) Set(s string) error {
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			*n = append(*n, x)
		}
	}
	return nil
}

// Main is "vmspace bench": args are the arguments after "bench". It returns
// the exit status: 0 if every workload succeeded, 1 if any failed, 2 for a
// usage error.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vmspace bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	jsonOut := fs.Bool("json", false, "print one JSON object per line instead of a table")
	var names namesFlag
	fs.Var(&names, "w", "run only these workloads (comma-separated JSON or group names; repeatable)")
	scale := fs.Float64("scale", 1, "shrink iteration counts and sizes by this factor (quick checks; results do not compare with the references)")
	noPin := fs.Bool("no-pin", false, "do not pin the process to CPU 0 for fault_as")
	list := fs.Bool("list", false, "list the workload names and exit")
	programsMode := fs.Bool("programs", false, "run the program workloads (docs/programs.md) natively and under vmspace run")
	rounds := fs.Int("rounds", DefaultProgramRounds, "with --programs: timed runs per system and workload")
	runsc := fs.String("runsc", "", "with --programs: also run the programs under this runsc binary")
	baseline := fs.String("baseline", "", "with --programs: also run the programs under this other vmspace binary (a change's before)")
	vmspaceBin := fs.String("vmspace", "", "with --programs: the vmspace binary to run programs with (default: this one)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile to this file; timed regions carry the label timed=NAME (pprof -tagfocus timed=NAME)")
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "vmspace bench: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	if *programsMode {
		return programsMain(ProgramOptions{Names: names, Rounds: *rounds, Runsc: *runsc, Baseline: *baseline, Vmspace: *vmspaceBin}, *jsonOut, *list, stdout, stderr)
	}
	if *list {
		for _, n := range Workloads() {
			fmt.Fprintln(stdout, n)
		}
		return 0
	}
	if !(*scale > 0 && *scale <= 1) {
		fmt.Fprintf(stderr, "vmspace bench: --scale must be in (0, 1], not %v\n", *scale)
		return 2
	}
	if _, unknown := Select(names); len(unknown) > 0 {
		fmt.Fprintf(stderr, "vmspace bench: unknown workload(s): %s (valid: %s)\n",
			strings.Join(unknown, ", "), strings.Join(Workloads(), ", "))
		return 2
	}

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "vmspace bench: %v\n", err)
			return 1
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			fmt.Fprintf(stderr, "vmspace bench: %v\n", err)
			return 1
		}
		defer func() {
			pprof.StopCPUProfile()
			if err := f.Close(); err != nil {
				fmt.Fprintf(stderr, "vmspace bench: %v\n", err)
			}
		}()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rs := RunOptions(ctx, Options{Scale: *scale, NoPin: *noPin, Progress: stderr}, names)

	status := 0
	for _, r := range rs {
		if r.Err != nil {
			status = 1
		}
	}
	if *jsonOut {
		for _, r := range rs {
			b, err := json.Marshal(r)
			if err != nil {
				fmt.Fprintf(stderr, "vmspace bench: %v\n", err)
				return 1
			}
			if _, err := fmt.Fprintf(stdout, "%s\n", b); err != nil {
				fmt.Fprintf(stderr, "vmspace bench: %v\n", err)
				return 1
			}
		}
		return status
	}
	if *scale != 1 {
		fmt.Fprintf(stdout, "scale %v: figures do not compare with the references\n", *scale)
	}
	if err := FormatTable(stdout, rs); err != nil {
		fmt.Fprintf(stderr, "vmspace bench: %v\n", err)
		return 1
	}
	return status
}

// programsMain is "vmspace bench --programs".
func programsMain(opts ProgramOptions, jsonOut, list bool, stdout, stderr io.Writer) int {
	if list {
		for _, n := range ProgramWorkloads() {
			fmt.Fprintln(stdout, n)
		}
		return 0
	}
	if opts.Rounds < 1 {
		fmt.Fprintf(stderr, "vmspace bench: --rounds must be at least 1, not %d\n", opts.Rounds)
		return 2
	}
	if _, unknown := selectPrograms(opts.Names); len(unknown) > 0 {
		fmt.Fprintf(stderr, "vmspace bench: unknown program workload(s): %s (valid: %s)\n",
			strings.Join(unknown, ", "), strings.Join(ProgramWorkloads(), ", "))
		return 2
	}
	if opts.Vmspace == "" {
		self, err := os.Executable()
		if err != nil {
			fmt.Fprintf(stderr, "vmspace bench: %v\n", err)
			return 1
		}
		opts.Vmspace = self
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	opts.Progress = stderr
	rs := RunPrograms(ctx, opts)
	status := 0
	for _, r := range rs {
		if r.Err != nil {
			status = 1
		}
		for _, s := range r.Samples {
			if s.Err != nil {
				status = 1
			}
		}
	}
	var err error
	if jsonOut {
		err = WriteProgramJSON(stdout, rs, opts.systems())
	} else {
		err = FormatProgramTable(stdout, rs)
	}
	if err != nil {
		fmt.Fprintf(stderr, "vmspace bench: %v\n", err)
		return 1
	}
	return status
}
