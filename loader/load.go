package loader

import (
	"context"
	"crypto/rand"
	"debug/elf"
	"errors"
	"fmt"
	"io"

	"golang.org/x/sys/unix"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/hostfile"
	"github.com/vmspace/vmspace/linuxabi"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/mm"
	"github.com/vmspace/vmspace/pgalloc"
)

// Options say what to load and what the program is told.
type Options struct {
	// Path is the host path of the program. Required.
	Path string
	// Argv and Envv are the arguments and the environment. An empty Argv
	// gets "" as argv[0], as Linux does.
	Argv, Envv []string
	// ExecFn is the file name the program was executed as (AT_EXECFN, the
	// first argument of execve); "" means Path.
	ExecFn string
	// Random is where the 16 AT_RANDOM bytes come from; nil means
	// crypto/rand.
	Random io.Reader
	// Aux are the machine-dependent auxiliary vector values; nil means
	// HostAuxValues().
	Aux *AuxValues
	// Creds are the ids the auxiliary vector reports; nil means
	// HostCredentials().
	Creds *Credentials
	// StackLimit is RLIMIT_STACK's soft limit, which sizes the mmap gap,
	// the argument space and the stack; 0 means the manager's.
	StackLimit uint64
	// LegacyLayout places mappings bottom-up from TASK_SIZE/3
	// (personality ADDR_COMPAT_LAYOUT, vm.legacy_va_layout).
	LegacyLayout bool
	// Files, if not nil, is the table the program and interpreter are
	// opened through, so that their pages are shared with every other
	// user of the same host files; nil opens private Files.
	Files *hostfile.Table
	// ASLR, if not nil, randomizes the layout as Linux does with
	// PF_RANDOMIZE; nil gives Linux's layout with randomization off.
	ASLR *ASLR
	// VDSO, if not nil, is called after the program and interpreter are
	// mapped, where Linux maps the vDSO; it may map one and return its
	// address for AT_SYSINFO_EHDR (0 leaves AT_SYSINFO_EHDR out).
	VDSO func(ctx context.Context, m *mm.MemoryManager) (hostarch.Addr, error)
}

// Segment is one loaded PT_LOAD segment.
type Segment struct {
	// Path is the file it comes from (the program or the interpreter).
	Path string
	// File is the range mapped from the file (empty if p_filesz is 0).
	File hostarch.AddrRange
	// Offset is the file offset of File.Start.
	Offset uint64
	// Perms are the segment's permissions.
	Perms hostarch.AccessType
	// Anon is the range of anonymous zero pages after File, for the part
	// of p_memsz beyond the file's last page (empty if none).
	Anon hostarch.AddrRange
}

// Result describes the loaded program. Addresses are in the manager's
// address space.
type Result struct {
	// Entry is where execution starts: the interpreter's entry point if
	// the program has PT_INTERP, else the program's.
	Entry hostarch.Addr
	// StackPointer is the initial stack pointer (16-byte aligned),
	// pointing at argc.
	StackPointer hostarch.Addr
	// ProgramEntry is the program's entry point (AT_ENTRY).
	ProgramEntry hostarch.Addr
	// LoadBias is what was added to the program's addresses (0 for
	// ET_EXEC).
	LoadBias hostarch.Addr
	// PHDR is the address of the program headers in memory (AT_PHDR).
	PHDR hostarch.Addr
	// Interpreter is the PT_INTERP path, or "".
	Interpreter string
	// InterpreterBase is the interpreter's load bias (AT_BASE), or 0.
	InterpreterBase hostarch.Addr
	// StartCode, EndCode, StartData and EndData are Linux's start_code,
	// end_code, start_data and end_data (/proc/PID/stat fields 26, 27, 45
	// and 46).
	StartCode, EndCode, StartData, EndData hostarch.Addr
	// Brk is the start of the program break (start_brk).
	Brk hostarch.Addr
	// Stack is the stack vma: the argument pages plus 128 KiB (within
	// RLIMIT_STACK), or down to the stack pointer's page if the tables
	// need more.
	Stack hostarch.AddrRange
	// Argv and Envv are the ranges of the argument and environment
	// strings (arg_start..arg_end, env_start..env_end).
	Argv, Envv hostarch.AddrRange
	// Auxv is the auxiliary vector, without AT_NULL.
	Auxv []mm.AuxEntry
	// ExecutableStack is true if PT_GNU_STACK made the stack executable.
	ExecutableStack bool
	// Segments are the loaded segments, the program's first.
	Segments []Segment
	// Layout is the mmap layout set in the manager.
	Layout mm.MmapLayout
}

// loader holds the state of one Load.
type loader struct {
	ctx   context.Context
	m     *mm.MemoryManager
	mf    *pgalloc.MemoryFile
	files *hostfile.Table
	// taskSize is TASK_SIZE for this address space.
	taskSize hostarch.Addr
	res      *Result
	// rnd draws the layout's randomization (off if its ASLR is nil).
	rnd *randomizer
}

// Load loads the ELF program at opts.Path, and its interpreter, into m (a
// new manager with nothing mapped) as Linux's execve does, builds the
// initial stack and records the metadata (argv/envv ranges, auxv, the
// executable) in m. Files are cached in mf (nil means m's memory file).
// See the package documentation for the steps and the errors: every error
// is an *Error.
func Load(ctx context.Context, m *mm.MemoryManager, mf *pgalloc.MemoryFile, opts Options) (*Result, error) {
	if m == nil {
		return nil, errorf(opts.Path, unix.EINVAL, "nil MemoryManager")
	}
	if mf == nil {
		mf = m.MemoryFile()
	}
	if opts.Path == "" {
		return nil, errorf(opts.Path, unix.ENOENT, "empty path")
	}
	l := &loader{ctx: ctx, m: m, mf: mf, files: opts.Files, res: &Result{}, rnd: &randomizer{a: opts.ASLR}}

	// Read and check everything first.
	prog, err := l.open(opts.Path, false)
	if err != nil {
		return nil, err
	}
	defer prog.fd.Close(ctx)
	buf := make([]byte, binprmBufSize)
	if _, err := prog.fd.ReadAt(buf, 0); err != nil && err != io.EOF {
		return nil, wrapErr(prog.path, err, "reading the ELF header")
	}
	if err := prog.parseHeader(buf); err != nil {
		return nil, err
	}
	if err := prog.readPhdrs(); err != nil {
		return nil, err
	}
	interpPath, hasInterp, err := prog.interpreterPath()
	if err != nil {
		return nil, err
	}
	var interp *image
	if hasInterp {
		interp, err = l.open(interpPath, true)
		if err != nil {
			return nil, err
		}
		defer interp.fd.Close(ctx)
		hb := make([]byte, ehdrSize)
		if err := elfRead(interp.fd, hb, 0); err != nil {
			return nil, wrapErr(interp.path, err, "reading the interpreter's ELF header")
		}
		if err := interp.parseHeader(hb); err != nil {
			return nil, err
		}
		if err := interp.readPhdrs(); err != nil {
			return nil, err
		}
	}

	rlimStack := opts.StackLimit
	if rlimStack == 0 {
		rlimStack = m.Limits().Stack.Cur
	}
	cur := m.MmapLayout()
	l.taskSize = taskSizeFor(cur.MaxAddr)
	if err := prog.checkLoads(l.taskSize); err != nil {
		return nil, err
	}
	if interp != nil {
		if err := interp.checkLoads(l.taskSize); err != nil {
			return nil, err
		}
	}
	if elf.Type(prog.hdr.Type) == elf.ET_EXEC && prog.hdr.Entry >= uint64(l.taskSize) {
		return nil, errorf(prog.path, unix.EINVAL, "entry point %#x is beyond TASK_SIZE", prog.hdr.Entry)
	}
	execFn := opts.ExecFn
	if execFn == "" {
		execFn = opts.Path
	}
	stackTop := stackTopFor(l.taskSize, cur.MaxAddr)
	if l.rnd.on() {
		stackTop = min(l.rnd.stackTop(l.taskSize), stackTop)
	}
	args, err := copyStrings(prog.path, stackTop, opts.Argv, opts.Envv, execFn, rlimStack)
	if err != nil {
		return nil, err
	}
	args.tablesTop = l.rnd.alignStack(args.argStart)
	var random [16]byte
	rr := opts.Random
	if rr == nil {
		rr = rand.Reader
	}
	if _, err := io.ReadFull(rr, random[:]); err != nil {
		return nil, wrapErr(prog.path, err, "reading AT_RANDOM bytes")
	}

	// The vDSO's place, if the caller asks for one: below the
	// interpreter, or below mmap_base for a static ET_EXEC program (a
	// program without interpreter that is ET_DYN is mapped top-down
	// with its own alignment: left to chance).
	if !opts.LegacyLayout {
		switch {
		case interp != nil && elf.Type(interp.hdr.Type) == elf.ET_DYN:
			l.rnd.placeVDSO(l.taskSize, rlimStack, pageAlign(totalMappingSize(interp.loads())))
		case interp == nil && elf.Type(prog.hdr.Type) == elf.ET_EXEC:
			l.rnd.placeVDSO(l.taskSize, rlimStack, 0)
		}
	}

	// Now change the address space: layout, stack, program, interpreter.
	res := l.res
	res.Layout = layout(cur, rlimStack, opts.LegacyLayout, l.rnd)
	m.SetMmapLayout(res.Layout)
	res.ExecutableStack = prog.executableStack()
	stackPerms := hostarch.ReadWrite
	stackPerms.Execute = res.ExecutableStack
	res.Stack = hostarch.AddrRange{Start: args.vmaStart, End: args.top}
	if err := m.MapStack(ctx, res.Stack, stackPerms); err != nil {
		return nil, wrapErr(prog.path, err, "mapping the stack at %v", res.Stack)
	}

	if err := l.loadProgram(prog, interp != nil); err != nil {
		return nil, err
	}
	res.Entry = res.ProgramEntry
	if interp != nil {
		res.Interpreter = interpPath
		base, err := l.loadInterp(interp, res.LoadBias)
		if err != nil {
			return nil, err
		}
		res.InterpreterBase = base
		res.Entry = base + hostarch.Addr(interp.hdr.Entry)
		if res.Entry >= l.taskSize {
			return nil, errorf(interp.path, unix.ELIBBAD, "entry point %#x is beyond TASK_SIZE", uint64(res.Entry))
		}
	} else if res.Entry >= l.taskSize {
		return nil, errorf(prog.path, unix.EINVAL, "entry point %#x is beyond TASK_SIZE", uint64(res.Entry))
	}

	var vdso hostarch.Addr
	if opts.VDSO != nil {
		if vdso, err = opts.VDSO(ctx, m); err != nil {
			return nil, wrapErr(prog.path, err, "mapping the vDSO")
		}
	}

	// The initial stack.
	av := opts.Aux
	if av == nil {
		h := HostAuxValues()
		av = &h
	}
	creds := opts.Creds
	if creds == nil {
		c := HostCredentials()
		creds = &c
	}
	res.Auxv = auxVector(av, creds, vdso, res, uint64(prog.hdr.Phnum), args)
	sp, img := args.build(res.Auxv, random)
	if low := sp.RoundDown(); low < args.vmaStart && uint64(args.top-low) > rlimStack {
		return nil, errorf(prog.path, unix.EFAULT, "the initial stack (%d bytes) exceeds RLIMIT_STACK", uint64(args.top-low))
	}
	if _, err := m.CopyOut(ctx, sp, img, mm.IOOpts{AsApplication: true}); err != nil {
		return nil, wrapErr(prog.path, err, "writing the initial stack at %v", sp)
	}
	res.StackPointer = sp
	if low := sp.RoundDown(); low < res.Stack.Start {
		res.Stack.Start = low // grown by the copy, as find_extend_vma
	}
	res.Argv = hostarch.AddrRange{Start: args.argStart, End: args.argEnd}
	res.Envv = hostarch.AddrRange{Start: args.argEnd, End: args.envEnd}

	// The break: after the highest segment, or, for a program without
	// interpreter that is ET_DYN (a static PIE, or ld.so run directly),
	// at ELF_ET_DYN_BASE, away from the mmap area it was loaded in.
	brkMoved := false
	if elf.Type(prog.hdr.Type) == elf.ET_DYN && interp == nil {
		res.Brk = hostarch.Addr(pageAlign(uint64(etDynBase(l.taskSize))))
		brkMoved = true
	}
	if l.rnd.on() && opts.ASLR.Brk {
		// Randomized, a page above the data at least (unless moved).
		if !brkMoved {
			res.Brk += hostarch.PageSize
		}
		res.Brk = l.rnd.brk(res.Brk)
	}
	if l.rnd.err != nil {
		return nil, wrapErr(prog.path, l.rnd.err, "reading random numbers for the layout")
	}
	m.BrkSetup(ctx, res.Brk)
	m.SetDataSegment(hostarch.AddrRange{Start: res.StartData, End: res.EndData})
	m.SetCodeSegment(hostarch.AddrRange{Start: res.StartCode, End: res.EndCode})
	m.SetArgvEnvv(res.Argv, res.Envv)
	m.SetAuxv(res.Auxv)
	m.SetExecutable(ctx, prog.fd.File())
	return res, nil
}

// auxVector returns the auxiliary vector in create_elf_tables' order on
// x86-64, without AT_NULL.
func auxVector(av *AuxValues, creds *Credentials, vdso hostarch.Addr, res *Result, phnum uint64, args *argStrings) []mm.AuxEntry {
	var aux []mm.AuxEntry
	add := func(k, v uint64) { aux = append(aux, mm.AuxEntry{Key: k, Value: v}) }
	if vdso != 0 {
		add(AT_SYSINFO_EHDR, uint64(vdso))
	}
	if av.MinSigStkSz != 0 {
		add(AT_MINSIGSTKSZ, av.MinSigStkSz)
	}
	clk := av.ClockTicks
	if clk == 0 {
		clk = 100
	}
	add(AT_HWCAP, av.HWCAP)
	add(AT_PAGESZ, hostarch.PageSize)
	add(AT_CLKTCK, clk)
	add(AT_PHDR, uint64(res.PHDR))
	add(AT_PHENT, phdrSize)
	add(AT_PHNUM, phnum)
	add(AT_BASE, uint64(res.InterpreterBase))
	add(AT_FLAGS, 0)
	add(AT_ENTRY, uint64(res.ProgramEntry))
	add(AT_UID, uint64(creds.UID))
	add(AT_EUID, uint64(creds.EUID))
	add(AT_GID, uint64(creds.GID))
	add(AT_EGID, uint64(creds.EGID))
	secure := uint64(0)
	if creds.Secure {
		secure = 1
	}
	add(AT_SECURE, secure)
	add(AT_RANDOM, uint64(args.randomAddr()))
	add(AT_HWCAP2, av.HWCAP2)
	add(AT_EXECFN, uint64(args.execFn))
	add(AT_PLATFORM, uint64(args.platformAddr()))
	if av.RSEQFeatureSize != 0 {
		add(AT_RSEQ_FEATURE_SIZE, av.RSEQFeatureSize)
		add(AT_RSEQ_ALIGN, av.RSEQAlign)
	}
	return aux
}

// open opens path as exec does: a regular file (EACCES otherwise, checked
// before opening, so that a FIFO cannot block) that may be executed
// (EACCES), read through a hostfile FD.
//
// An empty interpreter path names the current directory, as Linux's
// open_exec resolves it (so it is EACCES).
func (l *loader) open(path string, interp bool) (*image, error) {
	img := &image{path: path, interp: interp}
	if path == "" && interp {
		path = "."
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, wrapErr(path, err, "open")
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, errorf(path, unix.EACCES, "not a regular file")
	}
	if err := unix.Access(path, unix.X_OK); err != nil {
		return nil, wrapErr(path, err, "not executable")
	}
	var hostFD int
	for {
		var err error
		hostFD, err = unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, wrapErr(path, err, "open")
		}
		break
	}
	defer unix.Close(hostFD)
	if err := unix.Fstat(hostFD, &st); err != nil {
		return nil, wrapErr(path, err, "fstat")
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, errorf(path, unix.EACCES, "not a regular file")
	}
	if _, err := unix.FcntlInt(uintptr(hostFD), unix.F_SETFL, 0); err != nil {
		return nil, wrapErr(path, err, "clearing O_NONBLOCK")
	}
	if l.files != nil {
		fd, err := l.files.Import(hostFD)
		if err != nil {
			return nil, wrapErr(path, err, "open")
		}
		img.fd = fd
		return img, nil
	}
	f, err := hostfile.NewFile(l.mf, hostFD)
	if err != nil {
		return nil, wrapErr(path, err, "open")
	}
	defer f.DecRef(l.ctx)
	fd, err := hostfile.NewFD(f, true, false)
	if err != nil {
		return nil, wrapErr(path, err, "open")
	}
	img.fd = fd
	return img, nil
}

// loadProgram maps the program's PT_LOAD segments as load_elf_binary does
// and fills in the program's addresses in l.res.
func (l *loader) loadProgram(img *image, hasInterp bool) error {
	res := l.res
	loads := img.loads()
	etDyn := elf.Type(img.hdr.Type) == elf.ET_DYN
	var loadBias uint64 // wraps, as Linux's unsigned long
	first := true
	var phdrAddr uint64
	startCode := ^uint64(0)
	var endCode, startData, endData, elfBrk uint64
	for i, ph := range loads {
		prot := makeProt(ph.Flags)
		flags := linuxabi.MapPrivate
		vaddr := ph.Vaddr
		var totalSize uint64
		switch {
		case !first:
			flags |= linuxabi.MapFixed
		case !etDyn:
			flags |= linuxabi.MapFixedNoReplace
		default:
			// The first segment of an ET_DYN sets the load bias for all.
			totalSize = totalMappingSize(loads)
			if totalSize == 0 {
				return errorf(img.path, unix.EINVAL, "PT_LOAD segments span no memory")
			}
			alignment := maximumAlignment(loads)
			if hasInterp {
				// A PIE: at ELF_ET_DYN_BASE, aligned.
				loadBias = uint64(etDynBase(l.taskSize)) + l.rnd.mmapRnd()
				if alignment != 0 {
					loadBias &^= alignment - 1
				}
				flags |= linuxabi.MapFixedNoReplace
			} else if alignment > hostarch.PageSize {
				// A loader with large alignment: find room for the
				// whole image, then map it aligned there.
				got, err := l.elfLoad(img, i, 0, ph, prot, flags, totalSize)
				if err != nil {
					return err
				}
				_ = l.m.MUnmap(l.ctx, got.mapAddr, pageAlign(totalSize))
				loadBias = uint64(got.mapAddr) &^ (alignment - 1)
				flags |= linuxabi.MapFixedNoReplace
			} else {
				// A loader: wherever mmap puts it.
				loadBias = 0
			}
			loadBias = hostarch.PageRoundDown(loadBias - vaddr)
		}
		got, err := l.elfLoad(img, i, hostarch.Addr(loadBias+vaddr), ph, prot, flags, totalSize)
		if err != nil {
			return err
		}
		res.Segments = append(res.Segments, got.seg)
		if first {
			first = false
			if etDyn {
				loadBias += uint64(got.mapAddr) - hostarch.PageRoundDown(loadBias+vaddr)
			}
		}
		if ph.Off <= img.hdr.Phoff && img.hdr.Phoff < ph.Off+ph.Filesz {
			phdrAddr = img.hdr.Phoff - ph.Off + ph.Vaddr
		}
		isCode := elf.ProgFlag(ph.Flags)&elf.PF_X != 0
		k := ph.Vaddr
		if isCode && k < startCode {
			startCode = k
		}
		startData = max(startData, k)
		k = ph.Vaddr + ph.Filesz
		if isCode && endCode < k {
			endCode = k
		}
		endData = max(endData, k)
		elfBrk = max(elfBrk, ph.Vaddr+ph.Memsz)
	}
	res.LoadBias = hostarch.Addr(loadBias)
	res.ProgramEntry = hostarch.Addr(img.hdr.Entry + loadBias)
	res.PHDR = hostarch.Addr(phdrAddr + loadBias)
	res.StartCode = hostarch.Addr(startCode + loadBias)
	res.EndCode = hostarch.Addr(endCode + loadBias)
	res.StartData = hostarch.Addr(startData + loadBias)
	res.EndData = hostarch.Addr(endData + loadBias)
	res.Brk = hostarch.Addr(pageAlign(elfBrk + loadBias))
	return nil
}

// loadInterp maps the interpreter's PT_LOAD segments as load_elf_interp
// does and returns its load bias. noBase is the program's load bias.
func (l *loader) loadInterp(img *image, noBase hostarch.Addr) (hostarch.Addr, error) {
	loads := img.loads()
	totalSize := totalMappingSize(loads)
	if totalSize == 0 {
		return 0, errorf(img.path, unix.ELIBBAD, "PT_LOAD segments span no memory")
	}
	etDyn := elf.Type(img.hdr.Type) == elf.ET_DYN
	var loadAddr uint64
	loadAddrSet := false
	ts := uint64(l.taskSize)
	for i, ph := range loads {
		flags := linuxabi.MapPrivate
		vaddr := ph.Vaddr
		if !etDyn || loadAddrSet {
			flags |= linuxabi.MapFixed
		} else if noBase != 0 {
			loadAddr = -vaddr
		}
		got, err := l.elfLoad(img, i, hostarch.Addr(loadAddr+vaddr), ph, makeProt(ph.Flags), flags, totalSize)
		totalSize = 0
		if err != nil {
			return 0, err
		}
		l.res.Segments = append(l.res.Segments, got.seg)
		if !loadAddrSet && etDyn {
			loadAddr = uint64(got.mapAddr) - hostarch.PageRoundDown(vaddr)
			loadAddrSet = true
		}
		if k := loadAddr + ph.Vaddr; k >= ts || ph.Memsz > ts || ts-ph.Memsz < k {
			return 0, errorf(img.path, unix.ELIBBAD, "PT_LOAD %d at %#x is beyond TASK_SIZE", i, k)
		}
	}
	return hostarch.Addr(loadAddr), nil
}

// loaded is what elfLoad mapped.
type loaded struct {
	// mapAddr is the address of the segment's first page.
	mapAddr hostarch.Addr
	// seg describes the mapping.
	seg Segment
}

// elfLoad maps one PT_LOAD segment (index i) at addr as Linux 6.7+'s
// elf_load: the file pages (elfMap), the rest of the last file page
// zeroed if the segment is writable, and anonymous pages for the rest of
// p_memsz.
func (l *loader) elfLoad(img *image, i int, addr hostarch.Addr, ph *elf.Prog64, prot, flags int, totalSize uint64) (loaded, error) {
	pageOff := ph.Vaddr % hostarch.PageSize
	var mapAddr hostarch.Addr
	var zeroStart, zeroEnd uint64
	seg := Segment{Path: img.path, Perms: hostarch.AccessTypeFromProt(prot)}
	if ph.Filesz != 0 {
		var err error
		mapAddr, err = l.elfMap(img, i, addr, ph, prot, flags, totalSize)
		if err != nil {
			return loaded{}, err
		}
		size := pageAlign(ph.Filesz + pageOff)
		seg.File = hostarch.AddrRange{Start: mapAddr, End: mapAddr + hostarch.Addr(size)}
		seg.Offset = ph.Off - pageOff
		if ph.Memsz > ph.Filesz {
			zeroStart = uint64(mapAddr) + pageOff + ph.Filesz
			zeroEnd = uint64(mapAddr) + pageOff + ph.Memsz
			if err := l.padZero(hostarch.Addr(zeroStart)); err != nil && prot&unix.PROT_WRITE != 0 {
				return loaded{}, wrapErr(img.path, err, "zeroing the end of PT_LOAD %d's last file page at %#x", i, zeroStart)
			}
		}
	} else {
		mapAddr = addr.RoundDown()
		zeroStart = uint64(mapAddr)
		zeroEnd = zeroStart + pageOff + ph.Memsz
	}
	if ph.Memsz > ph.Filesz {
		// vm_brk_flags: anonymous read-write memory, executable if the
		// segment is.
		zs, ze := pageAlign(zeroStart), pageAlign(zeroEnd)
		if ze > zs {
			perms := hostarch.ReadWrite
			perms.Execute = prot&unix.PROT_EXEC != 0
			ar := hostarch.AddrRange{Start: hostarch.Addr(zs), End: hostarch.Addr(ze)}
			if _, err := l.m.MMap(l.ctx, anonOpts(ar, perms)); err != nil {
				return loaded{}, wrapErr(img.path, err, "mapping PT_LOAD %d's zero pages at %v", i, ar)
			}
			seg.Anon = ar
		}
	}
	return loaded{mapAddr: mapAddr, seg: seg}, nil
}

// anonOpts are the options of vm_brk_flags's mapping at ar.
func anonOpts(ar hostarch.AddrRange, perms hostarch.AccessType) memmap.MMapOpts {
	return memmap.MMapOpts{
		Length:   ar.Length(),
		Addr:     ar.Start,
		Fixed:    true,
		Unmap:    true,
		Private:  true,
		Perms:    perms,
		MaxPerms: hostarch.AnyAccess,
	}
}

// padZero zeroes from addr to the end of its page, as Linux's padzero
// (through the application's permissions: a read-only page fails, which
// the caller ignores).
func (l *loader) padZero(addr hostarch.Addr) error {
	n := addr.PageOffset()
	if n == 0 {
		return nil
	}
	zeros := make([]byte, hostarch.PageSize-n)
	_, err := l.m.CopyOut(l.ctx, addr, zeros, mm.IOOpts{})
	return err
}

// elfMap maps the file part of a PT_LOAD segment as Linux's elf_map: a
// private file mapping of the pages holding [p_offset, p_offset+p_filesz)
// at addr's page. With totalSize, it first maps the whole image's size
// there (so that the image fits as a whole) and unmaps the excess.
func (l *loader) elfMap(img *image, i int, addr hostarch.Addr, ph *elf.Prog64, prot, flags int, totalSize uint64) (hostarch.Addr, error) {
	pageOff := ph.Vaddr % hostarch.PageSize
	size := pageAlign(ph.Filesz + pageOff)
	off := ph.Off - pageOff
	addr = addr.RoundDown()
	if size == 0 {
		return addr, nil
	}
	length := size
	if totalSize != 0 {
		length = pageAlign(totalSize)
	}
	got, err := linuxabi.MMap(l.ctx, l.m, uint64(addr), length, uint64(prot), uint64(flags), img.fd, off)
	if err != nil {
		what := "mapping"
		if errors.Is(err, unix.EEXIST) {
			what = "mapping (the range is occupied)"
		}
		return 0, wrapErr(img.path, err, "%s PT_LOAD %d at %v", what, i, addr)
	}
	if length > size {
		_ = l.m.MUnmap(l.ctx, got+hostarch.Addr(size), length-size)
	}
	return got, nil
}

// String describes a segment.
func (s Segment) String() string {
	return fmt.Sprintf("%s: file %v off %#x %v anon %v", s.Path, s.File, s.Offset, s.Perms, s.Anon)
}
