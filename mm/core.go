package mm

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"strings"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/safemem"
	"golang.org/x/sys/unix"
)

// Core dumps.
//
// WriteCoreDump writes the address space as Linux writes an ELF core file
// (fs/binfmt_elf.c's elf_core_dump, for x86-64): an ELF64 header, a PT_NOTE
// program header followed by one PT_LOAD per vma in address order, the
// notes, and, from the next page boundary, the contents of each PT_LOAD.
// Which vmas have contents follows Linux's default coredump_filter, 0x33
// (core(5)): anonymous private memory (vmas with private pages), anonymous
// shared memory (shared mappings of files with no name left: memfds, System
// V segments, MAP_SHARED|MAP_ANONYMOUS, deleted files, AIO rings), and the
// first page of file mappings at offset 0 that begin with an ELF header;
// file-backed memory otherwise only by its program header. Special
// mappings named like "[vdso]" are always dumped; MADV_DONTDUMP vmas never.
// Pages with no memory behind them (never touched, or not resident) read as
// zeros; reading them allocates nothing. Like Linux's dump_user_range, which
// skips every page get_dump_page does not return, such pages are not
// written but skipped when the writer can seek (a hole in a regular file),
// so a core is as large on disk as the memory the process touched.
//
// The notes are, in Linux's order: NT_PRSTATUS of the thread that dumps,
// NT_PRPSINFO, NT_SIGINFO, NT_AUXV, NT_FILE, the thread's NT_FPREGSET if
// given, then NT_PRSTATUS (and NT_FPREGSET) of each other thread.

// UserRegs are an x86-64 thread's general registers in the layout of
// Linux's struct user_regs_struct (elf_gregset_t), as NT_PRSTATUS holds
// them.
type UserRegs struct {
	R15, R14, R13, R12, Rbp, Rbx, R11, R10 uint64
	R9, R8, Rax, Rcx, Rdx, Rsi, Rdi        uint64
	OrigRax, Rip, Cs, Eflags, Rsp, Ss      uint64
	FsBase, GsBase, Ds, Es, Fs, Gs         uint64
}

// words returns r's registers in order.
func (r *UserRegs) words() [27]uint64 {
	return [27]uint64{r.R15, r.R14, r.R13, r.R12, r.Rbp, r.Rbx, r.R11, r.R10,
		r.R9, r.R8, r.Rax, r.Rcx, r.Rdx, r.Rsi, r.Rdi,
		r.OrigRax, r.Rip, r.Cs, r.Eflags, r.Rsp, r.Ss,
		r.FsBase, r.GsBase, r.Ds, r.Es, r.Fs, r.Gs}
}

// ThreadNotes describe one thread in a core dump.
type ThreadNotes struct {
	// TID is the thread's id (pr_pid of its NT_PRSTATUS).
	TID int32
	// Regs are its general registers.
	Regs UserRegs
	// FPRegs is its FXSAVE area (struct user_fpregs_struct, 512 bytes),
	// written as NT_FPREGSET; nil for none.
	FPRegs []byte
	// SigPending and SigBlocked are its pending and blocked signal
	// masks.
	SigPending, SigBlocked uint64
}

// CoreNotes is what a core dump holds besides memory, which the caller
// (the part of a kernel that runs threads) knows.
type CoreNotes struct {
	// Thread is the thread that dumps: the one that took the signal.
	Thread ThreadNotes
	// OtherThreads are the process's other threads.
	OtherThreads []ThreadNotes
	// Signal is the signal that killed the process; SigCode its si_code;
	// SigAddr the faulting address (si_addr) for SIGSEGV, SIGBUS, SIGILL,
	// SIGFPE and SIGTRAP.
	Signal  int32
	SigCode int32
	SigAddr uint64
	// PID, PPID, PGRP and SID identify the process.
	PID, PPID, PGRP, SID int32
	// UID and GID are its credentials.
	UID, GID uint32
	// Comm is the executable's name (pr_fname: at most 15 bytes kept).
	Comm string
	// Args is the command line (pr_psargs: at most 79 bytes kept). If
	// empty, it is read from the argument strings of the address space
	// (SetArgvEnvv), NULs becoming spaces, as Linux does.
	Args string
}

// ErrNotDumpable is returned by WriteCoreDump for a process whose
// dumpability is NotDumpable (prctl(PR_SET_DUMPABLE, 0), or set by exec of
// an unreadable or set-user-ID program): Linux writes no core then.
var ErrNotDumpable = fmt.Errorf("mm: the process is not dumpable: %w", unix.EPERM)

// ELF constants.
const (
	elfHeaderSize  = 64
	elfPhdrSize    = 56
	elfShdrSize    = 64
	ptLoad         = 1
	ptNote         = 4
	pfX            = 1
	pfW            = 2
	pfR            = 4
	pnXNum         = 0xffff
	ntPrStatus     = 1
	ntFPRegSet     = 2
	ntPrPsInfo     = 3
	ntAuxv         = 6
	ntSigInfo      = 0x53494749
	ntFile         = 0x46494c45
	prStatusSize   = 336
	prPsInfoSize   = 136
	sigInfoSize    = 128
	fxsaveSize     = 512
	elfPrArgSize   = 80
	elfPrFNameSize = 16
	atNull         = 0
)

// elfMagic starts an ELF file.
var elfMagic = []byte{0x7f, 'E', 'L', 'F'}

// coreVMA is what a core dump needs of a vma.
type coreVMA struct {
	ar    hostarch.AddrRange
	perms hostarch.AccessType
	// dump is the number of bytes dumped from ar.Start.
	dump uint64
	// off and name describe a file mapping for NT_FILE; name "" for
	// none.
	off  uint64
	name string
}

// WriteCoreDump writes an ELF core file of the address space to w (see the
// comment above). If w is an io.Seeker, the pages with no memory behind them
// and the padding are skipped by seeking forward from the current offset
// (ending with one zero byte if the dump ends in a skip, so the size is
// right): the caller gives a seeker only where skipped bytes read as zeros,
// such as an empty regular file. It returns ErrNotDumpable, writing nothing,
// if the process is not dumpable. RootDumpable processes are dumped: the caller must make
// the file readable by root only, as Linux does with suid_dumpable=2.
//
// The caller should stop the process's threads first, so that the contents
// are consistent; the mapping and active locks are held (for reading)
// while the dump is written.
func (mm *MemoryManager) WriteCoreDump(ctx context.Context, w io.Writer, notes CoreNotes) error {
	mm.metadataMu.Lock()
	if mm.dumpability == NotDumpable {
		mm.metadataMu.Unlock()
		return ErrNotDumpable
	}
	auxv := append([]AuxEntry(nil), mm.auxv...)
	argv := mm.argv
	mm.metadataMu.Unlock()

	mm.mappingMu.RLock()
	defer mm.mappingMu.RUnlock()
	tok := mm.activeMu.RLock()
	defer mm.activeMu.RUnlock(tok)

	if notes.Args == "" && argv.Length() > 0 {
		n := min(argv.Length(), elfPrArgSize-1)
		b := make([]byte, n)
		mm.readCoreLocked(ctx, argv.Start, b)
		notes.Args = strings.TrimRight(strings.ReplaceAll(string(b), "\x00", " "), " ")
	}

	var vmas []coreVMA
	for vseg := mm.vmas.FirstSegment(); vseg.Ok(); vseg = vseg.NextSegment() {
		v := vseg.ValuePtr()
		cv := coreVMA{ar: hostarch.AddrRange(vseg.Range()), perms: v.realPerms, off: v.off, dump: mm.dumpSizeLocked(ctx, vseg)}
		if v.id != nil && v.kind() != VMASpecial {
			cv.name = v.id.MappedName(ctx)
		}
		vmas = append(vmas, cv)
	}

	noteData := buildCoreNotes(&notes, auxv, vmas)

	// Layout.
	nph := len(vmas) + 1
	phnum := nph
	extNum := nph >= pnXNum
	if extNum {
		phnum = pnXNum
	}
	off := uint64(elfHeaderSize + nph*elfPhdrSize)
	noteOff := off
	off += uint64(len(noteData))
	dataOff, _ := hostarch.PageRoundUp(off)
	var shOff uint64
	end := dataOff
	for _, v := range vmas {
		end += v.dump
	}
	if extNum {
		shOff = end
	}

	var hdr [elfHeaderSize]byte
	copy(hdr[:], elfMagic)
	hdr[4] = 2 // ELFCLASS64
	hdr[5] = 1 // ELFDATA2LSB
	hdr[6] = 1 // EV_CURRENT
	hdr[7] = 0 // ELFOSABI_NONE
	le := binary.LittleEndian
	le.PutUint16(hdr[16:], 4)  // ET_CORE
	le.PutUint16(hdr[18:], 62) // EM_X86_64
	le.PutUint32(hdr[20:], 1)  // EV_CURRENT
	le.PutUint64(hdr[32:], elfHeaderSize)
	le.PutUint64(hdr[40:], shOff)
	le.PutUint16(hdr[52:], elfHeaderSize)
	le.PutUint16(hdr[54:], elfPhdrSize)
	le.PutUint16(hdr[56:], uint16(phnum))
	if extNum {
		le.PutUint16(hdr[58:], elfShdrSize)
		le.PutUint16(hdr[60:], 1)
	}
	bw := &coreWriter{w: w}
	bw.seeker, _ = w.(io.Seeker)
	bw.write(hdr[:])

	phdr := func(typ, flags uint32, off, vaddr, filesz, memsz, align uint64) {
		var p [elfPhdrSize]byte
		le.PutUint32(p[0:], typ)
		le.PutUint32(p[4:], flags)
		le.PutUint64(p[8:], off)
		le.PutUint64(p[16:], vaddr)
		le.PutUint64(p[24:], 0)
		le.PutUint64(p[32:], filesz)
		le.PutUint64(p[40:], memsz)
		le.PutUint64(p[48:], align)
		bw.write(p[:])
	}
	phdr(ptNote, 0, noteOff, 0, uint64(len(noteData)), 0, 0)
	segOff := dataOff
	for _, v := range vmas {
		var fl uint32
		if v.perms.Read {
			fl |= pfR
		}
		if v.perms.Write {
			fl |= pfW
		}
		if v.perms.Execute {
			fl |= pfX
		}
		phdr(ptLoad, fl, segOff, uint64(v.ar.Start), v.dump, v.ar.Length(), hostarch.PageSize)
		segOff += v.dump
	}
	bw.write(noteData)
	bw.skip(dataOff - bw.n)

	// Runs of pages with memory are written together, one buffer at a
	// time; pages without are skipped.
	buf := make([]byte, 1<<20)
	for _, v := range vmas {
		n := 0
		for done := uint64(0); done < v.dump && bw.err == nil; done += hostarch.PageSize {
			if hole := mm.coreHoleLocked(v.ar.Start+hostarch.Addr(done), v.ar.Start+hostarch.Addr(v.dump)); hole > 0 {
				bw.write(buf[:n])
				n = 0
				bw.skip(hole)
				done += hole - hostarch.PageSize
				continue
			}
			pg := buf[n : n+hostarch.PageSize]
			if mm.readCorePageLocked(ctx, v.ar.Start+hostarch.Addr(done), pg) {
				n += hostarch.PageSize
				if n == len(buf) {
					bw.write(buf)
					n = 0
				}
				continue
			}
			bw.write(buf[:n])
			n = 0
			bw.skip(hostarch.PageSize)
		}
		bw.write(buf[:n])
	}
	if extNum && bw.err == nil {
		// Section header 0 holds the real number of program headers.
		var sh [elfShdrSize]byte
		le.PutUint32(sh[44:], uint32(nph)) // sh_info
		bw.write(sh[:])
	}
	bw.finish()
	if bw.err != nil {
		return fmt.Errorf("mm: writing a core dump: %w", bw.err)
	}
	return nil
}

// coreWriter counts what it writes and keeps the first error. With a
// seeker, zeros are skipped rather than written (Linux's dump_skip): the
// skip is pending until the next write or finish. Used by one goroutine.
type coreWriter struct {
	w       io.Writer
	seeker  io.Seeker // w as a seeker, or nil
	n       uint64    // bytes written or skipped so far
	skipped uint64    // skipped bytes not yet sought over
	err     error
}

func (c *coreWriter) write(b []byte) {
	if c.err != nil || len(b) == 0 {
		return
	}
	if c.skipped > 0 {
		if _, err := c.seeker.Seek(int64(c.skipped), io.SeekCurrent); err != nil {
			c.err = err
			return
		}
		c.skipped = 0
	}
	n, err := c.w.Write(b)
	c.n += uint64(n)
	if err == nil && n < len(b) {
		err = io.ErrShortWrite
	}
	c.err = err
}

// skip leaves n zero bytes: a hole with a seeker, else written zeros.
func (c *coreWriter) skip(n uint64) {
	if c.seeker != nil {
		if c.err == nil {
			c.skipped += n
			c.n += n
		}
		return
	}
	var z [hostarch.PageSize]byte
	for n > 0 && c.err == nil {
		k := min(n, uint64(len(z)))
		c.write(z[:k])
		n -= k
	}
}

// finish ends a pending skip with one written zero byte, so that the file
// is as long as the dump (as Linux's do_coredump does).
func (c *coreWriter) finish() {
	if c.skipped > 0 && c.err == nil {
		c.skipped--
		c.n--
		c.write([]byte{0})
	}
}

// dumpSizeLocked returns how many bytes of vseg a core dump holds, as
// Linux's vma_dump_size with coredump_filter 0x33. Preconditions: mappingMu
// and activeMu held for reading.
func (mm *MemoryManager) dumpSizeLocked(ctx context.Context, vseg vmaIterator) uint64 {
	v := vseg.ValuePtr()
	whole := uint64(vseg.End() - vseg.Start())
	kind := v.kind()
	if kind == VMASpecial {
		// Linux always dumps special mappings ([vdso]) and lists them
		// in no NT_FILE.
		return whole
	}
	if v.flags.has(vmaDontDump) {
		return 0
	}
	if !v.private() {
		// Shared memory with no name left (i_nlink == 0: shmem, the
		// AIO ring, an unlinked file) is anonymous shared memory (bit
		// 1); a shared mapping of a linked file is file-backed shared
		// memory (bit 3, off).
		if kind != VMAFile || memmap.Unlinked(v.id) {
			return whole
		}
		return 0
	}
	// Private memory that has been written to (Linux's anon_vma) is
	// anonymous private memory (bit 0).
	if v.written() {
		return whole
	}
	if v.mappable == nil {
		return 0
	}
	// File-backed private memory (bit 2) is off; but the first page of a
	// file mapped from offset 0 is dumped if it is an ELF header (bit 4).
	if v.off == 0 && v.realPerms.Read {
		var magic [4]byte
		mm.readCoreLocked(ctx, vseg.Start(), magic[:])
		if string(magic[:]) == string(elfMagic) {
			return min(whole, hostarch.PageSize)
		}
	}
	return 0
}

// readCoreLocked reads the memory at addr into b for a core dump (see
// readCorePageLocked), zeros where there is none. Preconditions: mappingMu
// and activeMu held for reading.
func (mm *MemoryManager) readCoreLocked(ctx context.Context, addr hostarch.Addr, b []byte) {
	end := addr + hostarch.Addr(len(b))
	for a := addr; a < end; {
		next := (a + 1).MustRoundUp()
		if next > end || next < a {
			next = end
		}
		mm.readCorePageLocked(ctx, a, b[a-addr:next-addr])
		a = next
	}
}

// coreHoleLocked returns how many bytes from addr (page-aligned) up to end
// are anonymous memory never touched or only read (no pma in a vma with no
// Mappable, or the zero page), the quick case of readCorePageLocked finding
// no memory. Preconditions:
// mappingMu and activeMu held for reading.
func (mm *MemoryManager) coreHoleLocked(addr, end hostarch.Addr) uint64 {
	pseg, pgap := mm.pmas.Find(addr)
	if pseg.Ok() && pseg.ValuePtr().isZero() {
		// Linux's get_dump_page skips the zero page: a hole.
		return uint64(min(end, pseg.End()) - addr)
	}
	if pseg.Ok() {
		return 0
	}
	vseg := mm.vmas.FindSegment(addr)
	if !vseg.Ok() || vseg.ValuePtr().mappable != nil {
		return 0
	}
	hend := min(end, vseg.End())
	if next := pgap.NextSegment(); next.Ok() && next.Start() < hend {
		hend = next.Start()
	}
	return uint64(hend - addr)
}

// readCorePageLocked reads the memory at addr into dst (within one page) for
// a core dump, as Linux's get_dump_page: from the pmas, reading only pages
// that have memory (holes and pages that are not resident read as zeros,
// without being allocated); where there is no pma, from the vma's Mappable
// (which may read a file) or as zeros. Permissions are ignored. It reports
// whether there was memory behind the page (false: dst is zeros, and Linux
// would leave a hole). Preconditions: mappingMu and activeMu held for
// reading.
func (mm *MemoryManager) readCorePageLocked(ctx context.Context, addr hostarch.Addr, dst []byte) bool {
	clear(dst)
	if pseg := mm.pmas.FindSegment(addr); pseg.Ok() {
		p := pseg.ValuePtr()
		if p.isZero() {
			return false
		}
		off := p.off + uint64(addr-pseg.Start())
		return readResident(p.file, memmap.FileRange{Start: off, End: off + uint64(len(dst))}, dst)
	}
	vseg := mm.vmas.FindSegment(addr)
	if !vseg.Ok() || vseg.ValuePtr().mappable == nil {
		return false
	}
	v := vseg.ValuePtr()
	pg := addr.RoundDown()
	mr := mappableRangeOf(vseg, hostarch.AddrRange{Start: pg, End: pg + hostarch.PageSize})
	if res, ok := v.mappable.(Residency); ok && v.kind().Shmem() {
		// Memory that is not a file's: a page not in memory is zero, and
		// translating it would allocate it.
		var vec [1]byte
		if res.Resident(mr, vec[:]); vec[0] == 0 {
			return false
		}
	}
	ts, err := v.mappable.Translate(ctx, mr, mr, hostarch.Read)
	if err != nil {
		return false
	}
	for _, t := range ts {
		if t.Source.Contains(mr.Start) {
			off := t.Offset + (mr.Start - t.Source.Start) + uint64(addr-pg)
			return readResident(t.File, memmap.FileRange{Start: off, End: off + uint64(len(dst))}, dst)
		}
	}
	return false
}

// readResident copies fr (within one page) of f into dst and returns true if
// that page is resident; else leaves dst zero and returns false.
func readResident(f memmap.File, fr memmap.FileRange, dst []byte) bool {
	pg := memmap.FileRange{Start: fr.Start &^ uint64(hostarch.PageMask)}
	pg.End = pg.Start + hostarch.PageSize
	ims, err := f.MapInternal(pg, hostarch.Read)
	if err != nil || ims.NumBlocks() != 1 {
		return false
	}
	var vec [1]byte
	hostMincore(ims.Head().TakeFirst(hostarch.PageSize), vec[:])
	if vec[0] == 0 {
		return false
	}
	src := ims.DropFirst64(fr.Start - pg.Start).TakeFirst64(fr.Length())
	safemem.CopySeq(safemem.BlockSeqOf(safemem.BlockFromSafeSlice(dst)), src)
	return true
}

// buildCoreNotes returns the PT_NOTE segment's contents.
func buildCoreNotes(n *CoreNotes, auxv []AuxEntry, vmas []coreVMA) []byte {
	var out []byte
	le := binary.LittleEndian
	note := func(typ uint32, desc []byte) {
		name := "CORE\x00"
		out = le.AppendUint32(out, uint32(len(name)))
		out = le.AppendUint32(out, uint32(len(desc)))
		out = le.AppendUint32(out, typ)
		out = append(out, name...)
		for len(out)%4 != 0 {
			out = append(out, 0)
		}
		out = append(out, desc...)
		for len(out)%4 != 0 {
			out = append(out, 0)
		}
	}
	prstatus := func(t *ThreadNotes) []byte {
		d := make([]byte, prStatusSize)
		le.PutUint32(d[0:], uint32(n.Signal)) // pr_info.si_signo
		le.PutUint32(d[4:], uint32(n.SigCode))
		le.PutUint16(d[12:], uint16(n.Signal)) // pr_cursig
		le.PutUint64(d[16:], t.SigPending)
		le.PutUint64(d[24:], t.SigBlocked)
		le.PutUint32(d[32:], uint32(t.TID))
		le.PutUint32(d[36:], uint32(n.PPID))
		le.PutUint32(d[40:], uint32(n.PGRP))
		le.PutUint32(d[44:], uint32(n.SID))
		for i, r := range t.Regs.words() {
			le.PutUint64(d[112+8*i:], r)
		}
		if len(t.FPRegs) == fxsaveSize {
			le.PutUint32(d[328:], 1) // pr_fpvalid
		}
		return d
	}
	note(ntPrStatus, prstatus(&n.Thread))

	ps := make([]byte, prPsInfoSize)
	ps[0] = 0   // pr_state: running
	ps[1] = 'R' // pr_sname
	le.PutUint32(ps[16:], n.UID)
	le.PutUint32(ps[20:], n.GID)
	le.PutUint32(ps[24:], uint32(n.PID))
	le.PutUint32(ps[28:], uint32(n.PPID))
	le.PutUint32(ps[32:], uint32(n.PGRP))
	le.PutUint32(ps[36:], uint32(n.SID))
	copy(ps[40:40+elfPrFNameSize-1], n.Comm)
	copy(ps[56:56+elfPrArgSize-1], n.Args)
	note(ntPrPsInfo, ps)

	si := make([]byte, sigInfoSize)
	le.PutUint32(si[0:], uint32(n.Signal))
	le.PutUint32(si[8:], uint32(n.SigCode))
	switch unix.Signal(n.Signal) {
	case unix.SIGSEGV, unix.SIGBUS, unix.SIGILL, unix.SIGFPE, unix.SIGTRAP:
		le.PutUint64(si[16:], n.SigAddr)
	}
	note(ntSigInfo, si)

	var av []byte
	for _, a := range auxv {
		if a.Key == atNull {
			break
		}
		av = le.AppendUint64(av, a.Key)
		av = le.AppendUint64(av, a.Value)
	}
	av = le.AppendUint64(av, atNull)
	av = le.AppendUint64(av, 0)
	note(ntAuxv, av)

	var files []coreVMA
	for _, v := range vmas {
		if v.name != "" {
			files = append(files, v)
		}
	}
	fd := le.AppendUint64(nil, uint64(len(files)))
	fd = le.AppendUint64(fd, hostarch.PageSize)
	for _, f := range files {
		fd = le.AppendUint64(fd, uint64(f.ar.Start))
		fd = le.AppendUint64(fd, uint64(f.ar.End))
		fd = le.AppendUint64(fd, f.off>>hostarch.PageShift)
	}
	for _, f := range files {
		fd = append(fd, f.name...)
		fd = append(fd, 0)
	}
	note(ntFile, fd)

	if len(n.Thread.FPRegs) == fxsaveSize {
		note(ntFPRegSet, n.Thread.FPRegs)
	}
	for i := range n.OtherThreads {
		t := &n.OtherThreads[i]
		note(ntPrStatus, prstatus(t))
		if len(t.FPRegs) == fxsaveSize {
			note(ntFPRegSet, t.FPRegs)
		}
	}
	return out
}
