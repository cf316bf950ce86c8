package hostfile

import (
	"context"
	"errors"
	"io"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
)

var ctx = context.Background()

func TestTranslateReadsHostFile(t *testing.T) {
	mf := newMF(t)
	const size = 3*pg + 100
	data := pattern(size, 7)
	path := tempFile(t, data)
	f := openHostFile(t, mf, path, os.O_RDONLY)
	defer f.DecRef(ctx)

	for _, tc := range []struct {
		name     string
		req, opt memmap.MappableRange
		// want is the range the translations must cover exactly.
		want memmap.MappableRange
	}{
		{"one page", mr(pg, 2*pg), mr(pg, 2*pg), mr(pg, 2*pg)},
		{"optional clipped to EOF", mr(0, pg), mr(0, 16*pg), mr(0, 4*pg)},
		{"partial last page", mr(3*pg, 4*pg), mr(3*pg, 4*pg), mr(3*pg, 4*pg)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts, err := f.Translate(ctx, tc.req, tc.opt, hostarch.Read)
			if err != nil {
				t.Fatalf("Translate: %v", err)
			}
			lo, hi := ts[0].Source.Start, ts[len(ts)-1].Source.End
			if lo != tc.want.Start || hi != tc.want.End {
				t.Fatalf("translations cover [%#x, %#x), want %v", lo, hi, tc.want)
			}
			got := readTranslated(t, ts, tc.want)
			want := make([]byte, tc.want.Length())
			copy(want, data[min(tc.want.Start, size):min(tc.want.End, size)])
			mustEqual(t, "translated contents", got, want)
			for _, tr := range ts {
				if tr.Perms != hostarch.ReadExecute {
					t.Errorf("read translation perms %v, want r-x", tr.Perms)
				}
				if tr.File != memmap.File(mf) {
					t.Errorf("translation file %v, want the memory file", tr.File)
				}
			}
		})
	}
	if got := f.CachedBytes(); got != 4*pg {
		t.Errorf("CachedBytes = %#x, want %#x", got, 4*pg)
	}
	// The page cache is one copy: translating again gives the same pages.
	ts1, _ := f.Translate(ctx, mr(pg, 2*pg), mr(pg, 2*pg), hostarch.Read)
	ts2, _ := f.Translate(ctx, mr(pg, 2*pg), mr(0, 4*pg), hostarch.Read)
	var off2 uint64
	for _, tr := range ts2 {
		if tr.Source.Contains(pg) {
			off2 = tr.Offset + (pg - tr.Source.Start)
		}
	}
	if ts1[0].Offset != off2 {
		t.Errorf("second Translate gave memory-file offset %#x, first %#x", off2, ts1[0].Offset)
	}
}

func TestTranslateExtentBounded(t *testing.T) {
	mf := newMF(t)
	size := 8 * hostarch.HugePageSize
	f := openHostFile(t, mf, tempFile(t, pattern(size, 1)), os.O_RDONLY)
	defer f.DecRef(ctx)
	req := mr(3*hostarch.HugePageSize+5*pg, 3*hostarch.HugePageSize+6*pg)
	ts, err := f.Translate(ctx, req, mr(0, uint64(size)), hostarch.Read)
	if err != nil {
		t.Fatal(err)
	}
	var total uint64
	for _, tr := range ts {
		total += tr.Source.Length()
		if !tr.Source.Overlaps(mr(3*hostarch.HugePageSize, 4*hostarch.HugePageSize)) {
			t.Errorf("translation %v outside the huge page around the fault", tr.Source)
		}
	}
	if total > maxTranslateExtent || total < req.Length() {
		t.Errorf("translated %#x bytes, want between %#x and %#x", total, req.Length(), maxTranslateExtent)
	}
	if f.CachedBytes() > maxTranslateExtent {
		t.Errorf("cached %#x bytes for one fault", f.CachedBytes())
	}
}

func TestTranslatePerms(t *testing.T) {
	mf := newMF(t)
	path := tempFile(t, pattern(4*pg, 3))
	for _, tc := range []struct {
		name      string
		flags     int
		at        hostarch.AccessType
		wantPerms hostarch.AccessType
		wantErr   error
		wantDirty uint64
	}{
		{"private read of rw file", os.O_RDWR, hostarch.Read, hostarch.ReadExecute, nil, 0},
		{"private read of ro file", os.O_RDONLY, hostarch.Read, hostarch.ReadExecute, nil, 0},
		{"exec", os.O_RDONLY, hostarch.Execute, hostarch.ReadExecute, nil, 0},
		{"shared write", os.O_RDWR, hostarch.ReadWrite, hostarch.AnyAccess, nil, 2 * pg},
		{"shared write of ro file", os.O_RDONLY, hostarch.Write, hostarch.NoAccess, unix.EACCES, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := openHostFile(t, mf, path, tc.flags)
			defer f.DecRef(ctx)
			ts, err := f.Translate(ctx, mr(pg, 3*pg), mr(pg, 3*pg), tc.at)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || len(ts) != 0 {
					t.Fatalf("Translate = %v, %v; want no translation and %v", ts, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, tr := range ts {
				if tr.Perms != tc.wantPerms {
					t.Errorf("perms %v, want %v", tr.Perms, tc.wantPerms)
				}
			}
			if got := f.DirtyBytes(); got != tc.wantDirty {
				t.Errorf("DirtyBytes = %#x, want %#x", got, tc.wantDirty)
			}
		})
	}
}

func TestTranslatePastEOF(t *testing.T) {
	mf := newMF(t)
	const size = 2*pg + 10
	data := pattern(size, 9)
	f := openHostFile(t, mf, tempFile(t, data), os.O_RDWR)
	defer f.DecRef(ctx)

	for _, tc := range []struct {
		name      string
		req       memmap.MappableRange
		wantCover memmap.MappableRange // prefix translated
		wantBus   bool
	}{
		{"wholly past EOF", mr(3*pg, 4*pg), mr(3*pg, 3*pg), true},
		{"far past EOF", mr(1<<40, 1<<40+pg), mr(1<<40, 1<<40), true},
		{"straddles EOF", mr(pg, 5*pg), mr(pg, 3*pg), true},
		{"partial page ok", mr(2*pg, 3*pg), mr(2*pg, 3*pg), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts, err := f.Translate(ctx, tc.req, tc.req, hostarch.Read)
			if got := memmap.IsBusError(err); got != tc.wantBus {
				t.Fatalf("Translate err = %v, want BusError %v", err, tc.wantBus)
			}
			var cover memmap.MappableRange
			if len(ts) > 0 {
				cover = mr(ts[0].Source.Start, ts[len(ts)-1].Source.End)
			} else {
				cover = mr(tc.req.Start, tc.req.Start)
			}
			if cover != tc.wantCover {
				t.Errorf("translations cover %v, want %v", cover, tc.wantCover)
			}
		})
	}
	// The partial last page reads zeros past EOF.
	ts, err := f.Translate(ctx, mr(2*pg, 3*pg), mr(2*pg, 3*pg), hostarch.Read)
	if err != nil {
		t.Fatal(err)
	}
	got := readTranslated(t, ts, mr(2*pg, 3*pg))
	want := make([]byte, pg)
	copy(want, data[2*pg:])
	mustEqual(t, "partial page", got, want)
}

func TestTranslateBadArgs(t *testing.T) {
	mf := newMF(t)
	f := openHostFile(t, mf, tempFile(t, pattern(4*pg, 0)), os.O_RDONLY)
	defer f.DecRef(ctx)
	for _, tc := range []struct {
		name     string
		req, opt memmap.MappableRange
	}{
		{"empty", mr(pg, pg), mr(0, 2*pg)},
		{"unaligned", mr(1, pg), mr(0, pg)},
		{"optional not superset", mr(0, 2*pg), mr(pg, 2*pg)},
		{"malformed", mr(2*pg, pg), mr(0, 4*pg)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := f.Translate(ctx, tc.req, tc.opt, hostarch.Read); !errors.Is(err, unix.EINVAL) {
				t.Errorf("Translate(%v, %v) = %v, want EINVAL", tc.req, tc.opt, err)
			}
		})
	}
}

func TestMappingsAndTruncate(t *testing.T) {
	mf := newMF(t)
	const size = 5 * pg
	data := pattern(size, 11)
	path := tempFile(t, data)
	f := openHostFile(t, mf, path, os.O_RDWR)
	defer f.DecRef(ctx)

	ms1, ms2 := &fakeMS{}, &fakeMS{}
	// ms1 maps the whole file at 0x10000; ms2 maps offsets [2p, 4p) at
	// 0x80000 and, writable, [0, p) at 0x90000.
	if err := f.AddMapping(ctx, ms1, ar(0x10000, 0x10000+size), 0, false); err != nil {
		t.Fatal(err)
	}
	if err := f.AddMapping(ctx, ms2, ar(0x80000, 0x80000+2*pg), 2*pg, false); err != nil {
		t.Fatal(err)
	}
	if err := f.AddMapping(ctx, ms2, ar(0x90000, 0x90000+pg), 0, true); err != nil {
		t.Fatal(err)
	}
	// A copy (fork) of ms1's mapping into ms3.
	ms3 := &fakeMS{}
	if err := f.CopyMapping(ctx, ms3, ar(0x10000, 0x10000+size), ar(0x10000, 0x10000+size), 0, false); err != nil {
		t.Fatal(err)
	}
	// Cache everything.
	if _, err := f.Translate(ctx, mr(0, size), mr(0, size), hostarch.Read); err != nil {
		t.Fatal(err)
	}

	// Shrink to 1.5 pages.
	if err := f.Truncate(ctx, pg+pg/2); err != nil {
		t.Fatalf("Truncate: %v", err)
	}
	priv := memmap.InvalidateOpts{InvalidatePrivate: true}
	for _, tc := range []struct {
		name string
		ms   *fakeMS
		want []invalidateCall
	}{
		{"whole-file mapping", ms1, []invalidateCall{{ar(0x10000+2*pg, 0x10000+size), priv}}},
		{"partial mapping", ms2, []invalidateCall{{ar(0x80000, 0x80000+2*pg), priv}}},
		{"copied mapping", ms3, []invalidateCall{{ar(0x10000+2*pg, 0x10000+size), priv}}},
	} {
		got := tc.ms.take()
		if len(got) != len(tc.want) {
			t.Errorf("%s: Invalidate calls %v, want %v", tc.name, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%s: Invalidate call %d = %v, want %v", tc.name, i, got[i], tc.want[i])
			}
		}
	}
	if got := f.CachedBytes(); got != 2*pg {
		t.Errorf("CachedBytes after shrink = %#x, want %#x", got, 2*pg)
	}
	if st, err := os.Stat(path); err != nil || st.Size() != pg+pg/2 {
		t.Errorf("host file size = %v, %v; want %d", st.Size(), err, pg+pg/2)
	}
	// Past the new end: SIGBUS. The partial page's tail reads zero.
	if _, err := f.Translate(ctx, mr(2*pg, 3*pg), mr(2*pg, 3*pg), hostarch.Read); !memmap.IsBusError(err) {
		t.Errorf("Translate past new EOF: %v, want BusError", err)
	}
	ts, err := f.Translate(ctx, mr(pg, 2*pg), mr(pg, 2*pg), hostarch.Read)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, pg)
	copy(want, data[pg:pg+pg/2])
	mustEqual(t, "partial page after shrink", readTranslated(t, ts, mr(pg, 2*pg)), want)

	// Grow: pages are valid again and read zeros.
	if err := f.Truncate(ctx, 4*pg); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*fakeMS{ms1, ms2, ms3} {
		if c := m.take(); len(c) != 0 {
			t.Errorf("growing invalidated %v", c)
		}
	}
	ts, err = f.Translate(ctx, mr(pg, 4*pg), mr(pg, 4*pg), hostarch.Read)
	if err != nil {
		t.Fatalf("Translate after grow: %v", err)
	}
	want = make([]byte, 3*pg)
	copy(want, data[pg:pg+pg/2])
	mustEqual(t, "after grow", readTranslated(t, ts, mr(pg, 4*pg)), want)
	host, _ := os.ReadFile(path)
	mustEqual(t, "host file after grow", host[pg:], want)

	// Removing mappings: only what remains is invalidated.
	f.RemoveMapping(ctx, ms1, ar(0x10000, 0x10000+size), 0, false)
	f.RemoveMapping(ctx, ms2, ar(0x80000, 0x80000+2*pg), 2*pg, false)
	// Removing something never added does nothing.
	f.RemoveMapping(ctx, ms2, ar(0x70000, 0x70000+pg), 0, false)
	if err := f.Truncate(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if c := ms1.take(); len(c) != 0 {
		t.Errorf("removed mapping invalidated: %v", c)
	}
	if c := ms2.take(); len(c) != 1 || c[0].ar != ar(0x90000, 0x90000+pg) {
		t.Errorf("ms2 invalidations %v, want its writable page", c)
	}
	if c := ms3.take(); len(c) != 1 || c[0].ar != ar(0x10000, 0x10000+size) {
		t.Errorf("ms3 invalidations %v, want all of its mapping", c)
	}
	f.RemoveMapping(ctx, ms3, ar(0x10000, 0x10000+size), 0, false)
	f.RemoveMapping(ctx, ms2, ar(0x90000, 0x90000+pg), 0, true)
	if f.IsMapped() {
		t.Errorf("still mapped after every RemoveMapping")
	}
	if f.CachedBytes() != 0 {
		t.Errorf("CachedBytes = %#x after truncating to 0", f.CachedBytes())
	}
}

func TestAddMappingBadArgs(t *testing.T) {
	mf := newMF(t)
	f, err := NewMemfd(mf, "m", pg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.DecRef(ctx)
	ms := &fakeMS{}
	for _, tc := range []struct {
		name   string
		ms     memmap.MappingSpace
		ar     hostarch.AddrRange
		offset uint64
		want   error
	}{
		{"empty", ms, ar(pg, pg), 0, unix.EINVAL},
		{"unaligned address", ms, ar(1, pg+1), 0, unix.EINVAL},
		{"unaligned offset", ms, ar(0, pg), 1, unix.EINVAL},
		{"offset overflow", ms, ar(0, 2*pg), ^uint64(0) &^ (pg - 1), unix.EOVERFLOW},
		{"nil space", nil, ar(0, pg), 0, unix.EINVAL},
	} {
		if err := f.AddMapping(ctx, tc.ms, tc.ar, tc.offset, false); !errors.Is(err, tc.want) {
			t.Errorf("%s: AddMapping = %v, want %v", tc.name, err, tc.want)
		}
	}
	if f.IsMapped() {
		t.Errorf("failed AddMappings left a mapping")
	}
}

func TestPwriteCoherence(t *testing.T) {
	mf := newMF(t)
	const size = 3 * pg
	data := pattern(size, 5)
	path := tempFile(t, data)
	f := openHostFile(t, mf, path, os.O_RDWR)
	defer f.DecRef(ctx)

	priv, err := f.Translate(ctx, mr(0, pg), mr(0, pg), hostarch.Read)
	if err != nil {
		t.Fatal(err)
	}
	shared, err := f.Translate(ctx, mr(pg, 2*pg), mr(pg, 2*pg), hostarch.ReadWrite)
	if err != nil {
		t.Fatal(err)
	}

	// pwrite across the two cached pages and the uncached third.
	msg := []byte("hello, page cache")
	buf := make([]byte, 2*pg)
	copy(buf, msg)
	copy(buf[pg-4:], msg)
	copy(buf[2*pg-4:], msg)
	if n, err := f.WriteAt(buf[:2*pg], pg/2); err != nil || n != 2*pg {
		t.Fatalf("WriteAt = %d, %v", n, err)
	}
	copy(data[pg/2:], buf[:2*pg])
	// Mappings see it at once.
	mustEqual(t, "private (not yet copied) mapping", readTranslated(t, priv, mr(0, pg)), data[:pg])
	mustEqual(t, "shared mapping", readTranslated(t, shared, mr(pg, 2*pg)), data[pg:2*pg])
	// So does the host file.
	host, _ := os.ReadFile(path)
	mustEqual(t, "host file", host, data)

	// A write through the shared mapping is seen by pread, before any
	// write-back.
	writeTranslated(t, shared, pg+100, []byte("through the mapping"))
	copy(data[pg+100:], "through the mapping")
	got := make([]byte, size)
	if n, err := f.ReadAt(got, 0); err != nil || n != size {
		t.Fatalf("ReadAt = %d, %v", n, err)
	}
	mustEqual(t, "pread after mapping write", got, data)

	// Reads past the end are short, with io.EOF.
	if n, err := f.ReadAt(got[:100], size-10); n != 10 || err != io.EOF {
		t.Errorf("ReadAt across EOF = %d, %v; want 10, EOF", n, err)
	}
	if n, err := f.ReadAt(got[:1], size); n != 0 || err != io.EOF {
		t.Errorf("ReadAt at EOF = %d, %v; want 0, EOF", n, err)
	}

	// Extending pwrite: the gap reads zeros, mappings of the new pages
	// become valid.
	if _, err := f.Translate(ctx, mr(4*pg, 5*pg), mr(4*pg, 5*pg), hostarch.Read); !memmap.IsBusError(err) {
		t.Fatalf("Translate past EOF before extending: %v", err)
	}
	if _, err := f.WriteAt([]byte("tail"), 4*pg+10); err != nil {
		t.Fatal(err)
	}
	if f.Size() != 4*pg+14 {
		t.Errorf("Size = %#x after extending write", f.Size())
	}
	ts, err := f.Translate(ctx, mr(3*pg, 5*pg), mr(3*pg, 5*pg), hostarch.Read)
	if err != nil {
		t.Fatalf("Translate after extending: %v", err)
	}
	want := make([]byte, 2*pg)
	copy(want[pg+10:], "tail")
	mustEqual(t, "extended pages", readTranslated(t, ts, mr(3*pg, 5*pg)), want)

	for _, tc := range []struct {
		name string
		op   func() error
		want error
	}{
		{"negative pread", func() error { _, err := f.ReadAt(got, -1); return err }, unix.EINVAL},
		{"negative pwrite", func() error { _, err := f.WriteAt(got, -1); return err }, unix.EINVAL},
		{"pwrite past max size", func() error { _, err := f.WriteAt(got[:10], 1<<63-5); return err }, unix.EFBIG},
		{"negative truncate", func() error { return f.Truncate(ctx, -1) }, unix.EINVAL},
	} {
		if err := tc.op(); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestSync(t *testing.T) {
	mf := newMF(t)
	const size = 4*pg + 123
	data := pattern(size, 13)
	path := tempFile(t, data)
	f := openHostFile(t, mf, path, os.O_RDWR)
	defer f.DecRef(ctx)
	ms := &fakeMS{}
	// One shared writable mapping of pages [0, 2p); nothing else mapped.
	if err := f.AddMapping(ctx, ms, ar(0x40000, 0x40000+2*pg), 0, true); err != nil {
		t.Fatal(err)
	}

	ts, err := f.Translate(ctx, mr(0, 5*pg), mr(0, 5*pg), hostarch.ReadWrite)
	if err != nil {
		t.Fatal(err)
	}
	writeTranslated(t, ts, 10, []byte("first page"))
	writeTranslated(t, ts, 3*pg+10, []byte("fourth page"))
	// A write past EOF in the last page is not written back.
	writeTranslated(t, ts, size+5, []byte("beyond"))
	copy(data[10:], "first page")
	copy(data[3*pg+10:], "fourth page")

	if host, _ := os.ReadFile(path); string(host[10:20]) == "first page" {
		t.Fatalf("written back before Sync")
	}
	if err := f.Sync(ctx, mr(0, 5*pg)); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	host, _ := os.ReadFile(path)
	mustEqual(t, "host file after Sync", host, data)
	// Pages still mapped writable stay dirty; the others are clean.
	if got := f.DirtyBytes(); got != 2*pg {
		t.Errorf("DirtyBytes after Sync = %#x, want %#x (the writable-mapped pages)", got, 2*pg)
	}
	// So a later write through the still-writable mapping is written back
	// by the next Sync (msync through the identity).
	writeTranslated(t, ts, pg+1, []byte("again"))
	copy(data[pg+1:], "again")
	if err := f.Msync(ctx, mr(0, 2*pg)); err != nil {
		t.Fatalf("Msync: %v", err)
	}
	host, _ = os.ReadFile(path)
	mustEqual(t, "host file after Msync", host, data)

	// Once unmapped, Sync cleans.
	f.RemoveMapping(ctx, ms, ar(0x40000, 0x40000+2*pg), 0, true)
	if err := f.Sync(ctx, mr(0, 5*pg)); err != nil {
		t.Fatal(err)
	}
	if got := f.DirtyBytes(); got != 0 {
		t.Errorf("DirtyBytes after unmapped Sync = %#x", got)
	}
	// Sync of a part writes only that part.
	ts, _ = f.Translate(ctx, mr(0, 5*pg), mr(0, 5*pg), hostarch.ReadWrite)
	writeTranslated(t, ts, 0, []byte("AAAA"))
	writeTranslated(t, ts, 2*pg, []byte("BBBB"))
	if err := f.Sync(ctx, mr(2*pg, 3*pg)); err != nil {
		t.Fatal(err)
	}
	host, _ = os.ReadFile(path)
	if string(host[2*pg:2*pg+4]) != "BBBB" || string(host[:4]) == "AAAA" {
		t.Errorf("partial Sync wrote %q at 0 and %q at 2p", host[:4], host[2*pg:2*pg+4])
	}
}

func TestReleaseWritesBackAndFrees(t *testing.T) {
	mf := newMF(t)
	before := mf.UsageAllocated()
	data := pattern(3*pg, 17)
	path := tempFile(t, data)
	f := openHostFile(t, mf, path, os.O_RDWR)
	f.IncRef() // a vma's reference
	m := &fakeMM{}
	ts, err := m.translate(ctx, f, mr(0, 3*pg), hostarch.ReadWrite)
	if err != nil {
		t.Fatal(err)
	}
	writeTranslated(t, ts, 7, []byte("dirty"))
	copy(data[7:], "dirty")
	if mf.UsageAllocated() == before {
		t.Fatalf("nothing allocated for the cache")
	}
	f.DecRef(ctx)
	if host, _ := os.ReadFile(path); string(host[7:12]) == "dirty" {
		t.Fatalf("written back before the last reference went")
	}
	f.DecRef(ctx)
	host, _ := os.ReadFile(path)
	mustEqual(t, "host file after release", host, data)
	// The memory manager's references keep the pages until it drops them.
	if mf.UsageAllocated() == before {
		t.Errorf("pages freed under the memory manager's references")
	}
	m.release()
	if got := mf.UsageAllocated(); got != before {
		t.Errorf("UsageAllocated = %#x after release, want %#x", got, before)
	}
	if _, err := f.Translate(ctx, mr(0, pg), mr(0, pg), hostarch.Read); !errors.Is(err, unix.EBADF) {
		t.Errorf("Translate after release: %v, want EBADF", err)
	}
}

func TestMemfd(t *testing.T) {
	mf := newMF(t)
	before := mf.UsageAllocated()
	f, err := NewMemfd(mf, "buf", 3*pg)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.MappedName(ctx); got != "/memfd:buf (deleted)" {
		t.Errorf("MappedName = %q", got)
	}
	if f.DeviceID() != unix.Mkdev(0, 1) || f.InodeID() == 0 {
		t.Errorf("DeviceID %#x, InodeID %d", f.DeviceID(), f.InodeID())
	}
	if mf.UsageAllocated() != before {
		t.Errorf("memfd allocated memory before use")
	}
	m1, m2 := &fakeMM{}, &fakeMM{}
	// Shared: a write through one mapping is seen by another and by pread.
	ts1, err := m1.translate(ctx, f, mr(0, 3*pg), hostarch.ReadWrite)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "fresh memfd", readTranslated(t, ts1, mr(0, 3*pg)), make([]byte, 3*pg))
	writeTranslated(t, ts1, pg+3, []byte("shared"))
	ts2, err := m2.translate(ctx, f, mr(pg, 2*pg), hostarch.Read)
	if err != nil {
		t.Fatal(err)
	}
	if got := readTranslated(t, ts2, mr(pg+3, pg+9)); string(got) != "shared" {
		t.Errorf("second mapping reads %q", got)
	}
	buf := make([]byte, 6)
	if _, err := f.ReadAt(buf, pg+3); err != nil || string(buf) != "shared" {
		t.Errorf("ReadAt = %q, %v", buf, err)
	}
	// pwrite past the end grows it; the new page is zero-filled.
	if _, err := f.WriteAt([]byte("grown"), 4*pg+1); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 4*pg+6)
	if n, err := f.ReadAt(big, 0); n != 4*pg+6 || err != nil {
		t.Fatalf("ReadAt = %d, %v", n, err)
	}
	want := make([]byte, 4*pg+6)
	copy(want[pg+3:], "shared")
	copy(want[4*pg+1:], "grown")
	mustEqual(t, "memfd after growing pwrite", big, want)
	if f.DirtyBytes() != 0 {
		t.Errorf("memfd pages counted dirty")
	}
	// Truncate: pages past the end go, with invalidation of private
	// copies.
	ms := &fakeMS{}
	if err := f.AddMapping(ctx, ms, ar(0x1000000, 0x1000000+5*pg), 0, true); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(ctx, pg); err != nil {
		t.Fatal(err)
	}
	if c := ms.take(); len(c) != 1 || c[0].ar != ar(0x1000000+pg, 0x1000000+5*pg) || !c[0].opts.InvalidatePrivate {
		t.Errorf("invalidations %v", c)
	}
	if err := f.Truncate(ctx, 3*pg); err != nil {
		t.Fatal(err)
	}
	ts3, err := f.Translate(ctx, mr(pg, 3*pg), mr(pg, 3*pg), hostarch.Read)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "regrown memfd", readTranslated(t, ts3, mr(pg, 3*pg)), make([]byte, 2*pg))
	// Msync and Sync are no-ops.
	if err := f.Msync(ctx, mr(0, 3*pg)); err != nil {
		t.Errorf("Msync: %v", err)
	}
	f.RemoveMapping(ctx, ms, ar(0x1000000, 0x1000000+5*pg), 0, true)
	f.DecRef(ctx)
	m1.release()
	m2.release()
	if got := mf.UsageAllocated(); got != before {
		t.Errorf("UsageAllocated = %#x after release, want %#x", got, before)
	}
	if _, err := NewMemfd(mf, "huge", 1<<63); !errors.Is(err, unix.EFBIG) {
		t.Errorf("NewMemfd(2^63) = %v, want EFBIG", err)
	}
}

func TestSharedAnon(t *testing.T) {
	mf := newMF(t)
	before := mf.UsageAllocated()
	mk := SharedAnonFactory(mf)
	fd, err := mk(ctx, 2*pg)
	if err != nil {
		t.Fatal(err)
	}
	if !fd.Readable() || !fd.Writable() {
		t.Errorf("shared anon FD mode r=%v w=%v", fd.Readable(), fd.Writable())
	}
	var opts memmap.MMapOpts
	if err := fd.ConfigureMMap(ctx, &opts); err != nil {
		t.Fatal(err)
	}
	id := opts.MappingIdentity
	if opts.Mappable == nil || id == nil || id.MappedName(ctx) != "/dev/zero (deleted)" {
		t.Fatalf("ConfigureMMap set %v, %v", opts.Mappable, id)
	}
	// The memory manager: the vma takes a reference, drops configure's.
	id.IncRef()
	id.DecRef(ctx)
	m := &fakeMM{}
	ts, err := m.translate(ctx, opts.Mappable, mr(0, 2*pg), hostarch.ReadWrite)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "shared anon", readTranslated(t, ts, mr(0, 2*pg)), make([]byte, 2*pg))
	// The FD's reference moved to the mapping: closing it does nothing,
	// a second ConfigureMMap is EBADF.
	if err := fd.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := fd.ConfigureMMap(ctx, &memmap.MMapOpts{}); !errors.Is(err, unix.EBADF) {
		t.Errorf("second ConfigureMMap: %v, want EBADF", err)
	}
	res := make([]byte, 3)
	opts.Mappable.(mmResidency).Resident(mr(0, 3*pg), res)
	if string(res) != "\x01\x01\x00" {
		t.Errorf("Resident = %v", res)
	}
	// munmap: the vma's reference goes.
	id.DecRef(ctx)
	m.release()
	if got := mf.UsageAllocated(); got != before {
		t.Errorf("UsageAllocated = %#x, want %#x", got, before)
	}
}

func TestIdentity(t *testing.T) {
	mf := newMF(t)
	path := tempFile(t, pattern(pg, 0))
	f := openHostFile(t, mf, path, os.O_RDONLY)
	defer f.DecRef(ctx)
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	if f.MappedName(ctx) != path {
		t.Errorf("MappedName = %q, want %q", f.MappedName(ctx), path)
	}
	if f.DeviceID() != uint64(st.Dev) || f.InodeID() != st.Ino {
		t.Errorf("DeviceID/InodeID = %#x/%d, want %#x/%d", f.DeviceID(), f.InodeID(), st.Dev, st.Ino)
	}
	// Unlinked, it shows as deleted, as in Linux.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if got, want := f.MappedName(ctx), path+" (deleted)"; got != want {
		t.Errorf("MappedName after unlink = %q, want %q", got, want)
	}
	// Non-regular files cannot be mapped.
	dir, err := os.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	if _, err := NewFile(mf, int(dir.Fd())); !errors.Is(err, unix.ENODEV) {
		t.Errorf("NewFile(directory) = %v, want ENODEV", err)
	}
	if _, err := NewFile(mf, -1); !errors.Is(err, unix.EBADF) {
		t.Errorf("NewFile(-1) = %v, want EBADF", err)
	}
}

func TestPunch(t *testing.T) {
	mf := newMF(t)
	const size = 4 * pg
	data := pattern(size, 21)
	path := tempFile(t, data)
	f := openHostFile(t, mf, path, os.O_RDWR)
	defer f.DecRef(ctx)
	ms := &fakeMS{}
	if err := f.AddMapping(ctx, ms, ar(0x200000, 0x200000+size), 0, true); err != nil {
		t.Fatal(err)
	}
	ts, err := f.Translate(ctx, mr(0, size), mr(0, size), hostarch.ReadWrite)
	if err != nil {
		t.Fatal(err)
	}
	writeTranslated(t, ts, pg+1, []byte("gone"))
	err = f.Punch(ctx, mr(pg, 3*pg))
	if errors.Is(err, unix.EOPNOTSUPP) {
		t.Skipf("host file system cannot punch holes: %v", err)
	}
	if err != nil {
		t.Fatalf("Punch: %v", err)
	}
	if c := ms.take(); len(c) != 1 || c[0].ar != ar(0x200000+pg, 0x200000+3*pg) || c[0].opts.InvalidatePrivate {
		t.Errorf("Punch invalidations %v, want [+p, +3p) without private", c)
	}
	res := make([]byte, 4)
	f.Resident(mr(0, size), res)
	if string(res) != "\x01\x00\x00\x01" {
		t.Errorf("Resident after Punch = %v", res)
	}
	copy(data[pg:3*pg], make([]byte, 2*pg))
	got := make([]byte, size)
	if _, err := f.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "pread after Punch", got, data)
	host, _ := os.ReadFile(path)
	mustEqual(t, "host after Punch", host, data)
	if f.Size() != size {
		t.Errorf("Punch changed the size to %#x", f.Size())
	}
	if err := f.Punch(ctx, mr(1, pg)); !errors.Is(err, unix.EINVAL) {
		t.Errorf("unaligned Punch: %v", err)
	}
	f.RemoveMapping(ctx, ms, ar(0x200000, 0x200000+size), 0, true)
}

func TestFD(t *testing.T) {
	mf := newMF(t)
	path := tempFile(t, pattern(2*pg, 2))
	ro, err := OpenFile(mf, path, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !ro.Readable() || ro.Writable() {
		t.Errorf("O_RDONLY FD: r=%v w=%v", ro.Readable(), ro.Writable())
	}
	for _, tc := range []struct {
		name string
		op   func() error
		want error
	}{
		{"write to ro", func() error { _, err := ro.WriteAt([]byte("x"), 0); return err }, unix.EBADF},
		{"truncate ro", func() error { return ro.Truncate(ctx, 0) }, unix.EINVAL},
		{"writable FD of ro File", func() error { _, err := NewFD(ro.File(), true, true); return err }, unix.EACCES},
	} {
		if err := tc.op(); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	var opts memmap.MMapOpts
	if err := ro.ConfigureMMap(ctx, &opts); err != nil {
		t.Fatal(err)
	}
	if opts.Mappable != memmap.Mappable(ro.File()) || opts.MappingIdentity != memmap.MappingIdentity(ro.File()) {
		t.Errorf("ConfigureMMap set %v, %v", opts.Mappable, opts.MappingIdentity)
	}
	// Mappings outlive the descriptor.
	if err := ro.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ro.Close(ctx); !errors.Is(err, unix.EBADF) {
		t.Errorf("second Close: %v, want EBADF", err)
	}
	if err := ro.ConfigureMMap(ctx, &memmap.MMapOpts{}); !errors.Is(err, unix.EBADF) {
		t.Errorf("ConfigureMMap after Close: %v", err)
	}
	if _, err := opts.Mappable.Translate(ctx, mr(0, pg), mr(0, pg), hostarch.Read); err != nil {
		t.Errorf("Translate after Close: %v", err)
	}
	opts.MappingIdentity.DecRef(ctx)

	if _, err := OpenFile(mf, path+".missing", os.O_RDONLY, 0); !errors.Is(err, unix.ENOENT) {
		t.Errorf("OpenFile(missing) = %v", err)
	}

	// O_APPEND descriptors: pwrite through vmspace writes at the offset
	// given, not at the end.
	ap, err := OpenFile(mf, path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ap.Close(ctx)
	if _, err := ap.WriteAt([]byte("AT-ZERO"), 0); err != nil {
		t.Fatal(err)
	}
	host, _ := os.ReadFile(path)
	if string(host[:7]) != "AT-ZERO" || len(host) != 2*pg {
		t.Errorf("O_APPEND WriteAt wrote %q, file length %d", host[:7], len(host))
	}
}

func TestTable(t *testing.T) {
	mf := newMF(t)
	before := mf.UsageAllocated()
	data := pattern(3*pg, 4)
	path := tempFile(t, data)
	tbl := NewTable(mf)

	// Opened read-only first, then read-write: one File, upgraded.
	ro, err := tbl.Open(path, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if ro.File().CanWrite() {
		t.Fatalf("File of an O_RDONLY open can write")
	}
	rw, err := tbl.Open(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if ro.File() != rw.File() || tbl.Len() != 1 {
		t.Fatalf("two opens of one inode gave different Files (table len %d)", tbl.Len())
	}
	if !rw.File().CanWrite() {
		t.Fatalf("File not upgraded by an O_RDWR open")
	}
	// A write through a shared mapping made from one descriptor is seen by
	// a read through the other.
	var opts memmap.MMapOpts
	if err := rw.ConfigureMMap(ctx, &opts); err != nil {
		t.Fatal(err)
	}
	m := &fakeMM{}
	ts, err := m.translate(ctx, opts.Mappable, mr(0, pg), hostarch.ReadWrite)
	if err != nil {
		t.Fatal(err)
	}
	writeTranslated(t, ts, 0, []byte("coherent"))
	buf := make([]byte, 8)
	if _, err := ro.ReadAt(buf, 0); err != nil || string(buf) != "coherent" {
		t.Errorf("ReadAt through the other FD = %q, %v", buf, err)
	}
	// Import of an existing descriptor finds the same File too.
	hf, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	imp, err := tbl.Import(int(hf.Fd()))
	hf.Close()
	if err != nil {
		t.Fatal(err)
	}
	if imp.File() != ro.File() {
		t.Errorf("Import gave another File")
	}
	// O_TRUNC truncates through the File, invalidating mappings.
	ms := &fakeMS{}
	if err := rw.File().AddMapping(ctx, ms, ar(0x10000, 0x10000+3*pg), 0, false); err != nil {
		t.Fatal(err)
	}
	tr, err := tbl.Open(path, os.O_RDWR|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if tr.File().Size() != 0 {
		t.Errorf("size after O_TRUNC = %d", tr.File().Size())
	}
	if c := ms.take(); len(c) != 1 || c[0].ar != ar(0x10000, 0x10000+3*pg) {
		t.Errorf("O_TRUNC invalidations %v", c)
	}
	rw.File().RemoveMapping(ctx, ms, ar(0x10000, 0x10000+3*pg), 0, false)

	for _, fd := range []*FD{ro, rw, imp, tr} {
		if err := fd.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if tbl.Len() != 1 {
		t.Errorf("File left the table while mapped")
	}
	opts.MappingIdentity.DecRef(ctx)
	m.release()
	if tbl.Len() != 0 {
		t.Errorf("table still holds %d Files", tbl.Len())
	}
	if got := mf.UsageAllocated(); got != before {
		t.Errorf("UsageAllocated = %#x, want %#x", got, before)
	}
	// A new open after release makes a new File that reads the host file.
	again, err := tbl.Open(path, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close(ctx)
	if again.File().Size() != 0 {
		t.Errorf("reopened size %d", again.File().Size())
	}
}

func TestResident(t *testing.T) {
	mf := newMF(t)
	f := openHostFile(t, mf, tempFile(t, pattern(6*pg, 0)), os.O_RDONLY)
	defer f.DecRef(ctx)
	for _, r := range []memmap.MappableRange{mr(pg, 2*pg), mr(4*pg, 5*pg)} {
		if _, err := f.Translate(ctx, r, r, hostarch.Read); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		r    memmap.MappableRange
		want string
	}{
		{mr(0, 6*pg), "010010"},
		{mr(pg, 2*pg), "1"},
		{mr(2*pg, 4*pg), "00"},
		{mr(4*pg, 8*pg), "1000"},
	} {
		out := make([]byte, tc.r.Length()/pg)
		for i := range out {
			out[i] = 7
		}
		f.Resident(tc.r, out)
		got := make([]byte, len(out))
		for i, b := range out {
			got[i] = '0' + b
		}
		if string(got) != tc.want {
			t.Errorf("Resident(%v) = %s, want %s", tc.r, got, tc.want)
		}
	}
}

// TestWritesThroughReadTranslationOfSharedMapping: a memory manager may copy
// into a shared mapping's page through a read-only translation (its internal
// mapping is writable). Such writes must reach the host file: at Sync while
// mapped, and at release after the mapping is removed.
func TestWritesThroughReadTranslationOfSharedMapping(t *testing.T) {
	mf := newMF(t)
	data := pattern(2*pg, 23)
	path := tempFile(t, data)
	for _, tc := range []struct {
		name string
		// sync: Sync while mapped; else remove the mapping and release.
		sync bool
	}{
		{"msync while mapped", true},
		{"munmap then close", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			f := openHostFile(t, mf, path, os.O_RDWR)
			ms := &fakeMS{}
			mapAR := ar(0x100000, 0x100000+2*pg)
			if err := f.AddMapping(ctx, ms, mapAR, 0, true); err != nil {
				t.Fatal(err)
			}
			ts, err := f.Translate(ctx, mr(0, 2*pg), mr(0, 2*pg), hostarch.Read)
			if err != nil {
				t.Fatal(err)
			}
			writeTranslated(t, ts, pg+8, []byte("sneaky"))
			want := append([]byte(nil), data...)
			copy(want[pg+8:], "sneaky")
			if tc.sync {
				if err := f.Sync(ctx, mr(0, 2*pg)); err != nil {
					t.Fatal(err)
				}
				host, _ := os.ReadFile(path)
				mustEqual(t, "host file after Sync", host, want)
				f.RemoveMapping(ctx, ms, mapAR, 0, true)
				f.DecRef(ctx)
				return
			}
			f.RemoveMapping(ctx, ms, mapAR, 0, true)
			f.DecRef(ctx)
			host, _ := os.ReadFile(path)
			mustEqual(t, "host file after release", host, want)
		})
	}
}

// TestGrowKeepsOrZeroesTail: bytes written through a shared mapping past
// end-of-file in the last page read as zero once the file grows over them
// for a host file (as ext4), and survive for a memfd (as shmem); both for
// ftruncate and for an extending pwrite.
func TestGrowKeepsOrZeroesTail(t *testing.T) {
	mf := newMF(t)
	for _, tc := range []struct {
		name     string
		memfd    bool
		truncate bool // grow by ftruncate, else by pwrite beyond
		want     string
	}{
		{"host ftruncate", false, true, "ab\x00\x00"},
		{"host pwrite", false, false, "ab\x00\x00"},
		{"memfd ftruncate", true, true, "abcd"},
		{"memfd pwrite", true, false, "abcd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const size = pg + pg/2
			var f *File
			if tc.memfd {
				var err error
				if f, err = NewMemfd(mf, "g", size); err != nil {
					t.Fatal(err)
				}
			} else {
				f = openHostFile(t, mf, tempFile(t, pattern(size, 1)), os.O_RDWR)
			}
			defer f.DecRef(ctx)
			ts, err := f.Translate(ctx, mr(pg, 2*pg), mr(pg, 2*pg), hostarch.ReadWrite)
			if err != nil {
				t.Fatal(err)
			}
			writeTranslated(t, ts, size-2, []byte("abcd"))
			if tc.truncate {
				err = f.Truncate(ctx, 2*pg)
			} else {
				_, err = f.WriteAt([]byte("z"), size+100)
			}
			if err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 4)
			if _, err := f.ReadAt(got, size-2); err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("bytes around the old end = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestMemfdAllocatesOnlyTouchedPages: a fault on a memfd page allocates that
// page only (mincore shows the others absent, as Linux's shmem), while a
// host file's fault reads ahead over the optional range.
func TestMemfdAllocatesOnlyTouchedPages(t *testing.T) {
	mf := newMF(t)
	mfd, err := NewMemfd(mf, "touch", 8*pg)
	if err != nil {
		t.Fatal(err)
	}
	defer mfd.DecRef(ctx)
	host := openHostFile(t, mf, tempFile(t, pattern(8*pg, 0)), os.O_RDONLY)
	defer host.DecRef(ctx)
	for _, tc := range []struct {
		f    *File
		want string
	}{
		{mfd, "00010000"},
		{host, "11111111"},
	} {
		ts, err := tc.f.Translate(ctx, mr(3*pg, 4*pg), mr(0, 8*pg), hostarch.Read)
		if err != nil {
			t.Fatal(err)
		}
		covered := false
		for _, tr := range ts {
			covered = covered || tr.Source.IsSupersetOf(mr(3*pg, 4*pg))
		}
		if !covered {
			t.Errorf("%v: translations %v do not cover the fault", tc.f, ts)
		}
		out := make([]byte, 8)
		tc.f.Resident(mr(0, 8*pg), out)
		for i := range out {
			out[i] += '0'
		}
		if string(out) != tc.want {
			t.Errorf("%v: Resident = %s, want %s", tc.f, out, tc.want)
		}
	}
	// Already-cached pages of the optional range are translated too.
	if _, err := mfd.Translate(ctx, mr(5*pg, 6*pg), mr(5*pg, 6*pg), hostarch.Read); err != nil {
		t.Fatal(err)
	}
	ts, err := mfd.Translate(ctx, mr(3*pg, 4*pg), mr(0, 8*pg), hostarch.Read)
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2 || ts[0].Source != mr(3*pg, 4*pg) || ts[1].Source != mr(5*pg, 6*pg) {
		t.Errorf("translations %v, want the fault's page and the cached page 5", ts)
	}
}
