package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/vmspace/vmspace/report"
	"github.com/vmspace/vmspace/sandbox"
	"golang.org/x/sys/unix"
)

const runUsage = `usage: vmspace run [--trace] [--maps] [--stats] [--core FILE] [--no-aslr]
                   [--report FILE.html] [--report-json FILE] [-- PROGRAM ARGS...]

Runs PROGRAM with its whole address space managed by vmspace (the ptrace
platform). Without a program, runs a built-in demonstration (a tiny
program that maps memory, grows its heap, forks, and checks copy-on-write)
and shows its maps and statistics.

  --trace   print each memory system call and its result on stderr
  --maps    print /proc/PID/maps as vmspace holds it when each address
            space ends (exit or exec)
  --stats   print peak RSS, faults served, memory calls served and the
            time spent in vmspace when the program ends
  --core FILE
            write an ELF core dump to FILE if the program dies of a
            core-dumping signal (SIGSEGV, SIGABRT, SIGBUS, SIGQUIT, ...).
            FILE is opened only then (created, or truncated if it is a
            regular file) and never removed; pages never touched are
            holes. A failure to write it is reported on stderr; the exit
            status stays the program's.
  --no-aslr give every program Linux's layout without randomization (as
            setarch -R), whatever kernel.randomize_va_space says
  --report FILE.html
            write a report of the run to FILE.html when it ends: one
            self-contained page (no network) with a map of each process's
            address space (every vma, resident, copy-on-write shared,
            locked and guard pages; hover or click a vma for its smaps
            entry), a timeline of VmSize, RSS, locked memory, the memory
            file's usage and faults with the forks, execs and exits, and
            the memory system calls by count and time
  --report-json FILE
            write the same report as JSON to FILE

The exit status is the program's: vmspace exits with the program's exit
code, or dies of the signal that killed it (without a core file of its
own). SIGINT, SIGQUIT, SIGHUP, SIGTERM, SIGUSR1, SIGUSR2 and SIGALRM sent
to vmspace are passed on to every process of the program. vmspace run is not an isolation boundary: system calls other
than the memory calls go to the host kernel.
`

// runMain implements "vmspace run" and returns its exit status as a shell
// shows it (128+N for a program killed by signal N).
func runMain(args []string) int {
	code, _ := runProgram(args)
	return code
}

// runCommand is "vmspace run" as a command: it returns the exit status, or
// dies of the signal that killed the program, once everything else is
// done, so that vmspace's parent sees it killed by that signal
// (WIFSIGNALED; a shell says "Segmentation fault").
func runCommand(args []string) int {
	code, sig := runProgram(args)
	if sig != 0 {
		dieOf(sig)
	}
	return code
}

// runProgram runs "vmspace run" with args and returns its exit status as a
// shell shows it, and the signal that killed the program, if one did.
func runProgram(args []string) (int, syscall.Signal) {
	var trace, maps, stats, noASLR bool
	var prog []string
	var corePath, reportPath, reportJSON string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			prog = args[i+1:]
			i = len(args)
		case a == "--trace" || a == "-trace":
			trace = true
		case a == "--maps" || a == "-maps":
			maps = true
		case a == "--stats" || a == "-stats":
			stats = true
		case a == "--no-aslr" || a == "-no-aslr":
			noASLR = true
		case a == "--core" || a == "-core":
			if i+1 >= len(args) {
				fmt.Fprintf(os.Stderr, "vmspace run: --core needs a file\n%s", runUsage)
				return 2, 0
			}
			i++
			corePath = args[i]
		case a == "--report" || a == "-report" || a == "--report-json" || a == "-report-json":
			if i+1 >= len(args) {
				fmt.Fprintf(os.Stderr, "vmspace run: %s needs a file\n%s", a, runUsage)
				return 2, 0
			}
			i++
			if strings.HasSuffix(a, "json") {
				reportJSON = args[i]
			} else {
				reportPath = args[i]
			}
		case a == "-h" || a == "--help":
			fmt.Print(runUsage)
			return 0, 0
		case strings.HasPrefix(a, "-"):
			fmt.Fprintf(os.Stderr, "vmspace run: unknown flag %s\n%s", a, runUsage)
			return 2, 0
		default:
			prog = args[i:]
			i = len(args)
		}
	}
	opts := sandbox.Options{Argv: prog, NoASLR: noASLR}
	demo := len(prog) == 0
	if demo {
		opts.Image = sandbox.DemoImage()
		opts.Argv = []string{"vmspace-demo"}
		maps, stats = true, true
		fmt.Fprintln(os.Stderr, "vmspace run: no program given; running the built-in demonstration")
	}
	if trace {
		opts.Trace = os.Stderr
	}
	opts.CoreFile = corePath
	if maps {
		opts.Maps = os.Stderr
	}
	// Signals that a terminal or a supervisor (timeout, kill) sends end
	// or alert the program: vmspace catches them and passes each on to
	// every process of the program. One that vmspace was started with
	// ignored stays ignored, for the program too, as it inherits it.
	sigs := make(chan os.Signal, 8)
	for _, sig := range forwardSignals {
		if !signal.Ignored(sig) {
			signal.Notify(sigs, sig)
		}
	}
	opts.Signals = sigs
	if reportPath != "" || reportJSON != "" {
		opts.Report = report.NewCollector(opts.Argv)
	}
	res, err := sandbox.Run(opts)
	signal.Stop(sigs)
	st := res.Stats
	var rs reportStats
	if opts.Report != nil {
		rs = writeReport(opts.Report, res, reportPath, reportJSON)
	}
	if st.CoreErr != nil {
		fmt.Fprintf(os.Stderr, "vmspace run: %v\n", st.CoreErr)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmspace run: %v\n", err)
		return 127, 0
	}
	if stats {
		printStats(os.Stderr, st)
		if opts.Report != nil {
			fmt.Fprintf(os.Stderr, "report:              collected in %v (CPU), written in %v\n", rs.collect.Round(10e3), rs.write.Round(10e3))
		}
	}
	if res.Status.Signaled() {
		return res.ExitCode(), syscall.Signal(res.Status.Signal())
	}
	return res.ExitCode(), 0
}

// reportStats is what a report cost: its collection during the run, and
// the time from the run's end until its files were written.
type reportStats struct{ collect, write time.Duration }

// writeReport writes the report a run collected to the files asked for,
// saying on stderr what fails (the exit status stays the program's).
func writeReport(c *report.Collector, res sandbox.Result, htmlPath, jsonPath string) reportStats {
	t0 := time.Now()
	st := res.Stats
	exit := fmt.Sprintf("exited %d", res.Status.ExitStatus())
	if res.Status.Signaled() {
		exit = "killed by " + unix.SignalName(res.Status.Signal())
	}
	r := c.Finish(report.Totals{
		PeakRSS:   st.PeakRSS,
		Faults:    st.Faults,
		MemCalls:  st.MemCalls,
		Processes: st.Processes,
		Execs:     st.Execs,
		ManagerNS: int64(st.ManagerTime),
		Exit:      exit,
	})
	// The two files are written side by side (each only reads r): the
	// run is not over for its user until both are.
	files := []struct {
		path  string
		write func(*report.Report, io.Writer) error
	}{{htmlPath, (*report.Report).WriteHTML}, {jsonPath, (*report.Report).WriteJSON}}
	errs := make([]error, len(files))
	var wg sync.WaitGroup
	for i, f := range files {
		if f.path != "" {
			wg.Go(func() { errs[i] = r.WriteFile(f.path, f.write) })
		}
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			fmt.Fprintf(os.Stderr, "vmspace run: writing the report: %v\n", err)
		}
	}
	return reportStats{collect: time.Duration(r.CollectNS), write: time.Since(t0)}
}

// forwardSignals are the signals vmspace passes on to the program: those a
// terminal sends its foreground processes (SIGINT, SIGQUIT, SIGHUP) and
// those a user or a supervisor sends to end or alert a program.
var forwardSignals = []os.Signal{
	syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP, syscall.SIGTERM,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGALRM,
}

// dieOf ends vmspace by signal sig, so that its parent sees it killed by
// the signal that killed the program (WIFSIGNALED; a shell says
// "Segmentation fault"). vmspace dumps no core of its own on the way
// (RLIMIT_CORE 0) unless GOTRACEBACK=crash asks for one. It returns only
// if the signal does not kill (then vmspace exits with 128+sig).
func dieOf(sig syscall.Signal) {
	runtime.LockOSThread()
	if os.Getenv("GOTRACEBACK") != "crash" {
		unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{})
	}
	signal.Reset(sig)
	// The Go runtime's handler stays installed for signals it uses
	// (SIGSEGV, SIGBUS, ...): put the default action back directly.
	var dfl [4]uint64 // handler SIG_DFL, flags, restorer, mask
	unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&dfl)), 0, 8, 0, 0)
	set := uint64(1) << (uint(sig) - 1)
	unix.RawSyscall6(unix.SYS_RT_SIGPROCMASK, unix.SIG_UNBLOCK, uintptr(unsafe.Pointer(&set)), 0, 8, 0, 0)
	unix.Tgkill(unix.Getpid(), unix.Gettid(), unix.Signal(sig))
	os.Exit(128 + int(sig))
}

// printStats prints a run's figures.
func printStats(w io.Writer, st sandbox.Stats) {
	fmt.Fprintf(w, "=== vmspace stats ===\n")
	fmt.Fprintf(w, "peak RSS:            %d KiB\n", st.PeakRSS>>10)
	fmt.Fprintf(w, "faults served:       %d\n", st.Faults)
	fmt.Fprintf(w, "memory calls served: %d\n", st.MemCalls)
	fmt.Fprintf(w, "system call stops:   %d\n", st.Stops)
	fmt.Fprintf(w, "injected calls:      %d\n", st.Injected)
	if st.FastCalls > 0 {
		fmt.Fprintf(w, "fast-path calls:     %d (%d helper calls)\n", st.FastCalls, st.HelperCalls)
	}
	fmt.Fprintf(w, "processes:           %d (%d program images)\n", st.Processes, st.Execs)
	fmt.Fprintf(w, "time in vmspace:     %v of %v\n", st.ManagerTime.Round(10e3), st.Wall.Round(10e3))
}
