package mm

import (
	"fmt"
	"testing"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/platform"
	"golang.org/x/sys/unix"
)

// limitedPlatform makes recordingASes that refuse (ENOMEM) a mapping that
// would make more than limit pages mapped, as the host refuses one past
// its vm.max_map_count.
type limitedPlatform struct {
	platform.NoPlatform
	limit int
	as    *limitedAS
}

func (p *limitedPlatform) NewAddressSpace() (platform.AddressSpace, error) {
	p.as = &limitedAS{recordingAS: recordingAS{pages: map[hostarch.Addr]hostarch.AccessType{}, committed: map[hostarch.Addr]bool{}}, limit: p.limit}
	return p.as, nil
}

type limitedAS struct {
	recordingAS
	// limit is immutable.
	limit int
}

func (a *limitedAS) MapFile(addr hostarch.Addr, f memmap.File, fr memmap.FileRange, at hostarch.AccessType, precommit bool) error {
	a.mu.Lock()
	n := len(a.pages)
	for off := uint64(0); off < fr.Length(); off += hostarch.PageSize {
		if _, ok := a.pages[addr+hostarch.Addr(off)]; !ok {
			n++
		}
	}
	a.mu.Unlock()
	if n > a.limit {
		return fmt.Errorf("host mmap: %w", unix.ENOMEM)
	}
	return a.recordingAS.MapFile(addr, f, fr, at, precommit)
}

// TestHostMappingsEvicted: when the host refuses a mapping (ENOMEM), the
// manager drops its host mappings and maps again, so that populating and
// faulting more scattered pages than the host maps at once still works
// (the virtual_address_range selftest read a byte of 131,000 separate
// gigabytes: the host process passed vm.max_map_count and vmspace retried
// the same call forever).
func TestHostMappingsEvicted(t *testing.T) {
	const limit, n = 8 * hostarch.HugePageSize / hostarch.PageSize, 40
	p := &limitedPlatform{limit: limit}
	m := New(Options{MemoryFile: newMF(t, 0), Platform: p})
	if err := m.Activate(ctx); err != nil {
		m.DecUsers(ctx)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Deactivate()
		m.DecUsers(ctx)
	})
	const base = hostarch.Addr(0x10000000)
	// One vma; pages two huge pages apart get pmas (and host mappings)
	// of their own.
	const stride = 2 * hostarch.HugePageSize
	if _, err := m.MMap(ctx, memmap.MMapOpts{Length: n * stride, Addr: base, Fixed: true, Private: true, Perms: hostarch.ReadWrite, MaxPerms: hostarch.AnyAccess}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		addr := base + hostarch.Addr(i)*stride
		if i%2 == 0 {
			if err := m.MAdvise(ctx, addr, hostarch.PageSize, AdvPopulateRead); err != nil {
				t.Fatalf("populating page %d: %v", i, err)
			}
		} else if err := m.HandleUserFault(ctx, addr, hostarch.Write, 0); err != nil {
			t.Fatalf("fault of page %d: %v", i, err)
		}
		if _, ok := p.as.perms(addr); !ok {
			t.Fatalf("page %d is not mapped in the host after it was brought in", i)
		}
		if len(p.as.pages) > limit {
			t.Fatalf("%d pages mapped, more than the host's %d", len(p.as.pages), limit)
		}
	}
	// A page evicted from the host faults back in.
	if _, ok := p.as.perms(base); ok {
		t.Fatal("the first page was never evicted")
	}
	if err := m.HandleUserFault(ctx, base, hostarch.Read, 0); err != nil {
		t.Fatalf("fault of an evicted page: %v", err)
	}
	if _, ok := p.as.perms(base); !ok {
		t.Fatal("the evicted page is not mapped again after its fault")
	}
}
