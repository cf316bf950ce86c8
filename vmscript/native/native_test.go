package native

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmspace/vmspace/vmscript"
	"golang.org/x/sys/unix"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestNativeProcess checks the state the spec requires of every process: no
// capabilities, THP disabled, nothing but the socket open, the break at the
// heap's start, nothing mapped in the window; and that Close kills and reaps
// them all.
func TestNativeProcess(t *testing.T) {
	ctx := testCtx(t)
	ex := New(Options{TempDir: t.TempDir()})
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
	for _, p := range []vmscript.Proc{p0, p1} {
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
		if rs, err := p.State(ctx, vmscript.Window, vmscript.WindowSize); err != nil || len(rs) != 0 {
			t.Errorf("agent %d: window not empty at start: %+v, %v", np.pid, rs, err)
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
	ex := New(Options{})
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
	if _, ok := vmscript.AsErrno(err); ok {
		t.Fatalf("infrastructure failure %v reads as an errno", err)
	}
	ex.Close()
}

// TestNativeAgentDeath checks that a dead agent is an executor failure.
func TestNativeAgentDeath(t *testing.T) {
	ctx := testCtx(t)
	s, err := vmscript.Parse("death", []byte("mmap @0 4k rw private,anon\nfork p1\nmunmap @0 4k\n"))
	if err != nil {
		t.Fatal(err)
	}
	ex := New(Options{}).(*nativeExec)
	killer := &killingExec{nativeExec: ex}
	var buf bytes.Buffer
	err = vmscript.Run(ctx, s, killer, &buf)
	var re *vmscript.RunError
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

func (k *killingExec) Start(ctx context.Context) (vmscript.Proc, error) {
	p, err := k.nativeExec.Start(ctx)
	if err != nil {
		return nil, err
	}
	return &killingProc{nativeProc: p.(*nativeProc)}, nil
}

type killingProc struct{ *nativeProc }

func (k *killingProc) Fork(ctx context.Context) (vmscript.Proc, error) {
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
	want := []vmscript.Region{
		{Start: 0x200000000000, End: 0x200000001000, Perms: "rw-p", Flags: vmscript.VMHugePage | vmscript.VMGrowsDown | vmscript.VMLocked | vmscript.VMDontCopy | vmscript.VMWipeOnFork | vmscript.VMDontDump | vmscript.VMSealed | vmscript.VMNoHugePage},
		{Start: 0x7f7778c9f000, End: 0x7f7778ca8000, Perms: "rw-s"},
	}
	if len(rs) != 2 || rs[0] != want[0] || rs[1] != want[1] {
		t.Errorf("got %+v\nwant %+v", rs, want)
	}
	u, err := parseStatus([]byte("Name:\tx\nVmSize:\t  100 kB\nVmLck:\t 4 kB\nVmData:\t 8 kB\nVmStk:\t132 kB\n"))
	if err != nil || u != (vmscript.Usage{VmSize: 100, VmLck: 4, VmData: 8, VmStk: 132}) {
		t.Errorf("parseStatus = %+v, %v", u, err)
	}
	if _, err := parseStatus([]byte("VmSize:\t100 kB\n")); err == nil {
		t.Error("parseStatus accepted a status without VmLck")
	}
}

// TestNativeNoLeaks runs scripts that fork, make files, shm segments and AIO
// contexts, and checks that nothing is left: no descriptors in this process,
// no agent processes (not even zombies), no shm segments.
func TestNativeNoLeaks(t *testing.T) {
	src := []byte(`file f 0x2000
memfd m 0x1000
shmget s 0x1000
shmat s @0x0
shmget t 0x1000
io_setup c 512
fork p1
p1: fork p2
exit p0
p2: mmap @0x10000 0x1000 rw shared f 0
`)
	s, err := vmscript.Parse("leaks", src)
	if err != nil {
		t.Fatal(err)
	}
	fdsBefore := countFDs(t)
	shmSegments(t) // skips without /proc/sysvipc/shm
	var pids []int
	for i := 0; i < 3; i++ {
		var buf bytes.Buffer
		ex := New(Options{TempDir: t.TempDir()}).(*nativeExec)
		if err := vmscript.Run(testCtx(t), s, ex, &buf); err != nil {
			t.Fatal(err)
		}
		for _, p := range ex.procs {
			pids = append(pids, p.pid)
		}
		// A failing run (the agent is killed mid-script) must clean up too.
		ctx, cancel := context.WithCancel(context.Background())
		ex = New(Options{}).(*nativeExec)
		p0, err := ex.Start(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := p0.Shmget(ctx, "s", 4096); err != nil {
			t.Fatal(err)
		}
		if _, err := p0.Fork(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		ex.Close()
		for _, p := range ex.procs {
			pids = append(pids, p.pid)
		}
	}
	if len(pids) != 15 {
		t.Errorf("%d agents started, want 15", len(pids))
	}
	for _, pid := range pids {
		// Reaped agents are gone; a zombie or a live agent would answer.
		if err := unix.Kill(pid, 0); err != unix.ESRCH {
			t.Errorf("agent %d still exists (kill: %v)", pid, err)
		}
	}
	if n := countFDs(t); n != fdsBefore {
		t.Errorf("%d descriptors open, %d before", n, fdsBefore)
	}
	// Only this test's segments are checked (those its agents created):
	// other tests and processes may make and remove their own meanwhile.
	ours := map[int]bool{}
	for _, pid := range pids {
		ours[pid] = true
	}
	for id, cpid := range liveShmCreators(t) {
		if ours[cpid] {
			t.Errorf("shm segment %d made by agent %d still exists", id, cpid)
		}
	}
}

// liveShmCreators returns the System V segments that exist, by id, with
// the pid that created each.
func liveShmCreators(t *testing.T) map[int]int {
	b, err := os.ReadFile("/proc/sysvipc/shm")
	if err != nil {
		t.Skipf("no /proc/sysvipc/shm: %v", err)
	}
	segs := map[int]int{}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		// key shmid perms size cpid lpid ...
		if f := strings.Fields(line); len(f) > 4 {
			id, err1 := strconv.Atoi(f[1])
			cpid, err2 := strconv.Atoi(f[4])
			if err1 == nil && err2 == nil {
				segs[id] = cpid
			}
		}
	}
	return segs
}

func countFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// shmSegments counts the System V segments this user owns.
func shmSegments(t *testing.T) int {
	b, err := os.ReadFile("/proc/sysvipc/shm")
	if err != nil {
		t.Skipf("no /proc/sysvipc/shm: %v", err)
	}
	uid := strconv.Itoa(os.Getuid())
	n := 0
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 9 && f[7] == uid {
			n++
		}
	}
	return n
}
