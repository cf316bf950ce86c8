package hostarch

import (
	"math"
	"testing"
)

func TestAddLength(t *testing.T) {
	for _, tc := range []struct {
		a      Addr
		length uint64
		want   Addr
		ok     bool
	}{
		{0, 0, 0, true},
		{0x1000, 0x1000, 0x2000, true},
		{Addr(math.MaxUint64 - 1), 1, Addr(math.MaxUint64), true},
		{Addr(math.MaxUint64), 1, 0, false},
		{1, math.MaxUint64, 0, false},
		{0x1000, math.MaxUint64 - 0xfff, 0, false},
	} {
		got, ok := tc.a.AddLength(tc.length)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("%#x.AddLength(%#x) = %#x, %v; want %#x, %v", tc.a, tc.length, got, ok, tc.want, tc.ok)
		}
	}
}

func TestRounding(t *testing.T) {
	for _, tc := range []struct {
		a, down, up Addr
		upOK        bool
	}{
		{0, 0, 0, true},
		{1, 0, 0x1000, true},
		{0x1000, 0x1000, 0x1000, true},
		{0x1fff, 0x1000, 0x2000, true},
		{Addr(math.MaxUint64), Addr(math.MaxUint64) &^ PageMask, 0, false},
		{Addr(math.MaxUint64) &^ PageMask, Addr(math.MaxUint64) &^ PageMask, Addr(math.MaxUint64) &^ PageMask, true},
	} {
		if got := tc.a.RoundDown(); got != tc.down {
			t.Errorf("%#x.RoundDown() = %#x, want %#x", tc.a, got, tc.down)
		}
		got, ok := tc.a.RoundUp()
		if ok != tc.upOK || (ok && got != tc.up) {
			t.Errorf("%#x.RoundUp() = %#x, %v; want %#x, %v", tc.a, got, ok, tc.up, tc.upOK)
		}
	}
	if _, ok := PageRoundUp(uint64(math.MaxUint64 - 10)); ok {
		t.Errorf("PageRoundUp near max: want overflow")
	}
	if r, ok := HugePageRoundUp(uint64(1)); !ok || r != HugePageSize {
		t.Errorf("HugePageRoundUp(1) = %#x, %v", r, ok)
	}
	if r, ok := Addr(HugePageSize + 1).HugeRoundUp(); !ok || r != 2*HugePageSize {
		t.Errorf("HugeRoundUp = %#x, %v", r, ok)
	}
}

func TestAddrRange(t *testing.T) {
	r := AddrRange{0x1000, 0x3000}
	if r.Length() != 0x2000 || !r.Contains(0x1000) || r.Contains(0x3000) || !r.IsPageAligned() {
		t.Fatalf("basic properties of %v wrong", r)
	}
	if !r.Overlaps(AddrRange{0x2fff, 0x4000}) || r.Overlaps(AddrRange{0x3000, 0x4000}) {
		t.Errorf("Overlaps wrong")
	}
	if got := r.Intersect(AddrRange{0x2000, 0x5000}); got != (AddrRange{0x2000, 0x3000}) {
		t.Errorf("Intersect = %v", got)
	}
	if got := r.Intersect(AddrRange{0x5000, 0x6000}); got.Length() != 0 {
		t.Errorf("disjoint Intersect = %v, want empty", got)
	}
	if _, ok := Addr(10).ToRange(math.MaxUint64); ok {
		t.Errorf("ToRange overflow not reported")
	}
	if ro, ok := (AddrRange{0x1001, 0x2001}).RoundOut(); !ok || ro != (AddrRange{0x1000, 0x3000}) {
		t.Errorf("RoundOut = %v, %v", ro, ok)
	}
	if n := (AddrRange{0x1001, 0x2001}).NumPages(); n != 2 {
		t.Errorf("NumPages = %d", n)
	}
}

func TestAccessType(t *testing.T) {
	for _, tc := range []struct {
		at        AccessType
		effective string
		str       string
	}{
		{NoAccess, "---", "---"},
		{Read, "r--", "r--"},
		{Write, "rw-", "-w-"},
		{Execute, "r-x", "--x"},
		{AnyAccess, "rwx", "rwx"},
	} {
		if got := tc.at.String(); got != tc.str {
			t.Errorf("String = %q, want %q", got, tc.str)
		}
		if got := tc.at.Effective().String(); got != tc.effective {
			t.Errorf("%v.Effective() = %q, want %q", tc.at, got, tc.effective)
		}
		if AccessTypeFromProt(tc.at.Prot()) != tc.at {
			t.Errorf("prot round trip of %v failed", tc.at)
		}
	}
	if !ReadWrite.SupersetOf(Read) || Read.SupersetOf(Write) {
		t.Errorf("SupersetOf wrong")
	}
}
