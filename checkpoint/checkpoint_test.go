package checkpoint

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/pgalloc"
)

func TestEncoderDecoderRoundTrip(t *testing.T) {
	var e Encoder
	e.Uvarint(0)
	e.Uvarint(math.MaxUint64)
	e.U64(0x0102030405060708)
	e.U32(0xdeadbeef)
	e.Byte(7)
	e.Bool(true)
	e.Bool(false)
	e.Blob([]byte("blob"))
	e.String("string")
	e.Raw([]byte{1, 2})
	d := NewDecoder(KindApp, e.Bytes())
	if d.Uvarint() != 0 || d.Uvarint() != math.MaxUint64 || d.U64() != 0x0102030405060708 || d.U32() != 0xdeadbeef ||
		d.Byte() != 7 || !d.Bool() || d.Bool() || string(d.Blob(10)) != "blob" || d.String(10) != "string" ||
		!bytes.Equal(d.Raw(2), []byte{1, 2}) {
		t.Fatalf("round trip failed: %v", d.Err())
	}
	if err := d.Finish(); err != nil {
		t.Fatal(err)
	}
}

func TestDecoderErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		payload []byte
		read    func(d *Decoder)
	}{
		{"short u64", []byte{1, 2, 3}, func(d *Decoder) { d.U64() }},
		{"bad varint", bytes.Repeat([]byte{0xff}, 11), func(d *Decoder) { d.Uvarint() }},
		{"empty varint", nil, func(d *Decoder) { d.Uvarint() }},
		{"bad bool", []byte{2}, func(d *Decoder) { d.Bool() }},
		{"blob too long", []byte{5, 'a'}, func(d *Decoder) { d.Blob(10) }},
		{"blob over max", append([]byte{20}, make([]byte, 20)...), func(d *Decoder) { d.Blob(10) }},
		{"varint over max", []byte{100}, func(d *Decoder) { d.UvarintMax(10, "x") }},
		{"trailing", []byte{1, 2}, func(d *Decoder) { d.Byte() }},
		{"negative raw", []byte{1}, func(d *Decoder) { d.Raw(-1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDecoder(KindApp, tc.payload)
			tc.read(d)
			err := d.Finish()
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("got %v, want ErrCorrupt", err)
			}
			// Errors are sticky and reads return zero values.
			if d.U64() != 0 || d.Uvarint() != 0 || d.Blob(10) != nil || d.Remaining() != 0 {
				t.Errorf("reads after an error return data")
			}
		})
	}
}

// image writes records with w and returns the image.
func image(t *testing.T, write func(w *Writer)) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := NewWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	write(w)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestRecords(t *testing.T) {
	// A writer that failed stays failed, and its image is incomplete.
	var b bytes.Buffer
	w, err := NewWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Record(KindEnd, nil); err == nil {
		t.Errorf("Record(KindEnd) accepted")
	}
	if err := w.Record(KindApp, make([]byte, MaxRecord+1)); err == nil {
		t.Errorf("oversized record accepted")
	}
	if err := w.Record(KindApp, nil); err == nil {
		t.Errorf("Record after a failure accepted")
	}
	if err := w.Close(); err == nil {
		t.Errorf("Close after a failure succeeded")
	}
	if _, err := readAll(b.Bytes(), false); err == nil {
		t.Errorf("an image whose writer failed was accepted")
	}

	img := image(t, func(w *Writer) {
		for i := 0; i < 100; i++ {
			e := w.Encoder()
			e.Uvarint(uint64(i))
			e.Raw(bytes.Repeat([]byte{byte(i)}, i*100))
			if err := w.Record(KindApp+Kind(i%3), e.Bytes()); err != nil {
				t.Fatal(err)
			}
		}
	})
	n, err := readAll(img, true)
	if err != nil || n != 100 {
		t.Fatalf("read %d records: %v", n, err)
	}
}

// readAll reads every record of img, checking their contents as
// TestRecords wrote them, and returns how many there were.
func readAll(img []byte, check bool) (int, error) {
	r, err := NewReader(bytes.NewReader(img))
	if err != nil {
		return 0, err
	}
	defer r.Close()
	n := 0
	for {
		k, d, err := r.Next()
		if err != nil {
			return n, err
		}
		if k == KindEnd {
			if _, _, err := r.Next(); err == nil {
				return n, errors.New("Next after the end succeeded")
			}
			return n, nil
		}
		if !check {
			n++
			continue
		}
		i := d.Uvarint()
		if k != KindApp+Kind(i%3) || !bytes.Equal(d.Raw(int(i)*100), bytes.Repeat([]byte{byte(i)}, int(i)*100)) {
			return n, errors.New("record contents differ")
		}
		if err := d.Finish(); err != nil {
			return n, err
		}
		n++
	}
}

func TestReaderRefuses(t *testing.T) {
	good := image(t, func(w *Writer) {
		w.Record(KindApp, []byte("one"))
		w.Record(KindApp, []byte("two"))
	})
	for _, tc := range []struct {
		name string
		img  []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"magic only", []byte(Magic), ErrTruncated},
		{"foreign", []byte("#!/bin/sh\necho not an image\n"), ErrNotImage},
		{"version", append(append([]byte(Magic), 9, 0, 0, 0), good[12:]...), ErrVersion},
		{"flags", append(append([]byte(nil), good[:12]...), append([]byte{3, 0, 0, 0}, good[16:]...)...), ErrVersion},
		{"no stream", good[:16], ErrTruncated},
		{"truncated", good[:len(good)-3], nil},
		{"garbage after", append(append([]byte(nil), good...), 0), ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readAll(tc.img, false)
			if err == nil {
				t.Fatalf("accepted")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
			t.Log(err)
		})
	}
}

// TestChecksumCoversSequence: a record moved to another place fails its
// checksum even when the stream itself is intact.
func TestChecksumCoversSequence(t *testing.T) {
	var e Encoder
	e.U32(uint32(KindApp))
	e.U32(3)
	e.Raw([]byte("abc"))
	hdr, payload := e.Bytes()[:8], e.Bytes()[8:]
	if recordCRC(0, hdr, payload) == recordCRC(1, hdr, payload) {
		t.Errorf("the checksum does not depend on the sequence number")
	}
}

func TestPageStream(t *testing.T) {
	const pg = hostarch.PageSize
	page := func(b byte) []byte { return bytes.Repeat([]byte{b}, pg) }
	img := image(t, func(w *Writer) {
		ps := w.Pages(16 * pg)
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		must(ps.Data(0, page(1)))
		must(ps.Data(pg, page(2))) // merges with the previous run
		must(ps.Zero(4*pg, 2*pg))
		must(ps.Data(8*pg, append(page(3), page(4)...)))
		if err := ps.Data(2*pg, page(5)); err == nil {
			t.Errorf("out of order data accepted")
		}
		if err := ps.Zero(15*pg, 2*pg); err == nil {
			t.Errorf("data past the end accepted")
		}
		if err := ps.Data(10*pg, []byte{1}); err == nil {
			t.Errorf("partial page accepted")
		}
		must(ps.End())
		// A big stream spans records.
		big := w.Pages(1024 * pg)
		for i := 0; i < 1024; i += 2 {
			must(big.Data(uint64(i)*pg, page(byte(i))))
			must(big.Zero(uint64(i+1)*pg, pg))
		}
		must(big.End())
	})
	r, err := NewReader(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var got []string
	err = r.ReadPages(16*pg, func(off uint64, b []byte) error {
		for i := 0; i < len(b); i += pg {
			got = append(got, "d"+string(rune('0'+b[i]))+"@"+string(rune('0'+(off+uint64(i))/pg)))
		}
		return nil
	}, func(off, n uint64) error {
		got = append(got, "z"+string(rune('0'+n/pg))+"@"+string(rune('0'+off/pg)))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if s := strings.Join(got, " "); s != "d1@0 d2@1 z2@4 d3@8 d4@9" {
		t.Errorf("read %s", s)
	}
	var data, zero int
	err = r.ReadPages(1024*pg, func(off uint64, b []byte) error {
		for i := 0; i < len(b); i += pg {
			if b[i] != byte((off+uint64(i))/pg) {
				t.Errorf("page %d holds %d", (off+uint64(i))/pg, b[i])
			}
			data++
		}
		return nil
	}, func(off, n uint64) error { zero += int(n / pg); return nil })
	if err != nil || data != 512 || zero != 512 {
		t.Errorf("big stream: %d data, %d zero pages, %v", data, zero, err)
	}
	// A stream read with the wrong length is refused.
	r2, _ := NewReader(bytes.NewReader(img))
	defer r2.Close()
	if err := r2.SkipPages(32 * pg); !errors.Is(err, ErrCorrupt) {
		t.Errorf("wrong length: %v", err)
	}
}

// TestFileRange: saving a memory-file range writes data pages as data and
// resident zero pages as zero runs, never reads (and so never allocates)
// holes, and restoring brings back both contents and residency.
func TestFileRange(t *testing.T) {
	const pg = hostarch.PageSize
	mf, err := pgalloc.New(pgalloc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer mf.Destroy()
	fr, err := mf.Allocate(64*pg, pgalloc.AllocOpts{})
	if err != nil {
		t.Fatal(err)
	}
	ims, _ := mf.MapInternal(fr, hostarch.ReadWrite)
	b := ims.Head().ToSlice()
	b[3*pg] = 3                     // data
	clear(b[5*pg : 7*pg])           // resident zeros
	copy(b[40*pg:], page(pg, 0x40)) // data
	b[63*pg+pg-1] = 0x63            // data in the last page
	committed := mf.UsageCommitted()

	img := image(t, func(w *Writer) {
		ps := w.Pages(64 * pg)
		if err := ps.FileRange(0, mf, fr); err != nil {
			t.Fatal(err)
		}
		if err := ps.End(); err != nil {
			t.Fatal(err)
		}
	})
	if after := mf.UsageCommitted(); after != committed {
		t.Errorf("saving changed the committed memory from %#x to %#x", committed, after)
	}
	if len(img) > 4*pg {
		t.Errorf("image of 3 data pages takes %d bytes", len(img))
	}

	fr2, err := mf.Allocate(64*pg, pgalloc.AllocOpts{})
	if err != nil {
		t.Fatal(err)
	}
	ims2, _ := mf.MapInternal(fr2, hostarch.ReadWrite)
	r, _ := NewReader(bytes.NewReader(img))
	defer r.Close()
	data, zero := BlockSink(ims2)
	if err := r.ReadPages(64*pg, data, zero); err != nil {
		t.Fatal(err)
	}
	b2 := ims2.Head().ToSlice()
	want := make([]byte, 64)
	got := make([]byte, 64)
	mincore(ims.Head().Pointer(), 64*pg, want)
	mincore(ims2.Head().Pointer(), 64*pg, got)
	if !bytes.Equal(got, want) {
		t.Errorf("residency after restore\n%v\nwant\n%v", got, want)
	}
	if !bytes.Equal(b, b2) {
		t.Errorf("contents differ after restore")
	}
}

func page(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }
