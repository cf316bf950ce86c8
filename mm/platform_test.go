package mm

import (
	"sync"
	"testing"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/platform"
)

// recordingPlatform makes AddressSpaces that record what is mapped, page
// by page, so tests can check the manager keeps them right.
type recordingPlatform struct {
	platform.NoPlatform
	as *recordingAS
}

func (p *recordingPlatform) NewAddressSpace() (platform.AddressSpace, error) {
	p.as = &recordingAS{pages: map[hostarch.Addr]hostarch.AccessType{}, committed: map[hostarch.Addr]bool{}, files: map[hostarch.Addr]memmap.File{}}
	return p.as, nil
}

type recordingAS struct {
	mu    sync.Mutex // protects the fields below
	pages map[hostarch.Addr]hostarch.AccessType
	// committed holds the pages mapped with precommit.
	committed map[hostarch.Addr]bool
	// files holds the File mapped at each page.
	files    map[hostarch.Addr]memmap.File
	mapFiles int
}

func (a *recordingAS) MapFile(addr hostarch.Addr, f memmap.File, fr memmap.FileRange, at hostarch.AccessType, precommit bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.mapFiles++
	if a.files == nil {
		a.files = map[hostarch.Addr]memmap.File{}
	}
	for off := uint64(0); off < fr.Length(); off += hostarch.PageSize {
		a.pages[addr+hostarch.Addr(off)] = at
		a.files[addr+hostarch.Addr(off)] = f
		if precommit {
			a.committed[addr+hostarch.Addr(off)] = true
		}
	}
	return nil
}

func (a *recordingAS) Unmap(addr hostarch.Addr, length uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for off := uint64(0); off < length; off += hostarch.PageSize {
		delete(a.pages, addr+hostarch.Addr(off))
		delete(a.files, addr+hostarch.Addr(off))
	}
}

func (a *recordingAS) Release()      {}
func (a *recordingAS) PreFork() bool { return false }
func (a *recordingAS) PostFork()     {}

func (a *recordingAS) perms(addr hostarch.Addr) (hostarch.AccessType, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	at, ok := a.pages[addr]
	return at, ok
}

// newRecordingMM returns an active manager on a recordingPlatform, which
// the test's cleanup deactivates and releases.
func newRecordingMM(t *testing.T) (*MemoryManager, *recordingPlatform) {
	p := &recordingPlatform{}
	mm := New(Options{MemoryFile: newMF(t, 0), Platform: p})
	if err := mm.Activate(ctx); err != nil {
		mm.DecUsers(ctx)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		mm.Deactivate()
		mm.DecUsers(ctx)
	})
	return mm, p
}

func TestAddressSpaceTracksPMAs(t *testing.T) {
	mm, p := newRecordingMM(t)
	a := mustMap(t, mm, anon(window, 0x4000, hostarch.ReadWrite))
	if err := mm.HandleUserFault(ctx, a, hostarch.Write, 0); err != nil {
		t.Fatal(err)
	}
	if at, ok := p.as.perms(a + 0x3000); !ok || at != hostarch.ReadWrite {
		t.Fatalf("whole pma not mapped rw after a fault: %v %v", at, ok)
	}
	n := p.as.mapFiles
	// A fault on a page that is mapped already does not map again.
	if err := mm.HandleUserFault(ctx, a+0x2000, hostarch.Write, 0); err != nil {
		t.Fatal(err)
	}
	if p.as.mapFiles != n {
		t.Errorf("spurious fault remapped")
	}
	// mprotect removes write; a later fault maps read-only.
	mm.MProtect(ctx, a, 0x4000, hostarch.Read, MProtectOpts{})
	if _, ok := p.as.perms(a); ok {
		t.Errorf("page still mapped after losing write")
	}
	mm.HandleUserFault(ctx, a, hostarch.Read, 0)
	if at, _ := p.as.perms(a); at != hostarch.Read {
		t.Errorf("remapped with %v, want r--", at)
	}
	mm.MProtect(ctx, a, 0x4000, hostarch.ReadWrite, MProtectOpts{})
	// Fork: the parent's private memory loses write in its AddressSpace.
	c, err := mm.Fork(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.DecUsers(ctx)
	mm.HandleUserFault(ctx, a, hostarch.Read, 0)
	if at, _ := p.as.perms(a); at.Write {
		t.Errorf("parent mapped writable after fork")
	}
	mm.HandleUserFault(ctx, a, hostarch.Write, 0)
	if at, _ := p.as.perms(a); !at.Write {
		t.Errorf("write fault after fork did not map writable: %v", at)
	}
	// munmap removes it.
	mm.MUnmap(ctx, a, 0x4000)
	if _, ok := p.as.perms(a); ok {
		t.Errorf("page mapped after munmap")
	}
	check(t, mm)
}
