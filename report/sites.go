package report

import (
	"cmp"
	"context"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/mm"
)

// Site is a place in the program that makes a memory system call: the
// call, the code that made it, and the code that called that (the return
// address on the stack, where there is one), each named by function where
// the file's symbols say, else by file and offset.
type Site struct {
	// Name is the system call ("mmap").
	Name string `json:"name"`
	// Where is the instruction that made the call ("libc.so.6 __mmap+0x27"
	// or "prog+0x1139"), "?" if it is not in a file mapping.
	Where string `json:"where"`
	// Caller is the code that called Where's function, "" if not known
	// (no return address found on the stack, or the fast path, where
	// vmspace does not see the registers).
	Caller string `json:"caller"`
	// Count, Errors and TotalNS are as in Syscall.
	Count   uint64 `json:"count"`
	Errors  uint64 `json:"errors"`
	TotalNS int64  `json:"total_ns"`
}

// maxSites is how many sites the report keeps (the most time-consuming).
const maxSites = 50

// CallSite is where a memory system call came from, as the runner saw it:
// the address space, the program counter after the system call
// instruction, and the stack pointer (0 if unknown).
type CallSite struct {
	MM     *mm.MemoryManager
	PC, SP uint64
}

// rawSite is a site as addresses, within one process's image.
type rawSite struct {
	name string
	pc   uint64
	// word is the word at the stack pointer (0 if unknown), which names
	// the caller if it is a return address.
	word uint64
}

// siteKey identifies a Site.
type siteKey struct{ name, where, caller string }

// sites gathers the call sites of a run. One goroutine at a time uses it
// (the Collector's).
type sites struct {
	ctx context.Context
	// byPID caches each live process's raw sites: an image's code stays
	// where it is until the process execs or ends (which clears it).
	byPID map[int]map[rawSite]*Site
	// all are the sites by name.
	all map[siteKey]*Site
	// syms are the symbol tables of the files read so far, by path.
	syms map[string]*symTable
	// notReturn are stack words found not to be return addresses (at
	// most maxNotReturn, then cleared), so that a call made where the
	// stack holds a data word is not checked again and again.
	notReturn map[notReturnKey]bool
}

// notReturnKey is a stack word in a process's image.
type notReturnKey struct {
	pid  int
	word uint64
}

// maxNotReturn bounds sites.notReturn.
const maxNotReturn = 4096

func newSites(ctx context.Context) *sites {
	return &sites{ctx: ctx, byPID: make(map[int]map[rawSite]*Site), all: make(map[siteKey]*Site),
		syms: make(map[string]*symTable), notReturn: make(map[notReturnKey]bool)}
}

// forget drops the raw sites of pid, whose image is gone (and the words
// known not to be return addresses, of every process: a cache).
func (s *sites) forget(pid int) {
	delete(s.byPID, pid)
	clear(s.notReturn)
}

// add counts a call of pid named name from cs, and returns the time it
// took to name a site seen for the first time (reading the files' symbol
// tables), 0 if the site was known: that is collection work, counted in
// the report's CollectNS.
func (s *sites) add(pid int, name string, cs CallSite, d time.Duration, failed bool) (naming time.Duration) {
	if cs.MM == nil || cs.PC < 2 {
		return 0
	}
	raw := rawSite{name: name, pc: cs.PC}
	if cs.SP != 0 {
		raw.word = stackWord(cs.MM, cs.SP)
	}
	m := s.byPID[pid]
	if m == nil {
		m = make(map[rawSite]*Site)
		s.byPID[pid] = m
	}
	st := m[raw]
	if nr := (notReturnKey{pid, raw.word}); st == nil && (s.notReturn[nr] || !isReturnAddress(cs.MM, raw.word)) {
		if len(s.notReturn) >= maxNotReturn {
			clear(s.notReturn)
		}
		s.notReturn[nr] = true
		// No caller: the call is kept under no word, so that a
		// changing word (a local variable) adds no entry per value.
		raw.word = 0
		st = m[raw]
	}
	if st == nil {
		t0 := time.Now()
		defer func() { naming = time.Since(t0) }()
		// The system call instruction is the two bytes before pc.
		k := siteKey{name: name, where: s.name(cs.MM, cs.PC-2)}
		if raw.word != 0 {
			k.caller = s.name(cs.MM, raw.word-1)
		}
		if st = s.all[k]; st == nil {
			st = &Site{Name: k.name, Where: k.where, Caller: k.caller}
			s.all[k] = st
		}
		m[raw] = st
	}
	st.Count++
	if failed {
		st.Errors++
	}
	st.TotalNS += int64(d)
	return 0
}

// stackWord returns the word at sp, 0 if it is not there to read
// (mm.Peek: nothing is faulted in).
func stackWord(m *mm.MemoryManager, sp uint64) uint64 {
	var w [8]byte
	if !m.Peek(hostarch.Addr(sp), w[:]) {
		return 0
	}
	return binary.LittleEndian.Uint64(w[:])
}

// isReturnAddress reports whether ret, the word at the stack pointer at a
// system call, is a return address: it points into an executable file
// mapping just after a call instruction. It is not where the system call
// was made inline, with no call to a wrapper just before. It reads only
// memory already there (mm.Peek).
func isReturnAddress(m *mm.MemoryManager, ret uint64) bool {
	if ret < 8 {
		return false
	}
	if _, _, exec, ok := m.FileAt(context.Background(), hostarch.Addr(ret)); !ok || !exec {
		return false
	}
	var code [7]byte
	return m.Peek(hostarch.Addr(ret-7), code[:]) && followsCall(code)
}

// followsCall reports whether the 7 bytes before an address end with an
// x86-64 call instruction: call rel32 (e8), or an indirect call (ff /2)
// through a register, a register with an 8- or 32-bit displacement, or
// rip-relative.
func followsCall(b [7]byte) bool {
	modrm := func(i int) (mod, reg, rm byte) { return b[i] >> 6, b[i] >> 3 & 7, b[i] & 7 }
	if b[2] == 0xe8 {
		return true
	}
	// ff /2 with its ModRM byte at i, ending at the address.
	ind := func(i int) bool {
		if b[i-1] != 0xff {
			return false
		}
		mod, reg, rm := modrm(i)
		if reg != 2 {
			return false
		}
		n := 7 - i // the ModRM byte and what follows it
		switch {
		case mod == 3:
			return n == 1
		case mod == 1:
			return n == 2+boolInt(rm == 4)
		case mod == 2:
			return n == 5+boolInt(rm == 4)
		case mod == 0 && rm == 5:
			return n == 5
		case mod == 0:
			return n == 1+boolInt(rm == 4)
		}
		return false
	}
	for i := 1; i < 7; i++ {
		if ind(i) {
			return true
		}
	}
	return false
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// name names the code at addr of m: "file function+0xoff" or "file+0xoff"
// (file being the base name of the mapped file), or "?" outside file
// mappings.
func (s *sites) name(m *mm.MemoryManager, addr uint64) string {
	path, off, _, ok := m.FileAt(s.ctx, hostarch.Addr(addr))
	if !ok {
		return "?"
	}
	t := s.syms[path]
	if t == nil {
		t = readSymbols(path)
		s.syms[path] = t
	}
	base := filepath.Base(path)
	if fn, at, ok := t.lookup(off); ok {
		if at == 0 {
			return base + " " + fn
		}
		return fmt.Sprintf("%s %s+%#x", base, fn, at)
	}
	return fmt.Sprintf("%s+%#x", base, off)
}

// symTable is a file's function symbols, as file offsets.
type symTable struct {
	// funcs are sorted by start.
	funcs []symbol
}

type symbol struct {
	name       string
	start, end uint64 // file offsets; end == start for a symbol of no size
}

// readSymbols reads the function symbols of the ELF file at path (the
// symbol table if it was not stripped, and the dynamic symbols), placed
// at their file offsets by the loadable segments. A file that cannot be
// read gives an empty table.
func readSymbols(path string) (t *symTable) {
	t = &symTable{}
	// The file is the program's to choose: only a regular file is read
	// (a FIFO put at the path would block the open), and a parse that
	// panics gives an empty table.
	defer func() {
		if recover() != nil {
			t = &symTable{}
		}
	}()
	file, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return t
	}
	defer file.Close()
	if st, err := file.Stat(); err != nil || !st.Mode().IsRegular() {
		return t
	}
	f, err := elf.NewFile(file)
	if err != nil {
		return t
	}
	var loads []*elf.Prog
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD {
			loads = append(loads, p)
		}
	}
	// at places a function symbol at its file offset.
	at := func(name string, value, size uint64) {
		if value == 0 || name == "" {
			return
		}
		for _, p := range loads {
			if value >= p.Vaddr && value < p.Vaddr+p.Filesz {
				off := value - p.Vaddr + p.Off
				t.funcs = append(t.funcs, symbol{name: name, start: off, end: off + size})
				return
			}
		}
	}
	// The program's code is x86-64: a file of another class or byte
	// order holds none of it, and is named by offset.
	if f.Class != elf.ELFCLASS64 || f.ByteOrder != binary.LittleEndian {
		return t
	}
	for _, sec := range f.Sections {
		if sec.Type == elf.SHT_SYMTAB || sec.Type == elf.SHT_DYNSYM {
			funcSymbols64(f, sec, at)
		}
	}
	sortSymbols(t.funcs)
	return t
}

// sortSymbols sorts funcs by start; at one address, the largest first,
// and among aliases a public name (no leading underscore), the shortest,
// then by name, which lookup then uses.
func sortSymbols(funcs []symbol) {
	slices.SortFunc(funcs, func(a, b symbol) int {
		// Early returns: most symbols differ by start, and the name
		// comparisons are for aliases only.
		if c := cmp.Compare(a.start, b.start); c != 0 {
			return c
		}
		if c := cmp.Compare(b.end, a.end); c != 0 {
			return c
		}
		if c := cmp.Compare(boolInt(strings.HasPrefix(a.name, "_")), boolInt(strings.HasPrefix(b.name, "_"))); c != 0 {
			return c
		}
		return cmp.Or(cmp.Compare(len(a.name), len(b.name)), cmp.Compare(a.name, b.name))
	})
}

// funcSymbols64 calls at for each function symbol of sec, a symbol table
// of a 64-bit little-endian ELF file, read directly from the section:
// debug/elf's Symbols decodes every symbol into a new string, which for a
// large library (libpython's 20,000 symbols) costs several milliseconds
// at every run's end. The names here are substrings of one copy of the
// string table. A malformed table gives the symbols read before the fault.
func funcSymbols64(f *elf.File, sec *elf.Section, at func(name string, value, size uint64)) {
	const symSize = 24 // sizeof(Elf64_Sym)
	if int(sec.Link) <= 0 || int(sec.Link) >= len(f.Sections) {
		return
	}
	data, err := sec.Data()
	if err != nil {
		return
	}
	strData, err := f.Sections[sec.Link].Data()
	if err != nil {
		return
	}
	strtab := string(strData)
	// Entry 0 is the undefined symbol.
	for i := symSize; i+symSize <= len(data); i += symSize {
		e := data[i : i+symSize]
		if elf.ST_TYPE(e[4]) != elf.STT_FUNC {
			continue
		}
		nameOff := int(binary.LittleEndian.Uint32(e[0:4]))
		if nameOff == 0 || nameOff >= len(strtab) {
			continue
		}
		name := strtab[nameOff:]
		if n := strings.IndexByte(name, 0); n >= 0 {
			name = name[:n]
		}
		at(name, binary.LittleEndian.Uint64(e[8:16]), binary.LittleEndian.Uint64(e[16:24]))
	}
}

// lookup returns the function holding file offset off and off's offset in
// it: the last symbol starting at or before off whose size covers off
// (or that has no size and is the last before off).
func (t *symTable) lookup(off uint64) (string, uint64, bool) {
	i, _ := slices.BinarySearchFunc(t.funcs, off, func(s symbol, off uint64) int { return cmp.Compare(s.start, off+1) })
	// t.funcs[:i] start at or before off.
	for j := i - 1; j >= 0 && j >= i-8; j-- {
		s := t.funcs[j]
		if off < s.end || (s.end == s.start && j == i-1) {
			// The first symbol starting at s.start (a sized one, the
			// first name) names it.
			for j > 0 && t.funcs[j-1].start == s.start && t.funcs[j-1].end == s.end {
				j--
			}
			return t.funcs[j].name, off - s.start, true
		}
	}
	return "", 0, false
}

// list returns the sites, the most time-consuming first, at most maxSites.
func (s *sites) list() []Site {
	out := make([]Site, 0, len(s.all))
	for _, st := range s.all {
		out = append(out, *st)
	}
	slices.SortFunc(out, func(a, b Site) int {
		return cmp.Or(cmp.Compare(b.TotalNS, a.TotalNS), cmp.Compare(b.Count, a.Count),
			cmp.Compare(a.Name, b.Name), cmp.Compare(a.Where, b.Where), cmp.Compare(a.Caller, b.Caller))
	})
	return out[:min(len(out), maxSites)]
}
