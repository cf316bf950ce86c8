package vmscript

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestNativeProcess checks the state the spec requires of every process: no
// capabilities, THP disabled, nothing but the socket open, the break at the
// heap's start; and that Close kills and reaps them all.
func TestNativeProcess(t *testing.T) {
	ctx := testCtx(t)
	ex := NewNative(NativeOptions{TempDir: t.TempDir()})
	p0, err := ex.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p1, err := p0.Fork(ctx)
	if err != nil {
		ex.Close()
		t.Fatal(err)
	}
	var pids []int
	for _, p := range []Proc{p0, p1} {
		np := p.(*nativeProc)
		pids = append(pids, np.pid)
		status, err := os.ReadFile("/proc/" + strconv.Itoa(np.pid) + "/status")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"CapEff:\t0000000000000000", "CapPrm:\t0000000000000000", "THP_enabled:\t0"} {
			if !strings.Contains(string(status), want+"\n") {
				t.Errorf("agent %d: status lacks %q", np.pid, want)
			}
		}
		fds, err := os.ReadDir("/proc/" + strconv.Itoa(np.pid) + "/fd")
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, fd := range fds {
			names = append(names, fd.Name())
		}
		if strings.Join(names, ",") != "0,1,2,3" {
			t.Errorf("agent %d: open fds %v, want 0,1,2,3", np.pid, names)
		}
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(np.pid) + "/stat")
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
		startBrk, _ := strconv.ParseUint(f[47-3], 10, 64)
		brk, err := p.Brk(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		if brk != startBrk {
			t.Errorf("agent %d: break %#x, heap start %#x", np.pid, brk, startBrk)
		}
	}
	if err := ex.Close(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if err := unix.Kill(pid, 0); err != unix.ESRCH {
			t.Errorf("agent %d still exists after Close (kill: %v)", pid, err)
		}
	}
}

// TestNativeCancel checks that cancelling the context ends a run and leaves
// no process behind.
func TestNativeCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ex := NewNative(NativeOptions{})
	p0, err := ex.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pid := p0.(*nativeProc).pid
	cancel()
	// The watcher kills the agent; a request now fails without an Errno.
	deadline := time.Now().Add(5 * time.Second)
	// kill() reaps the agent; until then even its zombie answers kill(0).
	for unix.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatal("agent not killed after cancel")
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, err = p0.Brk(context.Background(), 0)
	if err == nil {
		t.Fatal("request after cancel succeeded")
	}
	if _, ok := asErrno(err); ok {
		t.Fatalf("infrastructure failure %v reads as an errno", err)
	}
	ex.Close()
}

// TestNativeAgentDeath checks that a dead agent is an executor failure.
func TestNativeAgentDeath(t *testing.T) {
	ctx := testCtx(t)
	s, err := Parse("death", []byte("mmap @0 4k rw private,anon\nfork p1\nmunmap @0 4k\n"))
	if err != nil {
		t.Fatal(err)
	}
	ex := NewNative(NativeOptions{}).(*nativeExec)
	killer := &killingExec{nativeExec: ex}
	var buf bytes.Buffer
	err = Run(ctx, s, killer, &buf)
	var re *RunError
	if !errors.As(err, &re) || re.Line != 3 {
		t.Fatalf("err = %v, want a RunError at line 3", err)
	}
	if !strings.Contains(err.Error(), "signal") {
		t.Errorf("err = %v, want the signal named", err)
	}
	if buf.String() != "1 = @0x0\n2 ok\n" {
		t.Errorf("transcript %q", buf.String())
	}
}

// killingExec kills p0 once it has forked.
type killingExec struct{ *nativeExec }

func (k *killingExec) Start(ctx context.Context) (Proc, error) {
	p, err := k.nativeExec.Start(ctx)
	if err != nil {
		return nil, err
	}
	return &killingProc{nativeProc: p.(*nativeProc)}, nil
}

type killingProc struct{ *nativeProc }

func (k *killingProc) Fork(ctx context.Context) (Proc, error) {
	c, err := k.nativeProc.Fork(ctx)
	unix.Kill(k.pid, unix.SIGKILL)
	return c, err
}

func TestParseSmapsStatus(t *testing.T) {
	smaps := `200000000000-200000001000 rw-p 00000000 00:00 0 
Size:                  4 kB
VmFlags: rd wr mr mw me ac hg gd lo lf dc wf dd sl nh gu 
7f7778c9f000-7f7778ca8000 rw-s 00000000 00:13 11560                      /[aio] (deleted)
Size:                 36 kB
VmFlags: rd wr sh mr mw ms de 
`
	rs, err := parseSmaps([]byte(smaps))
	if err != nil {
		t.Fatal(err)
	}
	want := []Region{
		{Start: 0x200000000000, End: 0x200000001000, Perms: "rw-p", Flags: VMHugePage | VMGrowsDown | VMLocked | VMDontCopy | VMWipeOnFork | VMDontDump | VMSealed | VMNoHugePage},
		{Start: 0x7f7778c9f000, End: 0x7f7778ca8000, Perms: "rw-s"},
	}
	if len(rs) != 2 || rs[0] != want[0] || rs[1] != want[1] {
		t.Errorf("got %+v\nwant %+v", rs, want)
	}
	u, err := parseStatus([]byte("Name:\tx\nVmSize:\t  100 kB\nVmLck:\t 4 kB\nVmData:\t 8 kB\nVmStk:\t132 kB\n"))
	if err != nil || u != (Usage{100, 4, 8, 132}) {
		t.Errorf("parseStatus = %+v, %v", u, err)
	}
	if _, err := parseStatus([]byte("VmSize:\t100 kB\n")); err == nil {
		t.Error("parseStatus accepted a status without VmLck")
	}
}
