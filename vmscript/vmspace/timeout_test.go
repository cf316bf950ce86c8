package vmspace

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/vmspace/vmspace/vmscript"
)

// cancelExec cancels the run's context when p0 starts the statement under
// test (its Mmap, Mlock or Fill), so that the deadline passes inside that
// statement, and records p0's resident set size after it.
type cancelExec struct {
	vmscript.Executor
	cancel func()
	rss    uint64
}

func (e *cancelExec) Start(ctx context.Context) (vmscript.Proc, error) {
	p, err := e.Executor.Start(ctx)
	if err != nil {
		return nil, err
	}
	return &cancelProc{Proc: p, e: e}, nil
}

type cancelProc struct {
	vmscript.Proc
	e *cancelExec
}

func (p *cancelProc) after() {
	if v, ok := p.Proc.(*vproc); ok && v.mm != nil {
		p.e.rss = v.mm.ResidentSetSize()
	}
}

func (p *cancelProc) Mmap(ctx context.Context, a vmscript.MmapArgs) (uint64, error) {
	if a.Flags&vmscript.MapPopulate == 0 {
		return p.Proc.Mmap(ctx, a)
	}
	p.e.cancel()
	defer p.after()
	return p.Proc.Mmap(ctx, a)
}

func (p *cancelProc) Mlock(ctx context.Context, addr, length uint64, onFault bool) error {
	p.e.cancel()
	defer p.after()
	return p.Proc.Mlock(ctx, addr, length, onFault)
}

func (p *cancelProc) Fill(ctx context.Context, addr, length uint64, b byte) (vmscript.Fault, error) {
	p.e.cancel()
	defer p.after()
	return p.Proc.Fill(ctx, addr, length, b)
}

// TestDeadlineInsideStatement: a deadline that passes while a long
// statement runs (populating 512 MiB, locking it, filling it) ends that
// statement early, not after all its work, and stops the script with the
// context's error at that statement's line (its errno, if the cut-short
// call gave one, is not printed).
func TestDeadlineInsideStatement(t *testing.T) {
	for _, src := range []string{
		"mmap @0x0 0x20000000 rw private,anon,populate\nread @0x0 1\n",
		"mmap @0x0 0x20000000 rw private,anon\nmlock @0x0 0x20000000\nread @0x0 1\n",
		"mmap @0x0 0x20000000 rw private,anon\nfill @0x0 0x20000000 0xab\nread @0x0 1\n",
	} {
		s, err := vmscript.Parse("long.vms", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		ex := &cancelExec{Executor: New(Options{}), cancel: cancel}
		var out bytes.Buffer
		err = vmscript.Run(ctx, s, ex, &out)
		cancel()
		var re *vmscript.RunError
		long := bytes.Count([]byte(src[:len(src)-len("read @0x0 1\n")]), []byte("\n"))
		if !errors.As(err, &re) || re.Line != long || !errors.Is(err, context.Canceled) {
			t.Errorf("%q: Run returned %v, want the context's error at line %d", src, err, long)
		}
		if ex.rss > 128<<20 {
			t.Errorf("%q: the statement went on after the deadline: %d MiB resident", src, ex.rss>>20)
		}
	}
}

// cancelCheckpoint cancels the run's context as a checkpoint starts and
// records whether it released any process.
type cancelCheckpoint struct {
	vmscript.Executor
	cancel   func()
	released bool
}

func (e *cancelCheckpoint) Checkpoint(ctx context.Context) error {
	e.cancel()
	err := e.Executor.Checkpoint(ctx)
	for p := range e.Executor.(*vmspaceExec).procs {
		e.released = e.released || p.mm == nil
	}
	return err
}

// TestDeadlineAtCheckpoint: a checkpoint past the deadline stops the script
// with the context's error, saves nothing and releases no process.
func TestDeadlineAtCheckpoint(t *testing.T) {
	s, err := vmscript.Parse("cp.vms", []byte("mmap @0x0 0x4000 rw private,anon\nfork p1\ncheckpoint\nread @0x0 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	vex := New(Options{}).(*vmspaceExec)
	saved := false
	vex.fault = func(stage string) error {
		saved = saved || stage == "save"
		return nil
	}
	ex := &cancelCheckpoint{Executor: vex, cancel: cancel}
	var out bytes.Buffer
	err = vmscript.Run(ctx, s, ex, &out)
	var re *vmscript.RunError
	if !errors.As(err, &re) || re.Line != 3 || !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v, want the context's error at line 3", err)
	}
	if ex.released || saved {
		t.Errorf("the checkpoint went on after the deadline: saved %v, released %v", saved, ex.released)
	}
}
