package mm

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/vmspace/vmspace/hostarch"
	"golang.org/x/sys/unix"
)

func TestAIOContextRing(t *testing.T) {
	mm := newTestMM(t)
	if _, err := mm.NewAIOContext(ctx, 0); !errors.Is(err, unix.EINVAL) {
		t.Errorf("io_setup(0) = %v, want EINVAL", err)
	}
	if _, err := mm.NewAIOContext(ctx, aioMaxNr+1); !errors.Is(err, unix.EAGAIN) {
		t.Errorf("io_setup(too many) = %v, want EAGAIN", err)
	}
	id, err := mm.NewAIOContext(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	hdr := make([]byte, 32)
	if _, err := mm.CopyIn(ctx, hostarch.Addr(id), hdr, IOOpts{}); err != nil {
		t.Fatal(err)
	}
	if binary.LittleEndian.Uint32(hdr[16:]) != aioRingMagic {
		t.Errorf("ring header %x lacks the magic", hdr)
	}
	size := mm.VirtualMemorySize()
	if size == 0 || size%hostarch.PageSize != 0 {
		t.Errorf("ring size %#x", size)
	}
	ac, ok := mm.LookupAIOContext(ctx, id)
	if !ok || !ac.Prepare() {
		t.Fatalf("lookup/prepare failed")
	}
	ac.FinishRequest(7)
	<-ac.WaitChannel()
	if d, ok := ac.PopRequest(); !ok || d.(int) != 7 || !ac.Drain() {
		t.Errorf("PopRequest = %v, %v", d, ok)
	}
	// Moving the ring changes the id.
	nid, err := mm.MRemap(ctx, hostarch.Addr(id), size, size, MRemapOpts{MayMove: true, Fixed: true, NewAddr: window})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := mm.LookupAIOContext(ctx, id); ok {
		t.Errorf("old id still valid after mremap")
	}
	if _, ok := mm.LookupAIOContext(ctx, uint64(nid)); !ok {
		t.Errorf("new id not valid after mremap")
	}
	// The ring cannot grow.
	if _, err := mm.MRemap(ctx, nid, size, 2*size, MRemapOpts{MayMove: true}); !errors.Is(err, unix.EFAULT) {
		t.Errorf("growing the ring = %v, want EFAULT", err)
	}
	if mm.DestroyAIOContext(ctx, uint64(nid)) == nil {
		t.Fatalf("destroy failed")
	}
	if mm.VirtualMemorySize() != 0 {
		t.Errorf("ring still mapped after io_destroy")
	}
	if mm.DestroyAIOContext(ctx, uint64(nid)) != nil {
		t.Errorf("second destroy succeeded")
	}
	// Unmapping the ring kills the context.
	id2, err := mm.NewAIOContext(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	mm.MUnmap(ctx, hostarch.Addr(id2), size)
	if _, ok := mm.LookupAIOContext(ctx, id2); ok {
		t.Errorf("context alive after its ring was unmapped")
	}
	check(t, mm)
}
