package main

import (
	"fmt"
	"os"
)

// replayMain implements `vmspace replay`.
func replayMain(args []string) int {
	fmt.Fprintln(os.Stderr, "vmspace replay: not wired yet")
	return 2
}
