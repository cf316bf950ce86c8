package sandbox

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestVmspaceFDSlot(t *testing.T) {
	for _, tc := range []struct {
		cur, max     uint64
		canRaiseHard bool
		want         int
	}{
		{1024, 4096, false, 1024},       // room above the soft limit: at it
		{64, 64, true, 64},              // privileged: at the limit, raising the hard one
		{1024, 1024, false, memFDConst}, // no room: the usual number
		{100, 100, false, 99},           // a small table: its top
		{4, 4, false, 3},
		{2, 1024, false, 3}, // never over standard input, output or error
		{0, 1024, true, 3},
		{1 << 20, 1 << 21, false, memFDConst}, // past maxFDSlot
	} {
		if got := vmspaceFDSlot(unix.Rlimit{Cur: tc.cur, Max: tc.max}, tc.canRaiseHard); got != tc.want {
			t.Errorf("vmspaceFDSlot(%d/%d, %v) = %d, want %d", tc.cur, tc.max, tc.canRaiseHard, got, tc.want)
		}
	}
}
