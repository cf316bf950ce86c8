package vmspace

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/hostfile"
	"github.com/vmspace/vmspace/kernel"
	"github.com/vmspace/vmspace/linuxabi"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/mm"
	"github.com/vmspace/vmspace/pgalloc"
	"github.com/vmspace/vmspace/vmscript"
	"golang.org/x/sys/unix"
)

// libsSize, dataSize and stackSize are the sizes of the stand-ins for a
// process's libraries, data and main stack (132 KiB, Linux's usual
// initial stack).
const (
	libsSize  = 2 << 20
	dataSize  = 64 << 10
	stackSize = 132 << 10
)

// The native agent's libraries are laid out, from mmap_base down, as the
// loader and vDSO (upperLibsSize, with upperDataSize of data below them),
// then a hole of libcHole bytes where the first mappings placed top-down
// go, then libc (the rest of libsSize and dataSize): a mapping placed
// top-down that does not fit in the hole goes below libc, so the hole
// left by unmapping a page of such a mapping is as far from the others as
// natively. (The native agent keeps its hole at libcHole bytes whatever
// the size of the machine's loader cache: LIBC_HOLE in agent.c.)
const (
	upperLibsSize = 0x3d000
	upperDataSize = 0x2000
	libcHole      = 0x9000
)

// Brk is where the vmspace executor puts p0's program break: low,
// like the break of the native agent (a non-PIE binary), so that lengths
// relative to brk overflow, or not, as they do natively.
const Brk = 0x4000000

// Options configure the vmspace executor.
type Options struct {
	// NoZeroPage, if not nil, replaces the host's Limits.NoZeroPage: the
	// corpus tests pin it for scripts whose Linux transcript depends on it
	// ("# requires: zeropage" or "nozeropage").
	NoZeroPage *bool
}

// HostNoZeroPage reports whether the host's kernel has no shared zero page
// (mm.Limits.NoZeroPage, the mode New runs in unless Options say).
func HostNoZeroPage() bool { return mm.HostLimits().NoZeroPage }

// New returns an Executor that runs scripts on vmspace's MemoryManager,
// with files, memfds and shared memory from package hostfile, all in one
// memory file per run.
func New(opts Options) vmscript.Executor { return &vmspaceExec{noZeroPage: opts.NoZeroPage} }

// vmspaceExec is the Executor. The script driver calls an Executor and its
// Procs from one goroutine, one call at a time, so neither it nor vproc
// nor namedObjects has a field that needs a lock.
type vmspaceExec struct {
	mf    *pgalloc.MemoryFile
	procs map[*vproc]struct{}
	// shm holds the run's System V shared memory segments.
	shm *kernel.ShmRegistry
	// files are every open file handle, closed at the end.
	files []*hostfile.FD
	// dir holds the temporary files.
	dir string
	// fault, if not nil, is called at each stage of a checkpoint
	// ("save", "release", "restore") and a non-nil result is that
	// stage's failure: tests inject failures with it. Set before Start.
	fault func(stage string) error
	// noZeroPage is Options.NoZeroPage.
	noZeroPage *bool
}

// vproc is one process: a MemoryManager and its named objects (shared with
// forks, like descriptors): files, segments (by their memory, whose id
// the executor's registry knows while the segment lives) and AIO
// contexts.
type vproc struct {
	ex    *vmspaceExec
	mm    *mm.MemoryManager
	files map[string]*hostfile.FD
	shms  map[string]*hostfile.Shm
	aios  map[string]uint64
}

func (e *vmspaceExec) Start(ctx context.Context) (vmscript.Proc, error) {
	mf, err := pgalloc.New(pgalloc.Options{Name: "vmscript"})
	if err != nil {
		return nil, err
	}
	e.mf = mf
	e.procs = map[*vproc]struct{}{}
	e.shm = kernel.NewShmRegistry(mf)
	lim := mm.HostLimits()
	if e.noZeroPage != nil {
		lim.NoZeroPage = *e.noZeroPage
	}
	m := mm.New(mm.Options{MemoryFile: mf, Limits: &lim, Platform: committingPlatform{}})
	if err := m.Activate(ctx); err != nil {
		m.DecUsers(ctx)
		return nil, err
	}
	m.BrkSetup(ctx, Brk)
	e.setup(m)
	// A real process has its libraries right below mmap_base, so the
	// first mapping placed top-down has a neighbour above it (and cannot
	// grow in place). Stand in for them, and for their data segments,
	// which count in VmData, so that `setrlimit data +N` starts from a
	// non-zero limit, as in a real process (a zero RLIMIT_DATA is not
	// enforced).
	top := m.MmapLayout().TopDownBase
	upperData := top - upperLibsSize - upperDataSize
	libc := upperData - libcHole - (dataSize - upperDataSize) - (libsSize - upperLibsSize)
	for _, sm := range []struct {
		what       string
		addr, size hostarch.Addr
		perms      hostarch.AccessType
	}{
		{"the stand-in loader", top - upperLibsSize, upperLibsSize, hostarch.ReadExecute},
		{"the stand-in loader's data", upperData, upperDataSize, hostarch.ReadWrite},
		{"the stand-in libc", libc, libsSize - upperLibsSize, hostarch.ReadExecute},
		{"the stand-in libc's data", libc + (libsSize - upperLibsSize), dataSize - upperDataSize, hostarch.ReadWrite},
	} {
		if _, err := m.MMap(ctx, memmap.MMapOpts{Length: uint64(sm.size), Addr: sm.addr, Fixed: true, Unmap: true,
			Private: true, Perms: sm.perms, MaxPerms: hostarch.AnyAccess}); err != nil {
			return nil, fmt.Errorf("mapping %s: %w", sm.what, err)
		}
	}
	// And its stack sits at the top of the address space: VmStk, and so
	// `setrlimit stack +N`, count it.
	stackTop := hostarch.MaxUserAddress - 0x1000
	if _, err := m.MMap(ctx, memmap.MMapOpts{Length: stackSize, Addr: stackTop - stackSize, Fixed: true, Unmap: true,
		Private: true, GrowsDown: true, Perms: hostarch.ReadWrite, MaxPerms: hostarch.AnyAccess}); err != nil {
		return nil, fmt.Errorf("mapping the stand-in stack: %w", err)
	}
	dir, err := os.MkdirTemp("", "vmscript-")
	if err != nil {
		return nil, err
	}
	e.dir = dir
	p := &vproc{ex: e, mm: m, files: map[string]*hostfile.FD{}, shms: map[string]*hostfile.Shm{}, aios: map[string]uint64{}}
	e.procs[p] = struct{}{}
	return p, nil
}

// setup gives a new manager its shared anonymous memory.
func (e *vmspaceExec) setup(m *mm.MemoryManager) {
	mk := hostfile.SharedAnonFactory(e.mf)
	m.SetSharedAnonFactory(func(ctx context.Context, n uint64) (mm.MappableFile, error) {
		return mk(ctx, n)
	})
}

func (e *vmspaceExec) Checkpoint(ctx context.Context) error {
	return e.checkpoint(ctx)
}

func (e *vmspaceExec) Close() error {
	ctx := context.Background()
	for p := range e.procs {
		// A failed checkpoint leaves released processes (nil mm).
		if p.mm != nil {
			release(ctx, p.mm)
		}
	}
	e.procs = nil
	if e.shm != nil {
		e.shm.Release(ctx)
	}
	for _, f := range e.files {
		f.Close(ctx)
	}
	e.files = nil
	if e.dir != "" {
		os.RemoveAll(e.dir)
	}
	if e.mf != nil {
		e.mf.Destroy()
	}
	return nil
}

func (p *vproc) Fork(ctx context.Context) (vmscript.Proc, error) {
	// The child inherits the shared anonymous memory factory from Fork.
	m, err := p.mm.Fork(ctx)
	if err != nil {
		return nil, err
	}
	if err := m.Activate(ctx); err != nil {
		m.DecUsers(ctx)
		return nil, err
	}
	c := &vproc{ex: p.ex, mm: m, files: map[string]*hostfile.FD{}, shms: map[string]*hostfile.Shm{}, aios: map[string]uint64{}}
	for k, v := range p.files {
		c.files[k] = v
	}
	for k, v := range p.shms {
		c.shms[k] = v
	}
	for k, v := range p.aios {
		c.aios[k] = v
	}
	p.ex.procs[c] = struct{}{}
	return c, nil
}

func (p *vproc) Exit(ctx context.Context) error {
	if _, ok := p.ex.procs[p]; ok {
		delete(p.ex.procs, p)
		release(ctx, p.mm)
	}
	return nil
}

// The memory calls go through linuxabi, as a program's under `vmspace run`
// do: the flags are decoded once, the same way for both.

func (p *vproc) Mmap(ctx context.Context, a vmscript.MmapArgs) (uint64, error) {
	var f mm.MappableFile
	if a.File != "" {
		if fo, ok := p.files[a.File]; ok {
			f = fo
		}
	}
	addr, err := linuxabi.MMap(ctx, p.mm, a.Addr, a.Len, uint64(a.Prot), uint64(a.Flags), f, a.Off)
	return uint64(addr), err
}

func (p *vproc) Munmap(ctx context.Context, addr, length uint64) error {
	return linuxabi.Munmap(ctx, p.mm, addr, length)
}

func (p *vproc) Mprotect(ctx context.Context, addr, length uint64, prot vmscript.Prot) error {
	return linuxabi.Mprotect(ctx, p.mm, addr, length, uint64(prot))
}

func (p *vproc) Mremap(ctx context.Context, addr, oldLen, newLen uint64, flags vmscript.MremapFlags, newAddr uint64) (uint64, error) {
	a, err := linuxabi.Mremap(ctx, p.mm, addr, oldLen, newLen, uint64(flags), newAddr)
	return uint64(a), err
}

func (p *vproc) Madvise(ctx context.Context, addr, length uint64, advice vmscript.Advice) error {
	return linuxabi.Madvise(ctx, p.mm, addr, length, uint64(uint32(advice)))
}

func (p *vproc) Mlock(ctx context.Context, addr, length uint64, onFault bool) error {
	if onFault {
		return linuxabi.Mlock2(ctx, p.mm, addr, length, linuxabi.MlockOnFault)
	}
	return linuxabi.Mlock(ctx, p.mm, addr, length)
}

func (p *vproc) Munlock(ctx context.Context, addr, length uint64) error {
	return linuxabi.Munlock(ctx, p.mm, addr, length)
}

func (p *vproc) Mlockall(ctx context.Context, flags vmscript.MlockallFlags) error {
	return linuxabi.Mlockall(ctx, p.mm, uint64(flags))
}

func (p *vproc) Munlockall(ctx context.Context) error { return linuxabi.Munlockall(ctx, p.mm) }

func (p *vproc) Msync(ctx context.Context, addr, length uint64, flags vmscript.MsyncFlags) error {
	return linuxabi.Msync(ctx, p.mm, addr, length, uint64(flags))
}

func (p *vproc) Mincore(ctx context.Context, addr, length uint64) ([]byte, error) {
	// The native agent's vector is its own buffer, always writable.
	return linuxabi.MincoreVector(ctx, p.mm, addr, length, 0)
}

func (p *vproc) Mseal(ctx context.Context, addr, length uint64) error {
	return linuxabi.Mseal(ctx, p.mm, addr, length, 0)
}

func (p *vproc) SetAnonName(ctx context.Context, addr, length uint64, name string, clear bool) error {
	if clear {
		name = ""
	}
	return p.mm.SetVMAName(ctx, hostarch.Addr(addr), length, name)
}

func (p *vproc) Brk(ctx context.Context, addr uint64) (uint64, error) {
	return uint64(linuxabi.Brk(ctx, p.mm, addr)), nil
}

func (p *vproc) Setrlimit(ctx context.Context, res vmscript.Resource, soft uint64) error {
	l := p.mm.Limits()
	var r *mm.RLimit
	switch res {
	case vmscript.RlimitAS:
		r = &l.AS
	case vmscript.RlimitData:
		r = &l.Data
	case vmscript.RlimitMemlock:
		r = &l.MemLock
	case vmscript.RlimitStack:
		r = &l.Stack
	default:
		return unix.EINVAL
	}
	if soft > r.Max {
		return unix.EINVAL
	}
	r.Cur = soft
	p.mm.SetLimits(l)
	return nil
}

func (p *vproc) Usage(ctx context.Context) (vmscript.Usage, error) {
	s := p.mm.Stats()
	return vmscript.Usage{VmSize: s.VmSize >> 10, VmLck: s.VmLck >> 10, VmData: s.VmData >> 10, VmStk: s.VmStk >> 10}, nil
}

// faultOf converts the manager's access error after n bytes into a Fault.
func faultOf(n int, err error) (vmscript.Fault, error) {
	if err == nil {
		return vmscript.Fault{}, nil
	}
	var ae *mm.AccessError
	if !errors.As(err, &ae) {
		return vmscript.Fault{}, fmt.Errorf("vmspace access: %v", err)
	}
	k := vmscript.FaultSEGV
	if ae.Signal == unix.SIGBUS {
		k = vmscript.FaultBUS
	}
	return vmscript.Fault{Kind: k, Off: uint64(n)}, nil
}

// appIO is how script accesses reach memory: as the application's own.
var appIO = mm.IOOpts{AsApplication: true}

func (p *vproc) Write(ctx context.Context, addr uint64, data []byte) (vmscript.Fault, error) {
	n, err := p.mm.CopyOut(ctx, hostarch.Addr(addr), data, appIO)
	return faultOf(n, err)
}

// chunk is how much Fill and Sum move per call (and between checks of the
// context's cancellation).
const chunk = 1 << 20

func (p *vproc) Fill(ctx context.Context, addr, length uint64, b byte) (vmscript.Fault, error) {
	buf := make([]byte, min(length, chunk))
	for i := range buf {
		buf[i] = b
	}
	var done uint64
	for done < length {
		if err := ctx.Err(); err != nil {
			return vmscript.Fault{}, err
		}
		n := min(length-done, chunk)
		m, err := p.mm.CopyOut(ctx, hostarch.Addr(addr+done), buf[:n], appIO)
		if err != nil {
			return faultOf(int(done)+m, err)
		}
		done += n
	}
	return vmscript.Fault{}, nil
}

func (p *vproc) Read(ctx context.Context, addr, length uint64) ([]byte, vmscript.Fault, error) {
	buf := make([]byte, length)
	n, err := p.mm.CopyIn(ctx, hostarch.Addr(addr), buf, appIO)
	f, err := faultOf(n, err)
	return buf[:n], f, err
}

func (p *vproc) Sum(ctx context.Context, addr, length uint64) (uint64, vmscript.Fault, error) {
	h := vmscript.FNVOffset
	buf := make([]byte, min(length, chunk))
	var done uint64
	for done < length {
		if err := ctx.Err(); err != nil {
			return 0, vmscript.Fault{}, err
		}
		n := min(length-done, chunk)
		m, err := p.mm.CopyIn(ctx, hostarch.Addr(addr+done), buf[:n], appIO)
		h = vmscript.FNV1a(h, buf[:m])
		if err != nil {
			f, err := faultOf(int(done)+m, err)
			return h, f, err
		}
		done += n
	}
	return h, vmscript.Fault{}, nil
}

func (p *vproc) File(ctx context.Context, name string, size uint64, ro bool, seed uint64) error {
	f, err := os.CreateTemp(p.ex.dir, "file-")
	if err != nil {
		return err
	}
	path := f.Name()
	buf := make([]byte, min(size, chunk))
	for off := uint64(0); off < size; off += uint64(len(buf)) {
		n := min(size-off, uint64(len(buf)))
		for i := uint64(0); i < n; i++ {
			buf[i] = vmscript.FileByte(off+i, seed)
		}
		if _, err := f.Write(buf[:n]); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	flags := unix.O_RDWR
	if ro {
		flags = unix.O_RDONLY
	}
	fd, err := hostfile.OpenFile(p.ex.mf, path, flags, 0)
	os.Remove(path)
	if err != nil {
		return err
	}
	p.ex.files = append(p.ex.files, fd)
	p.files[name] = fd
	return nil
}

func (p *vproc) Memfd(ctx context.Context, name string, size uint64) error {
	f, err := hostfile.NewMemfd(p.ex.mf, name, size)
	if err != nil {
		return err
	}
	fd, err := hostfile.NewFD(f, true, true)
	f.DecRef(ctx)
	if err != nil {
		return err
	}
	p.ex.files = append(p.ex.files, fd)
	p.files[name] = fd
	return nil
}

func (p *vproc) Ftruncate(ctx context.Context, name string, size uint64) error {
	f, ok := p.files[name]
	if !ok {
		return unix.EBADF
	}
	if !f.Writable() || int64(size) < 0 {
		return unix.EINVAL
	}
	return f.Truncate(ctx, int64(size))
}

func (p *vproc) Pwrite(ctx context.Context, name string, off uint64, data []byte) error {
	f, ok := p.files[name]
	if !ok || !f.Writable() {
		return unix.EBADF
	}
	_, err := f.WriteAt(data, int64(off))
	return err
}

func (p *vproc) Psum(ctx context.Context, name string, off, length uint64) (uint64, uint64, error) {
	f, ok := p.files[name]
	if !ok || !f.Readable() {
		return 0, 0, unix.EBADF
	}
	h := vmscript.FNVOffset
	buf := make([]byte, min(length, chunk))
	var done uint64
	for done < length {
		n := min(length-done, chunk)
		m, err := f.ReadAt(buf[:n], int64(off+done))
		h = vmscript.FNV1a(h, buf[:m])
		done += uint64(m)
		if err != nil || uint64(m) < n {
			break
		}
	}
	return h, done, nil
}

func (p *vproc) Close(ctx context.Context, name string) error {
	if _, ok := p.files[name]; !ok {
		return unix.EBADF
	}
	delete(p.files, name)
	return nil
}

// The System V shared memory and AIO calls go through package kernel, as
// a program's under `vmspace run` do. The script's process is pid 1.

// shmID returns the id of the segment named name, if it lives.
func (p *vproc) shmID(name string) uint64 {
	if s, ok := p.shms[name]; ok {
		if id, ok := p.ex.shm.ID(s); ok {
			return id
		}
	}
	return ^uint64(0) // -1, as the native agent passes for an unknown name
}

func (p *vproc) Shmget(ctx context.Context, name string, size uint64) error {
	id, err := p.ex.shm.Shmget(ctx, 1, kernel.IPCPrivate, size, kernel.IPCCreat|0o600)
	if err != nil {
		return err
	}
	s, ok := p.ex.shm.Segment(id)
	if !ok {
		return unix.EIDRM
	}
	p.shms[name] = s
	return nil
}

func (p *vproc) Shmat(ctx context.Context, name string, addr uint64, rdonly bool) (uint64, error) {
	var flags uint64
	if rdonly {
		flags = kernel.ShmRdonly
	}
	a, err := p.ex.shm.Shmat(ctx, p.mm, 1, p.shmID(name), addr, flags)
	return uint64(a), err
}

func (p *vproc) Shmdt(ctx context.Context, addr uint64) error {
	return p.ex.shm.Shmdt(ctx, p.mm, 1, addr)
}

func (p *vproc) Shmrm(ctx context.Context, name string) error {
	_, err := p.ex.shm.Shmctl(ctx, p.mm, 1, p.shmID(name), kernel.IPCRmid, 0)
	return err
}

func (p *vproc) IoSetup(ctx context.Context, name string, nr uint32) (uint64, error) {
	id, err := kernel.IoSetupID(ctx, p.mm, uint64(nr))
	if err != nil {
		return 0, err
	}
	p.aios[name] = id
	return id, nil
}

func (p *vproc) IoDestroy(ctx context.Context, name string) error {
	id, ok := p.aios[name]
	if !ok {
		return unix.EINVAL
	}
	return kernel.IoDestroy(ctx, p.mm, id)
}

func (p *vproc) State(ctx context.Context, addr, length uint64) ([]vmscript.Region, error) {
	end := addr + length
	if end < addr {
		end = ^uint64(0)
	}
	var out []vmscript.Region
	for _, r := range p.mm.Regions(hostarch.AddrRange{Start: hostarch.Addr(addr), End: hostarch.Addr(end)}) {
		if !r.Mapped {
			continue
		}
		var fl vmscript.VMFlags
		for _, f := range r.Flags {
			fl |= vmscript.VMFlagByName(f)
		}
		out = append(out, vmscript.Region{Start: uint64(r.Range.Start), End: uint64(r.Range.End), Perms: r.Perms, Flags: fl})
	}
	return out, nil
}
