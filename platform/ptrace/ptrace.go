// Package ptrace is a platform whose AddressSpaces are stub processes
// traced with ptrace(2): MapFile and Unmap are mmap and munmap system calls
// made by the stub on the memory manager's behalf.
//
// # The stub
//
// The stub is a tiny static x86-64 ELF that this package generates (stub.go,
// asm.go): an ELF header, one PT_LOAD page, a few dozen instructions, no
// library. NewAddressSpace writes it to a memfd and execs it
// (/proc/self/fd/N) as a traced child (PTRACE_TRACEME) of a goroutine
// locked to its own OS thread, the tracer thread: every ptrace request for
// the stub comes from that thread. After exec, the tracer makes the stub
// (through "syscall; int3" with registers it sets):
//
//   - map its code at StubCode (r-x), the last page of the user range, and
//     its comm page at StubComm (rw-s) just below it: a page of a memfd the
//     tracer maps too, through which requests and results pass;
//   - unmap everything below StubStart = StubComm (the ELF image, the
//     stack, the vdso and vvar), so that the application range
//     [MinUserAddress, StubStart) is empty;
//   - move its end of a descriptor-passing socket to StubSocketFD.
//
// # How system calls are made in the stub
//
// Parked (between operations), the stub runs its serve loop: it sleeps on
// a futex in the comm page; a requester writes the system call number and
// arguments there, wakes it, and yields the CPU (a few times, then sleeps
// on the futex) until the stub has made the call and stored the result. No
// ptrace stop is involved, and the requester may be any goroutine (they
// take turns under a mutex): with the process on one CPU, a MapFile costs
// two context switches and the mmap. Meanwhile the tracer goroutine sits
// in wait4, so it learns at once of the stub's death (and fails the
// request), of a signal (which it suppresses), or of the stub's own code
// faulting (say, because a
// Syscall unmapped the comm page: the stub is killed, with an error saying
// so).
//
// Only the stub's start-up, before the comm page exists, injects system
// calls with ptrace (Inject, registers set for each call). The stub's
// code page also holds an inject loop (a comm page request, then int3)
// and a trap request (cmdTrap), which served a stopped mode where
// functions ran on the tracer thread (Do): this package no longer uses
// them.
//
// Measured on a 2-vCPU VM, process pinned to CPU 0 (bench_test.go): a
// request from an ordinary goroutine (getppid) about 4 us, MapFile of 4 KiB
// or 2 MiB about 8 us (of which mmap replacing a mapping is about 3.5),
// Unmap about 5 us.
//
// # Files
//
// MapFile maps a memmap.File through its FD. The first time a descriptor
// is mapped, it is sent to the stub over the socket (SCM_RIGHTS) and
// installed at StubFileFDBase+i; the stub keeps up to MaxStubFiles of them,
// replacing the least recently used when full (a mapping does not need its
// descriptor once made).
//
// # The driver, and a sandbox
//
// Which host mappings a stub process has below StubStart is driven by
// HostMappings (hostmappings.go): a record of every mapping made there,
// so that MapFile maps only what is missing, with deferred unmaps and the
// stale mappings a host fork child inherits. An AddressSpace drives its
// stub with it (its unmaps made at once); package sandbox drives each of
// a program's processes with it, through calls injected into a stopped
// thread of the program.
//
// Besides the AddressSpace methods, an AddressSpace exposes the stub's
// Pid, Syscall (any system call made by the stub), ReadMemory/WriteMemory
// and Scratch (memory for Syscall's pointer arguments), which its tests
// and benchmarks use. No application runs in this package's stubs: a
// program traced by vmspace runs under package sandbox, whose one tracer
// thread serves every thread of every process of the program, with this
// package's stub image, injector and HostMappings.
//
// A tracer of its own (package sandbox, which traces every thread of
// every process of a program from one thread) uses the pieces directly:
// the stub image (Exe, StubImage, StubLinkAddr) and code page
// (StubCodePage) for its processes, and the injector (Inject, inject.go)
// for the system calls it makes in their threads, through the stub's
// "syscall; int3" (StubSyscallOff), with its own Waiter. The injector is
// the one way vmspace injects a system call with registers set for it;
// this package's stubs use it during start-up, and their comm page's
// serve loop after.
//
// The stub's code is generated in one place (buildStub, with package
// internal/x86asm) and its request protocol is the comm page's (comm.go):
// a trap-free path for a program's threads (a SECCOMP_RET_TRAP filter and
// a signal handler in the stub's code that passes the call through a
// shared page to the tracer and sleeps on a futex there) belongs in those
// two, for the sandbox's processes as for this package's stubs.
//
// A seccomp filter that returns SECCOMP_RET_TRACE for the application's
// memory system calls must let those made by the stub's own code through:
// allow any system call whose instruction_pointer is in [StubCode,
// StubEnd). Install it with SECCOMP_FILTER_FLAG_SPEC_ALLOW: otherwise the
// kernel may flush branch predictors on every switch to and from the stub,
// which is slow.
package ptrace

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/internal/lockrank"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/platform"
	"golang.org/x/sys/unix"
)

// Options configure a Platform.
type Options struct {
	// Stdin, Stdout and Stderr become descriptors 0, 1 and 2 of every stub
	// (for an application that will run in it). nil means the calling
	// process's own.
	Stdin, Stdout, Stderr *os.File
}

// Platform makes ptrace AddressSpaces.
type Platform struct {
	// opts are the options the Platform was made with. Immutable.
	opts Options
	// minAddr is MinUserAddress. Immutable.
	minAddr hostarch.Addr

	// mu protects exe.
	mu lockrank.Mutex[lockrank.PlatformTag]
	// exe is the stub executable shared by all stubs; nil after Close.
	exe *Exe
}

var (
	_ platform.Platform     = (*Platform)(nil)
	_ platform.AddressSpace = (*AddressSpace)(nil)
)

// New returns a Platform with default options.
func New() (*Platform, error) { return NewWithOptions(Options{}) }

// NewWithOptions returns a Platform.
func NewWithOptions(opts Options) (*Platform, error) {
	if opts.Stdin == nil {
		opts.Stdin = os.Stdin
	}
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	exe, err := NewExe()
	if err != nil {
		return nil, err
	}
	return &Platform{opts: opts, minAddr: MinUserAddress(), exe: exe}, nil
}

// MinUserAddress returns the lowest address an application of a stub may
// map, as Linux's default for a process: the larger of 0x10000 and the
// host's vm.mmap_min_addr, rounded up to a page.
func MinUserAddress() hostarch.Addr {
	min := uint64(0x10000)
	if b, err := os.ReadFile("/proc/sys/vm/mmap_min_addr"); err == nil {
		if v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && v > min && v < uint64(StubStart) {
			min = v
		}
	}
	r, _ := hostarch.PageRoundUp(min)
	return hostarch.Addr(r)
}

// Close releases the Platform's own resources (the stub executable).
// AddressSpaces already made are unaffected; NewAddressSpace fails
// afterwards.
func (p *Platform) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exe == nil {
		return nil
	}
	err := p.exe.Close()
	p.exe = nil
	return err
}

// SupportsAddressSpaceIO implements platform.Platform.
func (*Platform) SupportsAddressSpaceIO() bool { return false }

// MapUnit implements platform.Platform: whole pmas are mapped at once.
func (*Platform) MapUnit() uint64 { return 0 }

// MinUserAddress implements platform.Platform: the larger of 0x10000 and
// the host's vm.mmap_min_addr.
func (p *Platform) MinUserAddress() hostarch.Addr { return p.minAddr }

// MaxUserAddress implements platform.Platform: StubStart, where the stub's
// own pages begin.
func (*Platform) MaxUserAddress() hostarch.Addr { return StubStart }

// NewAddressSpace implements platform.Platform: it starts a stub process.
func (p *Platform) NewAddressSpace() (platform.AddressSpace, error) {
	as, err := p.NewStub()
	if err != nil {
		return nil, err
	}
	return as, nil
}

// NewStub is NewAddressSpace returning the concrete type.
func (p *Platform) NewStub() (*AddressSpace, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exe == nil {
		return nil, fmt.Errorf("ptrace: platform closed")
	}
	c, err := newComm()
	if err != nil {
		return nil, err
	}
	socks, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		c.release()
		return nil, fmt.Errorf("ptrace: socketpair: %w", err)
	}
	cfg := &stubConfig{
		exe:   p.exe,
		stdio: [3]*os.File{p.opts.Stdin, p.opts.Stdout, p.opts.Stderr},
		sock:  socks[1],
	}
	t, err := startTracer(c, func(t *tracer) error { return t.startStubLocked(cfg) })
	unix.Close(socks[1])
	if err != nil {
		unix.Close(socks[0])
		c.release()
		return nil, err
	}
	return &AddressSpace{
		t:        t,
		hostSock: socks[0],
		files:    fileCache{byFD: make(map[int]*stubFile)},
	}, nil
}

// AddressSpace is a stub process holding an application's mappings. Its
// methods may be called from any goroutine, concurrently; they take turns.
type AddressSpace struct {
	// t is the stub and its tracer. Immutable.
	t *tracer
	// hostSock is our end of the descriptor-passing socket. Immutable;
	// closed by Release.
	hostSock int
	// releaseOnce makes Release idempotent.
	releaseOnce sync.Once
	// files are the descriptors installed in the stub. Protected by t.mu
	// (see tracer.mu).
	files fileCache
	// maps are the stub's mappings below StubStart. Protected by t.mu.
	maps HostMappings
}

// Pid returns the stub's process id.
func (as *AddressSpace) Pid() int { return as.t.pid }

// Release implements platform.AddressSpace: it kills and reaps the stub and
// frees what the AddressSpace holds. Calls made after Release fail with an
// error wrapping ErrStubDead.
func (as *AddressSpace) Release() {
	as.releaseOnce.Do(func() {
		as.t.release()
		as.t.mem.Close()
		as.t.comm.release()
		unix.Close(as.hostSock)
	})
}

// PreFork implements platform.AddressSpace; nothing to do.
func (*AddressSpace) PreFork() bool { return false }

// PostFork implements platform.AddressSpace; nothing to do.
func (*AddressSpace) PostFork() {}

// protOf converts an AccessType to mmap protections.
func protOf(at hostarch.AccessType) uintptr {
	var prot uintptr
	if at.Read {
		prot |= unix.PROT_READ
	}
	if at.Write {
		prot |= unix.PROT_WRITE
	}
	if at.Execute {
		prot |= unix.PROT_EXEC
	}
	return prot
}

// MapFile implements platform.AddressSpace: mmap(addr, fr.Length(),
// prot(at), MAP_SHARED|MAP_FIXED[|MAP_POPULATE if precommit], fd,
// fr.Start) in the stub, for the parts of the range that the stub does
// not map that way already (HostMappings). addr and fr must be
// page-aligned, fr non-empty, and the range within [0, StubStart);
// otherwise the error wraps EINVAL. A failed mmap's errno is wrapped
// (errors.Is works); a dead stub's error wraps ErrStubDead.
func (as *AddressSpace) MapFile(addr hostarch.Addr, f memmap.File, fr memmap.FileRange, at hostarch.AccessType, precommit bool) error {
	hostFD := -1
	if f != nil && f != memmap.ZeroPage {
		if hostFD = f.FD(); hostFD < 0 {
			return fmt.Errorf("ptrace: MapFile: File has no descriptor: %w", unix.EBADF)
		}
	}
	return as.t.with(func(s syscaller) error {
		return as.maps.MapFile(addr, f, fr, at, precommit, stubCaller{as, s, hostFD})
	})
}

// stubCaller is the ptrace.Caller of an AddressSpace: system calls made
// by the stub, for a caller that has it to itself.
type stubCaller struct {
	as *AddressSpace
	s  syscaller
	// hostFD is the descriptor of the File being mapped, in vmspace.
	hostFD int
}

// Map implements Caller.
func (c stubCaller) Map(rs []hostarch.AddrRange, m Mapping, precommit bool) (int, error) {
	flags := uintptr(unix.MAP_SHARED | unix.MAP_FIXED)
	if precommit {
		flags |= unix.MAP_POPULATE
	}
	if m.File == memmap.ZeroPage {
		return MapZeroPage(rs, m, precommit, func(ar hostarch.AddrRange, prot, flags uintptr) (uintptr, error) {
			args := [6]uintptr{uintptr(ar.Start), uintptr(ar.Length()), prot, flags, ^uintptr(0), 0}
			r, err := c.s.raw(unix.SYS_MMAP, &args)
			if err != nil {
				return 0, err
			}
			return errnoResult(r)
		})
	}
	for i, ar := range rs {
		for attempt := 0; ; attempt++ {
			sf, err := c.as.stubFD(c.s, m.File, c.hostFD)
			if err != nil {
				return i, err
			}
			args := [6]uintptr{uintptr(ar.Start), uintptr(ar.Length()), protOf(m.Perms), flags, uintptr(StubFileFDBase + sf.slot), uintptr(uint64(ar.Start) + m.Delta)}
			r, err := c.s.raw(unix.SYS_MMAP, &args)
			if err != nil {
				return i, err
			}
			if r, err = errnoResult(r); err != nil {
				if err == unix.EBADF && attempt == 0 {
					// The application closed our descriptor:
					// reinstall it.
					if err := c.as.dropFile(c.s, sf); err != nil {
						return i, err
					}
					continue
				}
				return i, fmt.Errorf("ptrace: mmap(%v, %#x) in the stub: %w", ar.Start, ar.Length(), err)
			}
			if r != uintptr(ar.Start) {
				// MAP_FIXED cannot do this: the stub is not what we
				// think it is.
				return i, c.s.kill(fmt.Sprintf("killed by the tracer: mmap(%v, MAP_FIXED) returned %#x", ar.Start, r))
			}
			break
		}
	}
	return len(rs), nil
}

// Unmap implements Caller. munmap fails only for lack of memory to split
// a mapping; then the stub is killed rather than left with mappings the
// memory manager believes gone, and later calls fail.
func (c stubCaller) Unmap(ar hostarch.AddrRange) bool {
	args := [6]uintptr{uintptr(ar.Start), uintptr(ar.Length())}
	r, err := c.s.raw(unix.SYS_MUNMAP, &args)
	if err != nil {
		return true // dead: nothing is mapped.
	}
	if _, err := errnoResult(r); err != nil {
		c.s.kill(fmt.Sprintf("killed by the tracer: munmap(%v, %#x) failed: %v", ar.Start, ar.Length(), err))
	}
	return true
}

// Unmap implements platform.AddressSpace: munmap in the stub of what
// MapFile mapped in the range, rounded out to pages and clipped to [0,
// StubStart), at once (HostMappings' unmaps are not deferred here).
func (as *AddressSpace) Unmap(addr hostarch.Addr, length uint64) {
	_ = as.t.with(func(s syscaller) error {
		if as.maps.Unmap(addr, length) {
			as.maps.Flush(stubCaller{as, s, -1})
		}
		as.maps.DropPending()
		return nil
	})
}

// ClipUser page-aligns [addr, addr+length) outwards and clips it to the
// application's range [0, StubStart): the range an Unmap removes. ok is
// false if nothing is left.
func ClipUser(addr hostarch.Addr, length uint64) (ar hostarch.AddrRange, ok bool) {
	start := addr.RoundDown()
	end, ok := addr.AddLength(length)
	if !ok || end > StubStart {
		end = StubStart
	}
	if end, ok = end.RoundUp(); !ok || end > StubStart {
		end = StubStart
	}
	if start >= end {
		return hostarch.AddrRange{}, false
	}
	return hostarch.AddrRange{Start: start, End: end}, true
}

// Syscall makes the stub make system call nr with up to 6 arguments, and
// returns its result, or its errno as a unix.Errno. The call must not
// block forever: nothing else
// can use the stub meanwhile. It fails with an error wrapping ErrStubDead
// if the stub is dead, and with EINVAL for more than 6 arguments.
func (as *AddressSpace) Syscall(nr uintptr, args ...uintptr) (uintptr, error) {
	if len(args) > 6 {
		return 0, unix.EINVAL
	}
	var a [6]uintptr
	copy(a[:], args)
	var r uintptr
	if err := as.t.with(func(s syscaller) error {
		var err error
		r, err = s.raw(nr, &a)
		return err
	}); err != nil {
		return 0, err
	}
	return errnoResult(r)
}

// ReadMemory reads the stub's memory at addr into b through /proc/PID/mem
// (which ignores page protections).
func (as *AddressSpace) ReadMemory(addr hostarch.Addr, b []byte) (int, error) {
	return as.t.mem.ReadAt(b, int64(addr))
}

// WriteMemory writes b into the stub's memory at addr through
// /proc/PID/mem (which ignores page protections).
func (as *AddressSpace) WriteMemory(addr hostarch.Addr, b []byte) (int, error) {
	return as.t.mem.WriteAt(b, int64(addr))
}

// Scratch returns the tracer's mapping of the free part of the comm page,
// which the stub sees at [ScratchFree, StubCode): memory for arguments of
// Syscall that are pointers. It is valid until Release; callers must not
// use it concurrently with each other.
func (as *AddressSpace) Scratch() []byte {
	m := as.t.comm.mem
	if m == nil {
		return nil
	}
	return m[ScratchFree-StubComm:]
}
