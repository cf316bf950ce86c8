package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/vmspace/vmspace/vmscript/fuzz"
)

// fuzzMain implements `vmspace fuzz [--seconds N] [--seed S] [--out DIR]`:
// differential fuzzing of vmspace against Linux with generated vmscripts.
func fuzzMain(args []string) int {
	fs := flag.NewFlagSet("fuzz", flag.ContinueOnError)
	seconds := fs.Float64("seconds", 60, "how long to fuzz")
	seed := fs.Uint64("seed", 0, "seed of the run (0: from the clock); the same seed generates the same scripts")
	out := fs.String("out", "vmscript/testdata", "where minimal reproducers (fuzz_SEED_N.vms and .out) are written; empty: nowhere")
	scripts := fs.Int("scripts", 0, "stop after this many scripts (0: no limit)")
	timeout := fs.Duration("timeout", 20*time.Second, "time limit for one script on one system")
	maxFindings := fs.Int("max-findings", 0, "stop after this many distinct differences (0: no limit)")
	budget := fs.Int("shrink-budget", 1500, "most runs spent shrinking one difference")
	fs.SetOutput(os.Stderr)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "vmspace fuzz: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano())
	}
	fmt.Fprintf(os.Stderr, "vmspace fuzz: seed %d, %gs, reproducers to %q\n", *seed, *seconds, *out)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	st, err := fuzz.Run(ctx, fuzz.Options{
		Seed:         *seed,
		Duration:     time.Duration(*seconds * float64(time.Second)),
		Scripts:      *scripts,
		OutDir:       *out,
		Timeout:      *timeout,
		ShrinkBudget: *budget,
		MaxFindings:  *maxFindings,
		Progress:     os.Stderr,
		Report:       os.Stdout,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmspace fuzz: %v\n", err)
		return 2
	}
	fmt.Fprintf(os.Stderr, "vmspace fuzz: seed %d: %d scripts in %s, %d distinct differences, %d duplicates, %d native failures, %d unstable\n",
		*seed, st.Scripts, st.Elapsed.Round(time.Second), len(st.Findings), st.Duplicates, st.NativeFailures, st.Unstable)
	for _, f := range st.Findings {
		where := f.Path
		if where == "" {
			where = "(not saved)"
		}
		fmt.Fprintf(os.Stderr, "  %s: %s\n", where, f.Key)
	}
	if len(st.Findings) > 0 {
		return 1
	}
	return 0
}
