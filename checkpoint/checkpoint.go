// Package checkpoint is vmspace's checkpoint image format: a stream of typed,
// checksummed records, compressed with zstd, that package mm (address spaces)
// and the codecs of the objects they map (files, shm segments) write and read.
//
// # Layout
//
// An image starts with a 16-byte header, not compressed:
//
//	offset 0   8 bytes  magic "VMSPCKPT"
//	offset 8   uint32   format version (Version), little-endian
//	offset 12  uint32   flags: bit 0 set (zstd); other bits zero
//
// The rest of the image is one zstd stream (with zstd's own frame checksums)
// holding records:
//
//	uint32  kind     (little-endian)
//	uint32  length   of the payload, at most MaxRecord
//	length  payload
//	uint32  CRC-32C  of (sequence number as uint64, kind, length, payload)
//
// The sequence number is the record's index in the image, starting at 0; it
// is not stored, so a record that is dropped, repeated or moved fails its
// checksum. The last record is KindEnd, whose payload holds the number of
// records before it and the sum of their payload lengths; after it the
// stream must end. A reader therefore refuses an image that is not one
// (bad magic), of another version, truncated (no end record), or corrupted
// (a bad checksum, a bad zstd stream, an end record that disagrees), with an
// error wrapping ErrNotImage, ErrVersion, ErrTruncated or ErrCorrupt.
//
// Payloads are built with Encoder and parsed with Decoder: unsigned varints,
// fixed-size integers, and length-prefixed bytes. A Decoder never panics on
// bad input: reads past the end, oversized lengths and trailing bytes become
// errors wrapping ErrCorrupt.
//
// Memory contents travel in page streams (PageStream, Reader.ReadPages):
// runs of pages with data, and runs of resident pages that are zero, which
// cost a few bytes whatever their length. Pages that hold nothing (never
// touched, or zero and not resident) are not written at all.
//
// Kinds below KindMM belong to this package, [KindMM, KindCodec) to package
// mm, [KindCodec, KindApp) to object codecs and from KindApp on to
// applications.
package checkpoint

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/klauspost/compress/zstd"
)

// Magic starts every image.
const Magic = "VMSPCKPT"

// Version is the format version this package writes and reads.
const Version uint32 = 1

// headerSize is the size of the uncompressed header.
const headerSize = 16

// flagZstd marks the record stream as zstd-compressed.
const flagZstd uint32 = 1

// MaxRecord bounds a record's payload. Writers split larger data (page
// streams do); readers refuse larger records before allocating.
const MaxRecord = 4 << 20

// maxWindow bounds the zstd window a reader accepts, and so its memory.
const maxWindow = 8 << 20

// Kind is a record's type.
type Kind uint32

// Record kinds.
const (
	// KindEnd ends an image.
	KindEnd Kind = 0
	// KindPages carries runs of a page stream.
	KindPages Kind = 1
	// KindPagesEnd ends a page stream.
	KindPagesEnd Kind = 2

	// KindMM is the first kind of package mm's records.
	KindMM Kind = 0x100
	// KindCodec is the first kind of object codecs' records.
	KindCodec Kind = 0x1000
	// KindApp is the first kind of applications' records.
	KindApp Kind = 0x10000
)

// Errors that a Reader's errors wrap.
var (
	// ErrNotImage: the stream does not start with Magic.
	ErrNotImage = errors.New("checkpoint: not a vmspace checkpoint image")
	// ErrVersion: the image has a version or flags this package does not
	// know.
	ErrVersion = errors.New("checkpoint: unsupported image version")
	// ErrTruncated: the image ends early.
	ErrTruncated = errors.New("checkpoint: truncated image")
	// ErrCorrupt: the image is damaged or inconsistent.
	ErrCorrupt = errors.New("checkpoint: corrupt image")
)

// castagnoli is the CRC-32C table.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// recordCRC returns the checksum of a record.
func recordCRC(seq uint64, hdr []byte, payload []byte) uint32 {
	var s [8]byte
	binary.LittleEndian.PutUint64(s[:], seq)
	c := crc32.Update(0, castagnoli, s[:])
	c = crc32.Update(c, castagnoli, hdr)
	return crc32.Update(c, castagnoli, payload)
}

// Writer writes an image. It is not safe for concurrent use.
type Writer struct {
	// zw compresses records into the underlying writer.
	zw *zstd.Encoder
	// seq is the number of records written so far.
	seq uint64
	// bytes is the sum of the payload lengths written so far.
	bytes uint64
	// err is the first error; every later call returns it.
	err error
	// closed is set by Close.
	closed bool
	// enc is the Encoder handed out by Encoder, reused between records.
	enc Encoder
}

// NewWriter writes the header to w and returns a Writer of records. Close
// must be called to finish the image (it does not close w).
func NewWriter(w io.Writer) (*Writer, error) {
	var hdr [headerSize]byte
	copy(hdr[:], Magic)
	binary.LittleEndian.PutUint32(hdr[8:], Version)
	binary.LittleEndian.PutUint32(hdr[12:], flagZstd)
	if _, err := w.Write(hdr[:]); err != nil {
		return nil, fmt.Errorf("checkpoint: writing the header: %w", err)
	}
	zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderCRC(true), zstd.WithWindowSize(1<<20))
	if err != nil {
		return nil, fmt.Errorf("checkpoint: starting compression: %w", err)
	}
	return &Writer{zw: zw}, nil
}

// Encoder returns an empty Encoder for the next record's payload; it stays
// valid until the next call of Encoder.
func (w *Writer) Encoder() *Encoder {
	w.enc.Reset()
	return &w.enc
}

// Record writes one record. kind must not be KindEnd (Close writes it) and
// the payload must be at most MaxRecord bytes.
func (w *Writer) Record(kind Kind, payload []byte) error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return errors.New("checkpoint: Record after Close")
	}
	if kind == KindEnd {
		return errors.New("checkpoint: Record of KindEnd")
	}
	return w.record(kind, payload)
}

func (w *Writer) record(kind Kind, payload []byte) error {
	if len(payload) > MaxRecord {
		w.err = fmt.Errorf("checkpoint: record of kind %#x has %d bytes, more than %d", kind, len(payload), MaxRecord)
		return w.err
	}
	var hdr [8]byte
	binary.LittleEndian.PutUint32(hdr[0:], uint32(kind))
	binary.LittleEndian.PutUint32(hdr[4:], uint32(len(payload)))
	var trailer [4]byte
	binary.LittleEndian.PutUint32(trailer[:], recordCRC(w.seq, hdr[:], payload))
	for _, b := range [][]byte{hdr[:], payload, trailer[:]} {
		if _, err := w.zw.Write(b); err != nil {
			w.err = fmt.Errorf("checkpoint: writing: %w", err)
			return w.err
		}
	}
	w.seq++
	w.bytes += uint64(len(payload))
	return nil
}

// Close writes the end record and finishes the compressed stream. It does
// not close the underlying writer. After an error the image is incomplete
// (a reader refuses it) and Close only releases the compressor.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	if w.err != nil {
		w.zw.Close()
		return w.err
	}
	var e Encoder
	e.U64(w.seq)
	e.U64(w.bytes)
	if err := w.record(KindEnd, e.Bytes()); err != nil {
		w.zw.Close()
		return err
	}
	if err := w.zw.Close(); err != nil {
		w.err = fmt.Errorf("checkpoint: finishing compression: %w", err)
		return w.err
	}
	return nil
}

// Reader reads an image. It is not safe for concurrent use. Close releases
// its decompressor.
type Reader struct {
	// zr decompresses the record stream.
	zr *zstd.Decoder
	// seq is the number of records read so far.
	seq uint64
	// bytes is the sum of the payload lengths read so far.
	bytes uint64
	// buf holds the current record's payload; decoders alias it.
	buf []byte
	// dec is the Decoder of the current record.
	dec Decoder
	// ended is set once the end record has been read and checked.
	ended bool
	// err is the first error; every later Next returns it.
	err error
}

// NewReader reads and checks the header of the image in r and returns a
// Reader of its records.
func NewReader(r io.Reader) (*Reader, error) {
	var hdr [headerSize]byte
	n, err := io.ReadFull(r, hdr[:])
	if err != nil {
		if n >= len(Magic) && string(hdr[:len(Magic)]) != Magic {
			return nil, fmt.Errorf("%w (bad magic %q)", ErrNotImage, hdr[:len(Magic)])
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			if n == 0 {
				return nil, fmt.Errorf("%w: empty stream", ErrTruncated)
			}
			return nil, fmt.Errorf("%w: %d bytes of header", ErrTruncated, n)
		}
		return nil, fmt.Errorf("checkpoint: reading the header: %w", err)
	}
	if string(hdr[:len(Magic)]) != Magic {
		return nil, fmt.Errorf("%w (bad magic %q)", ErrNotImage, hdr[:len(Magic)])
	}
	if v := binary.LittleEndian.Uint32(hdr[8:]); v != Version {
		return nil, fmt.Errorf("%w %d (this build reads version %d)", ErrVersion, v, Version)
	}
	if f := binary.LittleEndian.Uint32(hdr[12:]); f != flagZstd {
		return nil, fmt.Errorf("%w: unknown flags %#x", ErrVersion, f)
	}
	zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(maxWindow),
		zstd.WithDecoderMaxMemory(maxWindow), zstd.WithDecoderLowmem(true))
	if err != nil {
		return nil, fmt.Errorf("checkpoint: starting decompression: %w", err)
	}
	return &Reader{zr: zr}, nil
}

// Close releases the decompressor. It does not close the underlying
// reader.
func (r *Reader) Close() {
	if r.zr != nil {
		r.zr.Close()
		r.zr = nil
	}
}

// streamError converts an error of the decompressed stream into an image
// error.
func streamError(err error, what string) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("%w: the stream ends before the end record (reading %s)", ErrTruncated, what)
	}
	return fmt.Errorf("%w: decompressing %s: %v", ErrCorrupt, what, err)
}

// Next reads the next record and returns its kind and a Decoder of its
// payload, valid until the next call. At the end of the image it checks the
// end record and returns KindEnd (with an empty Decoder); calls after that
// are an error.
func (r *Reader) Next() (Kind, *Decoder, error) {
	if r.err != nil {
		return 0, nil, r.err
	}
	if r.ended {
		r.err = fmt.Errorf("%w: read past the end record", ErrCorrupt)
		return 0, nil, r.err
	}
	if r.zr == nil {
		r.err = errors.New("checkpoint: Next after Close")
		return 0, nil, r.err
	}
	var hdr [8]byte
	if _, err := io.ReadFull(r.zr, hdr[:]); err != nil {
		r.err = streamError(err, fmt.Sprintf("record %d", r.seq))
		return 0, nil, r.err
	}
	kind := Kind(binary.LittleEndian.Uint32(hdr[0:]))
	n := binary.LittleEndian.Uint32(hdr[4:])
	if n > MaxRecord {
		r.err = fmt.Errorf("%w: record %d (kind %#x) claims %d bytes, more than %d", ErrCorrupt, r.seq, kind, n, MaxRecord)
		return 0, nil, r.err
	}
	if cap(r.buf) < int(n)+4 {
		r.buf = make([]byte, int(n)+4)
	}
	buf := r.buf[:int(n)+4]
	if _, err := io.ReadFull(r.zr, buf); err != nil {
		r.err = streamError(err, fmt.Sprintf("record %d (kind %#x)", r.seq, kind))
		return 0, nil, r.err
	}
	payload := buf[:n]
	if got, want := recordCRC(r.seq, hdr[:], payload), binary.LittleEndian.Uint32(buf[n:]); got != want {
		r.err = fmt.Errorf("%w: record %d (kind %#x): checksum mismatch", ErrCorrupt, r.seq, kind)
		return 0, nil, r.err
	}
	if kind == KindEnd {
		d := Decoder{buf: payload, kind: kind}
		count, total := d.U64(), d.U64()
		if err := d.Finish(); err != nil {
			r.err = err
			return 0, nil, r.err
		}
		if count != r.seq || total != r.bytes {
			r.err = fmt.Errorf("%w: the end record counts %d records of %d bytes, the image has %d of %d", ErrCorrupt, count, total, r.seq, r.bytes)
			return 0, nil, r.err
		}
		var one [1]byte
		if m, err := r.zr.Read(one[:]); m != 0 || (err != nil && err != io.EOF) {
			if err != nil {
				r.err = fmt.Errorf("%w: after the end record: %v", ErrCorrupt, err)
			} else {
				r.err = fmt.Errorf("%w: data after the end record", ErrCorrupt)
			}
			return 0, nil, r.err
		}
		r.ended = true
		r.dec = Decoder{kind: KindEnd}
		return KindEnd, &r.dec, nil
	}
	r.seq++
	r.bytes += uint64(n)
	r.dec = Decoder{buf: payload, kind: kind}
	return kind, &r.dec, nil
}

// Expect reads the next record and requires it to be of kind want.
func (r *Reader) Expect(want Kind) (*Decoder, error) {
	kind, d, err := r.Next()
	if err != nil {
		return nil, err
	}
	if kind != want {
		return nil, r.Fail("expected a record of kind %#x, found kind %#x", want, kind)
	}
	return d, nil
}

// Fail records a consumer's finding that the image is inconsistent: it
// returns an error wrapping ErrCorrupt, which later calls of Next return
// too.
func (r *Reader) Fail(format string, args ...any) error {
	err := fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
	if r.err == nil {
		r.err = err
	}
	return err
}

// Ended reports whether the end record has been read.
func (r *Reader) Ended() bool { return r.ended }
