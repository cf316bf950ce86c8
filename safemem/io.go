package safemem

import (
	"errors"
	"io"
	"sync"
)

// Reader reads into Blocks.
type Reader interface {
	// ReadToBlocks reads up to dsts.NumBytes() bytes into dsts, in order,
	// and returns the number of bytes read. Like io.Reader it may read
	// fewer bytes without an error, and returns a non-nil error only with
	// fewer bytes than requested: io.EOF when the input is exhausted, a
	// *FaultError when a Block of dsts faulted (the bytes before it are
	// counted and stored). Reading into an empty dsts returns (0, nil).
	ReadToBlocks(dsts BlockSeq) (uint64, error)
}

// Writer writes from Blocks.
type Writer interface {
	// WriteFromBlocks writes up to srcs.NumBytes() bytes from srcs, in
	// order, and returns the number of bytes written. Unlike io.Writer it
	// may write fewer bytes without an error (as a non-blocking write(2)
	// would); WriteFullFromBlocks loops until all are written. A non-nil
	// error comes only with fewer bytes than requested: io.EOF when the
	// output is exhausted, a *FaultError when a Block of srcs faulted.
	WriteFromBlocks(srcs BlockSeq) (uint64, error)
}

// ReaderFunc implements Reader with a function.
type ReaderFunc func(dsts BlockSeq) (uint64, error)

// ReadToBlocks implements Reader by calling f.
func (f ReaderFunc) ReadToBlocks(dsts BlockSeq) (uint64, error) { return f(dsts) }

// WriterFunc implements Writer with a function.
type WriterFunc func(srcs BlockSeq) (uint64, error)

// WriteFromBlocks implements Writer by calling f.
func (f WriterFunc) WriteFromBlocks(srcs BlockSeq) (uint64, error) { return f(srcs) }

// maxEmptyReads is how many times in a row ReadFullToBlocks accepts (0,
// nil) from a Reader before giving up with io.ErrNoProgress.
const maxEmptyReads = 100

// ErrBadCount is returned by the functions of this package that call a
// Reader, Writer, io.Reader or io.Writer that claimed to transfer more
// bytes than it was given room for.
var ErrBadCount = errors.New("safemem: reader or writer returned an invalid count")

// ReadFullToBlocks reads from r into dsts until dsts is full or r returns
// an error, and returns the number of bytes read. It returns fewer than
// dsts.NumBytes() bytes only with an error: r's own (io.EOF if r ran out;
// a *FaultError's Offset is moved to count from the start of this call),
// or io.ErrNoProgress if r returned no bytes and no error many times in a
// row. An io.EOF that comes with the last bytes needed is dropped.
func ReadFullToBlocks(r Reader, dsts BlockSeq) (uint64, error) {
	var done uint64
	empty := 0
	for !dsts.IsEmpty() {
		n, err := r.ReadToBlocks(dsts)
		if n > dsts.NumBytes() {
			return done, ErrBadCount
		}
		if err != nil {
			if err == io.EOF && n == dsts.NumBytes() {
				return done + n, nil
			}
			return done + n, shiftFault(err, done)
		}
		done += n
		dsts = dsts.DropFirst64(n)
		if n > 0 {
			empty = 0
		} else if empty++; empty >= maxEmptyReads {
			return done, io.ErrNoProgress
		}
	}
	return done, nil
}

// WriteFullFromBlocks writes all of srcs to w unless w returns an error, and
// returns the number of bytes written. It returns fewer than
// srcs.NumBytes() bytes only with an error: w's own (a *FaultError's
// Offset is moved to count from the start of this call), or
// io.ErrShortWrite if w wrote nothing and returned no error.
func WriteFullFromBlocks(w Writer, srcs BlockSeq) (uint64, error) {
	var done uint64
	for !srcs.IsEmpty() {
		n, err := w.WriteFromBlocks(srcs)
		if n > srcs.NumBytes() {
			return done, ErrBadCount
		}
		if err != nil {
			return done + n, shiftFault(err, done)
		}
		if n == 0 {
			return done, io.ErrShortWrite
		}
		done += n
		srcs = srcs.DropFirst64(n)
	}
	return done, nil
}

// shiftFault returns err, or, if err is a *FaultError, a copy of it with
// its Offset increased by off (err may be shared, so it is not changed).
func shiftFault(err error, off uint64) error {
	fe, ok := err.(*FaultError)
	if !ok || off == 0 {
		return err
	}
	shifted := *fe
	shifted.Offset += off
	return &shifted
}

// BlockSeqReader is a Reader that reads from Blocks, consuming them.
type BlockSeqReader struct {
	// Blocks are the bytes not yet read. ReadToBlocks drops what it reads
	// from the front. A BlockSeqReader must not be used by several
	// goroutines at once.
	Blocks BlockSeq
}

// ReadToBlocks implements Reader. It returns (0, io.EOF) once Blocks is
// exhausted, and a short count without error when Blocks holds fewer
// bytes than dsts.
func (r *BlockSeqReader) ReadToBlocks(dsts BlockSeq) (uint64, error) {
	if dsts.IsEmpty() {
		return 0, nil
	}
	if r.Blocks.IsEmpty() {
		return 0, io.EOF
	}
	n, err := CopySeq(dsts, r.Blocks)
	r.Blocks = r.Blocks.DropFirst64(n)
	return n, err
}

// BlockSeqWriter is a Writer that writes to Blocks, consuming them.
type BlockSeqWriter struct {
	// Blocks is the room not yet written. WriteFromBlocks drops what it
	// writes from the front. A BlockSeqWriter must not be used by several
	// goroutines at once.
	Blocks BlockSeq
}

// WriteFromBlocks implements Writer. When Blocks has less room than srcs
// holds, it fills Blocks and returns io.EOF with the short count.
func (w *BlockSeqWriter) WriteFromBlocks(srcs BlockSeq) (uint64, error) {
	if srcs.IsEmpty() {
		return 0, nil
	}
	n, err := CopySeq(w.Blocks, srcs)
	w.Blocks = w.Blocks.DropFirst64(n)
	if err == nil && n < srcs.NumBytes() {
		err = io.EOF
	}
	return n, err
}

// bounceSize is the size of the buffers through which the io adapters
// move the bytes of Blocks that need safecopy.
const bounceSize = 32 << 10

// bouncePool holds *[bounceSize]byte buffers.
var bouncePool = sync.Pool{New: func() any { return new([bounceSize]byte) }}

// FromIOReader is a Reader that reads from an io.Reader.
//
// It reads into a Block that needs safecopy through a bounce buffer, so
// that a host fault is reported rather than raised inside the io.Reader;
// bytes read from the io.Reader past a faulting byte are lost.
type FromIOReader struct {
	// Reader is the source. It is called once per Block (or per bounce
	// buffer) until it returns fewer bytes than asked or an error.
	Reader io.Reader
}

// ReadToBlocks implements Reader. It stops after the first short read of
// the io.Reader, so that it never waits for more input once it has some.
func (r FromIOReader) ReadToBlocks(dsts BlockSeq) (uint64, error) {
	var done uint64
	var bounce *[bounceSize]byte
	defer func() {
		if bounce != nil {
			bouncePool.Put(bounce)
		}
	}()
	for !dsts.IsEmpty() {
		b := dsts.head
		var want, n int
		var err error
		if !b.needSafecopy {
			want = b.length
			n, err = r.Reader.Read(b.ToSlice())
		} else {
			if bounce == nil {
				bounce = bouncePool.Get().(*[bounceSize]byte)
			}
			want = min(b.length, bounceSize)
			n, err = r.Reader.Read(bounce[:want])
			if n >= 0 && n <= want {
				if m, cerr := Copy(b, BlockFromSafeSlice(bounce[:n])); cerr != nil {
					done += uint64(m)
					return done, withOffset(cerr, done)
				}
			}
		}
		if n < 0 || n > want {
			return done, ErrBadCount
		}
		done += uint64(n)
		if err != nil {
			return done, err
		}
		if n < want {
			break
		}
		dsts = dsts.DropFirst64(uint64(n))
	}
	return done, nil
}

// FromIOWriter is a Writer that writes to an io.Writer.
//
// It writes from a Block that needs safecopy through a bounce buffer, so
// that a host fault is reported rather than raised inside the io.Writer;
// the bytes before a faulting byte are written first.
type FromIOWriter struct {
	// Writer is the destination. It is called once per Block (or per
	// bounce buffer).
	Writer io.Writer
}

// WriteFromBlocks implements Writer.
func (w FromIOWriter) WriteFromBlocks(srcs BlockSeq) (uint64, error) {
	var done uint64
	var bounce *[bounceSize]byte
	defer func() {
		if bounce != nil {
			bouncePool.Put(bounce)
		}
	}()
	for !srcs.IsEmpty() {
		b := srcs.head
		var want, n int
		var err error
		if !b.needSafecopy {
			want = b.length
			n, err = w.Writer.Write(b.ToSlice())
		} else {
			if bounce == nil {
				bounce = bouncePool.Get().(*[bounceSize]byte)
			}
			var cerr error
			want, cerr = Copy(BlockFromSafeSlice(bounce[:min(b.length, bounceSize)]), b)
			if want > 0 {
				n, err = w.Writer.Write(bounce[:want])
			}
			if err == nil && n == want && cerr != nil {
				done += uint64(n)
				return done, withOffset(cerr, done)
			}
		}
		if n < 0 || n > want {
			return done, ErrBadCount
		}
		done += uint64(n)
		if err != nil {
			return done, err
		}
		if n < want {
			return done, io.ErrShortWrite
		}
		srcs = srcs.DropFirst64(uint64(n))
	}
	return done, nil
}

// ToIOReader is an io.Reader that reads from a Reader.
type ToIOReader struct {
	// Reader is the source.
	Reader Reader
}

// Read implements io.Reader.
func (r ToIOReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, err := r.Reader.ReadToBlocks(BlockSeqOf(BlockFromSafeSlice(p)))
	if n > uint64(len(p)) {
		return 0, ErrBadCount
	}
	return int(n), err
}

// ToIOWriter is an io.Writer that writes to a Writer.
type ToIOWriter struct {
	// Writer is the destination.
	Writer Writer
}

// Write implements io.Writer. It writes all of p unless the Writer fails,
// as io.Writer requires.
func (w ToIOWriter) Write(p []byte) (int, error) {
	n, err := WriteFullFromBlocks(w.Writer, BlockSeqOf(BlockFromSafeSlice(p)))
	return int(n), err
}
