package safemem

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"
)

// seqOf returns a BlockSeq over bufs, all safe.
func seqOf(bufs ...[]byte) BlockSeq {
	bs := make([]Block, len(bufs))
	for i, b := range bufs {
		bs[i] = BlockFromSafeSlice(b)
	}
	return BlockSeqFromSlice(bs)
}

func TestBlockSeqReader(t *testing.T) {
	data := pattern(100, 9)
	r := &BlockSeqReader{Blocks: seqOf(data[:30], data[30:31], data[31:])}
	a, b := make([]byte, 20), make([]byte, 50)
	if n, err := r.ReadToBlocks(seqOf(a, b)); n != 70 || err != nil || !bytes.Equal(append(a, b...), data[:70]) {
		t.Fatalf("first read = %d, %v", n, err)
	}
	if n, err := r.ReadToBlocks(BlockSeq{}); n != 0 || err != nil {
		t.Fatalf("empty read = %d, %v", n, err)
	}
	c := make([]byte, 50)
	if n, err := r.ReadToBlocks(seqOf(c)); n != 30 || err != nil || !bytes.Equal(c[:30], data[70:]) {
		t.Fatalf("short read = %d, %v", n, err)
	}
	if n, err := r.ReadToBlocks(seqOf(c)); n != 0 || err != io.EOF {
		t.Fatalf("read at end = %d, %v, want io.EOF", n, err)
	}
	// Through the io adapter.
	r = &BlockSeqReader{Blocks: seqOf(data[:1], data[1:64], data[64:])}
	if got, err := io.ReadAll(ToIOReader{r}); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadAll = %d bytes, %v", len(got), err)
	}
	if err := iotest.TestReader(ToIOReader{&BlockSeqReader{Blocks: seqOf(data[:50], data[50:])}}, data); err != nil {
		t.Fatal(err)
	}
}

func TestBlockSeqReaderFault(t *testing.T) {
	m := holeInMiddle(t)
	r := &BlockSeqReader{Blocks: BlockSeqFromSlice([]Block{unsafeBlock(m, 0, 10), unsafeBlock(m, pg-5, pg+5)})}
	dst := make([]byte, 8)
	if n, err := r.ReadToBlocks(seqOf(dst)); n != 8 || err != nil {
		t.Fatalf("read = %d, %v", n, err)
	}
	dst = make([]byte, 100)
	n, err := ReadFullToBlocks(r, seqOf(dst))
	fe := asFault(t, err)
	// The full read got 7 bytes before the fault, and the fault's Offset
	// counts from the start of the ReadFullToBlocks.
	if n != 7 || fe.Offset != 7 || fe.Write || fe.Addr != addr(m, pg) || !bytes.Equal(dst[:7], append(bytes.Clone(m[8:10]), m[pg-5:pg]...)) {
		t.Fatalf("ReadFull = %d, %+v", n, fe)
	}
	if r.Blocks.NumBytes() != 5 || r.Blocks.Head().Addr() != addr(m, pg) {
		t.Errorf("the reader did not consume exactly the bytes read: %v", r.Blocks)
	}
}

func TestBlockSeqWriter(t *testing.T) {
	a, b := make([]byte, 10), make([]byte, 5)
	w := &BlockSeqWriter{Blocks: seqOf(a, b)}
	data := pattern(20, 4)
	if n, err := w.WriteFromBlocks(seqOf(data[:3], data[3:12])); n != 12 || err != nil {
		t.Fatalf("write = %d, %v", n, err)
	}
	if n, err := w.WriteFromBlocks(BlockSeq{}); n != 0 || err != nil {
		t.Fatalf("empty write = %d, %v", n, err)
	}
	if n, err := w.WriteFromBlocks(seqOf(data[12:])); n != 3 || err != io.EOF {
		t.Fatalf("write past the end = %d, %v; want 3, io.EOF", n, err)
	}
	if !bytes.Equal(append(a, b...), data[:15]) {
		t.Errorf("written %x", append(a, b...))
	}
	if n, err := w.WriteFromBlocks(seqOf(data)); n != 0 || err != io.EOF {
		t.Fatalf("write when full = %d, %v", n, err)
	}
	// Through the io adapter: a short Writer makes ToIOWriter fail.
	w = &BlockSeqWriter{Blocks: seqOf(make([]byte, 4))}
	if n, err := (ToIOWriter{w}).Write(data); n != 4 || err != io.EOF {
		t.Fatalf("ToIOWriter.Write = %d, %v", n, err)
	}
}

func TestBlockSeqWriterFault(t *testing.T) {
	m := holeInMiddle(t)
	w := &BlockSeqWriter{Blocks: BlockSeqOf(unsafeBlock(m, pg-10, pg+10))}
	data := pattern(20, 1)
	n, err := WriteFullFromBlocks(w, seqOf(data[:4], data[4:]))
	fe := asFault(t, err)
	if n != 10 || fe.Offset != 10 || !fe.Write || fe.Addr != addr(m, pg) || !bytes.Equal(m[pg-10:pg], data[:10]) {
		t.Fatalf("WriteFull = %d, %+v", n, fe)
	}
}

// unsafeSeq returns BlockSeqs of unsafe Blocks: one per span [i, j) of m.
func unsafeSeq(m []byte, spans ...[2]int) BlockSeq {
	bs := make([]Block, len(spans))
	for i, s := range spans {
		bs[i] = unsafeBlock(m, s[0], s[1])
	}
	return BlockSeqFromSlice(bs)
}

func TestFromIOReader(t *testing.T) {
	data := pattern(3*bounceSize, 2)
	m := mapAnon(t, 3*bounceSize/pg+1)
	safe := make([]byte, 100)
	dsts := BlockSeqFromSlice([]Block{
		unsafeBlock(m, 0, 10),
		BlockFromSafeSlice(safe),
		unsafeBlock(m, 100, 100+2*bounceSize+50), // more than one bounce buffer
	})
	for _, tc := range []struct {
		name string
		r    func() io.Reader
	}{
		{"plain", func() io.Reader { return bytes.NewReader(data) }},
		{"one byte", func() io.Reader { return iotest.OneByteReader(bytes.NewReader(data)) }},
		{"half", func() io.Reader { return iotest.HalfReader(bytes.NewReader(data)) }},
		{"data+EOF", func() io.Reader { return iotest.DataErrReader(bytes.NewReader(data)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clear(m)
			clear(safe)
			n, err := ReadFullToBlocks(FromIOReader{tc.r()}, dsts)
			if n != dsts.NumBytes() || err != nil {
				t.Fatalf("ReadFull = %d, %v; want %d", n, err, dsts.NumBytes())
			}
			got := append(append(bytes.Clone(m[:10]), safe...), m[100:100+2*bounceSize+50]...)
			if !bytes.Equal(got, data[:n]) {
				t.Errorf("wrong bytes read")
			}
		})
	}
	// A single read stops at the first short read rather than wait.
	r := FromIOReader{iotest.HalfReader(bytes.NewReader(data))}
	if n, err := r.ReadToBlocks(seqOf(make([]byte, 10), make([]byte, 10))); n != 5 || err != nil {
		t.Errorf("ReadToBlocks of a short reader = %d, %v", n, err)
	}
	// Running out.
	if n, err := ReadFullToBlocks(FromIOReader{strings.NewReader("abc")}, dsts); n != 3 || err != io.EOF {
		t.Errorf("ReadFull past the end = %d, %v; want 3, io.EOF", n, err)
	}
	// An error from the io.Reader.
	boom := errors.New("boom")
	if n, err := (FromIOReader{iotest.TimeoutReader(bytes.NewReader(data))}).ReadToBlocks(seqOf(make([]byte, 10))); n != 10 || err != nil {
		t.Errorf("first read of TimeoutReader = %d, %v", n, err)
	}
	if n, err := ReadFullToBlocks(FromIOReader{io.MultiReader(strings.NewReader("xy"), iotest.ErrReader(boom))}, dsts); n != 2 || err != boom {
		t.Errorf("ReadFull of a failing reader = %d, %v", n, err)
	}
}

func TestFromIOReaderFault(t *testing.T) {
	m := holeInMiddle(t)
	data := pattern(3*pg, 5)
	for name, r := range map[string]func() io.Reader{
		"plain": func() io.Reader { return bytes.NewReader(data) },
		// The fault comes in a later read of ReadFullToBlocks, whose
		// Offset must still count from its start.
		"half":     func() io.Reader { return iotest.HalfReader(bytes.NewReader(data)) },
		"one byte": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(data)) },
	} {
		clear(m[:pg])
		safe := make([]byte, 30)
		dsts := BlockSeqFromSlice([]Block{BlockFromSafeSlice(safe), unsafeBlock(m, pg-100, pg+100)})
		n, err := ReadFullToBlocks(FromIOReader{r()}, dsts)
		fe := asFault(t, err)
		if n != 130 || fe.Offset != 130 || !fe.Write || fe.Addr != addr(m, pg) {
			t.Fatalf("%s: ReadFull = %d, %+v; want 130 then a fault at %#x", name, n, fe, addr(m, pg))
		}
		if !bytes.Equal(safe, data[:30]) || !bytes.Equal(m[pg-100:pg], data[30:130]) {
			t.Errorf("%s: bytes before the fault not stored", name)
		}
	}
}

func TestFromIOWriter(t *testing.T) {
	m := mapAnon(t, 3*bounceSize/pg+1)
	safe := pattern(77, 3)
	srcs := BlockSeqFromSlice([]Block{unsafeBlock(m, 5, 15), BlockFromSafeSlice(safe), unsafeBlock(m, 1000, 1000+2*bounceSize+1)})
	want := append(append(bytes.Clone(m[5:15]), safe...), m[1000:1000+2*bounceSize+1]...)
	var buf bytes.Buffer
	if n, err := WriteFullFromBlocks(FromIOWriter{&buf}, srcs); n != srcs.NumBytes() || err != nil || !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("WriteFull = %d, %v", n, err)
	}
	// Through both adapters: io.Copy from a BlockSeqReader.
	buf.Reset()
	if n, err := io.Copy(ToIOWriter{FromIOWriter{&buf}}, ToIOReader{&BlockSeqReader{Blocks: srcs}}); n != int64(len(want)) || err != nil || !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("io.Copy = %d, %v", n, err)
	}
	// An io.Writer that breaks its contract with a short write and no
	// error, and one that fails.
	if n, err := (FromIOWriter{halfWriter{}}).WriteFromBlocks(srcs); n != 5 || err != io.ErrShortWrite {
		t.Errorf("write to a short io.Writer = %d, %v", n, err)
	}
	boom := errors.New("boom")
	if n, err := (FromIOWriter{failWriter{boom}}).WriteFromBlocks(srcs); n != 0 || err != boom {
		t.Errorf("write to a failing io.Writer = %d, %v", n, err)
	}
}

// halfWriter claims to write half of each buffer, without an error.
type halfWriter struct{}

func (halfWriter) Write(p []byte) (int, error) { return len(p) / 2, nil }

// failWriter fails.
type failWriter struct{ err error }

func (w failWriter) Write([]byte) (int, error) { return 0, w.err }

func TestFromIOWriterFault(t *testing.T) {
	m := holeInMiddle(t)
	var buf bytes.Buffer
	srcs := BlockSeqFromSlice([]Block{BlockFromSafeSlice([]byte("head")), unsafeBlock(m, pg-6, pg+6)})
	n, err := WriteFullFromBlocks(FromIOWriter{&buf}, srcs)
	fe := asFault(t, err)
	want := append([]byte("head"), m[pg-6:pg]...)
	if n != 10 || fe.Offset != 10 || fe.Write || fe.Addr != addr(m, pg) || fe.Signal != syscall.SIGSEGV || !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("WriteFull = %d, %+v, wrote %q", n, fe, buf.Bytes())
	}
}

// TestReadWriteFullMisbehaving checks the loops against Readers and
// Writers that make no progress or claim too much.
func TestReadWriteFullMisbehaving(t *testing.T) {
	dst := seqOf(make([]byte, 10))
	calls := 0
	stuck := ReaderFunc(func(BlockSeq) (uint64, error) { calls++; return 0, nil })
	if n, err := ReadFullToBlocks(stuck, dst); n != 0 || err != io.ErrNoProgress || calls != maxEmptyReads {
		t.Errorf("ReadFull of a stuck reader = %d, %v after %d calls", n, err, calls)
	}
	// Empty reads between progress are fine.
	calls = 0
	slow := ReaderFunc(func(d BlockSeq) (uint64, error) {
		calls++
		if calls%50 != 0 {
			return 0, nil
		}
		return CopySeq(d.TakeFirst64(1), seqOf([]byte{byte(calls)}))
	})
	if n, err := ReadFullToBlocks(slow, dst); n != 10 || err != nil {
		t.Errorf("ReadFull of a slow reader = %d, %v", n, err)
	}
	liar := ReaderFunc(func(d BlockSeq) (uint64, error) { return d.NumBytes() + 1, nil })
	if _, err := ReadFullToBlocks(liar, dst); err != ErrBadCount {
		t.Errorf("ReadFull of a lying reader: %v", err)
	}
	if _, err := (ToIOReader{liar}).Read(make([]byte, 3)); err != ErrBadCount {
		t.Errorf("ToIOReader of a lying reader: %v", err)
	}
	if _, err := (FromIOReader{iotest.ErrReader(io.ErrUnexpectedEOF)}).ReadToBlocks(dst); err != io.ErrUnexpectedEOF {
		t.Errorf("FromIOReader error: %v", err)
	}
	lazy := WriterFunc(func(BlockSeq) (uint64, error) { return 0, nil })
	if n, err := WriteFullFromBlocks(lazy, dst); n != 0 || err != io.ErrShortWrite {
		t.Errorf("WriteFull to a lazy writer = %d, %v", n, err)
	}
	wliar := WriterFunc(func(s BlockSeq) (uint64, error) { return s.NumBytes() + 1, nil })
	if _, err := WriteFullFromBlocks(wliar, dst); err != ErrBadCount {
		t.Errorf("WriteFull to a lying writer: %v", err)
	}
	// A writer that takes one byte at a time is looped over.
	var got []byte
	trickle := WriterFunc(func(s BlockSeq) (uint64, error) {
		got = append(got, s.Head().ToSlice()[0])
		return 1, nil
	})
	if n, err := WriteFullFromBlocks(trickle, seqOf([]byte("ab"), []byte("cde"))); n != 5 || err != nil || string(got) != "abcde" {
		t.Errorf("WriteFull to a trickling writer = %d, %v, %q", n, err, got)
	}
	if n, err := (ToIOReader{stuck}).Read(nil); n != 0 || err != nil {
		t.Errorf("empty Read = %d, %v", n, err)
	}
}
