package fuzz

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/vmspace/vmspace/vmscript"
	"github.com/vmspace/vmspace/vmscript/native"
	"github.com/vmspace/vmspace/vmscript/vmspace"
)

// Outcome is one script run on Linux and on vmspace.
type Outcome struct {
	// Linux and Vmspace are the two transcripts (up to any failure).
	Linux, Vmspace []byte
	// LinuxErr is a failure of the native executor (not a result of the
	// script): a dead agent, a timeout.
	LinuxErr error
	// VmspaceErr is a failure of the vmspace executor: an error that is
	// not an errno, a panic, a hang.
	VmspaceErr error
	// Diff is the first difference between the transcripts, nil when they
	// are identical.
	Diff *vmscript.Difference
}

// Differs says vmspace disagrees with Linux: the native run succeeded and
// vmspace failed or printed something else.
func (o *Outcome) Differs() bool {
	return o.LinuxErr == nil && (o.VmspaceErr != nil || o.Diff != nil)
}

// Compare runs s natively and on vmspace, each bounded by timeout (zero
// means 20 seconds), and compares the transcripts. A panic in vmspace is
// recovered and reported as VmspaceErr; so is a run that does not end in
// time (its goroutine is abandoned).
func Compare(ctx context.Context, s *vmscript.Script, timeout time.Duration, tempDir string) Outcome {
	if timeout <= 0 {
		timeout = 20 * time.Second
	}
	var o Outcome
	o.Linux, o.LinuxErr = runNativeOnce(ctx, s, timeout, tempDir)
	if o.LinuxErr != nil {
		return o
	}
	o.Vmspace, o.VmspaceErr = runVmspaceGuarded(ctx, s, timeout, vmspace.Options{})
	o.Diff = vmscript.Diff(s, o.Linux, o.Vmspace)
	return o
}

func runNativeOnce(ctx context.Context, s *vmscript.Script, timeout time.Duration, tempDir string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var buf bytes.Buffer
	err := vmscript.Run(ctx, s, native.New(native.Options{TempDir: tempDir, Timeout: timeout}), &buf)
	return buf.Bytes(), err
}

// errVmspaceHung is the VmspaceErr of a run that did not end in time.
var errVmspaceHung = errors.New("vmspace did not finish in time (hung?)")

// panicError is a recovered vmspace panic.
type panicError struct {
	val   any
	stack []byte
}

func (e *panicError) Error() string {
	return fmt.Sprintf("vmspace panicked: %v\n%s", e.val, e.stack)
}

// runVmspaceGuarded runs s on vmspace (configured by opts), recovering a
// panic and giving up on a run that does not end in timeout (zero: 20 s).
func runVmspaceGuarded(ctx context.Context, s *vmscript.Script, timeout time.Duration, opts vmspace.Options) ([]byte, error) {
	if timeout <= 0 {
		timeout = 20 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type result struct {
		out []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		var buf bytes.Buffer
		defer func() {
			if r := recover(); r != nil {
				ch <- result{bytes.Clone(buf.Bytes()), &panicError{r, debug.Stack()}}
			}
		}()
		err := vmscript.Run(ctx, s, vmspace.New(opts), &buf)
		ch <- result{buf.Bytes(), err}
	}()
	select {
	case r := <-ch:
		return r.out, r.err
	case <-ctx.Done():
		// Run checks the context between statements: give it a moment.
		select {
		case r := <-ch:
			return r.out, r.err
		case <-time.After(2 * time.Second):
			return nil, errVmspaceHung
		}
	}
}

// signature names a difference loosely enough to survive shrinking (which
// renumbers lines and changes results) and tightly enough not to slide into
// another bug: the kind of failure and the differing statement's keyword.
func signature(s *vmscript.Script, o *Outcome) string {
	op := func(line int) string {
		if st := s.StmtAt(line); st != nil {
			return st.Op.String()
		}
		return "?"
	}
	var re *vmscript.RunError
	switch {
	case o.VmspaceErr == nil && o.Diff != nil:
		return "diff " + op(o.Diff.Line)
	case o.VmspaceErr == errVmspaceHung:
		return "hang"
	case errors.As(o.VmspaceErr, new(*panicError)):
		return "panic"
	case errors.As(o.VmspaceErr, &re):
		return "error " + op(re.Line)
	case o.VmspaceErr != nil:
		return "error"
	}
	return ""
}

// classify reduces a result to its shape, for telling bugs apart.
func classify(op vmscript.Op, r string) string {
	fault := ""
	if i := strings.Index(r, "segv"); i >= 0 {
		fault = " segv"
	} else if i := strings.Index(r, "bus"); i >= 0 {
		fault = " bus"
	}
	switch {
	case r == vmscript.Missing, r == "ok", strings.HasPrefix(r, "-E"), strings.HasPrefix(r, "unbound"):
		return r
	case strings.HasPrefix(r, "= "):
		if strings.HasPrefix(r, "= @") {
			return "= @"
		}
		return r
	case strings.HasPrefix(r, "sum "):
		return "sum" + fault
	case op == vmscript.OpRead:
		return "bytes" + fault
	case op == vmscript.OpWrite || op == vmscript.OpFill:
		return strings.TrimSpace(fault)
	case op == vmscript.OpMincore:
		return "mincore"
	case op == vmscript.OpVmsize, op == vmscript.OpVmlck:
		return strings.Fields(r)[0]
	}
	return "?"
}

// stateAttrs returns the set of ATTRs in a state result.
func stateAttrs(r string) map[string]bool {
	m := map[string]bool{}
	for _, item := range strings.Split(r, " | ") {
		if f := strings.Fields(item); len(f) == 3 {
			m[f[2]] = true
		}
	}
	return m
}

// findingKey tells distinct differences apart after shrinking: the
// signature and the shapes of the two results (for state, which attributes
// one side shows and the other does not).
func findingKey(s *vmscript.Script, o *Outcome) string {
	sig := signature(s, o)
	if o.VmspaceErr != nil || o.Diff == nil {
		return sig
	}
	st := s.StmtAt(o.Diff.Line)
	if st != nil && st.Op == vmscript.OpState {
		a, b := stateAttrs(o.Diff.A), stateAttrs(o.Diff.B)
		var only []string
		for k := range a {
			if !b[k] {
				only = append(only, "linux:"+k)
			}
		}
		for k := range b {
			if !a[k] {
				only = append(only, "vmspace:"+k)
			}
		}
		sort.Strings(only)
		if len(only) == 0 {
			return sig + " boundaries"
		}
		return sig + " " + strings.Join(only, " ")
	}
	var op vmscript.Op
	if st != nil {
		op = st.Op
	}
	return sig + " linux=" + classify(op, o.Diff.A) + " vmspace=" + classify(op, o.Diff.B)
}

// Options configure Run.
type Options struct {
	// Seed is the seed of the run; script i is generated from a seed
	// derived from Seed and i.
	Seed uint64
	// Duration bounds the run (zero: until the context ends or Scripts
	// have run).
	Duration time.Duration
	// Scripts bounds how many scripts are generated (zero: no bound).
	Scripts int
	// OutDir is where minimal reproducers are written (fuzz_SEED_N.vms and
	// their Linux transcripts fuzz_SEED_N.out); empty means they are only
	// reported. Reproducers already there are read first, so that a
	// difference found again is counted as a duplicate.
	OutDir string
	// Timeout bounds each run of a script on one system (zero: 20 s).
	Timeout time.Duration
	// TempDir is where the native executor makes its files (empty: the
	// system's).
	TempDir string
	// ShrinkBudget bounds the runs spent shrinking one difference (zero:
	// 1500).
	ShrinkBudget int
	// MaxFindings stops the run after this many distinct differences
	// (zero: no bound).
	MaxFindings int
	// Progress receives a progress line every few seconds and notes about
	// native failures; nil discards them.
	Progress io.Writer
	// Report receives each distinct difference: the minimal script and the
	// two results; nil discards them.
	Report io.Writer
}

// Finding is one distinct difference, shrunk.
type Finding struct {
	// Index is the number of the generated script that showed it, and
	// ScriptSeed the seed it was generated from.
	Index      int
	ScriptSeed uint64
	// Key tells it apart from other findings (see findingKey).
	Key string
	// Script is the minimal reproducer as saved (with its header), and
	// Linux its Linux transcript.
	Script, Linux []byte
	// Outcome is the minimal reproducer's comparison.
	Outcome Outcome
	// ZeroPage is the host's kind of kernel as a "# requires:" name
	// ("zeropage", "nozeropage") when the reproducer's transcript depends
	// on whether the kernel has the shared zero page (zeroPageFeature),
	// else "".
	ZeroPage string
	// Path is where Script was written, or "".
	Path string
}

// Stats summarise a run.
type Stats struct {
	// Scripts is how many generated scripts ran on both systems.
	Scripts int
	// Differences counts generated scripts on which vmspace differed.
	Differences int
	// Findings are the distinct differences, shrunk, in the order found.
	Findings []Finding
	// Duplicates counts differences whose shrunk key was already known.
	Duplicates int
	// NativeFailures counts scripts the native executor could not run.
	NativeFailures int
	// Unstable counts differences whose native transcript changed from one
	// run to the next (so Linux's answer is not a fixed oracle there).
	Unstable int
	// Elapsed is the wall time of the run.
	Elapsed time.Duration
}

// ScriptSeed returns the seed of script i of a run with seed seed.
func ScriptSeed(seed uint64, i int) uint64 {
	// SplitMix64 of the pair.
	z := seed + uint64(i)*0x9e3779b97f4a7c15 + 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// knownKeyPrefix starts the header line of a saved reproducer that records
// its key.
const knownKeyPrefix = "# fuzz key: "

// Run generates scripts (Generate), runs each natively and on vmspace, and
// for each difference shrinks the script to a minimal reproducer, which it
// reports and (with OutDir) saves with its Linux transcript. Native failures
// are counted and noted on Progress, not saved.
func Run(ctx context.Context, opts Options) (Stats, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 20 * time.Second
	}
	if opts.ShrinkBudget <= 0 {
		opts.ShrinkBudget = 1500
	}
	progress := opts.Progress
	if progress == nil {
		progress = io.Discard
	}
	report := opts.Report
	if report == nil {
		report = io.Discard
	}
	if opts.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Duration)
		defer cancel()
	}
	known := map[string]string{} // key -> where it was found
	if opts.OutDir != "" {
		if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
			return Stats{}, err
		}
		paths, _ := filepath.Glob(filepath.Join(opts.OutDir, "fuzz_*.vms"))
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			for _, l := range strings.Split(string(b), "\n") {
				if k, ok := strings.CutPrefix(l, knownKeyPrefix); ok {
					known[k] = filepath.Base(p)
				}
			}
		}
	}

	var st Stats
	start := time.Now()
	lastProgress := start
	printProgress := func(final bool) {
		el := time.Since(start)
		word := "fuzz"
		if final {
			word = "fuzz: done"
		}
		fmt.Fprintf(progress, "%s: %d scripts in %s (%.1f/s), %d differing, %d distinct, %d duplicates, %d native failures, %d unstable\n",
			word, st.Scripts, el.Round(time.Second), float64(st.Scripts)/max(el.Seconds(), 1e-9),
			st.Differences, len(st.Findings), st.Duplicates, st.NativeFailures, st.Unstable)
	}
	for i := 0; ctx.Err() == nil && (opts.Scripts == 0 || i < opts.Scripts); i++ {
		if time.Since(lastProgress) >= 5*time.Second {
			printProgress(false)
			lastProgress = time.Now()
		}
		seed := ScriptSeed(opts.Seed, i)
		src := Generate(seed)
		name := fmt.Sprintf("gen-%d-%d", opts.Seed, i)
		s, err := vmscript.Parse(name, src)
		if err != nil {
			return st, fmt.Errorf("generated script %d (seed %d) does not parse: %v", i, seed, err)
		}
		o := Compare(ctx, s, opts.Timeout, opts.TempDir)
		if ctx.Err() != nil {
			break // the run ended mid-script: its outcome means nothing
		}
		st.Scripts++
		if o.LinuxErr != nil {
			st.NativeFailures++
			fmt.Fprintf(progress, "fuzz: native failure on script %d (seed %d): %v\n--- script\n%s---\n", i, seed, o.LinuxErr, src)
			continue
		}
		if !o.Differs() {
			continue
		}
		st.Differences++
		// Is Linux's answer a fixed oracle here?
		again, err := runNativeOnce(ctx, s, opts.Timeout, opts.TempDir)
		if err != nil || !bytes.Equal(again, o.Linux) {
			st.Unstable++
			fmt.Fprintf(progress, "fuzz: script %d (seed %d): two native runs differ (%v); skipped\n", i, seed, err)
			continue
		}
		// Shrinking may take minutes: say what it is about first.
		fmt.Fprintf(progress, "fuzz: script %d (seed %d) differs, shrinking: %s", i, seed, describe(&o))
		f, ok := shrinkFinding(ctx, s, src, &o, opts)
		if !ok {
			continue
		}
		f.Index, f.ScriptSeed = i, seed
		if where, dup := known[f.Key]; dup {
			st.Duplicates++
			fmt.Fprintf(progress, "fuzz: script %d: a known difference (%s, as in %s)\n", i, f.Key, where)
			continue
		}
		if opts.OutDir != "" {
			base := fmt.Sprintf("fuzz_%d_%d", opts.Seed, i)
			f.ZeroPage = zeroPageFeature(ctx, f.Script, opts.Timeout)
			f.Script = withHeader(f, opts.Seed)
			// The header shifts line numbers: record the transcript
			// of exactly what is saved, and check it still differs.
			fs, err := vmscript.Parse(base+".vms", f.Script)
			if err != nil {
				return st, fmt.Errorf("saved reproducer does not parse: %v", err)
			}
			fo := Compare(ctx, fs, opts.Timeout, opts.TempDir)
			if !fo.Differs() {
				fmt.Fprintf(progress, "fuzz: script %d: the reproducer with its header no longer differs; not saved\n", i)
				continue
			}
			f.Linux, f.Outcome = fo.Linux, fo
			f.Path = filepath.Join(opts.OutDir, base+".vms")
			if err := os.WriteFile(f.Path, f.Script, 0o644); err != nil {
				return st, err
			}
			if err := os.WriteFile(filepath.Join(opts.OutDir, base+".out"), f.Linux, 0o644); err != nil {
				return st, err
			}
		}
		known[f.Key] = fmt.Sprintf("script %d", i)
		st.Findings = append(st.Findings, f)
		fmt.Fprintf(report, "=== difference %d (script %d, seed %d): %s\n", len(st.Findings), i, seed, f.Key)
		if f.Path != "" {
			fmt.Fprintf(report, "saved as %s\n", f.Path)
		}
		fmt.Fprintf(report, "%s--- %s\n", f.Script, describe(&f.Outcome))
		if opts.MaxFindings > 0 && len(st.Findings) >= opts.MaxFindings {
			break
		}
	}
	st.Elapsed = time.Since(start)
	printProgress(true)
	return st, nil
}

// describe formats an outcome's difference.
func describe(o *Outcome) string {
	var b strings.Builder
	if o.Diff != nil {
		b.WriteString(o.Diff.Format("linux", "vmspace"))
		b.WriteByte('\n')
	}
	if o.VmspaceErr != nil {
		fmt.Fprintf(&b, "vmspace failed: %v\n", o.VmspaceErr)
	}
	return b.String()
}

// shrinkFinding shrinks a differing script to a minimal one with the same
// signature, and computes its key.
func shrinkFinding(ctx context.Context, s *vmscript.Script, src []byte, o *Outcome, opts Options) (Finding, bool) {
	// Shrinking keeps the finding's key, so that it does not slide into
	// another bug with the same differing statement.
	key := findingKey(s, o)
	interesting := func(cand []byte) bool {
		if ctx.Err() != nil {
			return false
		}
		cs, err := vmscript.Parse("candidate", cand)
		if err != nil || len(cs.Stmts) == 0 {
			return false
		}
		co := Compare(ctx, cs, opts.Timeout, opts.TempDir)
		return co.Differs() && findingKey(cs, &co) == key
	}
	small := Shrink(src, interesting, ShrinkOptions{Budget: opts.ShrinkBudget})
	ms, err := vmscript.Parse("minimal", small)
	if err != nil {
		return Finding{}, false
	}
	mo := Compare(ctx, ms, opts.Timeout, opts.TempDir)
	if !mo.Differs() {
		// The context ended while shrinking, or the difference is
		// flaky: report the original.
		small, ms, mo = src, s, *o
	}
	return Finding{Key: findingKey(ms, &mo), Script: small, Linux: mo.Linux, Outcome: mo}, true
}

// withHeader prefixes a reproducer with comments: where it came from, its
// key, the kernel features it needs.
func withHeader(f Finding, runSeed uint64) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# found by `vmspace fuzz --seed %d` (script %d), shrunk\n", runSeed, f.Index)
	b.WriteString(knownKeyPrefix + f.Key + "\n")
	if s, err := vmscript.Parse("", f.Script); err == nil {
		req := requiredFeatures(s)
		if f.ZeroPage != "" {
			req = append(req, f.ZeroPage)
			sort.Strings(req)
		}
		if len(req) > 0 {
			b.WriteString("# requires: " + strings.Join(req, " ") + "\n")
		}
	}
	b.Write(f.Script)
	return []byte(b.String())
}

// zeroPageFeature says whether a script's transcript depends on whether the
// kernel has the shared zero page, as vmspace, which models both kinds of
// kernel, shows it: if its two modes print different transcripts, the
// script's Linux transcript holds only on a kernel of the host's kind, and
// zeroPageFeature returns that kind's "# requires:" name ("zeropage" or
// "nozeropage"); else "". A reproducer saved without the mark failed the
// corpus on the first machine of the other kind.
func zeroPageFeature(ctx context.Context, script []byte, timeout time.Duration) string {
	s, err := vmscript.Parse("", script)
	if err != nil {
		return ""
	}
	var out [2][]byte
	for i, no := range []bool{false, true} {
		b, err := runVmspaceGuarded(ctx, s, timeout, vmspace.Options{NoZeroPage: &no})
		if err != nil {
			return ""
		}
		out[i] = b
	}
	if bytes.Equal(out[0], out[1]) {
		return ""
	}
	if vmspace.HostNoZeroPage() {
		return "nozeropage"
	}
	return "zeropage"
}

// requiredFeatures lists the kernel features (as corpus "# requires:" names
// them) that a script's statements need.
func requiredFeatures(s *vmscript.Script) []string {
	set := map[string]bool{}
	for _, st := range s.Stmts {
		switch st.Op {
		case vmscript.OpMseal:
			set["mseal"] = true
		case vmscript.OpShmget, vmscript.OpShmat, vmscript.OpShmdt, vmscript.OpShmrm:
			set["shm"] = true
		case vmscript.OpIoSetup, vmscript.OpIoDestroy:
			set["aio"] = true
		case vmscript.OpAnonname:
			set["anonname"] = true
		case vmscript.OpMadvise:
			switch st.Advice {
			case vmscript.MadvGuardInstall, vmscript.MadvGuardRemove:
				set["guard"] = true
			case vmscript.MadvMergeable, vmscript.MadvUnmergeable:
				set["ksm"] = true
			case vmscript.MadvHugepage, vmscript.MadvNohugepage:
				set["thp"] = true
			}
		}
	}
	var out []string
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
