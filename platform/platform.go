// Package platform defines where an application's memory really lives: a
// Platform makes AddressSpaces, into which the memory manager maps ranges of
// Files (MapFile) and from which it removes them (Unmap).
//
// Package platform/ptrace provides a real AddressSpace (a traced stub
// process); this package provides NoAddressSpace, an AddressSpace that maps
// nothing, for managers whose application memory is only accessed through
// the manager's own I/O path (tests, benchmarks, vmscript).
package platform

import (
	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
)

// Platform makes AddressSpaces and says what they can do.
type Platform interface {
	// NewAddressSpace returns a new, empty AddressSpace.
	NewAddressSpace() (AddressSpace, error)

	// SupportsAddressSpaceIO reports whether the memory manager may copy
	// to and from the application's memory through the AddressSpace
	// itself. No platform of vmspace does; the manager caches the answer.
	SupportsAddressSpaceIO() bool

	// MapUnit returns the granularity in bytes at which MapFile should map
	// pmas, or 0 if whole pmas should be mapped at once.
	MapUnit() uint64

	// MinUserAddress and MaxUserAddress bound the addresses applications
	// may map: [MinUserAddress, MaxUserAddress).
	MinUserAddress() hostarch.Addr
	MaxUserAddress() hostarch.Addr
}

// AddressSpace is a host address space holding an application's mappings.
//
// Methods other than Release may be called concurrently with each other;
// implementations serialise internally. The memory manager calls them with
// its active mutex held (see the lock order in mm/mm.go).
type AddressSpace interface {
	// MapFile maps fr of f at addr with permissions at, replacing whatever
	// was mapped there. If precommit is true the platform should fault in
	// the pages now.
	MapFile(addr hostarch.Addr, f memmap.File, fr memmap.FileRange, at hostarch.AccessType, precommit bool) error

	// Unmap removes all mappings in [addr, addr+length).
	Unmap(addr hostarch.Addr, length uint64)

	// Release frees the AddressSpace; it must not be used afterwards.
	Release()

	// PreFork and PostFork bracket a fork of the memory manager using the
	// AddressSpace (mm.MemoryManager.Fork calls them, with its active
	// mutex held, on the AddressSpace active when the fork starts;
	// PostFork comes whether or not the fork succeeds).
	//
	// A fork makes the parent's private memory copy-on-write, so the
	// parent normally loses write access to it (Unmap). PreFork returns
	// true if the AddressSpace is to keep the private memory it maps
	// writable mapped so instead, without Unmap: an AddressSpace whose
	// host process forks along with the application, and whose platform
	// copies that memory into the child before the child runs and then
	// gives it back to the parent (mm.ForkPlan.Copy says which ranges),
	// so that the host kernel's own writes into the parent's memory
	// never fail meanwhile. Until the child has its copy, the parent's
	// writes through those mappings reach the child too.
	PreFork() (keepWritable bool)
	PostFork()
}

// NoPlatform makes NoAddressSpaces. Its user range is Linux's x86-64 range
// [0, hostarch.MaxUserAddress).
type NoPlatform struct{}

// NewAddressSpace implements Platform.
func (NoPlatform) NewAddressSpace() (AddressSpace, error) { return NoAddressSpace{}, nil }

// SupportsAddressSpaceIO implements Platform.
func (NoPlatform) SupportsAddressSpaceIO() bool { return false }

// MapUnit implements Platform.
func (NoPlatform) MapUnit() uint64 { return 0 }

// MinUserAddress implements Platform.
func (NoPlatform) MinUserAddress() hostarch.Addr { return 0 }

// MaxUserAddress implements Platform.
func (NoPlatform) MaxUserAddress() hostarch.Addr { return hostarch.MaxUserAddress }

// NoAddressSpace is an AddressSpace that maps nothing.
type NoAddressSpace struct{}

// MapFile implements AddressSpace.
func (NoAddressSpace) MapFile(hostarch.Addr, memmap.File, memmap.FileRange, hostarch.AccessType, bool) error {
	return nil
}

// Unmap implements AddressSpace.
func (NoAddressSpace) Unmap(hostarch.Addr, uint64) {}

// Release implements AddressSpace.
func (NoAddressSpace) Release() {}

// PreFork implements AddressSpace.
func (NoAddressSpace) PreFork() bool { return false }

// PostFork implements AddressSpace.
func (NoAddressSpace) PostFork() {}
