package checkpoint

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/safemem"
)

// maxPagesData bounds the page data of one KindPages record.
const maxPagesData = 1 << 20

// maxPagesRuns bounds the runs of one KindPages record.
const maxPagesRuns = 4096

// zeroPage is a page of zeros to compare pages against.
var zeroPage [hostarch.PageSize]byte

// isZero reports whether b (a multiple of the page size) is all zeros.
func isZero(b []byte) bool {
	for len(b) >= hostarch.PageSize {
		if !bytes.Equal(b[:hostarch.PageSize], zeroPage[:]) {
			return false
		}
		b = b[hostarch.PageSize:]
	}
	return true
}

// pageRun is a run of pages in a KindPages record.
type pageRun struct {
	// off and n are the run's first page and length, in pages.
	off, n uint64
	// data is true for pages with data, false for resident zero pages.
	data bool
}

// PageStream writes the contents of an area of memory of a known length:
// the pages with data, and the pages that are resident but zero. Offsets
// must increase. Readers read it with Reader.ReadPages.
type PageStream struct {
	// w is the image.
	w *Writer
	// length is the area's length in bytes, a multiple of the page size.
	length uint64
	// next is the lowest offset the next run may start at.
	next uint64
	// runs and data are the pending record's runs and page data.
	runs []pageRun
	data []byte
	// dataPages and zeroPages count the pages written, for the end record.
	dataPages, zeroPages uint64
	// ended is set by End.
	ended bool
}

// Pages starts a page stream for an area of length bytes (a multiple of the
// page size). Its End must be called before any other record is written.
func (w *Writer) Pages(length uint64) *PageStream {
	return &PageStream{w: w, length: length}
}

// check validates a run of n bytes at off.
func (p *PageStream) check(off, n uint64) error {
	if p.ended {
		return errors.New("checkpoint: page stream used after End")
	}
	if !hostarch.IsPageAligned(off) || !hostarch.IsPageAligned(n) || off < p.next || off+n < off || off+n > p.length {
		return fmt.Errorf("checkpoint: bad page run [%#x, +%#x) after %#x in a stream of %#x bytes", off, n, p.next, p.length)
	}
	return nil
}

// add appends a run, merging it with the previous one when they touch.
func (p *PageStream) add(off, n uint64, data bool) {
	op, np := off>>hostarch.PageShift, n>>hostarch.PageShift
	if k := len(p.runs); k > 0 && p.runs[k-1].data == data && p.runs[k-1].off+p.runs[k-1].n == op {
		p.runs[k-1].n += np
	} else {
		p.runs = append(p.runs, pageRun{off: op, n: np, data: data})
	}
	p.next = off + n
}

// Data writes pages with data at off; len(b) must be a multiple of the page
// size.
func (p *PageStream) Data(off uint64, b []byte) error {
	if err := p.check(off, uint64(len(b))); err != nil {
		return err
	}
	for len(b) > 0 {
		room := maxPagesData - len(p.data)
		if room == 0 || len(p.runs) >= maxPagesRuns {
			if err := p.flush(); err != nil {
				return err
			}
			continue
		}
		n := min(room, len(b))
		p.add(off, uint64(n), true)
		p.data = append(p.data, b[:n]...)
		p.dataPages += uint64(n) >> hostarch.PageShift
		off += uint64(n)
		b = b[n:]
	}
	return nil
}

// Zero records n bytes of resident zero pages at off.
func (p *PageStream) Zero(off, n uint64) error {
	if err := p.check(off, n); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	if len(p.runs) >= maxPagesRuns {
		if err := p.flush(); err != nil {
			return err
		}
	}
	p.add(off, n, false)
	p.zeroPages += n >> hostarch.PageShift
	return nil
}

// flush writes the pending runs as a record.
func (p *PageStream) flush() error {
	if len(p.runs) == 0 {
		return nil
	}
	e := p.w.Encoder()
	e.Uvarint(uint64(len(p.runs)))
	for _, r := range p.runs {
		e.Uvarint(r.off)
		e.Uvarint(r.n)
		e.Bool(r.data)
	}
	e.Raw(p.data)
	p.runs = p.runs[:0]
	p.data = p.data[:0]
	return p.w.Record(KindPages, e.Bytes())
}

// End finishes the stream.
func (p *PageStream) End() error {
	if p.ended {
		return errors.New("checkpoint: page stream ended twice")
	}
	if err := p.flush(); err != nil {
		return err
	}
	p.ended = true
	e := p.w.Encoder()
	e.Uvarint(p.length)
	e.Uvarint(p.dataPages)
	e.Uvarint(p.zeroPages)
	return p.w.Record(KindPagesEnd, e.Bytes())
}

// ReadPages reads a page stream of an area of length bytes, calling data
// for each run of pages with data (b is valid only during the call) and zero
// for each run of resident zero pages, in increasing offset order.
func (r *Reader) ReadPages(length uint64, data func(off uint64, b []byte) error, zero func(off, n uint64) error) error {
	if !hostarch.IsPageAligned(length) {
		return fmt.Errorf("checkpoint: ReadPages of %#x bytes", length)
	}
	limit := length >> hostarch.PageShift
	var next, dataPages, zeroPages uint64
	for {
		kind, d, err := r.Next()
		if err != nil {
			return err
		}
		switch kind {
		case KindPages:
		case KindPagesEnd:
			l, dp, zp := d.Uvarint(), d.Uvarint(), d.Uvarint()
			if err := d.Finish(); err != nil {
				return err
			}
			if l != length || dp != dataPages || zp != zeroPages {
				return r.Fail("page stream of %#x bytes, %d data and %d zero pages ends as one of %#x bytes, %d and %d", length, dataPages, zeroPages, l, dp, zp)
			}
			return nil
		default:
			return r.Fail("page stream interrupted by a record of kind %#x", kind)
		}
		nruns := d.UvarintMax(maxPagesRuns, "run count")
		runs := make([]pageRun, 0, nruns)
		var want uint64
		for i := uint64(0); i < nruns; i++ {
			pr := pageRun{off: d.Uvarint(), n: d.Uvarint(), data: d.Bool()}
			if d.Err() != nil {
				return d.Err()
			}
			if pr.n == 0 || pr.off < next || pr.off > limit || pr.n > limit-pr.off {
				return d.Fail("page run [%d, +%d) out of order or past %d pages", pr.off, pr.n, limit)
			}
			next = pr.off + pr.n
			if pr.data {
				want += pr.n
				if want > maxPagesData>>hostarch.PageShift {
					return d.Fail("too much page data")
				}
			}
			runs = append(runs, pr)
		}
		payload := d.Raw(int(want << hostarch.PageShift))
		if err := d.Finish(); err != nil {
			return err
		}
		for _, pr := range runs {
			off, n := pr.off<<hostarch.PageShift, pr.n<<hostarch.PageShift
			if pr.data {
				if err := data(off, payload[:n]); err != nil {
					return err
				}
				payload = payload[n:]
				dataPages += pr.n
			} else {
				if err := zero(off, n); err != nil {
					return err
				}
				zeroPages += pr.n
			}
		}
	}
}

// SkipPages reads and checks a page stream of length bytes, discarding it.
func (r *Reader) SkipPages(length uint64) error {
	return r.ReadPages(length, func(uint64, []byte) error { return nil }, func(uint64, uint64) error { return nil })
}

// chunk is how much FileRange and ReaderAt read at once.
const chunk = 1 << 20

// FileRange writes to p, at stream offset off, the contents of the range fr
// of f (a memory file, or any memmap.File backed by a host file): pages
// holding data as data, resident pages that are zero as zero runs; holes
// (found with lseek SEEK_DATA/SEEK_HOLE) and pages that are zero and not
// resident (mincore) are left out. Holes are never read, so saving does not
// allocate host memory for them. The caller must hold a reference on fr and
// keep others from writing it meanwhile.
func (p *PageStream) FileRange(off uint64, f memmap.File, fr memmap.FileRange) error {
	if !hostarch.IsPageAligned(fr.Start) || !hostarch.IsPageAligned(fr.End) || fr.End < fr.Start {
		return fmt.Errorf("checkpoint: FileRange of %v", fr)
	}
	if err := p.check(off, fr.Length()); err != nil {
		return err
	}
	if fr.Length() == 0 {
		return nil
	}
	ims, err := f.MapInternal(fr, hostarch.Read)
	if err != nil {
		return fmt.Errorf("checkpoint: mapping %v: %w", fr, err)
	}
	npages := fr.Length() >> hostarch.PageShift
	resident := make([]byte, npages)
	i := uint64(0)
	for b := range ims.All {
		n := uint64(b.Len()) >> hostarch.PageShift
		mincore(b.Pointer(), b.Len(), resident[i:i+n])
		i += n
	}
	extents := dataExtents(f.FD(), fr)
	buf := make([]byte, min(uint64(chunk), fr.Length()))
	// zeroRun accumulates resident zero pages [zs, ze) (page indexes).
	var zs, ze uint64
	flushZero := func() error {
		if ze > zs {
			if err := p.Zero(off+zs<<hostarch.PageShift, (ze-zs)<<hostarch.PageShift); err != nil {
				return err
			}
		}
		zs, ze = 0, 0
		return nil
	}
	addZero := func(pg uint64) error {
		if ze == pg && ze > zs {
			ze++
			return nil
		}
		if err := flushZero(); err != nil {
			return err
		}
		zs, ze = pg, pg+1
		return nil
	}
	pg := uint64(0)
	for _, ex := range extents {
		// Resident pages before the extent read as zero.
		for ; pg < ex.Start; pg++ {
			if resident[pg] != 0 {
				if err := addZero(pg); err != nil {
					return err
				}
			}
		}
		for pg < ex.End {
			n := min(ex.End-pg, uint64(len(buf))>>hostarch.PageShift)
			b := buf[:n<<hostarch.PageShift]
			src := ims.DropFirst64(pg << hostarch.PageShift).TakeFirst64(uint64(len(b)))
			if _, err := safemem.CopySeq(safemem.BlockSeqOf(safemem.BlockFromSafeSlice(b)), src); err != nil {
				return fmt.Errorf("checkpoint: reading %v at page %d: %w", fr, pg, err)
			}
			// Group consecutive non-zero pages into one Data call.
			for i := uint64(0); i < n; {
				page := b[i<<hostarch.PageShift : (i+1)<<hostarch.PageShift]
				if isZero(page) {
					if resident[pg+i] != 0 {
						if err := addZero(pg + i); err != nil {
							return err
						}
					}
					i++
					continue
				}
				j := i + 1
				for j < n && !isZero(b[j<<hostarch.PageShift:(j+1)<<hostarch.PageShift]) {
					j++
				}
				if err := flushZero(); err != nil {
					return err
				}
				if err := p.Data(off+(pg+i)<<hostarch.PageShift, b[i<<hostarch.PageShift:j<<hostarch.PageShift]); err != nil {
					return err
				}
				i = j
			}
			pg += n
		}
	}
	for ; pg < npages; pg++ {
		if resident[pg] != 0 {
			if err := addZero(pg); err != nil {
				return err
			}
		}
	}
	return flushZero()
}

// pageRange is a range of page indexes.
type pageRange struct{ Start, End uint64 }

// dataExtents returns the page ranges of fr that hold data in the file fd
// (relative to fr.Start, in pages), by lseek SEEK_DATA and SEEK_HOLE. If the
// file cannot tell, all of fr is data.
func dataExtents(fd int, fr memmap.FileRange) []pageRange {
	all := []pageRange{{0, fr.Length() >> hostarch.PageShift}}
	if fd < 0 {
		return all
	}
	var out []pageRange
	pos := int64(fr.Start)
	end := int64(fr.End)
	for pos < end {
		ds, err := unix.Seek(fd, pos, unix.SEEK_DATA)
		if err == unix.ENXIO {
			break // no data after pos
		}
		if err != nil {
			return all
		}
		if ds >= end {
			break
		}
		he, err := unix.Seek(fd, ds, unix.SEEK_HOLE)
		if err != nil {
			return all
		}
		he = min(he, end)
		s := uint64(ds) &^ uint64(hostarch.PageMask)
		e := (uint64(he) + hostarch.PageMask) &^ uint64(hostarch.PageMask)
		out = append(out, pageRange{(s - fr.Start) >> hostarch.PageShift, (e - fr.Start) >> hostarch.PageShift})
		pos = int64(e)
	}
	return out
}

// mincore sets vec[i] to 1 if page i of the n bytes at p is resident, else
// 0 (all 0 if the host refuses).
func mincore(p unsafe.Pointer, n int, vec []byte) {
	if n == 0 {
		return
	}
	_, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(p), uintptr(n), uintptr(unsafe.Pointer(&vec[0])))
	if errno != 0 {
		clear(vec)
		return
	}
	for i := range vec {
		vec[i] &= 1
	}
}

// ReaderAt writes to p, at stream offset off, size bytes read from r at 0:
// pages that are not all zero as data (the last, partial page padded with
// zeros). Nothing is known of residency: zero pages are left out.
func (p *PageStream) ReaderAt(off uint64, r io.ReaderAt, size uint64) error {
	rounded := (size + hostarch.PageMask) &^ uint64(hostarch.PageMask)
	if rounded < size {
		return fmt.Errorf("checkpoint: ReaderAt of %#x bytes", size)
	}
	if err := p.check(off, rounded); err != nil {
		return err
	}
	buf := make([]byte, min(uint64(chunk), rounded))
	for pos := uint64(0); pos < size; {
		n := min(uint64(len(buf)), rounded-pos)
		b := buf[:n]
		want := min(n, size-pos)
		m, err := r.ReadAt(b[:want], int64(pos))
		if uint64(m) < want {
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("checkpoint: reading at %#x: %w", pos+uint64(m), err)
		}
		clear(b[want:])
		for i := uint64(0); i < n; {
			if isZero(b[i : i+hostarch.PageSize]) {
				i += hostarch.PageSize
				continue
			}
			j := i + hostarch.PageSize
			for j < n && !isZero(b[j:j+hostarch.PageSize]) {
				j += hostarch.PageSize
			}
			if err := p.Data(off+pos+i, b[i:j]); err != nil {
				return err
			}
			i = j
		}
		pos += n
	}
	return nil
}

// BlockSink returns the data and zero functions of ReadPages that write a
// stream into dst (host memory, such as internal mappings of a memory file;
// stream offset o is byte o of dst): data is copied, and resident zero
// pages are committed (madvise MADV_POPULATE_WRITE, else written with
// zeros) so that they are resident again.
func BlockSink(dst safemem.BlockSeq) (data func(off uint64, b []byte) error, zero func(off, n uint64) error) {
	data = func(off uint64, b []byte) error {
		if off > dst.NumBytes() || uint64(len(b)) > dst.NumBytes()-off {
			return fmt.Errorf("checkpoint: page data at %#x past the end of %#x bytes", off, dst.NumBytes())
		}
		_, err := safemem.CopySeq(dst.DropFirst64(off).TakeFirst64(uint64(len(b))), safemem.BlockSeqOf(safemem.BlockFromSafeSlice(b)))
		return err
	}
	zero = func(off, n uint64) error {
		if off > dst.NumBytes() || n > dst.NumBytes()-off {
			return fmt.Errorf("checkpoint: zero pages at %#x past the end of %#x bytes", off, dst.NumBytes())
		}
		seq := dst.DropFirst64(off).TakeFirst64(n)
		for b := range seq.All {
			if err := unix.Madvise(b.ToSlice(), unix.MADV_POPULATE_WRITE); err != nil {
				if _, err := safemem.Zero(b); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return data, zero
}
