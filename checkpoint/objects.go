package checkpoint

import (
	"context"

	"github.com/vmspace/vmspace/memmap"
)

// ObjectCodec saves and restores the objects that address spaces map but
// package mm does not own: files, memfds, shm segments, the executable's
// identity. mm calls SaveObject once for each distinct (Mappable,
// MappingIdentity) pair it meets, and on restore LoadObject at the same
// point of the image. A codec may keep state across calls (to write a file
// shared by several pairs once); one codec value serves one Save or one
// Restore.
type ObjectCodec interface {
	// SaveObject writes records (of kinds from KindCodec on, or page
	// streams) from which LoadObject can make the pair again. Either of m
	// and id may be nil, not both. use says how the saved address spaces
	// map it.
	SaveObject(ctx context.Context, w *Writer, m memmap.Mappable, id memmap.MappingIdentity, use ObjectUse) error

	// LoadObject reads exactly the records SaveObject wrote and returns
	// the object to be. It must not change anything that exists outside
	// the memory file (host files in particular) until Commit: a restore
	// that fails after LoadObject calls Discard and must leave no trace.
	LoadObject(ctx context.Context, r *Reader) (PendingObject, error)
}

// ObjectUse says how the saved address spaces use an object.
type ObjectUse struct {
	// SharedWritable is true if some saved vma maps it shared and
	// writable (so that it may write back dirty data when that vma goes).
	SharedWritable bool
}

// PendingObject is an object read from an image, not yet in use.
type PendingObject interface {
	// Build returns the Mappable and MappingIdentity (as SaveObject was
	// given them: either may be nil). The PendingObject keeps a
	// reference on the identity until Discard; users take their own.
	// Build is called at most once, after the whole image has been read
	// and checked.
	Build(ctx context.Context) (memmap.Mappable, memmap.MappingIdentity, error)

	// Commit makes the object's remaining effects (such as dirty page
	// cache contents that must not reach a host file should the restore
	// fail) take place, once everything has been built. It is called
	// after Build, in load order.
	Commit(ctx context.Context) error

	// Discard releases what the PendingObject holds, after Commit or on
	// failure (whether or not Build was called). It is called exactly
	// once.
	Discard(ctx context.Context)
}
