package hostfile

import (
	"context"
	"errors"
	"testing"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/pgalloc"
	"golang.org/x/sys/unix"
)

func TestShmLifetime(t *testing.T) {
	ctx := context.Background()
	mf, err := pgalloc.New(pgalloc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer mf.Destroy()
	if _, err := NewShm(mf, 0); !errors.Is(err, unix.EINVAL) {
		t.Errorf("NewShm(0) = %v, want EINVAL", err)
	}
	s, err := NewShm(mf, 5000)
	if err != nil {
		t.Fatal(err)
	}
	if s.Size() != 5000 {
		t.Errorf("Size = %d", s.Size())
	}
	var opts memmap.MMapOpts
	opts.Length = 8192
	if err := s.ConfigureMMap(ctx, &opts); err != nil {
		t.Fatal(err)
	}
	ar := hostarch.AddrRange{Start: 0x10000, End: 0x12000}
	ms := &fakeMS{}
	if err := opts.Mappable.AddMapping(ctx, ms, ar, 0, true); err != nil {
		t.Fatal(err)
	}
	s.Remove(ctx)
	if s.Gone() {
		t.Fatalf("segment gone while attached")
	}
	// Still attachable while attached somewhere, as Linux allows.
	var o2 memmap.MMapOpts
	if err := s.ConfigureMMap(ctx, &o2); err != nil {
		t.Errorf("attach after removal while attached: %v", err)
	} else {
		o2.MappingIdentity.DecRef(ctx)
	}
	opts.Mappable.RemoveMapping(ctx, ms, ar, 0, true)
	opts.MappingIdentity.DecRef(ctx)
	if !s.Gone() {
		t.Errorf("segment alive after removal and last detach")
	}
	if err := s.ConfigureMMap(ctx, &o2); !errors.Is(err, unix.EINVAL) {
		t.Errorf("attach of a gone segment = %v", err)
	}
	mf.WaitReleased()
	if n := mf.UsageAllocated(); n != 0 {
		t.Errorf("%d bytes still allocated", n)
	}
}
