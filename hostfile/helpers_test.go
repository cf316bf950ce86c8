package hostfile

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/pgalloc"
)

const pg = hostarch.PageSize

// Copies of mm's interfaces (mm is in the same tier and cannot be imported):
// the tests check that File and FD satisfy them structurally.
type (
	mmMappableFile interface {
		Readable() bool
		Writable() bool
		ConfigureMMap(ctx context.Context, opts *memmap.MMapOpts) error
	}
	mmResidency interface {
		Resident(mr memmap.MappableRange, out []byte)
	}
	mmPuncher interface {
		Punch(ctx context.Context, mr memmap.MappableRange) error
	}
)

var (
	_ mmMappableFile = (*FD)(nil)
	_ mmResidency    = (*File)(nil)
	_ mmPuncher      = (*File)(nil)
	// SharedAnonFactory adapts to mm.SharedAnonFactory with a one-line
	// wrapper; check that the wrapper type-checks against the copy.
	_ = func(mf *pgalloc.MemoryFile) func(context.Context, uint64) (mmMappableFile, error) {
		mk := SharedAnonFactory(mf)
		return func(ctx context.Context, n uint64) (mmMappableFile, error) { return mk(ctx, n) }
	}
)

// newMF returns a memory file that releases synchronously, closed at the
// end of the test.
func newMF(t testing.TB) *pgalloc.MemoryFile {
	t.Helper()
	mf, err := pgalloc.New(pgalloc.Options{DisableAsyncRelease: true})
	if err != nil {
		t.Fatalf("pgalloc.New: %v", err)
	}
	t.Cleanup(mf.Destroy)
	return mf
}

// pattern returns the known contents of a test file: byte i is
// (i*131 + seed) mod 251, as vmscript's files.
func pattern(n int, seed int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte((i*131 + seed) % 251)
	}
	return b
}

// tempFile creates a file holding contents and returns its path.
func tempFile(t testing.TB, contents []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, contents, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// openHostFile opens path with flags and returns a File for it; the File
// is released at the end of the test unless the test does it (release
// reports whether the test should).
func openHostFile(t testing.TB, mf *pgalloc.MemoryFile, path string, flags int) *File {
	t.Helper()
	hf, err := os.OpenFile(path, flags, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer hf.Close()
	f, err := NewFile(mf, int(hf.Fd()))
	if err != nil {
		t.Fatalf("NewFile: %v", err)
	}
	return f
}

// readFile reads a range of a memmap.File through its internal mapping.
func readMF(t testing.TB, mf memmap.File, fr memmap.FileRange) []byte {
	t.Helper()
	bs, err := mf.MapInternal(fr, hostarch.Read)
	if err != nil {
		t.Fatalf("MapInternal(%v): %v", fr, err)
	}
	var out []byte
	for b := range bs.All {
		out = append(out, b.ToSlice()...)
	}
	return out
}

// writeMF writes data into a memmap.File at off through its internal
// mapping, as an application writing through a mapping would.
func writeMF(t testing.TB, mf memmap.File, off uint64, data []byte) {
	t.Helper()
	bs, err := mf.MapInternal(memmap.FileRange{Start: off, End: off + uint64(len(data))}, hostarch.Write)
	if err != nil {
		t.Fatalf("MapInternal: %v", err)
	}
	for b := range bs.All {
		data = data[copy(b.ToSlice(), data):]
	}
}

// readTranslated reads [mr.Start, mr.End) of a Mappable through ts, which
// must cover it.
func readTranslated(t testing.TB, ts []memmap.Translation, mr memmap.MappableRange) []byte {
	t.Helper()
	var out []byte
	pos := mr.Start
	for pos < mr.End {
		found := false
		for _, tr := range ts {
			if tr.Source.Contains(pos) {
				end := min(tr.Source.End, mr.End)
				off := tr.Offset + (pos - tr.Source.Start)
				out = append(out, readMF(t, tr.File, memmap.FileRange{Start: off, End: off + (end - pos)})...)
				pos = end
				found = true
				break
			}
		}
		if !found {
			t.Fatalf("translations %v do not cover %#x", ts, pos)
		}
	}
	return out
}

// writeTranslated writes data at mappable offset off through ts.
func writeTranslated(t testing.TB, ts []memmap.Translation, off uint64, data []byte) {
	t.Helper()
	for len(data) > 0 {
		found := false
		for _, tr := range ts {
			if tr.Source.Contains(off) {
				n := min(tr.Source.End-off, uint64(len(data)))
				writeMF(t, tr.File, tr.Offset+(off-tr.Source.Start), data[:n])
				data = data[n:]
				off += n
				found = true
				break
			}
		}
		if !found {
			t.Fatalf("translations %v do not cover %#x", ts, off)
		}
	}
}

// invalidateCall is one recorded MappingSpace.Invalidate.
type invalidateCall struct {
	ar   hostarch.AddrRange
	opts memmap.InvalidateOpts
}

// fakeMS is a MappingSpace that records Invalidate calls.
type fakeMS struct {
	mu    sync.Mutex
	calls []invalidateCall
}

func (m *fakeMS) Invalidate(ar hostarch.AddrRange, opts memmap.InvalidateOpts) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, invalidateCall{ar, opts})
}

func (m *fakeMS) take() []invalidateCall {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.calls
	m.calls = nil
	return c
}

// fakeMM imitates the memory manager's side of the protocol: Translate and
// the references on what it returns happen under activeMu, which Invalidate
// also takes, dropping the references it holds in the range.
type fakeMM struct {
	activeMu sync.Mutex
	// held are the memory-file ranges referenced, with the mappable
	// ranges they back (base 0: address == offset).
	held []heldRange
	// invalidations counts Invalidate calls.
	invalidations int
	// slow makes translate pause between Translate and taking references.
	slow bool
}

type heldRange struct {
	mr memmap.MappableRange
	fr memmap.FileRange
	f  memmap.File
}

// translate translates mr for at, as a fault would, and keeps references
// on the result.
func (m *fakeMM) translate(ctx context.Context, mp memmap.Mappable, mr memmap.MappableRange, at hostarch.AccessType) ([]memmap.Translation, error) {
	m.activeMu.Lock()
	defer m.activeMu.Unlock()
	ts, err := mp.Translate(ctx, mr, mr, at)
	if m.slow {
		// Widen the window between Translate and the references, where a
		// page dropped from the cache too early would be freed.
		time.Sleep(20 * time.Microsecond)
	}
	for _, tr := range ts {
		fr := tr.FileRange()
		tr.File.IncRef(fr)
		m.held = append(m.held, heldRange{mr: tr.Source, fr: fr, f: tr.File})
	}
	return ts, err
}

func (m *fakeMM) Invalidate(ar hostarch.AddrRange, opts memmap.InvalidateOpts) {
	m.activeMu.Lock()
	defer m.activeMu.Unlock()
	m.invalidations++
	r := memmap.MappableRange{Start: uint64(ar.Start), End: uint64(ar.End)}
	kept := m.held[:0]
	for _, h := range m.held {
		if h.mr.Overlaps(r) {
			h.f.DecRef(h.fr)
			continue
		}
		kept = append(kept, h)
	}
	m.held = kept
}

// release drops every reference held.
func (m *fakeMM) release() {
	m.activeMu.Lock()
	defer m.activeMu.Unlock()
	for _, h := range m.held {
		h.f.DecRef(h.fr)
	}
	m.held = nil
}

func mr(start, end uint64) memmap.MappableRange { return memmap.MappableRange{Start: start, End: end} }

func ar(start, end uint64) hostarch.AddrRange {
	return hostarch.AddrRange{Start: hostarch.Addr(start), End: hostarch.Addr(end)}
}

func mustEqual(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		t.Fatalf("%s: differs at byte %d (len got %d, want %d)", what, i, len(got), len(want))
	}
}
