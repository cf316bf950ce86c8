package mm

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/hostfile"
	"github.com/vmspace/vmspace/memmap"
	"golang.org/x/sys/unix"
)

// coreNote is one note of a core file.
type coreNote struct {
	name string
	typ  uint32
	desc []byte
}

// parseNotes splits a PT_NOTE segment.
func parseNotes(t *testing.T, b []byte) []coreNote {
	t.Helper()
	var out []coreNote
	align := func(n int) int { return (n + 3) &^ 3 }
	for len(b) > 0 {
		if len(b) < 12 {
			t.Fatalf("truncated note header")
		}
		nsz, dsz, typ := int(binary.LittleEndian.Uint32(b)), int(binary.LittleEndian.Uint32(b[4:])), binary.LittleEndian.Uint32(b[8:])
		b = b[12:]
		if len(b) < align(nsz)+dsz {
			t.Fatalf("truncated note")
		}
		n := coreNote{name: strings.TrimRight(string(b[:nsz]), "\x00"), typ: typ}
		b = b[align(nsz):]
		n.desc = b[:dsz]
		b = b[min(len(b), align(dsz)):]
		out = append(out, n)
	}
	return out
}

// elfHeaderFile returns a host file that starts with an ELF header.
func elfHeaderFile(t *testing.T) string {
	data := make([]byte, 3*hostarch.PageSize)
	copy(data, "\x7fELF\x02\x01\x01")
	for i := 16; i < len(data); i++ {
		data[i] = byte(i)
	}
	path := filepath.Join(t.TempDir(), "lib.so")
	mustOK(t, "WriteFile", os.WriteFile(path, data, 0o600))
	return path
}

// TestCoreDumpContents checks which vmas a core dump holds, the contents,
// and the notes, against Linux's rules for coredump_filter 0x33.
func TestCoreDumpContents(t *testing.T) {
	mf := newMF(t, 0)
	m := New(Options{MemoryFile: mf})
	defer m.DecUsers(ctx)
	mk := hostfile.SharedAnonFactory(mf)
	m.SetSharedAnonFactory(func(ctx context.Context, n uint64) (MappableFile, error) { return mk(ctx, n) })
	elfPath := elfHeaderFile(t)
	efd, err := hostfile.OpenFile(mf, elfPath, unix.O_RDWR, 0)
	mustOK(t, "open", err)
	defer efd.Close(ctx)
	dataPath := tempHostFile(t, 2*hostarch.PageSize, 3)
	dfd, err := hostfile.OpenFile(mf, dataPath, unix.O_RDWR, 0)
	mustOK(t, "open", err)
	defer dfd.Close(ctx)
	memf, err := hostfile.NewMemfd(mf, "core", 2*hostarch.PageSize)
	mustOK(t, "memfd", err)
	mfd, _ := hostfile.NewFD(memf, true, true)
	memf.DecRef(ctx)
	defer mfd.Close(ctx)
	vdso, err := NewSpecialMappable("[vdso]", mf, 2*hostarch.PageSize)
	mustOK(t, "vdso", err)
	vb, _ := vdso.Contents()
	copy(vb.Head().ToSlice(), "vdso contents")

	const pg = hostarch.PageSize
	type want struct {
		name string
		dump uint64
	}
	var wants []want
	at := func(i int) hostarch.Addr { return window + hostarch.Addr(i)*0x100000 }
	// 0: private anonymous memory, written: dumped.
	a0 := mustMap(t, m, anon(at(0), 4*pg, hostarch.ReadWrite))
	write(t, m, a0+pg, []byte("anonymous private"))
	wants = append(wants, want{"anon written", 4 * pg})
	// 1: private anonymous memory never touched: not dumped.
	mustMap(t, m, anon(at(1), 2*pg, hostarch.ReadWrite))
	wants = append(wants, want{"anon untouched", 0})
	// 2: written but MADV_DONTDUMP: not dumped.
	a2 := mustMap(t, m, anon(at(2), 2*pg, hostarch.ReadWrite))
	write(t, m, a2, []byte("secret"))
	mustOK(t, "dontdump", m.MAdvise(ctx, a2, 2*pg, AdvDontDump))
	wants = append(wants, want{"dontdump", 0})
	// 3: shared anonymous memory: dumped.
	a3, err := m.mmapFlags(ctx, at(3), 2*pg, ProtRead|ProtWrite, MapShared|MapAnonymous|MapFixed, nil, 0)
	mustOK(t, "mmap", err)
	write(t, m, a3+pg, []byte("shared anonymous"))
	wants = append(wants, want{"shared anon", 2 * pg})
	// 4: a memfd, shared: dumped.
	a4, err := m.mmapFlags(ctx, at(4), 2*pg, ProtRead|ProtWrite, MapShared|MapFixed, mfd, 0)
	mustOK(t, "mmap", err)
	write(t, m, a4, []byte("memfd"))
	wants = append(wants, want{"memfd", 2 * pg})
	// 5: a linked host file, shared: not dumped.
	a5, err := m.mmapFlags(ctx, at(5), 2*pg, ProtRead|ProtWrite, MapShared|MapFixed, dfd, 0)
	mustOK(t, "mmap", err)
	write(t, m, a5, []byte("file"))
	wants = append(wants, want{"file shared", 0})
	// 6: an ELF file, private, from offset 0, never touched: its first
	// page only.
	_, err = m.mmapFlags(ctx, at(6), 3*pg, ProtRead|ProtExec, MapPrivate|MapFixed, efd, 0)
	mustOK(t, "mmap", err)
	wants = append(wants, want{"elf header", pg})
	// 7: the same file at another offset: not dumped.
	_, err = m.mmapFlags(ctx, at(7), pg, ProtRead, MapPrivate|MapFixed, efd, pg)
	mustOK(t, "mmap", err)
	wants = append(wants, want{"elf offset", 0})
	// 8: a private file mapping written to (copy-on-write): dumped.
	a8, err := m.mmapFlags(ctx, at(8), 2*pg, ProtRead|ProtWrite, MapPrivate|MapFixed, dfd, 0)
	mustOK(t, "mmap", err)
	write(t, m, a8+pg+8, []byte("cow"))
	wants = append(wants, want{"file cow", 2 * pg})
	// 9: a vDSO: always dumped, even MADV_DONTDUMP.
	a9, err := m.MapSpecial(ctx, vdso, at(9), true, hostarch.ReadExecute)
	mustOK(t, "vdso", err)
	vdso.DecRef(ctx)
	wants = append(wants, want{"vdso", 2 * pg})
	// 10: a non-ELF file at offset 0, private, read: not dumped.
	a10, err := m.mmapFlags(ctx, at(10), pg, ProtRead, MapPrivate|MapFixed, dfd, 0)
	mustOK(t, "mmap", err)
	read(t, m, a10, 4)
	wants = append(wants, want{"data file", 0})

	argvAddr := a0 + 2*pg
	write(t, m, argvAddr, []byte("prog\x00--flag\x00"))
	m.SetArgvEnvv(hostarch.AddrRange{Start: argvAddr, End: argvAddr + 12}, hostarch.AddrRange{})
	m.SetAuxv([]AuxEntry{{6, 4096}, {9, 0x401000}})

	rssBefore := m.ResidentSetSize()
	notes := CoreNotes{
		Thread:       ThreadNotes{TID: 100, Regs: UserRegs{Rip: 0x401234, Rsp: 0x7ffe0000, Rax: 7}, FPRegs: make([]byte, 512)},
		OtherThreads: []ThreadNotes{{TID: 101, Regs: UserRegs{Rip: 0x405678}}},
		Signal:       int32(unix.SIGSEGV), SigCode: 1, SigAddr: 0xdead000,
		PID: 100, PPID: 1, PGRP: 100, SID: 100, UID: 1000, GID: 1000, Comm: "a-very-long-program-name",
	}
	var core bytes.Buffer
	mustOK(t, "WriteCoreDump", m.WriteCoreDump(ctx, &core, notes))
	if got := m.ResidentSetSize(); got != rssBefore {
		t.Errorf("dumping changed the RSS from %#x to %#x", rssBefore, got)
	}

	f, err := elf.NewFile(bytes.NewReader(core.Bytes()))
	mustOK(t, "elf.NewFile", err)
	if f.Type != elf.ET_CORE || f.Machine != elf.EM_X86_64 || f.Class != elf.ELFCLASS64 {
		t.Fatalf("core header: %v %v %v", f.Type, f.Machine, f.Class)
	}
	vmas := m.VMAs(ctx)
	if len(f.Progs) != len(vmas)+1 || f.Progs[0].Type != elf.PT_NOTE {
		t.Fatalf("%d program headers for %d vmas, first %v", len(f.Progs), len(vmas), f.Progs[0].Type)
	}
	loads := f.Progs[1:]
	for i, vi := range vmas {
		p := loads[i]
		if p.Type != elf.PT_LOAD || p.Vaddr != uint64(vi.Range.Start) || p.Memsz != vi.Range.Length() || p.Align != pg {
			t.Errorf("PT_LOAD %d: %+v for vma %v", i, p.ProgHeader, vi.Range)
		}
		if i > 0 && p.Vaddr <= loads[i-1].Vaddr {
			t.Errorf("PT_LOADs out of order")
		}
		if i < len(wants) && p.Filesz != wants[i].dump {
			t.Errorf("%s: %#x bytes dumped, want %#x", wants[i].name, p.Filesz, wants[i].dump)
		}
		if p.Off%pg != 0 {
			t.Errorf("PT_LOAD %d at unaligned offset %#x", i, p.Off)
		}
		var fl elf.ProgFlag
		if strings.Contains(vi.Perms, "r") {
			fl |= elf.PF_R
		}
		if strings.Contains(vi.Perms, "w") {
			fl |= elf.PF_W
		}
		if strings.Contains(vi.Perms, "x") {
			fl |= elf.PF_X
		}
		if p.Flags != fl {
			t.Errorf("PT_LOAD %d flags %v, perms %s", i, p.Flags, vi.Perms)
		}
		// Contents equal memory.
		if p.Filesz > 0 {
			got := make([]byte, p.Filesz)
			if _, err := p.ReadAt(got, 0); err != nil {
				t.Fatal(err)
			}
			want := make([]byte, p.Filesz)
			if _, err := m.CopyIn(ctx, hostarch.Addr(p.Vaddr), want, IOOpts{IgnorePermissions: true}); err != nil {
				t.Fatalf("CopyIn %#x: %v", p.Vaddr, err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("PT_LOAD %d (%s): contents differ from memory", i, wants[i].name)
			}
		}
	}
	if !bytes.Contains(core.Bytes(), []byte("vdso contents")) || bytes.Contains(core.Bytes(), []byte("secret")) {
		t.Errorf("the vDSO is missing or the MADV_DONTDUMP memory present")
	}

	nb := make([]byte, f.Progs[0].Filesz)
	f.Progs[0].ReadAt(nb, 0)
	ns := parseNotes(t, nb)
	var types []uint32
	for _, n := range ns {
		types = append(types, n.typ)
		if n.name != "CORE" {
			t.Errorf("note %#x named %q", n.typ, n.name)
		}
	}
	wantTypes := []uint32{ntPrStatus, ntPrPsInfo, ntSigInfo, ntAuxv, ntFile, ntFPRegSet, ntPrStatus}
	if !equalU32(types, wantTypes) {
		t.Fatalf("note types %#x, want %#x", types, wantTypes)
	}
	le := binary.LittleEndian
	ps := ns[0].desc
	if len(ps) != prStatusSize || le.Uint32(ps[0:]) != uint32(unix.SIGSEGV) || le.Uint16(ps[12:]) != uint16(unix.SIGSEGV) ||
		le.Uint32(ps[32:]) != 100 || le.Uint64(ps[112+16*8:]) != 0x401234 || le.Uint64(ps[112+19*8:]) != 0x7ffe0000 ||
		le.Uint64(ps[112+10*8:]) != 7 || le.Uint32(ps[328:]) != 1 {
		t.Errorf("NT_PRSTATUS %x", ps)
	}
	if le.Uint32(ns[6].desc[32:]) != 101 || le.Uint64(ns[6].desc[112+16*8:]) != 0x405678 {
		t.Errorf("second NT_PRSTATUS %x", ns[6].desc)
	}
	pi := ns[1].desc
	if len(pi) != prPsInfoSize || le.Uint32(pi[24:]) != 100 || string(bytes.TrimRight(pi[40:56], "\x00")) != "a-very-long-pro" ||
		string(bytes.TrimRight(pi[56:136], "\x00")) != "prog --flag" {
		t.Errorf("NT_PRPSINFO %q", pi)
	}
	if si := ns[2].desc; le.Uint32(si) != uint32(unix.SIGSEGV) || le.Uint64(si[16:]) != 0xdead000 {
		t.Errorf("NT_SIGINFO %x", si)
	}
	if av := ns[3].desc; len(av) != 48 || le.Uint64(av[16:]) != 9 || le.Uint64(av[24:]) != 0x401000 || le.Uint64(av[32:]) != 0 {
		t.Errorf("NT_AUXV %x", av)
	}
	fd := ns[4].desc
	count := le.Uint64(fd)
	if le.Uint64(fd[8:]) != pg {
		t.Errorf("NT_FILE page size %d", le.Uint64(fd[8:]))
	}
	names := strings.Split(strings.TrimRight(string(fd[16+24*count:]), "\x00"), "\x00")
	if uint64(len(names)) != count {
		t.Fatalf("NT_FILE: %d names for %d entries", len(names), count)
	}
	// Every vma with a file is listed, except the vDSO.
	var wantNames []string
	for _, vi := range vmas {
		if vi.Name != "" && !strings.HasPrefix(vi.Name, "[") {
			wantNames = append(wantNames, vi.Name)
		}
	}
	if strings.Join(names, ",") != strings.Join(wantNames, ",") {
		t.Errorf("NT_FILE names %q, want %q", names, wantNames)
	}
	for i := uint64(0); i < count; i++ {
		e := fd[16+24*i:]
		if hostarch.Addr(le.Uint64(e)) == at(7) && le.Uint64(e[16:]) != 1 {
			t.Errorf("NT_FILE offset of the second ELF mapping: %d pages", le.Uint64(e[16:]))
		}
	}
	_ = a9

	// The real clients.
	if path, err := exec.LookPath("readelf"); err == nil {
		cf := filepath.Join(t.TempDir(), "core")
		mustOK(t, "write core", os.WriteFile(cf, core.Bytes(), 0o600))
		out, err := exec.Command(path, "-n", cf).CombinedOutput()
		mustOK(t, "readelf -n: "+string(out), err)
		want := []string{"NT_PRSTATUS", "NT_PRPSINFO", "NT_SIGINFO", "NT_AUXV", "NT_FILE", "NT_FPREGSET"}
		// Some builds of readelf (binutils 2.40 on Debian) cannot decode
		// NT_FILE ("Cannot decode 64-bit note in 32-bit build"), for
		// Linux's own cores too; where it can, it lists the files.
		if !strings.Contains(string(out), "Cannot decode") {
			want = append(want, dataPath, elfPath)
		}
		for _, s := range want {
			if !strings.Contains(string(out), s) {
				t.Errorf("readelf -n does not show %s:\n%s", s, out)
			}
		}
		out, err = exec.Command(path, "-W", "-l", cf).CombinedOutput()
		mustOK(t, "readelf -l: "+string(out), err)
		if n := len(regexp.MustCompile(`(?m)^\s+LOAD\s`).FindAllString(string(out), -1)); n != len(vmas) {
			t.Errorf("readelf -l shows %d LOAD segments, want %d:\n%s", n, len(vmas), out)
		}
		if strings.Contains(string(out), "Warning") || strings.Contains(string(out), "Error") {
			t.Errorf("readelf -l complains:\n%s", out)
		}
	} else {
		t.Logf("readelf not installed: %v", err)
	}
}

func equalU32(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestCoreDumpNotDumpable: a process that is not dumpable gets no core.
func TestCoreDumpNotDumpable(t *testing.T) {
	m := newTestMM(t)
	a := mustMap(t, m, anon(window, hostarch.PageSize, hostarch.ReadWrite))
	write(t, m, a, []byte("x"))
	for _, d := range []Dumpability{NotDumpable, UserDumpable, RootDumpable} {
		m.metadataMu.Lock()
		m.dumpability = d
		m.metadataMu.Unlock()
		var b bytes.Buffer
		err := m.WriteCoreDump(ctx, &b, CoreNotes{})
		if d == NotDumpable {
			if !errors.Is(err, ErrNotDumpable) || !errors.Is(err, unix.EPERM) || b.Len() != 0 {
				t.Errorf("NotDumpable: %v, %d bytes written", err, b.Len())
			}
			continue
		}
		if err != nil || b.Len() == 0 {
			t.Errorf("dumpability %d: %v, %d bytes", d, err, b.Len())
		}
	}
}

// failWriter fails after n bytes.
type failWriter struct{ n int }

func (w *failWriter) Write(b []byte) (int, error) {
	if len(b) > w.n {
		k := w.n
		w.n = 0
		return k, unix.ENOSPC
	}
	w.n -= len(b)
	return len(b), nil
}

// TestCoreDumpWriteError: a failing writer's error is returned.
func TestCoreDumpWriteError(t *testing.T) {
	m := newTestMM(t)
	a := mustMap(t, m, anon(window, 64*hostarch.PageSize, hostarch.ReadWrite))
	write(t, m, a, make([]byte, 64*hostarch.PageSize))
	for _, n := range []int{0, 10, 100, 5000, 100000} {
		if err := m.WriteCoreDump(ctx, &failWriter{n: n}, CoreNotes{}); !errors.Is(err, unix.ENOSPC) {
			t.Errorf("writer failing after %d bytes: %v", n, err)
		}
	}
}

// TestCoreDumpManySegments: with 65535 or more program headers, e_phnum is
// PN_XNUM and section header 0 holds the count, as Linux writes it.
func TestCoreDumpManySegments(t *testing.T) {
	if testing.Short() {
		t.Skip("maps 70000 vmas")
	}
	m := newTestMM(t)
	l := m.Limits()
	l.MaxMapCount = 80000
	m.SetLimits(l)
	const n = 70000
	for i := 0; i < n; i++ {
		perms := hostarch.Read
		if i%2 == 1 {
			perms = hostarch.ReadWrite
		}
		mustMap(t, m, anon(window+hostarch.Addr(i)*hostarch.PageSize, hostarch.PageSize, perms))
	}
	var core bytes.Buffer
	mustOK(t, "WriteCoreDump", m.WriteCoreDump(ctx, &core, CoreNotes{}))
	b := core.Bytes()
	le := binary.LittleEndian
	if le.Uint16(b[56:]) != pnXNum || le.Uint16(b[60:]) != 1 {
		t.Fatalf("e_phnum %d, e_shnum %d", le.Uint16(b[56:]), le.Uint16(b[60:]))
	}
	shoff := le.Uint64(b[40:])
	if got := le.Uint32(b[shoff+44:]); got != n+1 {
		t.Errorf("sh_info %d, want %d", got, n+1)
	}
	if path, err := exec.LookPath("readelf"); err == nil {
		cf := filepath.Join(t.TempDir(), "core")
		mustOK(t, "write core", os.WriteFile(cf, b, 0o600))
		out, err := exec.Command(path, "-h", cf).CombinedOutput()
		mustOK(t, "readelf -h", err)
		if !strings.Contains(string(out), "70001") {
			t.Errorf("readelf -h does not see 70001 program headers:\n%s", out)
		}
	}
}

// TestCoreDumpGDB makes a core of a static C program's address space and
// has gdb read a global from it.
func TestCoreDumpGDB(t *testing.T) {
	gdb, err := exec.LookPath("gdb")
	if err != nil {
		t.Skip("gdb not installed")
	}
	cc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not installed")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "prog.c")
	prog := filepath.Join(dir, "prog")
	mustOK(t, "write source", os.WriteFile(src, []byte(`#include <stdlib.h>
int answer = 42;
char message[32] = "hello";
long zeroed[1024];
int main(void) { answer++; abort(); }
`), 0o600))
	if out, err := exec.Command(cc, "-static", "-O0", "-g", "-o", prog, src).CombinedOutput(); err != nil {
		t.Skipf("cannot build a static program: %v\n%s", err, out)
	}
	ef, err := elf.Open(prog)
	mustOK(t, "elf.Open", err)
	defer ef.Close()
	syms, err := ef.Symbols()
	mustOK(t, "symbols", err)
	addrOf := func(name string) hostarch.Addr {
		for _, s := range syms {
			if s.Name == name {
				return hostarch.Addr(s.Value)
			}
		}
		t.Fatalf("no symbol %s", name)
		return 0
	}

	// Load the program as exec would: its PT_LOAD segments as private file
	// mappings, the part of p_memsz past the file as zeros.
	mf := newMF(t, 0)
	m := New(Options{MemoryFile: mf})
	defer m.DecUsers(ctx)
	pfd, err := hostfile.OpenFile(mf, prog, unix.O_RDONLY, 0)
	mustOK(t, "open", err)
	defer pfd.Close(ctx)
	for _, p := range ef.Progs {
		if p.Type != elf.PT_LOAD {
			continue
		}
		perms := hostarch.AccessType{Read: p.Flags&elf.PF_R != 0, Write: p.Flags&elf.PF_W != 0, Execute: p.Flags&elf.PF_X != 0}
		start := hostarch.Addr(p.Vaddr).RoundDown()
		fileEnd := hostarch.Addr(p.Vaddr + p.Filesz).MustRoundUp()
		memEnd := hostarch.Addr(p.Vaddr + p.Memsz).MustRoundUp()
		off := p.Off - (p.Vaddr - uint64(start))
		if fileEnd > start {
			_, err := m.mmapFlags(ctx, start, uint64(fileEnd-start), perms.Prot()|ProtWrite, MapPrivate|MapFixed, pfd, off)
			mustOK(t, "map segment", err)
			if p.Memsz > p.Filesz {
				end := hostarch.Addr(p.Vaddr + p.Filesz)
				if _, err := m.ZeroOut(ctx, end, uint64(fileEnd-end), IOOpts{}); err != nil {
					t.Fatal(err)
				}
			}
			mustOK(t, "mprotect", m.MProtect(ctx, start, uint64(fileEnd-start), perms, MProtectOpts{}))
		}
		if memEnd > fileEnd {
			mustMap(t, m, anon(fileEnd, uint64(memEnd-fileEnd), perms))
		}
	}
	stack := mustMap(t, m, memmap.MMapOpts{Length: 16 * hostarch.PageSize, Addr: 0x7fff00000000, Fixed: true, Unmap: true,
		Private: true, GrowsDown: true, Perms: hostarch.ReadWrite, MaxPerms: hostarch.AnyAccess})
	sp := stack + 15*hostarch.PageSize
	write(t, m, sp, []byte{1, 0, 0, 0, 0, 0, 0, 0}) // argc
	write(t, m, sp+0x100, []byte("prog\x00"))
	m.SetArgvEnvv(hostarch.AddrRange{Start: sp + 0x100, End: sp + 0x105}, hostarch.AddrRange{})
	m.SetAuxv([]AuxEntry{{6, hostarch.PageSize}, {9, ef.Entry}})

	// The program changed its globals.
	answer := make([]byte, 4)
	binary.LittleEndian.PutUint32(answer, 1234)
	write(t, m, addrOf("answer"), answer)
	write(t, m, addrOf("message"), []byte("from vmspace\x00"))

	core := filepath.Join(dir, "core")
	cf, err := os.Create(core)
	mustOK(t, "create", err)
	err = m.WriteCoreDump(ctx, cf, CoreNotes{
		Thread: ThreadNotes{TID: 4242, Regs: UserRegs{Rip: ef.Entry, Rsp: uint64(sp), Cs: 0x33, Ss: 0x2b, Eflags: 0x246}},
		Signal: int32(unix.SIGABRT), PID: 4242, PPID: 1, PGRP: 4242, SID: 4242, Comm: "prog",
	})
	mustOK(t, "WriteCoreDump", err)
	mustOK(t, "close", cf.Close())

	out, err := exec.Command(gdb, "-nx", "-batch", "-ex", "print answer", "-ex", "print message", "-ex", "print zeroed[7]",
		"-ex", "info registers rip", "-ex", "bt", prog, core).CombinedOutput()
	if err != nil {
		t.Fatalf("gdb: %v\n%s", err, out)
	}
	t.Logf("gdb:\n%s", out)
	for _, want := range []string{"$1 = 1234", `$2 = "from vmspace"`, "$3 = 0", "_start", "SIGABRT"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("gdb output lacks %q:\n%s", want, out)
		}
	}
}

// TestCoreDumpSparse: pages never touched are holes in a core written to a
// regular file, as Linux's dump_skip leaves them: a 64 MiB mapping with
// two touched pages takes a few pages of disk, and the file reads the same
// as the dump written without seeking, up to its last byte (the dump ends
// in a skipped page here).
func TestCoreDumpSparse(t *testing.T) {
	m := newTestMM(t)
	const size = 64 << 20
	a := mustMap(t, m, anon(window, size, hostarch.ReadWrite))
	write(t, m, a+hostarch.PageSize, []byte("first"))
	write(t, m, a+size/2, []byte("second"))

	var want bytes.Buffer
	mustOK(t, "WriteCoreDump", m.WriteCoreDump(ctx, &want, CoreNotes{}))
	path := filepath.Join(t.TempDir(), "core")
	f, err := os.Create(path)
	mustOK(t, "create", err)
	mustOK(t, "WriteCoreDump", m.WriteCoreDump(ctx, f, CoreNotes{}))
	mustOK(t, "close", f.Close())

	var st unix.Stat_t
	mustOK(t, "stat", unix.Stat(path, &st))
	if st.Size != int64(want.Len()) {
		t.Fatalf("sparse core is %d bytes, the written one %d", st.Size, want.Len())
	}
	if st.Size < size {
		t.Fatalf("core of %d bytes does not hold the %d byte mapping", st.Size, size)
	}
	if used := st.Blocks * 512; used > 256<<10 {
		t.Errorf("core takes %d KiB of disk for two touched pages", used>>10)
	}
	got, err := os.ReadFile(path)
	mustOK(t, "read", err)
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("sparse core differs from the written one")
	}
	ef, err := elf.NewFile(bytes.NewReader(got))
	mustOK(t, "elf", err)
	for _, p := range ef.Progs {
		if p.Type == elf.PT_LOAD && p.Vaddr == uint64(a) {
			b := make([]byte, 6)
			p.ReadAt(b, size/2)
			if string(b) != "second" || p.Filesz != size {
				t.Errorf("segment: %q, filesz %#x", b, p.Filesz)
			}
		}
	}
	if path2, err := exec.LookPath("readelf"); err == nil {
		out, err := exec.Command(path2, "-l", path).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "LOAD") {
			t.Errorf("readelf -l: %v\n%s", err, out)
		}
	}
}

// seekFailWriter is a regular file whose seeks fail after the first n.
type seekFailWriter struct {
	*os.File
	n int
}

func (w *seekFailWriter) Seek(off int64, whence int) (int64, error) {
	if w.n == 0 {
		return 0, unix.ESPIPE
	}
	w.n--
	return w.File.Seek(off, whence)
}

// TestCoreDumpSeekError: a failing seek over a hole is returned as the
// dump's error (the dump below seeks twice: over the padding and page 0-7
// at once, then over pages 9-15 before its last byte).
func TestCoreDumpSeekError(t *testing.T) {
	m := newTestMM(t)
	a := mustMap(t, m, anon(window, 16*hostarch.PageSize, hostarch.ReadWrite))
	write(t, m, a+8*hostarch.PageSize, []byte("x"))
	for n := 0; n < 2; n++ {
		f, err := os.Create(filepath.Join(t.TempDir(), "core"))
		mustOK(t, "create", err)
		err = m.WriteCoreDump(ctx, &seekFailWriter{f, n}, CoreNotes{})
		f.Close()
		if !errors.Is(err, unix.ESPIPE) {
			t.Errorf("seek failing after %d: %v", n, err)
		}
	}
}

// TestVMAKinds checks the kind of each kind of vma (which core dumps use
// to tell file contents from memory with no file behind it), as VMAInfo
// shows it, and that a core dump follows it: shared memory of every kind
// but a linked file's is dumped.
func TestVMAKinds(t *testing.T) {
	mf := newMF(t, 0)
	m := New(Options{MemoryFile: mf})
	defer m.DecUsers(ctx)
	mk := hostfile.SharedAnonFactory(mf)
	m.SetSharedAnonFactory(func(ctx context.Context, n uint64) (MappableFile, error) { return mk(ctx, n) })
	const pg = hostarch.PageSize
	dfd, err := hostfile.OpenFile(mf, tempHostFile(t, 2*pg, 3), unix.O_RDWR, 0)
	mustOK(t, "open", err)
	defer dfd.Close(ctx)
	memf, err := hostfile.NewMemfd(mf, "kinds", 2*pg)
	mustOK(t, "memfd", err)
	mfd, _ := hostfile.NewFD(memf, true, true)
	memf.DecRef(ctx)
	defer mfd.Close(ctx)
	shm, err := hostfile.NewShm(mf, 2*pg)
	mustOK(t, "shm", err)
	defer shm.Remove(ctx)
	vdso, err := NewSpecialMappable("[vdso]", mf, pg)
	mustOK(t, "vdso", err)

	at := func(i int) hostarch.Addr { return window + hostarch.Addr(i)*0x100000 }
	want := map[hostarch.Addr]VMAKind{}
	mapSys := func(i int, flags int, file MappableFile, kind VMAKind) {
		t.Helper()
		a, err := m.mmapFlags(ctx, at(i), 2*pg, ProtRead|ProtWrite, flags|MapFixed, file, 0)
		mustOK(t, "mmap", err)
		want[a] = kind
	}
	mapSys(0, MapPrivate|MapAnonymous, nil, VMAAnonymous)
	mapSys(1, MapPrivate, ZeroFile{R: true, W: true}, VMAAnonymous)
	mapSys(2, MapShared|MapAnonymous, nil, VMASharedAnonymous)
	mapSys(3, MapShared, ZeroFile{R: true, W: true}, VMASharedAnonymous)
	mapSys(4, MapShared, mfd, VMAMemfd)
	mapSys(5, MapPrivate, mfd, VMAMemfd)
	mapSys(6, MapShared, dfd, VMAFile)
	mapSys(7, MapPrivate, dfd, VMAFile)
	a, err := m.AttachShm(ctx, shm, at(8), false, false, false)
	mustOK(t, "shmat", err)
	want[a] = VMASysVShm
	a, err = m.MapSpecial(ctx, vdso, at(9), true, hostarch.ReadExecute)
	mustOK(t, "vdso", err)
	vdso.DecRef(ctx)
	want[a] = VMASpecial
	id, err := m.NewAIOContext(ctx, 4)
	mustOK(t, "io_setup", err)
	want[hostarch.Addr(id)] = VMAAIORing

	got := map[hostarch.Addr]VMAKind{}
	for _, vi := range m.VMAs(ctx) {
		got[vi.Range.Start] = vi.Kind
	}
	for a, k := range want {
		if got[a] != k {
			t.Errorf("vma at %#x is %v, want %v", uint64(a), got[a], k)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d vmas, want %d", len(got), len(want))
	}

	// Shared mappings of memory with no linked file are dumped whole
	// (never touched: zeros); a linked file's are not.
	var buf bytes.Buffer
	mustOK(t, "core", m.WriteCoreDump(ctx, &buf, CoreNotes{}))
	dumped := map[hostarch.Addr]uint64{}
	ef, err := elf.NewFile(bytes.NewReader(buf.Bytes()))
	mustOK(t, "elf.NewFile", err)
	for _, p := range ef.Progs {
		if p.Type == elf.PT_LOAD {
			dumped[hostarch.Addr(p.Vaddr)] = p.Filesz
		}
	}
	for i, whole := range map[int]bool{2: true, 3: true, 4: true, 6: false, 8: true} {
		if w := dumped[at(i)] == 2*pg; w != whole {
			t.Errorf("vma %d (%v): dumped %#x bytes, whole %v", i, want[at(i)], dumped[at(i)], whole)
		}
	}
}
