package mm

import (
	"context"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/pgalloc"
	"github.com/vmspace/vmspace/platform"
)

// Options configure a new MemoryManager.
type Options struct {
	// Platform makes the AddressSpace; nil means platform.NoPlatform.
	Platform platform.Platform
	// MemoryFile is where private memory is allocated. Required.
	MemoryFile *pgalloc.MemoryFile
	// Limits are the initial resource limits; the zero value means
	// DefaultLimits().
	Limits *Limits
}

// New returns a MemoryManager with no mappings and one user. The caller
// must call SetMmapLayout (or accept the default layout) before mapping
// without a fixed address.
func New(opts Options) *MemoryManager {
	p := opts.Platform
	if p == nil {
		p = platform.NoPlatform{}
	}
	if opts.MemoryFile == nil {
		panic("mm.New: nil MemoryFile")
	}
	lim := DefaultLimits()
	if opts.Limits != nil {
		lim = *opts.Limits
	}
	mm := &MemoryManager{
		p:           p,
		mf:          opts.MemoryFile,
		privateRefs: newPrivateRefs(),
		limits:      lim,
		dumpability: UserDumpable,
	}
	mm.layout = DefaultMmapLayout(p.MinUserAddress(), p.MaxUserAddress(), max(lim.MinMmapAddr, lsmMmapMinAddr), lim.Stack.Cur)
	mm.users.Store(1)
	return mm
}

// MemoryFile returns the memory file private memory is allocated from.
func (mm *MemoryManager) MemoryFile() *pgalloc.MemoryFile { return mm.mf }

// Platform returns the manager's platform.
func (mm *MemoryManager) Platform() platform.Platform { return mm.p }

// IncUsers takes a user reference, unless the address space has already
// been released; it reports whether it did.
func (mm *MemoryManager) IncUsers() bool {
	for {
		u := mm.users.Load()
		if u == 0 {
			return false
		}
		if mm.users.CompareAndSwap(u, u+1) {
			return true
		}
	}
}

// DecUsers drops a user reference. When the last one goes, every mapping
// is removed and all memory is returned to the memory file.
func (mm *MemoryManager) DecUsers(ctx context.Context) {
	u := mm.users.Add(-1)
	if u > 0 {
		return
	}
	if u < 0 {
		panic("mm: DecUsers without a matching IncUsers")
	}
	mm.destroyAllAIOContexts()
	mm.metadataMu.Lock()
	exe := mm.executable
	mm.executable = nil
	mm.metadataMu.Unlock()
	if exe != nil {
		exe.DecRef(ctx)
	}

	mm.activeMu.Lock()
	if mm.active.Load() != 0 {
		panic("mm: last user released while the address space is active")
	}
	if mm.as != nil {
		mm.as.Release()
		mm.as = nil
	}
	mm.activeMu.Unlock()

	mm.mappingMu.Lock()
	defer mm.mappingMu.Unlock()
	mm.activeMu.Lock()
	mm.dropPMAsLocked(ctx, hostarch.AddrRange{Start: 0, End: ^hostarch.Addr(0) &^ hostarch.PageMask})
	mm.activeMu.Unlock()
	mm.removeAllVMAsLocked(ctx)
}

// Users returns the number of user references.
func (mm *MemoryManager) Users() int32 { return mm.users.Load() }
