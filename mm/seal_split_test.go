package mm

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/vmspace/vmspace/hostarch"
	"golang.org/x/sys/unix"
)

// TestSealedUnmapSplits checks the splits that munmap, MAP_FIXED mmap and
// mremap MREMAP_FIXED leave when a seal fails them with EPERM, as Linux
// 6.18's vms_gather_munmap_vmas leaves them (each case's vmas were read
// from /proc/self/maps natively): the first vma is split at the range's
// start unless it is sealed itself, then the first sealed vma of the range
// stops the call; the vma crossing the range's end is never reached.
func TestSealedUnmapSplits(t *testing.T) {
	const p = 0x1000
	type span struct{ start, end uint64 }
	for _, tc := range []struct {
		name    string
		mapped  []span // anonymous rw vmas mapped in turn
		sealed  []span
		op      func(mm *MemoryManager, a hostarch.Addr) error
		want    unix.Errno
		wantVMA string // the vmas afterwards, as offsets from a
	}{
		{
			name: "munmap into a sealed vma", mapped: []span{{0, 7 * p}}, sealed: []span{{6 * p, 7 * p}},
			op:   func(mm *MemoryManager, a hostarch.Addr) error { return mm.MUnmap(ctx, a+5*p, 2*p) },
			want: unix.EPERM, wantVMA: "0-5000 5000-6000 6000-7000:sl",
		},
		{
			name: "MAP_FIXED into a sealed vma", mapped: []span{{0, 7 * p}}, sealed: []span{{6 * p, 7 * p}},
			op: func(mm *MemoryManager, a hostarch.Addr) error {
				o := anon(a+5*p, 2*p, hostarch.ReadWrite)
				o.Private = false
				_, err := mm.MMap(ctx, o)
				return err
			},
			want: unix.EPERM, wantVMA: "0-5000 5000-6000 6000-7000:sl",
		},
		{
			name: "start inside a sealed vma", mapped: []span{{0, 7 * p}}, sealed: []span{{0, 3 * p}},
			op:   func(mm *MemoryManager, a hostarch.Addr) error { return mm.MUnmap(ctx, a+1*p, 4*p) },
			want: unix.EPERM, wantVMA: "0-3000:sl 3000-7000",
		},
		{
			name: "sealed vma before the end's", mapped: []span{{0, 8 * p}}, sealed: []span{{3 * p, 4 * p}},
			op:   func(mm *MemoryManager, a hostarch.Addr) error { return mm.MUnmap(ctx, a+1*p, 5*p) },
			want: unix.EPERM, wantVMA: "0-1000 1000-3000 3000-4000:sl 4000-8000",
		},
		{
			name: "sealed vma crossing the end", mapped: []span{{0, 8 * p}}, sealed: []span{{4 * p, 8 * p}},
			op:   func(mm *MemoryManager, a hostarch.Addr) error { return mm.MUnmap(ctx, a+2*p, 4*p) },
			want: unix.EPERM, wantVMA: "0-2000 2000-4000 4000-8000:sl",
		},
		{
			name: "start in a gap", mapped: []span{{0, 3 * p}, {4 * p, 8 * p}}, sealed: []span{{6 * p, 7 * p}},
			op:   func(mm *MemoryManager, a hostarch.Addr) error { return mm.MUnmap(ctx, a+3*p, 4*p) },
			want: unix.EPERM, wantVMA: "0-3000 4000-6000 6000-7000:sl 7000-8000",
		},
		{
			name: "mremap MREMAP_FIXED onto a sealed vma", mapped: []span{{0, 7 * p}, {20 * p, 22 * p}}, sealed: []span{{6 * p, 7 * p}},
			op: func(mm *MemoryManager, a hostarch.Addr) error {
				_, err := mm.MRemap(ctx, a+20*p, 2*p, 2*p, MRemapOpts{MayMove: true, Fixed: true, NewAddr: a + 5*p})
				return err
			},
			want: unix.EPERM, wantVMA: "0-5000 5000-6000 6000-7000:sl 14000-16000",
		},
		{
			// The map count is checked before the seal.
			name: "middle of a sealed vma at the map count", mapped: []span{{0, 4 * p}}, sealed: []span{{0, 4 * p}},
			op: func(mm *MemoryManager, a hostarch.Addr) error {
				l := mm.Limits()
				l.MaxMapCount = len(mm.VMAs(ctx))
				mm.SetLimits(l)
				return mm.MUnmap(ctx, a+p, p)
			},
			want: unix.ENOMEM, wantVMA: "0-4000:sl",
		},
		{
			name: "no seal", mapped: []span{{0, 8 * p}},
			op:      func(mm *MemoryManager, a hostarch.Addr) error { return mm.MUnmap(ctx, a+2*p, 4*p) },
			wantVMA: "0-2000 6000-8000",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mm := newTestMM(t)
			a := window
			for _, s := range tc.mapped {
				mustMap(t, mm, anon(a+hostarch.Addr(s.start), s.end-s.start, hostarch.ReadWrite))
			}
			for _, s := range tc.sealed {
				if err := mm.MSeal(ctx, a+hostarch.Addr(s.start), s.end-s.start, 0); err != nil {
					t.Fatal(err)
				}
			}
			err := tc.op(mm, a)
			if tc.want == 0 && err != nil || tc.want != 0 && !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
			var got []string
			for _, v := range mm.VMAsIn(ctx, hostarch.AddrRange{Start: a, End: a + 64*p}, false) {
				s := fmt.Sprintf("%x-%x", uint64(v.Range.Start-a), uint64(v.Range.End-a))
				for _, f := range v.Flags {
					if f == "sl" {
						s += ":sl"
					}
				}
				got = append(got, s)
			}
			if g := strings.Join(got, " "); g != tc.wantVMA {
				t.Errorf("vmas afterwards: %s, want %s", g, tc.wantVMA)
			}
			check(t, mm)
		})
	}
}
