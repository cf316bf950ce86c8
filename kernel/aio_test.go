package kernel

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/linuxabi"
	"github.com/vmspace/vmspace/mm"
	"golang.org/x/sys/unix"
)

// fakeRunner records the requests it runs and answers each with its
// NBytes (or stops at Op stop, as if the submitter died).
type fakeRunner struct {
	ran  []IORequest
	dies bool
}

func (f *fakeRunner) RunIO(_ context.Context, req IORequest) (int64, bool) {
	if f.dies {
		return 0, false
	}
	f.ran = append(f.ran, req)
	return int64(req.NBytes), true
}

// TestAIO submits requests of every kind through IoSubmit and reads their
// events back: the runner gets the iocbs decoded; a no-op finishes with
// 0 and an unknown opcode with -EINVAL without running; the ids and
// counts are checked as io_setup, io_getevents and io_destroy check them.
func TestAIO(t *testing.T) {
	m, _ := newMM(t)
	base, err := linuxabi.MMap(ctx, m, 0, 4*4096, linuxabi.ProtRead|linuxabi.ProtWrite, linuxabi.MapPrivate|linuxabi.MapAnonymous, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := uint64(base)
	le := binary.LittleEndian
	put := func(addr uint64, words ...uint64) {
		buf := make([]byte, 8*len(words))
		for i, w := range words {
			le.PutUint64(buf[8*i:], w)
		}
		if _, err := m.CopyOut(ctx, hostarch.Addr(addr), buf, mm.IOOpts{}); err != nil {
			t.Fatal(err)
		}
	}
	is := func(what string, err, want error) {
		t.Helper()
		if !errors.Is(err, want) && !(err == nil && want == nil) {
			t.Errorf("%s: %v, want %v", what, err, want)
		}
	}
	ctxp := b
	put(ctxp, 7)
	is("io_setup over a non-zero id", IoSetup(ctx, m, 8, ctxp), unix.EINVAL)
	put(ctxp, 0)
	is("io_setup of 0 events", IoSetup(ctx, m, 0, ctxp), unix.EINVAL)
	is("io_setup with ctxp unmapped", IoSetup(ctx, m, 8, 0x1000), unix.EFAULT)
	is("io_setup", IoSetup(ctx, m, 8, ctxp), nil)
	idb := make([]byte, 8)
	m.CopyIn(ctx, hostarch.Addr(ctxp), idb, mm.IOOpts{})
	id := le.Uint64(idb)
	// Four iocbs at b+0x1000 (64 bytes each), their pointers at b+0x800.
	ops := []uint64{uint64(IOPread), uint64(ioNoop), 99, uint64(IOPwritev)}
	for i, op := range ops {
		cb := b + 0x1000 + 64*uint64(i)
		put(cb, 100+uint64(i), 0, op|uint64(3+i)<<32, 0x5000, 10*uint64(i+1), 4096)
		put(b+0x800+8*uint64(i), cb)
	}
	r := &fakeRunner{}
	_, err = IoSubmit(ctx, m, r, id+4096, 1, b+0x800)
	is("io_submit to another id", err, unix.EINVAL)
	_, err = IoSubmit(ctx, m, r, id, ^uint64(0), b+0x800)
	is("io_submit of -1 requests", err, unix.EINVAL)
	_, err = IoSubmit(ctx, m, r, id, 1, 0x1000)
	is("io_submit with the array unmapped", err, unix.EFAULT)
	n, err := IoSubmit(ctx, m, r, id, 4, b+0x800)
	if n != 4 || err != nil {
		t.Fatalf("io_submit: %d, %v", n, err)
	}
	want := []IORequest{{IOPread, 3, 0x5000, 10, 4096}, {IOPwritev, 6, 0x5000, 40, 4096}}
	if len(r.ran) != 2 || r.ran[0] != want[0] || r.ran[1] != want[1] {
		t.Errorf("ran %+v, want %+v", r.ran, want)
	}
	_, err = IoGetevents(ctx, m, id, 2, 1, b+0x2000)
	is("io_getevents min > nr", err, unix.EINVAL)
	_, err = IoGetevents(ctx, m, id, 1, 4, 0x1000)
	is("io_getevents to unmapped events", err, unix.EFAULT)
	_, err = IoGetevents(ctx, m, id, 1, 4, b+4*4096-64)
	is("io_getevents to events that end unmapped", err, unix.EFAULT)
	// The events that could not be written are still there.
	n, err = IoGetevents(ctx, m, id, 1, 8, b+0x2000)
	if n != 4 || err != nil {
		t.Fatalf("io_getevents: %d, %v", n, err)
	}
	e := int64(unix.EINVAL)
	einval := uint64(-e)
	ev := make([]byte, 4*32)
	m.CopyIn(ctx, hostarch.Addr(b+0x2000), ev, mm.IOOpts{})
	for i, w := range []struct{ data, res uint64 }{{100, 10}, {101, 0}, {102, einval}, {103, 40}} {
		if d, res := le.Uint64(ev[32*i:]), le.Uint64(ev[32*i+16:]); d != w.data || res != w.res {
			t.Errorf("event %d: data %d res %d, want %d %d", i, d, int64(res), w.data, int64(w.res))
		}
	}
	r.dies = true
	_, err = IoSubmit(ctx, m, r, id, 1, b+0x800)
	is("io_submit by a dying task", err, unix.EINTR)
	is("io_cancel", IoCancel(ctx, m, id, b+0x1000, b+0x2000), unix.EINVAL)
	is("io_destroy", IoDestroy(ctx, m, id), nil)
	is("io_destroy again", IoDestroy(ctx, m, id), unix.EINVAL)
}
