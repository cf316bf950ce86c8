package sandbox

import (
	"os"
	"os/signal"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSigRecorder: sigRecorder, put in front of os/signal's handler,
// records who sent each signal (si_code, si_pid), and os/signal still
// gets the signal; stop puts the runtime's handler back.
func TestSigRecorder(t *testing.T) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, unix.SIGUSR1)
	defer signal.Stop(ch)
	var before kernelSigaction
	if err := rtSigaction(unix.SIGUSR1, nil, &before); err != nil {
		t.Fatal(err)
	}
	r := startRecorder([]unix.Signal{unix.SIGUSR1})
	if r == nil || r.wrapped != 1<<unix.SIGUSR1 {
		t.Fatalf("recorder %+v", r)
	}
	if startRecorder([]unix.Signal{unix.SIGUSR1}) != nil {
		t.Error("a second recorder got the ring")
	}
	if err := unix.Kill(os.Getpid(), unix.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	<-ch
	recs, lost := r.take()
	want := sigRecord{unix.SIGUSR1, sender{siUser, int32(os.Getpid())}}
	if lost || len(recs) != 1 || recs[0] != want {
		t.Errorf("records %+v (lost %v), want [%+v]", recs, lost, want)
	}
	r.stop()
	var after kernelSigaction
	if err := rtSigaction(unix.SIGUSR1, nil, &after); err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("handler after stop %+v, before %+v", after, before)
	}
	unix.Kill(os.Getpid(), unix.SIGUSR1)
	<-ch
	if recs, _ := r.take(); len(recs) != 0 {
		t.Errorf("recorded after stop: %+v", recs)
	}
}
