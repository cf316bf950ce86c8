package mm

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmspace/vmspace/checkpoint"
	"github.com/vmspace/vmspace/checkpoint/hostfiles"
	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/hostfile"
	"github.com/vmspace/vmspace/pgalloc"
	"golang.org/x/sys/unix"
)

// seedImages returns images of a few address spaces: a forked family of
// anonymous memory with an AIO context and guard regions, and a manager
// mapping a memfd, shared anonymous memory and a deleted host file.
func seedImages(t testing.TB) [][]byte {
	mf, err := pgalloc.New(pgalloc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer mf.Destroy()
	var imgs [][]byte
	save := func(mms []*MemoryManager, codec checkpoint.ObjectCodec) {
		var b bytes.Buffer
		if err := Save(ctx, &b, mms, codec); err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, b.Bytes())
		for _, m := range mms {
			m.DecUsers(ctx)
		}
	}

	// Anonymous family.
	p := New(Options{MemoryFile: mf})
	p.BrkSetup(ctx, 0x555555600000)
	a, err := p.MMap(ctx, anon(window, 16*hostarch.PageSize, hostarch.ReadWrite))
	if err != nil {
		t.Fatal(err)
	}
	p.CopyOut(ctx, a, bytes.Repeat([]byte{1, 2, 3}, 2000), IOOpts{})
	p.CopyOut(ctx, a+8*hostarch.PageSize, make([]byte, 100), IOOpts{})
	p.MAdvise(ctx, a+12*hostarch.PageSize, hostarch.PageSize, AdvGuardInstall)
	p.MProtect(ctx, a+4*hostarch.PageSize, hostarch.PageSize, hostarch.Read, MProtectOpts{})
	p.NewAIOContext(ctx, 2)
	p.SetAuxv([]AuxEntry{{6, 4096}})
	c, err := p.Fork(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.CopyOut(ctx, a+hostarch.PageSize, []byte("child"), IOOpts{})
	save([]*MemoryManager{p, c}, nil)

	// Files.
	m := New(Options{MemoryFile: mf})
	mk := hostfile.SharedAnonFactory(mf)
	m.SetSharedAnonFactory(func(ctx context.Context, n uint64) (MappableFile, error) { return mk(ctx, n) })
	memf, err := hostfile.NewMemfd(mf, "seed", 4*hostarch.PageSize)
	if err != nil {
		t.Fatal(err)
	}
	mfd, _ := hostfile.NewFD(memf, true, true)
	memf.DecRef(ctx)
	path := filepath.Join(os.TempDir(), "vmspace-seed-ghost")
	os.WriteFile(path, bytes.Repeat([]byte("ghost"), 1000), 0o600)
	gfd, err := hostfile.OpenFile(mf, path, unix.O_RDWR, 0)
	os.Remove(path)
	if err != nil {
		t.Fatal(err)
	}
	x, _ := m.mmapFlags(ctx, window, 4*hostarch.PageSize, ProtRead|ProtWrite, MapShared, mfd, 0)
	m.CopyOut(ctx, x+hostarch.PageSize, []byte("memfd"), IOOpts{})
	y, _ := m.mmapFlags(ctx, window+0x100000, 2*hostarch.PageSize, ProtRead|ProtWrite, MapShared|MapAnonymous, nil, 0)
	m.CopyOut(ctx, y, []byte("anon"), IOOpts{})
	z, _ := m.mmapFlags(ctx, window+0x200000, 2*hostarch.PageSize, ProtRead|ProtWrite, MapPrivate, gfd, 0)
	m.CopyOut(ctx, z+hostarch.PageSize, []byte("cow"), IOOpts{})
	m.CopyIn(ctx, z, make([]byte, 8), IOOpts{})
	save([]*MemoryManager{m}, hostfiles.New(hostfiles.Options{}))
	mfd.Close(ctx)
	gfd.Close(ctx)
	return imgs
}

// restoreAnything restores img into a fresh, limited memory file; whatever
// the outcome, it must not panic, what it restores must hold its
// invariants, and releasing it must return every page.
func restoreAnything(t *testing.T, img []byte) (restored bool) {
	mf, err := pgalloc.New(pgalloc.Options{Limit: 128 << 20, DisableAsyncRelease: true})
	if err != nil {
		t.Fatal(err)
	}
	defer mf.Destroy()
	codec := hostfiles.New(hostfiles.Options{MemoryFile: mf, GhostDir: t.TempDir()})
	mms, err := Restore(ctx, bytes.NewReader(img), RestoreOptions{MemoryFile: mf, Codec: codec})
	if err == nil {
		for _, m := range mms {
			if err := m.CheckInvariants(); err != nil {
				t.Errorf("restored manager: %v", err)
			}
		}
		fams := map[*privateRefs][]*MemoryManager{}
		for _, m := range mms {
			fams[m.privateRefs] = append(fams[m.privateRefs], m)
		}
		for _, f := range fams {
			if err := CheckPrivateRefs(f...); err != nil {
				t.Errorf("restored family: %v", err)
			}
		}
		for _, m := range mms {
			m.DecUsers(ctx)
		}
	}
	if n := mf.UsageAllocated(); n != 0 {
		t.Fatalf("%#x bytes left allocated after Restore (error %v)", n, err)
	}
	return err == nil
}

// FuzzRestore feeds arbitrary bytes to Restore. The seed images are tens
// of kilobytes, which the fuzzer's minimization of each new input takes
// minutes over; run with a bounded minimization:
//
//	go test ./mm -run '^$' -fuzz '^FuzzRestore$' -fuzztime 60s -fuzzminimizetime 200x
func FuzzRestore(f *testing.F) {
	for _, img := range seedImages(f) {
		f.Add(img)
	}
	f.Add([]byte(checkpoint.Magic))
	f.Fuzz(func(t *testing.T, img []byte) {
		restoreAnything(t, img)
	})
}

// records returns the records of an image (without the end record).
func records(t testing.TB, img []byte) (kinds []checkpoint.Kind, payloads [][]byte) {
	r, err := checkpoint.NewReader(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for {
		k, d, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if k == checkpoint.KindEnd {
			return kinds, payloads
		}
		kinds = append(kinds, k)
		payloads = append(payloads, append([]byte(nil), d.Raw(d.Remaining())...))
	}
}

// encodeRecords is the fuzz input of FuzzRestoreRecords: kind, length and
// payload of each record, without checksums.
func encodeRecords(kinds []checkpoint.Kind, payloads [][]byte) []byte {
	var b []byte
	for i, k := range kinds {
		b = binary.LittleEndian.AppendUint32(b, uint32(k))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(payloads[i])))
		b = append(b, payloads[i]...)
	}
	return b
}

// imageOf makes a well-formed image (checksums, end record) of the records
// in data, as encodeRecords lays them out; it stops at the first record
// that does not fit.
func imageOf(t *testing.T, data []byte) []byte {
	var b bytes.Buffer
	w, err := checkpoint.NewWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	for len(data) >= 8 {
		k := checkpoint.Kind(binary.LittleEndian.Uint32(data))
		n := int(min(binary.LittleEndian.Uint32(data[4:]), uint32(len(data)-8)))
		if k != checkpoint.KindEnd {
			if err := w.Record(k, data[8:8+n]); err != nil {
				t.Fatal(err)
			}
		}
		data = data[8+n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// FuzzRestoreRecords feeds Restore well-formed images of arbitrary records,
// to exercise the checks behind the checksums.
func FuzzRestoreRecords(f *testing.F) {
	for _, img := range seedImages(f) {
		f.Add(encodeRecords(records(f, img)))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		restoreAnything(t, imageOf(t, data))
	})
}

// TestRestoreMutations runs the fuzz targets' checks over deterministic
// mutations of the seed images: every record dropped, duplicated or
// swapped with the next, and random byte changes in payloads (with good
// checksums) and in the compressed image.
func TestRestoreMutations(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 8))
	for si, img := range seedImages(t) {
		kinds, payloads := records(t, img)
		n := len(kinds)
		tried, ok := 0, 0
		for i := 0; i < n; i++ {
			variants := map[string][][]byte{}
			drop := func(i int) ([]checkpoint.Kind, [][]byte) {
				k := append(append([]checkpoint.Kind(nil), kinds[:i]...), kinds[i+1:]...)
				p := append(append([][]byte(nil), payloads[:i]...), payloads[i+1:]...)
				return k, p
			}
			k, p := drop(i)
			variants["drop"] = [][]byte{encodeRecords(k, p)}
			k2 := append(append([]checkpoint.Kind(nil), kinds[:i+1]...), kinds[i:]...)
			p2 := append(append([][]byte(nil), payloads[:i+1]...), payloads[i:]...)
			variants["dup"] = [][]byte{encodeRecords(k2, p2)}
			if i+1 < n {
				k3 := append([]checkpoint.Kind(nil), kinds...)
				p3 := append([][]byte(nil), payloads...)
				k3[i], k3[i+1] = k3[i+1], k3[i]
				p3[i], p3[i+1] = p3[i+1], p3[i]
				variants["swap"] = [][]byte{encodeRecords(k3, p3)}
			}
			for j := 0; j < 4 && len(payloads[i]) > 0; j++ {
				p4 := append([][]byte(nil), payloads...)
				c := append([]byte(nil), payloads[i]...)
				c[r.IntN(len(c))] ^= byte(1 << r.IntN(8))
				if r.IntN(2) == 0 {
					c[r.IntN(len(c))] = byte(r.Uint32())
				}
				p4[i] = c
				variants["payload"] = append(variants["payload"], encodeRecords(kinds, p4))
			}
			for _, vs := range variants {
				for _, v := range vs {
					tried++
					if restoreAnything(t, imageOf(t, v)) {
						ok++
					}
				}
			}
		}
		for j := 0; j < 50; j++ {
			c := append([]byte(nil), img...)
			c[16+r.IntN(len(c)-16)] ^= byte(1 << r.IntN(8))
			restoreAnything(t, c)
		}
		t.Logf("seed %d: %d records; %d of %d mutated images restored", si, n, ok, tried)
		if ok == 0 || ok == tried {
			t.Errorf("mutations exercise only one outcome")
		}
	}
}
