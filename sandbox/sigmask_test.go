package sandbox

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestStatusSigMasks: the masks of /proc/PID/status are read by name, in
// the order asked, for a process and for one of its threads; a missing
// field or process is not ok.
func TestStatusSigMasks(t *testing.T) {
	pid := os.Getpid()
	m, ok := statusSigMasks(pid, 0, "SigIgn", "SigCgt")
	if !ok || len(m) != 2 {
		t.Fatalf("statusSigMasks(self): %v %v", m, ok)
	}
	// The Go runtime catches SIGSEGV and SIGURG and ignores neither.
	for _, sig := range []unix.Signal{unix.SIGSEGV, unix.SIGURG} {
		if m[1]&sigBit(sig) == 0 || m[0]&sigBit(sig) != 0 {
			t.Errorf("%v: SigIgn %#x SigCgt %#x", sig, m[0], m[1])
		}
	}
	if !killsNow(pid, unix.SIGTERM) == (m[1]&sigBit(unix.SIGTERM) == 0 && m[0]&sigBit(unix.SIGTERM) == 0) {
		t.Errorf("killsNow(SIGTERM) disagrees with the masks")
	}
	if _, ok := statusSigMasks(pid, unix.Gettid(), "SigBlk", "SigPnd"); !ok {
		t.Errorf("a thread's SigBlk and SigPnd are not read")
	}
	if _, ok := statusSigMasks(pid, 0, "SigNone"); ok {
		t.Errorf("a missing field is ok")
	}
	if _, ok := statusSigMasks(1<<30, 0, "SigIgn"); ok {
		t.Errorf("a missing process is ok")
	}
}
