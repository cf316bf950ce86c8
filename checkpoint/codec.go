package checkpoint

import (
	"encoding/binary"
	"fmt"
)

// Encoder builds a record's payload. The zero value is empty and ready.
type Encoder struct {
	// buf is the payload so far.
	buf []byte
}

// Reset empties e, keeping its buffer.
func (e *Encoder) Reset() { e.buf = e.buf[:0] }

// Bytes returns the payload; it aliases e's buffer until the next change.
func (e *Encoder) Bytes() []byte { return e.buf }

// Len returns the payload's length so far.
func (e *Encoder) Len() int { return len(e.buf) }

// Uvarint appends x as an unsigned varint.
func (e *Encoder) Uvarint(x uint64) { e.buf = binary.AppendUvarint(e.buf, x) }

// U64 appends x as 8 little-endian bytes.
func (e *Encoder) U64(x uint64) { e.buf = binary.LittleEndian.AppendUint64(e.buf, x) }

// U32 appends x as 4 little-endian bytes.
func (e *Encoder) U32(x uint32) { e.buf = binary.LittleEndian.AppendUint32(e.buf, x) }

// Byte appends b.
func (e *Encoder) Byte(b byte) { e.buf = append(e.buf, b) }

// Bool appends b as one byte, 0 or 1.
func (e *Encoder) Bool(b bool) {
	if b {
		e.Byte(1)
	} else {
		e.Byte(0)
	}
}

// Blob appends b with its length as a varint before it.
func (e *Encoder) Blob(b []byte) {
	e.Uvarint(uint64(len(b)))
	e.buf = append(e.buf, b...)
}

// String appends s as a Blob.
func (e *Encoder) String(s string) {
	e.Uvarint(uint64(len(s)))
	e.buf = append(e.buf, s...)
}

// Raw appends b without a length.
func (e *Encoder) Raw(b []byte) { e.buf = append(e.buf, b...) }

// Decoder parses a record's payload. Errors are sticky: after the first,
// every read returns a zero value, and Err and Finish report it. Errors wrap
// ErrCorrupt.
type Decoder struct {
	// buf is the payload; off the next byte to read.
	buf []byte
	off int
	// kind is the record's kind, for error messages.
	kind Kind
	// err is the first error.
	err error
}

// NewDecoder returns a Decoder of payload, for parsing payloads outside a
// Reader (tests).
func NewDecoder(kind Kind, payload []byte) *Decoder { return &Decoder{buf: payload, kind: kind} }

// Kind returns the record's kind.
func (d *Decoder) Kind() Kind { return d.kind }

// Fail records an error (the first one wins) and returns it.
func (d *Decoder) Fail(format string, args ...any) error {
	if d.err == nil {
		d.err = fmt.Errorf("%w: record of kind %#x: %s", ErrCorrupt, d.kind, fmt.Sprintf(format, args...))
	}
	return d.err
}

// Err returns the first error.
func (d *Decoder) Err() error { return d.err }

// Remaining returns the number of bytes not yet read.
func (d *Decoder) Remaining() int {
	if d.err != nil {
		return 0
	}
	return len(d.buf) - d.off
}

// Finish returns the first error, or an error if bytes remain unread.
func (d *Decoder) Finish() error {
	if d.err == nil && d.off != len(d.buf) {
		d.Fail("%d trailing bytes", len(d.buf)-d.off)
	}
	return d.err
}

// Uvarint reads an unsigned varint.
func (d *Decoder) Uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	x, n := binary.Uvarint(d.buf[d.off:])
	if n <= 0 {
		d.Fail("bad varint at byte %d", d.off)
		return 0
	}
	d.off += n
	return x
}

// UvarintMax reads an unsigned varint and requires it to be at most max.
func (d *Decoder) UvarintMax(max uint64, what string) uint64 {
	x := d.Uvarint()
	if x > max {
		d.Fail("%s %d exceeds %d", what, x, max)
		return 0
	}
	return x
}

// raw returns the next n bytes, or nil after an error.
func (d *Decoder) raw(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.buf)-d.off {
		d.Fail("%d bytes wanted at byte %d, %d left", n, d.off, len(d.buf)-d.off)
		return nil
	}
	b := d.buf[d.off : d.off+n]
	d.off += n
	return b
}

// U64 reads 8 little-endian bytes.
func (d *Decoder) U64() uint64 {
	if b := d.raw(8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

// U32 reads 4 little-endian bytes.
func (d *Decoder) U32() uint32 {
	if b := d.raw(4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

// Byte reads one byte.
func (d *Decoder) Byte() byte {
	if b := d.raw(1); b != nil {
		return b[0]
	}
	return 0
}

// Bool reads a byte that must be 0 or 1.
func (d *Decoder) Bool() bool {
	switch d.Byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.Fail("bad boolean")
	return false
}

// Blob reads a length-prefixed byte string of at most max bytes. The result
// aliases the payload: it is valid until the Reader's next record.
func (d *Decoder) Blob(max int) []byte {
	n := d.Uvarint()
	if n > uint64(max) {
		d.Fail("byte string of %d bytes exceeds %d", n, max)
		return nil
	}
	return d.raw(int(n))
}

// String reads a length-prefixed string of at most max bytes.
func (d *Decoder) String(max int) string { return string(d.Blob(max)) }

// Raw reads n bytes (aliasing the payload).
func (d *Decoder) Raw(n int) []byte { return d.raw(n) }
