package sandbox

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestExecClosesOnce checks that the descriptors an exec opens in the
// process for its image's host mappings (the program's file and its
// interpreter's, at consecutive numbers) are closed with one injected
// close_range, not a close each: running a dynamically linked program
// takes at most two injected closing calls (that and start-up's close of
// the memory file's first number), and its output is Linux's.
func TestExecClosesOnce(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "hello", "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n", false)
	c := countInjected(t, exe)
	if n := c[unix.SYS_CLOSE] + c[unix.SYS_CLOSE_RANGE]; n > 2 {
		t.Errorf("a dynamically linked program took %d injected closes and %d close_ranges, want at most 2 in all", c[unix.SYS_CLOSE], c[unix.SYS_CLOSE_RANGE])
	}
}
