// Package bench runs the benchmark workloads of shared/spec/workloads.md on
// vmspace's memory manager: the same names, sizes, iteration counts, timed
// regions and units that the reference systems (gVisor's memory manager and
// native Linux) are measured with, so that the figures compare side by side.
//
// Run runs workloads and returns their Results; Result.MarshalJSON writes the
// spec's one-line JSON form; FormatTable lays results out against the
// reference figures; Main is the "vmspace bench" command. The same workloads
// are go test benchmarks (bench_test's BenchmarkXxx), for benchstat.
//
// Every workload gets a fresh MemoryManager, destroyed with DecUsers; all of
// them share one memfd-backed pgalloc.MemoryFile, as in a sentry. Before each
// workload the harness settles: runtime.GC(), then a 100 ms sleep so that
// the memory file's releaser finishes returning the previous workload's
// memory.
//
// # Comparing commits and profiling
//
// Each go test benchmark runs its workload exactly as the spec says, once
// per b.N iteration, and reports the workload's figure as ns/op (secondary
// figures under their own units), so that
//
//	go test -run XXX -bench . -count 6 ./bench > new.txt
//	benchstat old.txt new.txt
//
// compares commits. Timed regions carry the pprof label timed=NAME (NAME a
// JSON workload name), so a profile of the whole run can be narrowed to
// what a workload times:
//
//	go test -run XXX -bench Fork256m -benchtime 3x -cpuprofile cpu.out ./bench
//	go tool pprof -tagfocus timed=fork_cow_break -top -cum bench.test cpu.out
//
// "vmspace bench --cpuprofile FILE" writes the same kind of profile.
//
// # Program workloads
//
// RunPrograms ("vmspace bench --programs") runs real programs (docs/programs.md)
// natively, under "vmspace run" and optionally under gVisor's runsc,
// interleaved, and reports medians, spreads, ratios to native and
// vmspace's stop counts (FormatProgramTable, WriteProgramJSON).
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/vmspace/vmspace/pgalloc"
	"github.com/vmspace/vmspace/platform"
)

// System is the "system" field of every Result this package produces.
const System = "vmspace"

// Result is one line of the benchmark's output: the value of one workload
// on one system, or the error that stopped it.
type Result struct {
	// System names the system measured ("vmspace").
	System string
	// Workload is the workload's JSON name, such as "copyin_8".
	Workload string
	// Value is the measured figure in Unit (unrounded; MarshalJSON rounds
	// it to 0.1). Meaningless if Err is set.
	Value float64
	// Unit is the unit of Value, such as "ns/op" or "MB/s".
	Unit string
	// Iters is the number of timed operations (or rounds) behind Value.
	Iters int
	// Err is why the workload failed, or nil.
	Err error
}

// MarshalJSON writes r in the spec's form, fields in the spec's order:
//
//	{"system":"vmspace","workload":"copyin_8","value":29.5,"unit":"ns/op","iters":500000}
//
// with value rounded to 0.1; or, if r.Err is set,
//
//	{"system":"vmspace","workload":"copyin_8","error":"…"}
//
// with no value. A value that is not finite cannot be written as JSON and is
// reported as an error line.
func (r Result) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 128)
	b = append(b, `{"system":`...)
	b = strconv.AppendQuote(b, r.System)
	b = append(b, `,"workload":`...)
	b = strconv.AppendQuote(b, r.Workload)
	err := r.Err
	if err == nil && (math.IsNaN(r.Value) || math.IsInf(r.Value, 0)) {
		err = fmt.Errorf("value is not finite: %v", r.Value)
	}
	if err != nil {
		b = append(b, `,"error":`...)
		b = appendJSONString(b, err.Error())
		return append(b, '}'), nil
	}
	b = append(b, `,"value":`...)
	b = strconv.AppendFloat(b, Round(r.Value), 'f', 1, 64)
	b = append(b, `,"unit":`...)
	b = strconv.AppendQuote(b, r.Unit)
	b = append(b, `,"iters":`...)
	b = strconv.AppendInt(b, int64(r.Iters), 10)
	return append(b, '}'), nil
}

// appendJSONString appends s as a JSON string. strconv.AppendQuote's escapes
// (\x..) are not all JSON, so error texts, which may contain anything, are
// escaped here.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for _, c := range []byte(s) {
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20 || c == 0x7f:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			// Bytes >= 0x80 are copied as they are: valid UTF-8 stays
			// valid; JSON decoders replace invalid sequences.
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// Round rounds v to the nearest 0.1, as the JSON output does.
func Round(v float64) float64 { return math.Round(v*10) / 10 }

// Options configure a run of the workloads.
type Options struct {
	// Scale shrinks every iteration count and region size by this factor
	// (each to at least 1, or to a workload-specific floor), for quick
	// checks. 0 or 1 (or more) means the spec's figures. Results of a
	// scaled run do not compare with the reference figures.
	Scale float64

	// NoPin leaves fault_as unpinned: by default the whole process is
	// pinned to CPU 0 before the ptrace platform is created (and unpinned
	// afterwards).
	NoPin bool

	// MemoryFile is the memory file shared by all workloads; if nil, Run
	// creates one and closes it at the end.
	MemoryFile *pgalloc.MemoryFile

	// NewPlatform makes the real platform fault_as runs on; if nil,
	// DefaultPlatform is used.
	NewPlatform func() (platform.Platform, error)

	// Progress receives one line per workload as it runs; nil discards
	// them.
	Progress io.Writer

	// SettleSleep is how long the harness sleeps after runtime.GC() before
	// each workload; 0 means the spec's 100 ms. A negative value skips
	// the sleep (the quick test uses it).
	SettleSleep time.Duration
}

// DefaultPlatform makes the real platform for fault_as when
// Options.NewPlatform is nil: the ptrace platform (platform/ptrace). If it
// is set to nil, fault_as reports an error line.
var DefaultPlatform func() (platform.Platform, error)

// errNoPlatform is fault_as's error when there is no real platform.
var errNoPlatform = errors.New("no real platform available")

// Run runs the named workloads (all if names is empty) with the spec's
// figures, in the canonical order, writing progress to progress (if not
// nil). A name is a JSON workload name (such as "mprotect_merge_4096") or a
// group name (such as "mprotect_frag"); a name selects its whole group.
// Unknown names are reported as error Results.
func Run(ctx context.Context, names []string, progress io.Writer) []Result {
	return RunOptions(ctx, Options{Progress: progress}, names)
}

// RunOptions is Run with options.
func RunOptions(ctx context.Context, opts Options, names []string) []Result {
	gs, unknown := Select(names)
	var out []Result
	for _, n := range unknown {
		out = append(out, Result{System: System, Workload: n, Err: errors.New("unknown workload")})
	}
	if len(gs) == 0 {
		return out
	}
	progress := opts.Progress
	if progress == nil {
		progress = io.Discard
	}
	mf := opts.MemoryFile
	if mf == nil {
		var err error
		mf, err = pgalloc.New(pgalloc.Options{Name: "vmspace-bench"})
		if err != nil {
			for _, g := range gs {
				out = append(out, g.failed(fmt.Errorf("creating the memory file: %w", err))...)
			}
			return out
		}
		defer mf.Close()
	}
	e := &env{ctx: ctx, mf: mf, scale: opts.Scale, pin: !opts.NoPin, newPlatform: opts.NewPlatform, log: progress}
	if e.newPlatform == nil {
		e.newPlatform = DefaultPlatform
	}
	for _, g := range gs {
		if err := ctx.Err(); err != nil {
			out = append(out, g.failed(err)...)
			continue
		}
		settle(opts.SettleSleep)
		fmt.Fprintf(progress, "bench: %s ...\n", g.name)
		start := time.Now()
		rs := g.runIn(e)
		for _, r := range rs {
			if r.Err != nil {
				fmt.Fprintf(progress, "bench:   %s: error: %v\n", r.Workload, r.Err)
			} else {
				fmt.Fprintf(progress, "bench:   %s = %.1f %s (%d iters)\n", r.Workload, r.Value, r.Unit, r.Iters)
			}
		}
		fmt.Fprintf(progress, "bench: %s done in %v\n", g.name, time.Since(start).Round(time.Millisecond))
		out = append(out, rs...)
	}
	return out
}

// settle runs the garbage collector and sleeps, so that the previous
// workload's garbage and freed memory do not disturb the next one.
func settle(sleep time.Duration) {
	runtime.GC()
	switch {
	case sleep == 0:
		time.Sleep(100 * time.Millisecond)
	case sleep > 0:
		time.Sleep(sleep)
	}
}

// output is one Result a group produces: its JSON name and unit.
type output struct {
	name string
	unit string
}

// measure is one measured figure of a group, in the order of its outputs.
type measure struct {
	value float64
	iters int
}

// group is one numbered workload of the spec, which produces one or more
// Results.
type group struct {
	// name is the group's name: the JSON name of its first output, or the
	// spec's name for groups whose outputs are named otherwise
	// (mprotect_frag).
	name string
	// outputs are the Results the group produces, in order.
	outputs []output
	// run measures the group; it returns one measure per output.
	run func(e *env) ([]measure, error)
}

// failed returns error Results for all of g's outputs.
func (g *group) failed(err error) []Result {
	rs := make([]Result, len(g.outputs))
	for i, o := range g.outputs {
		rs[i] = Result{System: System, Workload: o.name, Unit: o.unit, Err: err}
	}
	return rs
}

// runIn runs g, turning a panic in the memory manager into an error.
func (g *group) runIn(e *env) (rs []Result) {
	defer func() {
		if p := recover(); p != nil {
			rs = g.failed(fmt.Errorf("panic: %v", p))
		}
	}()
	ms, err := g.run(e)
	if err == nil && len(ms) != len(g.outputs) {
		err = fmt.Errorf("internal error: %d measures for %d outputs", len(ms), len(g.outputs))
	}
	if err != nil {
		return g.failed(err)
	}
	rs = make([]Result, len(g.outputs))
	for i, o := range g.outputs {
		rs[i] = Result{System: System, Workload: o.name, Unit: o.unit, Value: ms[i].value, Iters: ms[i].iters}
		if v := ms[i].value; math.IsNaN(v) || math.IsInf(v, 0) {
			rs[i].Err = fmt.Errorf("value is not finite: %v", v)
		}
	}
	return rs
}

// Workloads returns the JSON names of all workloads, in canonical order.
func Workloads() []string {
	var ns []string
	for _, g := range groups {
		for _, o := range g.outputs {
			ns = append(ns, o.name)
		}
	}
	return ns
}

// Select returns the groups that names select, in canonical order, and the
// names that match no workload. No names select every group.
func Select(names []string) (gs []*group, unknown []string) {
	if len(names) == 0 {
		return groups, nil
	}
	want := make(map[*group]bool)
	for _, n := range names {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		g := lookupGroup(n)
		if g == nil {
			unknown = append(unknown, n)
			continue
		}
		want[g] = true
	}
	for _, g := range groups {
		if want[g] {
			gs = append(gs, g)
		}
	}
	return gs, unknown
}

// lookupGroup returns the group named n or producing output n, or nil.
func lookupGroup(n string) *group {
	for _, g := range groups {
		if g.name == n {
			return g
		}
		for _, o := range g.outputs {
			if o.name == n {
				return g
			}
		}
	}
	return nil
}
