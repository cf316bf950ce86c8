package mm

import (
	"sync"
	"testing"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/hostfile"
)

// Fork must hold the child's activeMu while copying pmas: the
// child is already registered with the Mappables (CopyMapping), and a
// concurrent Invalidate on the child would race (found in review).
func TestForkInvalidateRace(t *testing.T) {
	mm := newTestMM(t)
	mf := mm.MemoryFile()
	memf, err := hostfile.NewMemfd(mf, "r", 64*hostarch.PageSize)
	if err != nil {
		t.Fatal(err)
	}
	fd, _ := hostfile.NewFD(memf, true, true)
	memf.DecRef(ctx)
	a, err := mm.mmapFlags(ctx, window, 64*hostarch.PageSize, ProtRead|ProtWrite, MapShared, fd, 0)
	if err != nil {
		t.Fatal(err)
	}
	touch := func() {
		for i := 0; i < 64; i++ {
			mm.CopyOut(ctx, a+hostarch.Addr(i)*hostarch.PageSize, []byte{1}, IOOpts{})
		}
	}
	touch()
	for i := 0; i < 1000; i++ {
		perms := hostarch.ReadWrite
		if i%2 == 1 {
			perms = hostarch.Read
		}
		b := mustMap(t, mm, anon(window+0x1000000+hostarch.Addr(i)*hostarch.PageSize, hostarch.PageSize, perms))
		mm.CopyIn(ctx, b, make([]byte, 1), IOOpts{})
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			fd.Truncate(ctx, 0)
			fd.Truncate(ctx, 64*hostarch.PageSize)
		}
	}()
	for i := 0; i < 200; i++ {
		touch()
		c, err := mm.Fork(ctx)
		if err != nil {
			t.Fatal(err)
		}
		c.DecUsers(ctx)
	}
	close(stop)
	wg.Wait()
	fd.Close(ctx)
}
