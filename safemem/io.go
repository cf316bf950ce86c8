package safemem

import "io"

// Reader reads into blocks.
type Reader interface {
	// ReadToBlocks reads up to dsts.NumBytes() bytes into dsts and returns
	// how many it read; like io.Reader, a short read comes with an error
	// (io.EOF at the end).
	ReadToBlocks(dsts BlockSeq) (uint64, error)
}

// Writer writes from blocks.
type Writer interface {
	// WriteFromBlocks writes up to srcs.NumBytes() bytes from srcs and
	// returns how many it wrote.
	WriteFromBlocks(srcs BlockSeq) (uint64, error)
}

// ReaderFunc implements Reader with a function.
type ReaderFunc func(dsts BlockSeq) (uint64, error)

// ReadToBlocks implements Reader.
func (f ReaderFunc) ReadToBlocks(dsts BlockSeq) (uint64, error) { return f(dsts) }

// WriterFunc implements Writer with a function.
type WriterFunc func(srcs BlockSeq) (uint64, error)

// WriteFromBlocks implements Writer.
func (f WriterFunc) WriteFromBlocks(srcs BlockSeq) (uint64, error) { return f(srcs) }

// BlockSeqReader reads from Blocks, consuming them.
type BlockSeqReader struct {
	Blocks BlockSeq
}

// ReadToBlocks implements Reader.
func (r *BlockSeqReader) ReadToBlocks(dsts BlockSeq) (uint64, error) {
	if r.Blocks.IsEmpty() {
		return 0, io.EOF
	}
	n, err := CopySeq(dsts, r.Blocks)
	r.Blocks = r.Blocks.DropFirst64(n)
	return n, err
}

// BlockSeqWriter writes to Blocks, consuming them.
type BlockSeqWriter struct {
	Blocks BlockSeq
}

// WriteFromBlocks implements Writer.
func (w *BlockSeqWriter) WriteFromBlocks(srcs BlockSeq) (uint64, error) {
	if w.Blocks.IsEmpty() && !srcs.IsEmpty() {
		return 0, io.ErrShortWrite
	}
	n, err := CopySeq(w.Blocks, srcs)
	w.Blocks = w.Blocks.DropFirst64(n)
	if err == nil && n < srcs.NumBytes() {
		err = io.ErrShortWrite
	}
	return n, err
}

// ReadFullToBlocks reads from r until dsts is full or r fails.
func ReadFullToBlocks(r Reader, dsts BlockSeq) (uint64, error) {
	var done uint64
	for !dsts.IsEmpty() {
		n, err := r.ReadToBlocks(dsts)
		done += n
		dsts = dsts.DropFirst64(n)
		if err != nil {
			return done, err
		}
		if n == 0 {
			return done, io.ErrNoProgress
		}
	}
	return done, nil
}

// WriteFullFromBlocks writes all of srcs to w unless w fails.
func WriteFullFromBlocks(w Writer, srcs BlockSeq) (uint64, error) {
	var done uint64
	for !srcs.IsEmpty() {
		n, err := w.WriteFromBlocks(srcs)
		done += n
		srcs = srcs.DropFirst64(n)
		if err != nil {
			return done, err
		}
		if n == 0 {
			return done, io.ErrShortWrite
		}
	}
	return done, nil
}

// FromIOReader makes an io.Reader a Reader.
type FromIOReader struct {
	Reader io.Reader
}

// ReadToBlocks implements Reader. Unsafe blocks are read through a bounce
// buffer so that a host fault is reported, not raised in the io.Reader.
func (r FromIOReader) ReadToBlocks(dsts BlockSeq) (uint64, error) {
	var done uint64
	for !dsts.IsEmpty() {
		b := dsts.Head()
		var n int
		var err error
		if !b.needSafecopy {
			n, err = r.Reader.Read(b.ToSlice())
		} else {
			buf := make([]byte, min(b.Len(), 64<<10))
			n, err = r.Reader.Read(buf)
			if m, cerr := Copy(b, BlockFromSafeSlice(buf[:n])); cerr != nil {
				return done + uint64(m), cerr
			}
		}
		done += uint64(n)
		dsts = dsts.DropFirst64(uint64(n))
		if err != nil {
			return done, err
		}
		if n < b.Len() {
			return done, nil
		}
	}
	return done, nil
}

// FromIOWriter makes an io.Writer a Writer.
type FromIOWriter struct {
	Writer io.Writer
}

// WriteFromBlocks implements Writer.
func (w FromIOWriter) WriteFromBlocks(srcs BlockSeq) (uint64, error) {
	var done uint64
	for !srcs.IsEmpty() {
		b := srcs.Head()
		var n int
		var err error
		if !b.needSafecopy {
			n, err = w.Writer.Write(b.ToSlice())
		} else {
			buf := make([]byte, min(b.Len(), 64<<10))
			m, cerr := Copy(BlockFromSafeSlice(buf), b)
			n, err = w.Writer.Write(buf[:m])
			if err == nil && cerr != nil {
				err = cerr
			}
		}
		done += uint64(n)
		srcs = srcs.DropFirst64(uint64(n))
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// ToIOReader makes a Reader an io.Reader.
type ToIOReader struct {
	Reader Reader
}

// Read implements io.Reader.
func (r ToIOReader) Read(p []byte) (int, error) {
	n, err := r.Reader.ReadToBlocks(BlockSeqOf(BlockFromSafeSlice(p)))
	return int(n), err
}

// ToIOWriter makes a Writer an io.Writer.
type ToIOWriter struct {
	Writer Writer
}

// Write implements io.Writer.
func (w ToIOWriter) Write(p []byte) (int, error) {
	n, err := WriteFullFromBlocks(w.Writer, BlockSeqOf(BlockFromSafeSlice(p)))
	return int(n), err
}
