package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/vmspace/vmspace/sandbox"
)

const runUsage = `usage: vmspace run [--trace] [--maps] [--stats] [--core FILE] [-- PROGRAM ARGS...]

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

The exit status is the program's, as a shell shows it (128+N if killed by
signal N). vmspace run is not an isolation boundary: system calls other
than the memory calls go to the host kernel.
`

// runMain implements "vmspace run".
func runMain(args []string) int {
	var trace, maps, stats bool
	var prog []string
	var corePath string
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
		case a == "--core" || a == "-core":
			if i+1 >= len(args) {
				fmt.Fprintf(os.Stderr, "vmspace run: --core needs a file\n%s", runUsage)
				return 2
			}
			i++
			corePath = args[i]
		case a == "-h" || a == "--help":
			fmt.Print(runUsage)
			return 0
		case strings.HasPrefix(a, "-"):
			fmt.Fprintf(os.Stderr, "vmspace run: unknown flag %s\n%s", a, runUsage)
			return 2
		default:
			prog = args[i:]
			i = len(args)
		}
	}
	opts := sandbox.Options{Argv: prog}
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
	// The program is in vmspace's process group: a terminal's SIGINT and
	// SIGQUIT reach it directly, and vmspace must outlive it to report
	// its status. Termination signals sent to vmspace alone are passed on.
	signal.Ignore(syscall.SIGINT, syscall.SIGQUIT)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2)
	var root atomic.Int64
	opts.Started = func(pid int) { root.Store(int64(pid)) }
	go func() {
		for sig := range sigs {
			if pid := root.Load(); pid > 0 {
				syscall.Kill(int(pid), sig.(syscall.Signal))
			}
		}
	}()
	status, st, err := sandbox.Run(opts)
	signal.Stop(sigs)
	if st.CoreErr != nil {
		fmt.Fprintf(os.Stderr, "vmspace run: %v\n", st.CoreErr)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmspace run: %v\n", err)
		return 127
	}
	if stats {
		printStats(os.Stderr, st)
	}
	return status
}

// printStats prints a run's figures.
func printStats(w io.Writer, st sandbox.Stats) {
	fmt.Fprintf(w, "=== vmspace stats ===\n")
	fmt.Fprintf(w, "peak RSS:            %d KiB\n", st.PeakRSS>>10)
	fmt.Fprintf(w, "faults served:       %d\n", st.Faults)
	fmt.Fprintf(w, "memory calls served: %d\n", st.MemCalls)
	fmt.Fprintf(w, "system call stops:   %d\n", st.Stops)
	fmt.Fprintf(w, "processes:           %d (%d program images)\n", st.Processes, st.Execs)
	fmt.Fprintf(w, "time in vmspace:     %v of %v\n", st.ManagerTime.Round(10e3), st.Wall.Round(10e3))
}
