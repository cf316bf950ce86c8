package loader

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"golang.org/x/sys/unix"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/hostfile"
)

// Sizes and limits of Linux's ELF loader.
const (
	// binprmBufSize is how much of the program Linux reads before choosing
	// a binary format (BINPRM_BUF_SIZE).
	binprmBufSize = 256
	// ehdrSize is sizeof(Elf64_Ehdr).
	ehdrSize = 64
	// phdrSize is sizeof(Elf64_Phdr), the only e_phentsize accepted.
	phdrSize = 56
	// maxPhdrBytes bounds the program header table, as Linux's
	// load_elf_phdrs: 64 KiB, so at most 1170 headers.
	maxPhdrBytes = 65536
	// pathMax bounds PT_INTERP (PATH_MAX).
	pathMax = 4096
	// maxLFSFileSize is MAX_LFS_FILESIZE: mappings must end below it.
	maxLFSFileSize = math.MaxInt64
)

// Error is a failed Load: the errno execve(2) gives (or the one Linux's
// check produces, for failures Linux only detects after the point of no
// return), and why. errors.Is(err, unix.ENOEXEC) and the like work on it,
// as does errors.Is with the underlying error, if any.
type Error struct {
	// Path is the file the error is about: the program or its interpreter.
	Path string
	// Msg says what is wrong.
	Msg string
	// Errno is the error number.
	Errno unix.Errno
	// Err is the underlying error (a failed read, open or mmap), or nil.
	Err error
}

// Error implements error: "loader: PATH: MSG[: ERR] [ERRNO]".
func (e *Error) Error() string {
	path := e.Path
	if path == "" {
		path = `""`
	}
	s := "loader: " + path + ": " + e.Msg
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s + " [" + unix.ErrnoName(e.Errno) + "]"
}

// Unwrap returns Errno and Err.
func (e *Error) Unwrap() []error {
	if e.Err != nil {
		return []error{e.Errno, e.Err}
	}
	return []error{e.Errno}
}

// errorf returns an *Error with a formatted message.
func errorf(path string, errno unix.Errno, format string, args ...any) *Error {
	return &Error{Path: path, Msg: fmt.Sprintf(format, args...), Errno: errno}
}

// wrapErr returns an *Error for an underlying error err, whose errno is err's
// own (or EIO if it has none).
func wrapErr(path string, err error, format string, args ...any) *Error {
	return &Error{Path: path, Msg: fmt.Sprintf(format, args...), Errno: errnoOf(err), Err: err}
}

// errnoOf returns the errno err wraps, or EIO.
func errnoOf(err error) unix.Errno {
	var en unix.Errno
	if errors.As(err, &en) {
		return en
	}
	return unix.EIO
}

// image is an opened and parsed ELF file.
type image struct {
	// path is the host path it was opened by.
	path string
	// fd is the open file, through which segments are mapped.
	fd *hostfile.FD
	// hdr is the ELF header.
	hdr elf.Header64
	// phdrs are the program headers, e_phnum of them.
	phdrs []elf.Prog64
	// interp marks the program's interpreter (whose format errors are
	// ELIBBAD rather than ENOEXEC).
	interp bool
}

// formatErrno is the errno of a format error in img.
func (img *image) formatErrno() unix.Errno {
	if img.interp {
		return unix.ELIBBAD
	}
	return unix.ENOEXEC
}

// elfRead reads exactly len(buf) bytes at off, as Linux's elf_read: a short
// read is EIO.
func elfRead(fd *hostfile.FD, buf []byte, off uint64) error {
	if off > math.MaxInt64 {
		return unix.EINVAL
	}
	n, err := fd.ReadAt(buf, int64(off))
	if n == len(buf) {
		return nil
	}
	if err != nil && err != io.EOF {
		return err
	}
	return fmt.Errorf("short read: %d of %d bytes at %#x: %w", n, len(buf), off, unix.EIO)
}

// parseHeader checks the ELF header of the program (in its first
// binprmBufSize bytes, zero-padded) or of the interpreter (its first
// ehdrSize bytes), in Linux's order: magic, type, machine; then class and
// byte order, which Linux does not check itself.
func (img *image) parseHeader(buf []byte) error {
	errno := img.formatErrno()
	if !bytes.HasPrefix(buf, []byte(elf.ELFMAG)) {
		if !img.interp && bytes.HasPrefix(buf, []byte("#!")) {
			return errorf(img.path, errno, "interpreter scripts (#!) are not supported")
		}
		return errorf(img.path, errno, "not an ELF file")
	}
	if _, err := binary.Decode(buf[:ehdrSize], binary.LittleEndian, &img.hdr); err != nil {
		return errorf(img.path, errno, "bad ELF header: %v", err)
	}
	h := &img.hdr
	// Linux checks the interpreter's type only after the point of no
	// return; check it with the rest.
	if t := elf.Type(h.Type); t != elf.ET_EXEC && t != elf.ET_DYN {
		return errorf(img.path, errno, "ELF type %v is neither ET_EXEC nor ET_DYN", t)
	}
	if m := elf.Machine(h.Machine); m != elf.EM_X86_64 {
		return errorf(img.path, errno, "ELF machine %v is not EM_X86_64", m)
	}
	if c := elf.Class(h.Ident[elf.EI_CLASS]); c != elf.ELFCLASS64 {
		return errorf(img.path, errno, "ELF class %v is not ELFCLASS64", c)
	}
	if d := elf.Data(h.Ident[elf.EI_DATA]); d != elf.ELFDATA2LSB {
		return errorf(img.path, errno, "ELF data encoding %v is not little-endian", d)
	}
	return nil
}

// readPhdrs reads the program headers, as Linux's load_elf_phdrs.
func (img *image) readPhdrs() error {
	errno := img.formatErrno()
	h := &img.hdr
	if h.Phentsize != phdrSize {
		return errorf(img.path, errno, "e_phentsize %d is not %d", h.Phentsize, phdrSize)
	}
	size := uint64(h.Phnum) * phdrSize
	if size == 0 {
		return errorf(img.path, errno, "no program headers")
	}
	if size > maxPhdrBytes {
		return errorf(img.path, errno, "too many program headers (%d, at most %d)", h.Phnum, maxPhdrBytes/phdrSize)
	}
	buf := make([]byte, size)
	if err := elfRead(img.fd, buf, h.Phoff); err != nil {
		return &Error{Path: img.path, Msg: fmt.Sprintf("reading %d program headers at %#x", h.Phnum, h.Phoff), Errno: errno, Err: err}
	}
	img.phdrs = make([]elf.Prog64, h.Phnum)
	if _, err := binary.Decode(buf, binary.LittleEndian, img.phdrs); err != nil {
		return errorf(img.path, errno, "decoding program headers: %v", err)
	}
	return nil
}

// interpreterPath returns the path named by the first PT_INTERP and true,
// or false if there is none, with Linux's checks: 2 to PATH_MAX bytes (ENOEXEC), read
// in full (EIO), NUL-terminated (ENOEXEC). Like Linux, the path ends at its
// first NUL.
func (img *image) interpreterPath() (string, bool, error) {
	for i := range img.phdrs {
		ph := &img.phdrs[i]
		if elf.ProgType(ph.Type) != elf.PT_INTERP {
			continue
		}
		if ph.Filesz > pathMax || ph.Filesz < 2 {
			return "", true, errorf(img.path, unix.ENOEXEC, "PT_INTERP size %d is not within [2, %d]", ph.Filesz, pathMax)
		}
		buf := make([]byte, ph.Filesz)
		if err := elfRead(img.fd, buf, ph.Off); err != nil {
			return "", true, wrapErr(img.path, err, "reading PT_INTERP at %#x", ph.Off)
		}
		if buf[len(buf)-1] != 0 {
			return "", true, errorf(img.path, unix.ENOEXEC, "PT_INTERP is not NUL-terminated")
		}
		return string(buf[:bytes.IndexByte(buf, 0)]), true, nil
	}
	return "", false, nil
}

// executableStack reports whether the last PT_GNU_STACK asks for an
// executable stack. Without one the stack is not executable: on x86-64,
// READ_IMPLIES_EXEC is no longer implied for 64-bit programs (Linux 5.8+).
func (img *image) executableStack() bool {
	exec := false
	for i := range img.phdrs {
		if ph := &img.phdrs[i]; elf.ProgType(ph.Type) == elf.PT_GNU_STACK {
			exec = elf.ProgFlag(ph.Flags)&elf.PF_X != 0
		}
	}
	return exec
}

// loads returns the PT_LOAD headers in table order.
func (img *image) loads() []*elf.Prog64 {
	var out []*elf.Prog64
	for i := range img.phdrs {
		if elf.ProgType(img.phdrs[i].Type) == elf.PT_LOAD {
			out = append(out, &img.phdrs[i])
		}
	}
	return out
}

// checkLoads validates the PT_LOAD segments against taskSize before
// anything is mapped (see the package documentation). The program's
// failures have the errno Linux's own check would give; the
// interpreter's are ELIBBAD.
func (img *image) checkLoads(taskSize hostarch.Addr) error {
	fail := func(errno unix.Errno, format string, args ...any) error {
		if img.interp {
			errno = unix.ELIBBAD
		}
		return errorf(img.path, errno, format, args...)
	}
	loads := img.loads()
	if len(loads) == 0 {
		return fail(unix.EINVAL, "no PT_LOAD segment")
	}
	ts := uint64(taskSize)
	for i, ph := range loads {
		if ph.Filesz > ph.Memsz {
			return fail(unix.EINVAL, "PT_LOAD %d: p_filesz %#x > p_memsz %#x", i, ph.Filesz, ph.Memsz)
		}
		if ph.Vaddr >= ts || ph.Memsz > ts || ts-ph.Memsz < ph.Vaddr {
			return fail(unix.EINVAL, "PT_LOAD %d: [%#x, +%#x) is beyond TASK_SIZE %#x", i, ph.Vaddr, ph.Memsz, ts)
		}
		if ph.Filesz == 0 {
			continue
		}
		if ph.Off%hostarch.PageSize != ph.Vaddr%hostarch.PageSize {
			return fail(unix.EINVAL, "PT_LOAD %d: p_offset %#x and p_vaddr %#x differ modulo the page size", i, ph.Off, ph.Vaddr)
		}
		if ph.Off > maxLFSFileSize || ph.Filesz > maxLFSFileSize-ph.Off {
			return fail(unix.EOVERFLOW, "PT_LOAD %d: file range [%#x, +%#x) overflows", i, ph.Off, ph.Filesz)
		}
	}
	// No two segments may share a byte of memory.
	for i, a := range loads {
		for _, b := range loads[i+1:] {
			if a.Memsz != 0 && b.Memsz != 0 && a.Vaddr < b.Vaddr+b.Memsz && b.Vaddr < a.Vaddr+a.Memsz {
				return fail(unix.ENOEXEC, "PT_LOAD segments [%#x, +%#x) and [%#x, +%#x) overlap", a.Vaddr, a.Memsz, b.Vaddr, b.Memsz)
			}
		}
	}
	return nil
}

// totalMappingSize is Linux's total_mapping_size: from the page of the
// lowest PT_LOAD to the end of the highest.
func totalMappingSize(loads []*elf.Prog64) uint64 {
	var lo uint64 = math.MaxUint64
	var hi uint64
	for _, ph := range loads {
		lo = min(lo, hostarch.PageRoundDown(ph.Vaddr))
		hi = max(hi, ph.Vaddr+ph.Memsz)
	}
	if len(loads) == 0 || hi < lo {
		return 0
	}
	return hi - lo
}

// maximumAlignment is Linux's maximum_alignment: the largest power-of-two
// p_align of the PT_LOADs, at least a page.
func maximumAlignment(loads []*elf.Prog64) uint64 {
	var a uint64
	for _, ph := range loads {
		if p := ph.Align; p != 0 && p&(p-1) == 0 {
			a = max(a, p)
		}
	}
	r, ok := hostarch.PageRoundUp(a)
	if !ok {
		return a
	}
	return r
}

// makeProt is Linux's make_prot: the segment's PF_R/PF_W/PF_X as PROT_*
// bits (no READ_IMPLIES_EXEC for 64-bit programs).
func makeProt(flags uint32) int {
	f := elf.ProgFlag(flags)
	prot := 0
	if f&elf.PF_R != 0 {
		prot |= unix.PROT_READ
	}
	if f&elf.PF_W != 0 {
		prot |= unix.PROT_WRITE
	}
	if f&elf.PF_X != 0 {
		prot |= unix.PROT_EXEC
	}
	return prot
}
