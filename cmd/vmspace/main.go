// Command vmspace runs programs, vmscripts and benchmarks on the vmspace
// memory manager.
package main

import (
	"fmt"
	"os"
)

const usage = `usage: vmspace COMMAND [ARGS]

commands:
  run [-- PROGRAM ARGS]   run a program with its address space managed by vmspace
  replay SCRIPT...        run vmscripts on vmspace (--native: on Linux; --diff: both)
  bench [--json]          run the benchmark workloads
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	switch os.Args[1] {
	case "-h", "--help", "help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "vmspace: %q is not available yet\n%s", os.Args[1], usage)
		os.Exit(2)
	}
}
