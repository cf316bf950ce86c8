package loader

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/mm"
	"github.com/vmspace/vmspace/pgalloc"
)

var ctx = context.Background()

// newMF returns a fresh memory file, destroyed at the end of the test.
func newMF(t testing.TB) *pgalloc.MemoryFile {
	t.Helper()
	mf, err := pgalloc.New(pgalloc.Options{})
	if err != nil {
		t.Fatalf("pgalloc.New: %v", err)
	}
	t.Cleanup(mf.Destroy)
	return mf
}

// newMM returns a manager on a fresh memory file and checks, at the end of
// the test, that releasing it returns every page and that no host
// descriptor leaked.
func newMM(t testing.TB) *mm.MemoryManager {
	t.Helper()
	mf := newMF(t)
	fds := countFDs(t)
	m := mm.New(mm.Options{MemoryFile: mf})
	t.Cleanup(func() {
		if err := m.CheckInvariants(); err != nil {
			t.Errorf("CheckInvariants: %v", err)
		}
		if m.Users() > 0 {
			m.DecUsers(ctx)
		}
		if n := mf.UsageAllocated(); n != 0 {
			t.Errorf("memory file still has %d bytes allocated after release", n)
		}
		if n := countFDs(t); n != fds {
			t.Errorf("%d host descriptors open after release, %d before", n, fds)
		}
	})
	return m
}

// countFDs counts the process's open descriptors.
func countFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("reading /proc/self/fd: %v", err)
	}
	return len(ents)
}

// elfFile describes a synthetic ELF64 file.
type elfFile struct {
	// hdr is the ELF header; zero Phentsize/Phnum/Phoff/Ehsize are filled
	// in by bytes() unless keepHdr is set.
	hdr     elf.Header64
	keepHdr bool
	// phdrs are written at hdr.Phoff.
	phdrs []elf.Prog64
	// size is the file size (at least the end of the headers).
	size int
	// fill is the byte the file is filled with where nothing else is.
	fill byte
	// at are bytes written at given offsets (after the headers, so they
	// may overwrite them).
	at map[int][]byte
}

// bytes encodes f.
func (f elfFile) bytes() []byte {
	h := f.hdr
	if !f.keepHdr {
		h.Phoff = ehdrSize
		h.Phentsize = phdrSize
		h.Phnum = uint16(len(f.phdrs))
		h.Ehsize = ehdrSize
	}
	var hb, pb bytes.Buffer
	binary.Write(&hb, binary.LittleEndian, &h)
	binary.Write(&pb, binary.LittleEndian, f.phdrs)
	n := max(f.size, ehdrSize+pb.Len())
	if h.Phoff < 1<<20 {
		n = max(n, int(h.Phoff)+pb.Len())
	}
	b := bytes.Repeat([]byte{f.fill}, n)
	copy(b, hb.Bytes())
	if h.Phoff < 1<<20 {
		copy(b[h.Phoff:], pb.Bytes())
	}
	for off, v := range f.at {
		copy(b[off:], v)
	}
	return b[:max(f.size, 1)]
}

// header returns a valid x86-64 ELF header of type typ.
func header(typ elf.Type, entry uint64) elf.Header64 {
	var h elf.Header64
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	h.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	h.Type = uint16(typ)
	h.Machine = uint16(elf.EM_X86_64)
	h.Version = uint32(elf.EV_CURRENT)
	h.Entry = entry
	return h
}

// load returns a PT_LOAD header.
func load(flags elf.ProgFlag, off, vaddr, filesz, memsz uint64) elf.Prog64 {
	return elf.Prog64{Type: uint32(elf.PT_LOAD), Flags: uint32(flags), Off: off, Vaddr: vaddr, Paddr: vaddr, Filesz: filesz, Memsz: memsz, Align: hostarch.PageSize}
}

// gnuStack returns a PT_GNU_STACK header.
func gnuStack(flags elf.ProgFlag) elf.Prog64 {
	return elf.Prog64{Type: uint32(elf.PT_GNU_STACK), Flags: uint32(flags), Align: 16}
}

// interpHdr returns a PT_INTERP header for a path string stored at off
// (with its NUL: n bytes).
func interpHdr(off, n uint64) elf.Prog64 {
	return elf.Prog64{Type: uint32(elf.PT_INTERP), Flags: uint32(elf.PF_R), Off: off, Vaddr: off, Filesz: n, Memsz: n, Align: 1}
}

// staticExec is a small valid static ET_EXEC: a text segment at 0x400000
// covering the headers, a data segment at 0x401000 with 0x100 bytes of
// 0xab from the file and bss to 0x404000, and a non-executable stack. The
// file is 0x2000 bytes; everything not otherwise written is 0xcd, so that
// the loader must zero the data page past p_filesz.
func staticExec() elfFile {
	return elfFile{
		hdr: header(elf.ET_EXEC, 0x400100),
		phdrs: []elf.Prog64{
			load(elf.PF_R|elf.PF_X, 0, 0x400000, 0x1000, 0x1000),
			load(elf.PF_R|elf.PF_W, 0x1000, 0x401000, 0x100, 0x3000),
			gnuStack(elf.PF_R | elf.PF_W),
		},
		size: 0x2000,
		fill: 0xcd,
		at:   map[int][]byte{0x1000: bytes.Repeat([]byte{0xab}, 0x100)},
	}
}

// pieExec is a valid ET_DYN program with PT_INTERP naming interp.
func pieExec(interp string) elfFile {
	path := append([]byte(interp), 0)
	return elfFile{
		hdr: header(elf.ET_DYN, 0x1100),
		phdrs: []elf.Prog64{
			{Type: uint32(elf.PT_PHDR), Flags: uint32(elf.PF_R), Off: ehdrSize, Vaddr: ehdrSize, Filesz: 4 * phdrSize, Memsz: 4 * phdrSize, Align: 8},
			interpHdr(0x800, uint64(len(path))),
			load(elf.PF_R|elf.PF_X, 0, 0, 0x1200, 0x1200),
			load(elf.PF_R|elf.PF_W, 0x1200, 0x2200, 0x10, 0x2000),
		},
		size: 0x1210,
		at:   map[int][]byte{0x800: path},
	}
}

// interpDyn is a valid ET_DYN interpreter (like ld.so: linked at 0, no
// PT_INTERP), entry at 0x1000.
func interpDyn() elfFile {
	return elfFile{
		hdr: header(elf.ET_DYN, 0x1000),
		phdrs: []elf.Prog64{
			load(elf.PF_R, 0, 0, 0x800, 0x800),
			load(elf.PF_R|elf.PF_X, 0x1000, 0x1000, 0x100, 0x100),
			load(elf.PF_R|elf.PF_W, 0x2000, 0x3000, 0x80, 0x1800),
		},
		size: 0x2080,
	}
}

// writeExe writes b to an executable temporary file and returns its path.
func writeExe(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// stack is a decoded initial stack.
type stack struct {
	argc       uint64
	argv, envp []string
	argvPtrs   []uint64
	envpPtrs   []uint64
	auxv       []mm.AuxEntry
	// auxEnd is the address just past AT_NULL.
	auxEnd hostarch.Addr
}

// auxval returns the value of key, and whether it is present.
func (s *stack) auxval(key uint64) (uint64, bool) {
	for _, e := range s.auxv {
		if e.Key == key {
			return e.Value, true
		}
	}
	return 0, false
}

// readU64 reads a word of m at addr.
func readU64(t testing.TB, m *mm.MemoryManager, addr hostarch.Addr) uint64 {
	t.Helper()
	var b [8]byte
	if _, err := m.CopyIn(ctx, addr, b[:], mm.IOOpts{}); err != nil {
		t.Fatalf("CopyIn(%v): %v", addr, err)
	}
	return binary.LittleEndian.Uint64(b[:])
}

// readCString reads a NUL-terminated string of m at addr.
func readCString(t testing.TB, m *mm.MemoryManager, addr hostarch.Addr) string {
	t.Helper()
	var out []byte
	for {
		var b [1]byte
		if _, err := m.CopyIn(ctx, addr, b[:], mm.IOOpts{}); err != nil {
			t.Fatalf("CopyIn(%v): %v", addr, err)
		}
		if b[0] == 0 {
			return string(out)
		}
		out = append(out, b[0])
		addr++
		if len(out) > 1<<20 {
			t.Fatalf("unterminated string")
		}
	}
}

// readBytes reads n bytes of m at addr.
func readBytes(t testing.TB, m *mm.MemoryManager, addr hostarch.Addr, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := m.CopyIn(ctx, addr, b, mm.IOOpts{}); err != nil {
		t.Fatalf("CopyIn(%v, %d): %v", addr, n, err)
	}
	return b
}

// decodeStack decodes the initial stack at sp the way a program's start
// code does.
func decodeStack(t testing.TB, m *mm.MemoryManager, sp hostarch.Addr) *stack {
	t.Helper()
	s := &stack{argc: readU64(t, m, sp)}
	p := sp + 8
	if s.argc > 1<<20 {
		t.Fatalf("argc %d", s.argc)
	}
	for range s.argc {
		v := readU64(t, m, p)
		s.argvPtrs = append(s.argvPtrs, v)
		s.argv = append(s.argv, readCString(t, m, hostarch.Addr(v)))
		p += 8
	}
	if v := readU64(t, m, p); v != 0 {
		t.Fatalf("argv[argc] = %#x, want NULL", v)
	}
	p += 8
	for {
		v := readU64(t, m, p)
		p += 8
		if v == 0 {
			break
		}
		s.envpPtrs = append(s.envpPtrs, v)
		s.envp = append(s.envp, readCString(t, m, hostarch.Addr(v)))
	}
	for {
		k, v := readU64(t, m, p), readU64(t, m, p+8)
		p += 16
		if k == AT_NULL {
			break
		}
		s.auxv = append(s.auxv, mm.AuxEntry{Key: k, Value: v})
		if len(s.auxv) > 100 {
			t.Fatalf("auxv without AT_NULL")
		}
	}
	s.auxEnd = p
	return s
}
