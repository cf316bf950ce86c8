// Command vmspace runs programs, vmscripts and benchmarks on the vmspace
// memory manager.
package main

import (
	"fmt"
	"os"

	"github.com/vmspace/vmspace/bench"
	// Initialized before the packages that allocate much: a hard
	// RLIMIT_AS may leave the Go runtime's heap no room to grow.
	_ "github.com/vmspace/vmspace/internal/runtimeroom"
)

const usage = `usage: vmspace COMMAND [ARGS]

commands:
  run [-- PROGRAM ARGS]   run a program with its address space managed by vmspace
  replay [--native|--diff] [SCRIPT...]
                          run vmscripts on vmspace, on Linux, or both and compare
  fuzz [--seconds N] [--seed S] [--out DIR]
                          differential fuzzing of vmspace against Linux
  bench [--json] [-w NAME,...]
                          run the benchmark workloads of shared/spec/workloads.md
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	args := os.Args[2:]
	switch os.Args[1] {
	case "-h", "--help", "help":
		fmt.Print(usage)
	case "run":
		os.Exit(runCommand(args))
	case "bench":
		os.Exit(bench.Main(args, os.Stdout, os.Stderr))
	case "replay":
		os.Exit(replayMain(args))
	case "fuzz":
		os.Exit(fuzzMain(args))
	default:
		fmt.Fprintf(os.Stderr, "vmspace: %q is not available yet\n%s", os.Args[1], usage)
		os.Exit(2)
	}
}
