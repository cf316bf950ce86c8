package mm

import (
	"sync"
	"testing"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/hostfile"
	"github.com/vmspace/vmspace/memmap"
)

// TestForkInvalidateRace checks that Fork holds the child's activeMu while
// it copies pmas: the child is already registered with the Mappables
// (CopyMapping), so an Invalidate of the child can come at any moment, and
// must not be lost. The test invalidates the child's mapping of a file
// (private copies too, as a truncation does) just before the copy; if the
// copy did not exclude it, the Invalidate is let finish first, and the
// copy then brings the stale pmas in.
func TestForkInvalidateRace(t *testing.T) {
	m := newTestMM(t)
	const pg = hostarch.PageSize
	memf, err := hostfile.NewMemfd(m.MemoryFile(), "r", 8*pg)
	mustOK(t, "memfd", err)
	fd, _ := hostfile.NewFD(memf, true, true)
	memf.DecRef(ctx)
	defer fd.Close(ctx)
	// A private mapping of the file, read (file pages) and written in
	// part (private copies, and the vma's anon_vma, so Fork copies its
	// pmas).
	a, err := m.mmapFlags(ctx, window, 8*pg, ProtRead|ProtWrite, MapPrivate, fd, 0)
	mustOK(t, "mmap", err)
	read(t, m, a, 8*pg)
	write(t, m, a, []byte("private"))
	ar := hostarch.AddrRange{Start: a, End: a + 8*pg}
	if len(m.Backings(ar)) == 0 {
		t.Fatal("the parent has no pmas to copy")
	}

	var wg sync.WaitGroup
	testHookForkCopyingPMAs = func(child *MemoryManager) {
		// If the child's activeMu is free (the guard removed), let the
		// Invalidate finish before the copy.
		last := &child.activeMu.shards[rwShardsUsed-1]
		free := last.TryLock()
		if free {
			last.Unlock()
		}
		done := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(done)
			child.Invalidate(ar, memmap.InvalidateOpts{InvalidatePrivate: true})
		}()
		if free {
			<-done
		}
	}
	defer func() { testHookForkCopyingPMAs = nil }()
	c, err := m.Fork(ctx)
	mustOK(t, "fork", err)
	testHookForkCopyingPMAs = nil
	wg.Wait()
	if b := c.Backings(ar); len(b) != 0 {
		t.Errorf("the child keeps pmas the Invalidate during its fork dropped: %v", b)
	}
	check(t, c)
	c.DecUsers(ctx)
}
