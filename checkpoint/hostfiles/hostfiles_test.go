package hostfiles

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmspace/vmspace/checkpoint"
	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/hostfile"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/pgalloc"
)

var ctx = context.Background()

const pg = hostarch.PageSize

func newMF(t *testing.T) *pgalloc.MemoryFile {
	t.Helper()
	mf, err := pgalloc.New(pgalloc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mf.Destroy)
	return mf
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// fakeMS is a MappingSpace for AddMapping.
type fakeMS struct{}

func (*fakeMS) Invalidate(hostarch.AddrRange, memmap.InvalidateOpts) {}

// save writes objects (m, id pairs) with one Codec and returns the image.
func save(t *testing.T, objs ...[2]any) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := checkpoint.NewWriter(&b)
	must(t, err)
	c := New(Options{})
	for _, o := range objs {
		m, _ := o[0].(memmap.Mappable)
		id, _ := o[1].(memmap.MappingIdentity)
		must(t, c.SaveObject(ctx, w, m, id, checkpoint.ObjectUse{}))
	}
	must(t, w.Close())
	return b.Bytes()
}

// load reads n objects from img with a Codec of opts; it returns the
// pending objects (built and committed if commit) and the first error.
func load(t *testing.T, img []byte, n int, opts Options, commit bool) ([]checkpoint.PendingObject, *Codec, error) {
	t.Helper()
	r, err := checkpoint.NewReader(bytes.NewReader(img))
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	c := New(opts)
	var ps []checkpoint.PendingObject
	for i := 0; i < n; i++ {
		p, err := c.LoadObject(ctx, r)
		if err != nil {
			return ps, c, err
		}
		ps = append(ps, p)
	}
	if k, _, err := r.Next(); err != nil || k != checkpoint.KindEnd {
		return ps, c, errors.Join(err, errors.New("no end record"))
	}
	if commit {
		for _, p := range ps {
			if _, _, err := p.Build(ctx); err != nil {
				return ps, c, err
			}
		}
		for _, p := range ps {
			if err := p.Commit(ctx); err != nil {
				return ps, c, err
			}
		}
	}
	return ps, c, nil
}

func discard(ps []checkpoint.PendingObject) {
	for _, p := range ps {
		p.Discard(ctx)
	}
}

// residency returns f's cached pages below n bytes as a string of 0 and 1.
func residency(f interface {
	Resident(memmap.MappableRange, []byte)
}, n uint64) string {
	v := make([]byte, n/pg)
	f.Resident(memmap.MappableRange{Start: 0, End: n}, v)
	var s strings.Builder
	for _, b := range v {
		s.WriteByte('0' + b)
	}
	return s.String()
}

func TestMemfdRoundTrip(t *testing.T) {
	mf := newMF(t)
	f, err := hostfile.NewMemfd(mf, "round", 6*pg+100)
	must(t, err)
	_, err = f.WriteAt([]byte("hello"), 2*pg+7)
	must(t, err)
	_, err = f.WriteAt(make([]byte, 10), 4*pg) // a cached zero page
	must(t, err)
	wantRes := residency(f, 7*pg)
	want := make([]byte, 6*pg+100)
	f.ReadAt(want, 0)
	img := save(t, [2]any{f, f}, [2]any{nil, f})
	f.DecRef(ctx)
	if n := mf.UsageAllocated(); n != 0 {
		t.Fatalf("%#x bytes allocated after release", n)
	}

	ps, _, err := load(t, img, 2, Options{MemoryFile: mf}, true)
	must(t, err)
	m, id, _ := ps[0].Build(ctx)
	_, id2, _ := ps[1].Build(ctx)
	g := m.(*hostfile.File)
	if id != memmap.MappingIdentity(g) || id2 != id {
		t.Errorf("the two objects are not one File")
	}
	if g.Size() != 6*pg+100 || g.MappedName(ctx) != "/memfd:round (deleted)" || g.IsHostFile() {
		t.Errorf("restored %v, size %d", g, g.Size())
	}
	if got := residency(g, 7*pg); got != wantRes {
		t.Errorf("cached pages %s, want %s", got, wantRes)
	}
	got := make([]byte, 6*pg+100)
	g.ReadAt(got, 0)
	if !bytes.Equal(got, want) {
		t.Errorf("contents differ")
	}
	discard(ps)
	if n := mf.UsageAllocated(); n != 0 {
		t.Errorf("%#x bytes allocated after discarding", n)
	}
}

// hostFile writes a file and opens it as a File.
func hostFile(t *testing.T, mf *pgalloc.MemoryFile, size int) (string, *hostfile.File) {
	t.Helper()
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	path := filepath.Join(t.TempDir(), "host")
	must(t, os.WriteFile(path, data, 0o600))
	fd, err := hostfile.OpenFile(mf, path, unix.O_RDWR, 0)
	must(t, err)
	f := fd.File()
	f.IncRef()
	fd.Close(ctx)
	return path, f
}

// dirty writes b at off of f through a writable translation, as a shared
// mapping does, leaving the page dirty.
func dirty(t *testing.T, f *hostfile.File, off uint64, b []byte) {
	t.Helper()
	mr := memmap.MappableRange{Start: off &^ (pg - 1)}
	mr.End = mr.Start + pg
	ts, err := f.Translate(ctx, mr, mr, hostarch.ReadWrite)
	must(t, err)
	ims, err := ts[0].File.MapInternal(ts[0].FileRange(), hostarch.Write)
	must(t, err)
	copy(ims.Head().ToSlice()[off-mr.Start:], b)
}

func TestHostFileDirtyPages(t *testing.T) {
	mf := newMF(t)
	path, f := hostFile(t, mf, 4*pg)
	before, _ := os.ReadFile(path)
	dirty(t, f, pg+5, []byte("dirty"))
	ms := &fakeMS{}
	// A shared writable mapping keeps the page dirty; the File's release
	// writes it back.
	must(t, f.AddMapping(ctx, ms, hostarch.AddrRange{Start: 0x10000, End: 0x10000 + 4*pg}, 0, true))
	img := save(t, [2]any{f, f})
	var st unix.Stat_t
	unix.Stat(path, &st)
	// Restoring before the release: nothing changed yet.
	ps, _, err := load(t, img, 1, Options{MemoryFile: mf}, false)
	must(t, err)
	discard(ps)
	if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
		t.Fatalf("a restore that was not committed changed the host file")
	}
	f.RemoveMapping(ctx, ms, hostarch.AddrRange{Start: 0x10000, End: 0x10000 + 4*pg}, 0, true)
	f.DecRef(ctx)
	host, _ := os.ReadFile(path)
	if string(host[pg+5:pg+10]) != "dirty" {
		t.Fatalf("release did not write back")
	}
	// Put the old contents back (the restored File must bring the dirty
	// page back by itself); keep the time at or after the save's.
	must(t, os.WriteFile(path, before, 0o600))

	ps, _, err = load(t, img, 1, Options{MemoryFile: mf}, true)
	must(t, err)
	m, _, _ := ps[0].Build(ctx)
	g := m.(*hostfile.File)
	if g.DirtyBytes() != pg {
		t.Errorf("%d dirty bytes after restore", g.DirtyBytes())
	}
	got := make([]byte, 5)
	g.ReadAt(got, pg+5)
	if string(got) != "dirty" {
		t.Errorf("restored cache holds %q", got)
	}
	discard(ps)
	host, _ = os.ReadFile(path)
	if string(host[pg+5:pg+10]) != "dirty" {
		t.Errorf("the restored dirty page was not written back")
	}
}

func TestHostFileChanged(t *testing.T) {
	mf := newMF(t)
	for _, tc := range []struct {
		name   string
		change func(path string)
	}{
		{"grown", func(path string) {
			f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			f.Write([]byte("more"))
			f.Close()
		}},
		{"touched", func(path string) {
			future := time.Now().Add(time.Hour)
			os.Chtimes(path, future, future)
		}},
		{"replaced", func(path string) {
			data, _ := os.ReadFile(path)
			os.Remove(path)
			os.WriteFile(path, data, 0o600)
		}},
		{"removed", func(path string) { os.Remove(path) }},
		{"a directory", func(path string) { os.Remove(path); os.Mkdir(path, 0o700) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, f := hostFile(t, mf, 2*pg)
			f.ReadAt(make([]byte, 10), 0) // cache a page
			img := save(t, [2]any{f, f})
			f.DecRef(ctx)
			tc.change(path)
			ps, _, err := load(t, img, 1, Options{MemoryFile: mf}, true)
			discard(ps)
			if err == nil {
				t.Fatalf("restored a changed file")
			}
			t.Log(err)
			if n := mf.UsageAllocated(); n != 0 {
				t.Errorf("%#x bytes allocated after the failure", n)
			}
		})
	}
}

func TestGhostFile(t *testing.T) {
	mf := newMF(t)
	path, f := hostFile(t, mf, 2*pg+100)
	must(t, os.Remove(path))
	// Bytes past end-of-file in the last page, as a shared mapping may
	// write them.
	dirty(t, f, 2*pg+100, []byte("beyond"))
	want := make([]byte, 2*pg+100)
	f.ReadAt(want, 0)
	img := save(t, [2]any{f, f})
	f.DecRef(ctx)
	ps, _, err := load(t, img, 1, Options{MemoryFile: mf, GhostDir: t.TempDir()}, true)
	must(t, err)
	m, _, _ := ps[0].Build(ctx)
	g := m.(*hostfile.File)
	got := make([]byte, len(want))
	g.ReadAt(got, 0)
	if !bytes.Equal(got, want) || !g.IsHostFile() || !strings.HasSuffix(g.MappedName(ctx), " (deleted)") {
		t.Errorf("ghost restored as %v with other contents", g)
	}
	// The bytes past end-of-file are back in the cache.
	ts, err := g.Translate(ctx, memmap.MappableRange{Start: 2 * pg, End: 3 * pg}, memmap.MappableRange{Start: 2 * pg, End: 3 * pg}, hostarch.Read)
	must(t, err)
	ims, _ := ts[0].File.MapInternal(ts[0].FileRange(), hostarch.Read)
	if s := string(ims.Head().ToSlice()[100:106]); s != "beyond" {
		t.Errorf("past end-of-file: %q", s)
	}
	discard(ps)
	if n := mf.UsageAllocated(); n != 0 {
		t.Errorf("%#x bytes allocated after discarding", n)
	}
}

func TestShmRoundTrip(t *testing.T) {
	mf := newMF(t)
	seg, err := hostfile.NewShm(mf, 3*pg)
	must(t, err)
	var opts memmap.MMapOpts
	must(t, seg.ConfigureMMap(ctx, &opts))
	ms := &fakeMS{}
	ar := hostarch.AddrRange{Start: 0x10000, End: 0x10000 + 3*pg}
	must(t, opts.Mappable.AddMapping(ctx, ms, ar, 0, true))
	ts, err := opts.Mappable.Translate(ctx, memmap.MappableRange{Start: pg, End: 2 * pg}, memmap.MappableRange{Start: pg, End: 2 * pg}, hostarch.ReadWrite)
	must(t, err)
	ims, _ := ts[0].File.MapInternal(ts[0].FileRange(), hostarch.Write)
	copy(ims.Head().ToSlice(), "segment")
	img := save(t, [2]any{opts.Mappable, opts.MappingIdentity}, [2]any{opts.Mappable, nil})
	opts.Mappable.RemoveMapping(ctx, ms, ar, 0, true)
	opts.MappingIdentity.DecRef(ctx)
	seg.Remove(ctx)
	if n := mf.UsageAllocated(); n != 0 {
		t.Fatalf("%#x bytes allocated after release", n)
	}

	ps, c, err := load(t, img, 2, Options{MemoryFile: mf}, true)
	must(t, err)
	m, id, _ := ps[0].Build(ctx)
	m2, id2, _ := ps[1].Build(ctx)
	if m != m2 || id2 != nil || id.MappedName(ctx) != "/SYSV00000000 (deleted)" {
		t.Errorf("restored %v %v / %v %v", m, id, m2, id2)
	}
	s, ok := c.RestoredShm(m)
	if !ok || s.Size() != 3*pg || s.Gone() || len(c.RestoredShms()) != 1 {
		t.Fatalf("RestoredShm: %v %v", s, ok)
	}
	ts, err = m.Translate(ctx, memmap.MappableRange{Start: pg, End: 2 * pg}, memmap.MappableRange{Start: pg, End: 2 * pg}, hostarch.Read)
	must(t, err)
	ims, _ = ts[0].File.MapInternal(ts[0].FileRange(), hostarch.Read)
	if got := string(ims.Head().ToSlice()[:7]); got != "segment" {
		t.Errorf("segment holds %q", got)
	}
	discard(ps)
	s.Remove(ctx)
	if n := mf.UsageAllocated(); n != 0 {
		t.Errorf("%#x bytes allocated after removing the restored segment", n)
	}
}

func TestTable(t *testing.T) {
	mf := newMF(t)
	path, f := hostFile(t, mf, pg)
	img := save(t, [2]any{f, f})
	f.DecRef(ctx)
	tab := hostfile.NewTable(mf)
	ps, _, err := load(t, img, 1, Options{MemoryFile: mf, Table: tab}, true)
	must(t, err)
	if tab.Len() != 1 {
		t.Errorf("the restored file is not in the table")
	}
	fd, err := tab.Open(path, unix.O_RDONLY, 0)
	must(t, err)
	m, _, _ := ps[0].Build(ctx)
	if fd.File() != m {
		t.Errorf("the table gives another File for the path")
	}
	fd.Close(ctx)
	discard(ps)
	if tab.Len() != 0 {
		t.Errorf("the table still holds the file")
	}
}

func TestUnsupported(t *testing.T) {
	var b bytes.Buffer
	w, _ := checkpoint.NewWriter(&b)
	c := New(Options{})
	f1, _ := hostfile.NewMemfd(newMF(t), "a", pg)
	f2, _ := hostfile.NewMemfd(newMF(t), "b", pg)
	defer f1.DecRef(ctx)
	defer f2.DecRef(ctx)
	if err := c.SaveObject(ctx, w, f1, f2, checkpoint.ObjectUse{}); err == nil {
		t.Errorf("saved a mappable and an identity of different files")
	}
	if err := c.SaveObject(ctx, w, nil, nil, checkpoint.ObjectUse{}); err == nil {
		t.Errorf("saved nothing")
	}
	w.Close()
}
