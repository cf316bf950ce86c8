package native

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmspace/vmspace/vmscript"
	"golang.org/x/sys/unix"
)

// agentSource is the agent's C source, built into a program of its own at
// first use (agentProgram).
//
//go:embed agent/agent.c agent/agent.h
var agentSource embed.FS

var (
	// agentOnce guards agentPath and agentErr: the agent program, built
	// once per process.
	agentOnce sync.Once
	agentPath string
	agentErr  error
)

// agentProgram returns the path of the agent program, building it with the C
// compiler ($CC, else cc) the first time: a dynamically linked non-PIE
// program (libc mapped, the break low), as a small C program is. It is kept
// in the user's cache directory (else $TMPDIR/vmspace-UID) under a name made
// of its source's hash, or, if that directory is not the user's own, in a
// temporary directory of this process.
func agentProgram() (string, error) {
	agentOnce.Do(func() { agentPath, agentErr = buildAgent() })
	return agentPath, agentErr
}

// privateDir makes dir if needed and reports whether it is a directory (not
// a symbolic link) owned by this user and writable by no one else.
func privateDir(dir string) bool {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return false
	}
	return st.Mode&unix.S_IFMT == unix.S_IFDIR && int(st.Uid) == os.Getuid() && st.Mode&0o022 == 0
}

func buildAgent() (string, error) {
	src, err := agentSource.ReadFile("agent/agent.c")
	if err != nil {
		return "", err
	}
	hdr, err := agentSource.ReadFile("agent/agent.h")
	if err != nil {
		return "", err
	}
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "cc"
	}
	args := []string{"-O2", "-no-pie", "-o"}
	h := sha256.New()
	fmt.Fprintf(h, "%s %q\n", cc, args)
	h.Write(src)
	h.Write(hdr)
	name := "vmscript-agent-" + hex.EncodeToString(h.Sum(nil)[:12])
	dir := ""
	if cache, err := os.UserCacheDir(); err == nil {
		dir = filepath.Join(cache, "vmspace")
	} else {
		dir = filepath.Join(os.TempDir(), fmt.Sprintf("vmspace-%d", os.Getuid()))
	}
	if !privateDir(dir) {
		dir = ""
	}
	if dir != "" {
		if fi, err := os.Stat(filepath.Join(dir, name)); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o100 != 0 {
			return filepath.Join(dir, name), nil
		}
	}
	tmp, err := os.MkdirTemp(dir, "vmscript-agent-build-")
	if err != nil {
		return "", fmt.Errorf("building the native agent: %w", err)
	}
	if dir != "" {
		defer os.RemoveAll(tmp)
	}
	c := filepath.Join(tmp, "agent.c")
	if err := os.WriteFile(c, src, 0o600); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(tmp, "agent.h"), hdr, 0o600); err != nil {
		return "", err
	}
	out := filepath.Join(tmp, name)
	if b, err := exec.Command(cc, append(args, out, c)...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the native agent with %s: %v\n%s", cc, err, b)
	}
	if dir == "" {
		return out, nil
	}
	// Renaming is atomic: a concurrent builder's program is as good.
	path := filepath.Join(dir, name)
	if err := os.Rename(out, path); err != nil {
		return "", fmt.Errorf("building the native agent: %w", err)
	}
	return path, nil
}

// Request opcodes, mirroring agent.h.
const (
	opMmap = iota + 1
	opMunmap
	opMprotect
	opMremap
	opMadvise
	opMlock
	opMunlock
	opMlockall
	opMunlockall
	opMsync
	opMincore
	opMseal
	opAnonname
	opBrk
	opSetrlimit
	opWrite
	opFill
	opRead
	opSum
	opFile
	opMemfd
	opFtruncate
	opPwrite
	opPsum
	opClose
	opShmget
	opShmat
	opShmdt
	opShmrm
	opIoSetup
	opIoDestroy
	opFork
)

// Wire sizes, mirroring struct vms_req and struct vms_resp.
const (
	reqSize     = 4 + 4 + 6*8 + nameSize
	nameSize    = 64
	respSize    = 8 + 4 + 4 + 2*8 + 4 + 4
	maxPayload  = 1 << 20
	maxRespData = 1 << 30
)

// Options configure the native executor.
type Options struct {
	// TempDir is where `file` statements create their (unlinked) files;
	// empty means os.TempDir().
	TempDir string
	// Timeout bounds each request to an agent (a safety net against a
	// hung process); zero means one minute. A context deadline, when
	// earlier, applies too.
	Timeout time.Duration
}

// New returns an Executor that runs scripts in real Linux processes:
// each script process is an agent, a small C program (agent/agent.c, built
// at first use with the C compiler) started by this process (p0) or forked
// from another agent (fork), without capabilities and with transparent huge
// pages disabled. Every process is killed and reaped by Close, and on context
// cancellation.
func New(opts Options) vmscript.Executor {
	if opts.TempDir == "" {
		opts.TempDir = os.TempDir()
	}
	if opts.Timeout == 0 {
		opts.Timeout = time.Minute
	}
	return &nativeExec{opts: opts}
}

// Run runs s natively on Linux and writes its transcript to w.
func Run(ctx context.Context, s *vmscript.Script, w io.Writer) error {
	return vmscript.Run(ctx, s, New(Options{}), w)
}

// nativeExec is the native Executor.
type nativeExec struct {
	// opts are immutable after New.
	opts Options

	// mu protects the fields below.
	mu sync.Mutex
	// procs are every process started, alive or not, in creation order.
	procs []*nativeProc
	// shmIDs are the System V segments the processes created; Close
	// removes them.
	shmIDs []int
	// stop cancels the context watcher.
	stop func() bool
	// closed is set by Close.
	closed bool
}

// nativeProc is one agent process.
type nativeProc struct {
	// ex is the executor; immutable.
	ex *nativeExec
	// pid is the agent's pid; immutable. The agent is a child of this
	// process, so the pid stays valid until it is reaped.
	pid int
	// pidfd refers to the agent; immutable until kill closes it.
	pidfd int
	// conn is the socket to the agent; immutable until kill closes it.
	// (An os.File, not a net.UnixConn: package net would link cgo into
	// vmspace, whose glibc thread stacks and malloc arenas cost hundreds
	// of MiB of address space, which RLIMIT_AS may bound.)
	conn *os.File

	// killOnce makes kill idempotent.
	killOnce sync.Once
	// hdr and rsp are scratch space for one request and its answer; used
	// only by the goroutine running the script.
	hdr [reqSize]byte
	rsp [respSize]byte
}

func (ex *nativeExec) Start(ctx context.Context) (vmscript.Proc, error) {
	prog, err := agentProgram()
	if err != nil {
		return nil, err
	}
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %v", err)
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		unix.Close(sp[0])
		unix.Close(sp[1])
		return nil, err
	}
	// The agent is a program of its own, with nothing of this process
	// but the socket (descriptor 3) and the limits.
	pid, err := syscall.ForkExec(prog, []string{"vmscript-agent", ex.opts.TempDir}, &syscall.ProcAttr{
		Env:   []string{},
		Files: []uintptr{null.Fd(), null.Fd(), null.Fd(), uintptr(sp[1])},
	})
	null.Close()
	unix.Close(sp[1])
	if err != nil {
		unix.Close(sp[0])
		return nil, fmt.Errorf("starting the agent %s: %v", prog, err)
	}
	p, err := ex.adopt(pid, sp[0])
	if err != nil {
		return nil, err
	}
	ex.mu.Lock()
	ex.stop = context.AfterFunc(ctx, ex.killAll)
	ex.mu.Unlock()
	if err := p.hello(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// adopt wraps a freshly started agent. On failure the agent is killed.
func (ex *nativeExec) adopt(pid, sock int) (*nativeProc, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		unix.Close(sock)
		unix.Kill(pid, unix.SIGKILL)
		var ws unix.WaitStatus
		unix.Wait4(pid, &ws, 0, nil)
		return nil, fmt.Errorf("pidfd_open(%d): %v", pid, err)
	}
	// Non-blocking, so that os.NewFile makes it pollable (deadlines).
	err = unix.SetNonblock(sock, true)
	p := &nativeProc{ex: ex, pid: pid, pidfd: pidfd}
	if err == nil {
		p.conn = os.NewFile(uintptr(sock), "vmscript-agent")
	} else {
		unix.Close(sock)
	}
	ex.mu.Lock()
	ex.procs = append(ex.procs, p)
	closed := ex.closed
	ex.mu.Unlock()
	if err != nil || closed {
		p.kill()
		if err == nil {
			err = errors.New("executor closed")
		}
		return nil, fmt.Errorf("agent %d: %v", pid, err)
	}
	return p, nil
}

// hello reads the agent's start-up answer.
func (p *nativeProc) hello(ctx context.Context) error {
	r, _, err := p.readResp(ctx)
	if err != nil {
		return err
	}
	if r.err != 0 {
		return fmt.Errorf("agent %d failed to start: %v", p.pid, unix.Errno(r.err))
	}
	return nil
}

func (ex *nativeExec) Checkpoint(ctx context.Context) error { return nil }

// killAll kills and reaps every process.
func (ex *nativeExec) killAll() {
	ex.mu.Lock()
	procs := append([]*nativeProc(nil), ex.procs...)
	ex.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].kill()
	}
}

func (ex *nativeExec) Close() error {
	ex.mu.Lock()
	ex.closed = true
	stop := ex.stop
	ex.mu.Unlock()
	if stop != nil {
		stop()
	}
	ex.killAll()
	ex.mu.Lock()
	ids := ex.shmIDs
	ex.shmIDs = nil
	ex.mu.Unlock()
	for _, id := range ids {
		// Already removed by the script is fine (EINVAL/EIDRM).
		unix.SysvShmCtl(id, unix.IPC_RMID, nil)
	}
	return nil
}

// kill kills the agent with SIGKILL and reaps it; idempotent.
func (p *nativeProc) kill() {
	p.killOnce.Do(func() {
		unix.PidfdSendSignal(p.pidfd, unix.SIGKILL, nil, 0)
		for {
			var info unix.Siginfo
			err := unix.Waitid(unix.P_PIDFD, p.pidfd, &info, unix.WEXITED, nil)
			if err != unix.EINTR {
				break
			}
		}
		unix.Close(p.pidfd)
		if p.conn != nil {
			p.conn.Close()
		}
	})
}

// resp is a decoded response header.
type resp struct {
	ret   uint64
	err   int32
	fault uint32
	v     [2]uint64
}

// call sends one request and reads its answer. fd, when >= 0, is passed to
// the agent. The returned error is an infrastructure failure; the system's
// answer is in resp.err.
func (p *nativeProc) call(ctx context.Context, op uint32, args []uint64, name string, data []byte, fd int) (resp, []byte, error) {
	if len(args) > 6 || len(name) >= nameSize || len(data) > maxPayload {
		return resp{}, nil, fmt.Errorf("agent %d: request too large", p.pid)
	}
	if err := p.deadline(ctx); err != nil {
		return resp{}, nil, err
	}
	h := p.hdr[:]
	clear(h)
	binary.LittleEndian.PutUint32(h[0:], op)
	binary.LittleEndian.PutUint32(h[4:], uint32(len(data)))
	for i, a := range args {
		binary.LittleEndian.PutUint64(h[8+8*i:], a)
	}
	copy(h[56:], name)
	msg := append(h, data...)
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	var err error
	if oob != nil {
		// Only the fork request passes a descriptor; it has no payload,
		// so one sendmsg carries it whole.
		err = sendmsg(p.conn, msg, oob)
	} else {
		_, err = p.conn.Write(msg)
	}
	if err != nil {
		return resp{}, nil, p.failure(ctx, "write", err)
	}
	return p.readResp(ctx)
}

func (p *nativeProc) deadline(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d := time.Now().Add(p.ex.opts.Timeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		d = cd
	}
	return p.conn.SetDeadline(d)
}

func (p *nativeProc) readResp(ctx context.Context) (resp, []byte, error) {
	if err := p.deadline(ctx); err != nil {
		return resp{}, nil, err
	}
	if _, err := io.ReadFull(p.conn, p.rsp[:]); err != nil {
		return resp{}, nil, p.failure(ctx, "read", err)
	}
	b := p.rsp[:]
	r := resp{
		ret:   binary.LittleEndian.Uint64(b[0:]),
		err:   int32(binary.LittleEndian.Uint32(b[8:])),
		fault: binary.LittleEndian.Uint32(b[12:]),
		v:     [2]uint64{binary.LittleEndian.Uint64(b[16:]), binary.LittleEndian.Uint64(b[24:])},
	}
	n := binary.LittleEndian.Uint32(b[32:])
	if n > maxRespData {
		return resp{}, nil, fmt.Errorf("agent %d: response of %d bytes", p.pid, n)
	}
	var data []byte
	if n > 0 {
		data = make([]byte, n)
		if _, err := io.ReadFull(p.conn, data); err != nil {
			return resp{}, nil, p.failure(ctx, "read", err)
		}
	}
	return r, data, nil
}

// failure describes a broken conversation with an agent; it never wraps an
// Errno (which Run would print as the system's answer).
func (p *nativeProc) failure(ctx context.Context, what string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	// A broken connection usually means the agent died: give its exit a
	// moment to complete and say how it ended. (Reaping it here is fine:
	// kill's wait then fails with ECHILD and stops.)
	for i := 0; i < 50; i++ {
		var ws unix.WaitStatus
		wpid, werr := unix.Wait4(p.pid, &ws, unix.WNOHANG|unix.WALL, nil)
		if werr != nil && werr != unix.EINTR {
			break
		}
		if wpid == p.pid {
			switch {
			case ws.Signaled():
				return fmt.Errorf("agent %d died of signal %v (%s: %v)", p.pid, ws.Signal(), what, err.Error())
			case ws.Exited():
				return fmt.Errorf("agent %d exited with status %d (%s: %v)", p.pid, ws.ExitStatus(), what, err.Error())
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("agent %d: %s: %v", p.pid, what, err.Error())
}

// sys runs a request whose answer is a value or an errno.
func (p *nativeProc) sys(ctx context.Context, op uint32, args []uint64, name string, data []byte) (uint64, error) {
	r, _, err := p.call(ctx, op, args, name, data, -1)
	if err != nil {
		return 0, err
	}
	if r.err != 0 {
		return 0, unix.Errno(r.err)
	}
	return r.ret, nil
}

func (p *nativeProc) sys0(ctx context.Context, op uint32, args []uint64, name string, data []byte) error {
	_, err := p.sys(ctx, op, args, name, data)
	return err
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

func (p *nativeProc) Fork(ctx context.Context) (vmscript.Proc, error) {
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %v", err)
	}
	r, _, err := p.call(ctx, opFork, nil, "", nil, sp[1])
	unix.Close(sp[1])
	if err != nil {
		unix.Close(sp[0])
		return nil, err
	}
	if r.err != 0 {
		unix.Close(sp[0])
		return nil, unix.Errno(r.err)
	}
	c, err := p.ex.adopt(int(r.ret), sp[0])
	if err != nil {
		return nil, err
	}
	if err := c.hello(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

func (p *nativeProc) Exit(ctx context.Context) error {
	p.kill()
	return nil
}

func (p *nativeProc) Mmap(ctx context.Context, a vmscript.MmapArgs) (uint64, error) {
	return p.sys(ctx, opMmap, []uint64{a.Addr, a.Len, uint64(a.Prot), uint64(a.Flags), a.Off}, a.File, nil)
}

func (p *nativeProc) Munmap(ctx context.Context, addr, length uint64) error {
	return p.sys0(ctx, opMunmap, []uint64{addr, length}, "", nil)
}

func (p *nativeProc) Mprotect(ctx context.Context, addr, length uint64, prot vmscript.Prot) error {
	return p.sys0(ctx, opMprotect, []uint64{addr, length, uint64(prot)}, "", nil)
}

func (p *nativeProc) Mremap(ctx context.Context, addr, oldLen, newLen uint64, flags vmscript.MremapFlags, newAddr uint64) (uint64, error) {
	return p.sys(ctx, opMremap, []uint64{addr, oldLen, newLen, uint64(flags), newAddr}, "", nil)
}

func (p *nativeProc) Madvise(ctx context.Context, addr, length uint64, advice vmscript.Advice) error {
	return p.sys0(ctx, opMadvise, []uint64{addr, length, uint64(advice)}, "", nil)
}

func (p *nativeProc) Mlock(ctx context.Context, addr, length uint64, onFault bool) error {
	return p.sys0(ctx, opMlock, []uint64{addr, length, b2u(onFault)}, "", nil)
}

func (p *nativeProc) Munlock(ctx context.Context, addr, length uint64) error {
	return p.sys0(ctx, opMunlock, []uint64{addr, length}, "", nil)
}

func (p *nativeProc) Mlockall(ctx context.Context, flags vmscript.MlockallFlags) error {
	return p.sys0(ctx, opMlockall, []uint64{uint64(flags)}, "", nil)
}

func (p *nativeProc) Munlockall(ctx context.Context) error {
	return p.sys0(ctx, opMunlockall, nil, "", nil)
}

func (p *nativeProc) Msync(ctx context.Context, addr, length uint64, flags vmscript.MsyncFlags) error {
	return p.sys0(ctx, opMsync, []uint64{addr, length, uint64(flags)}, "", nil)
}

func (p *nativeProc) Mincore(ctx context.Context, addr, length uint64) ([]byte, error) {
	r, vec, err := p.call(ctx, opMincore, []uint64{addr, length}, "", nil, -1)
	if err != nil {
		return nil, err
	}
	if r.err != 0 {
		return nil, unix.Errno(r.err)
	}
	return vec, nil
}

func (p *nativeProc) Mseal(ctx context.Context, addr, length uint64) error {
	return p.sys0(ctx, opMseal, []uint64{addr, length}, "", nil)
}

func (p *nativeProc) SetAnonName(ctx context.Context, addr, length uint64, name string, clear bool) error {
	return p.sys0(ctx, opAnonname, []uint64{addr, length, b2u(clear)}, "", []byte(name))
}

func (p *nativeProc) Brk(ctx context.Context, addr uint64) (uint64, error) {
	return p.sys(ctx, opBrk, []uint64{addr}, "", nil)
}

func (p *nativeProc) Setrlimit(ctx context.Context, res vmscript.Resource, soft uint64) error {
	return p.sys0(ctx, opSetrlimit, []uint64{uint64(res), soft}, "", nil)
}

func (p *nativeProc) access(ctx context.Context, op uint32, args []uint64, data []byte) (resp, []byte, vmscript.Fault, error) {
	r, out, err := p.call(ctx, op, args, "", data, -1)
	if err != nil {
		return r, nil, vmscript.Fault{}, err
	}
	var f vmscript.Fault
	switch r.fault {
	case 1:
		f = vmscript.Fault{Kind: vmscript.FaultSEGV, Off: r.v[0]}
	case 2:
		f = vmscript.Fault{Kind: vmscript.FaultBUS, Off: r.v[0]}
	}
	return r, out, f, nil
}

func (p *nativeProc) Write(ctx context.Context, addr uint64, data []byte) (vmscript.Fault, error) {
	_, _, f, err := p.access(ctx, opWrite, []uint64{addr}, data)
	return f, err
}

func (p *nativeProc) Fill(ctx context.Context, addr, length uint64, b byte) (vmscript.Fault, error) {
	_, _, f, err := p.access(ctx, opFill, []uint64{addr, length, uint64(b)}, nil)
	return f, err
}

func (p *nativeProc) Read(ctx context.Context, addr, length uint64) ([]byte, vmscript.Fault, error) {
	if length > vmscript.MaxRead {
		return nil, vmscript.Fault{}, fmt.Errorf("read of %d bytes (at most %d)", length, vmscript.MaxRead)
	}
	_, out, f, err := p.access(ctx, opRead, []uint64{addr, length}, nil)
	return out, f, err
}

func (p *nativeProc) Sum(ctx context.Context, addr, length uint64) (uint64, vmscript.Fault, error) {
	r, _, f, err := p.access(ctx, opSum, []uint64{addr, length}, nil)
	return r.ret, f, err
}

func (p *nativeProc) File(ctx context.Context, name string, size uint64, ro bool, seed uint64) error {
	return p.sys0(ctx, opFile, []uint64{size, b2u(ro), seed}, name, nil)
}

func (p *nativeProc) Memfd(ctx context.Context, name string, size uint64) error {
	return p.sys0(ctx, opMemfd, []uint64{size}, name, nil)
}

func (p *nativeProc) Ftruncate(ctx context.Context, name string, size uint64) error {
	return p.sys0(ctx, opFtruncate, []uint64{size}, name, nil)
}

func (p *nativeProc) Pwrite(ctx context.Context, name string, off uint64, data []byte) error {
	return p.sys0(ctx, opPwrite, []uint64{off}, name, data)
}

func (p *nativeProc) Psum(ctx context.Context, name string, off, length uint64) (uint64, uint64, error) {
	r, _, err := p.call(ctx, opPsum, []uint64{off, length}, name, nil, -1)
	if err != nil {
		return 0, 0, err
	}
	if r.err != 0 {
		return 0, 0, unix.Errno(r.err)
	}
	return r.ret, r.v[1], nil
}

func (p *nativeProc) Close(ctx context.Context, name string) error {
	return p.sys0(ctx, opClose, nil, name, nil)
}

func (p *nativeProc) Shmget(ctx context.Context, name string, size uint64) error {
	id, err := p.sys(ctx, opShmget, []uint64{size}, name, nil)
	if err == nil {
		p.ex.mu.Lock()
		p.ex.shmIDs = append(p.ex.shmIDs, int(id))
		p.ex.mu.Unlock()
	}
	return err
}

func (p *nativeProc) Shmat(ctx context.Context, name string, addr uint64, rdonly bool) (uint64, error) {
	return p.sys(ctx, opShmat, []uint64{addr, b2u(rdonly)}, name, nil)
}

func (p *nativeProc) Shmdt(ctx context.Context, addr uint64) error {
	return p.sys0(ctx, opShmdt, []uint64{addr}, "", nil)
}

func (p *nativeProc) Shmrm(ctx context.Context, name string) error {
	return p.sys0(ctx, opShmrm, nil, name, nil)
}

func (p *nativeProc) IoSetup(ctx context.Context, name string, nr uint32) (uint64, error) {
	return p.sys(ctx, opIoSetup, []uint64{uint64(nr)}, name, nil)
}

func (p *nativeProc) IoDestroy(ctx context.Context, name string) error {
	return p.sys0(ctx, opIoDestroy, nil, name, nil)
}

// Usage reads /proc/PID/status.
func (p *nativeProc) Usage(ctx context.Context) (vmscript.Usage, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.pid) + "/status")
	if err != nil {
		return vmscript.Usage{}, fmt.Errorf("agent %d: %v", p.pid, err.Error())
	}
	return parseStatus(b)
}

func parseStatus(b []byte) (vmscript.Usage, error) {
	var u vmscript.Usage
	found := 0
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *uint64
		switch k {
		case "VmSize":
			dst = &u.VmSize
		case "VmLck":
			dst = &u.VmLck
		case "VmData":
			dst = &u.VmData
		case "VmStk":
			dst = &u.VmStk
		default:
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return vmscript.Usage{}, fmt.Errorf("status: bad %s line %q", k, line)
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return vmscript.Usage{}, fmt.Errorf("status: bad %s line %q", k, line)
		}
		*dst = n
		found++
	}
	if found != 4 {
		return vmscript.Usage{}, errors.New("status: missing VmSize, VmLck, VmData or VmStk")
	}
	return u, nil
}

// State reads /proc/PID/smaps.
func (p *nativeProc) State(ctx context.Context, addr, length uint64) ([]vmscript.Region, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.pid) + "/smaps")
	if err != nil {
		return nil, fmt.Errorf("agent %d: %v", p.pid, err.Error())
	}
	all, err := parseSmaps(b)
	if err != nil {
		return nil, err
	}
	end := addr + length
	var out []vmscript.Region
	for _, r := range all {
		if r.End > addr && r.Start < end {
			out = append(out, r)
		}
	}
	return out, nil
}

// parseSmaps parses /proc/PID/smaps into regions with the VmFlags state
// reports.
func parseSmaps(b []byte) ([]vmscript.Region, error) {
	var out []vmscript.Region
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "VmFlags:"); ok {
			if len(out) == 0 {
				return nil, errors.New("smaps: VmFlags before a mapping")
			}
			for _, f := range strings.Fields(rest) {
				out[len(out)-1].Flags |= vmscript.VMFlagByName(f)
			}
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok || strings.HasSuffix(f[0], ":") {
			continue
		}
		s, err1 := strconv.ParseUint(lo, 16, 64)
		e, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || len(f[1]) != 4 {
			continue
		}
		out = append(out, vmscript.Region{Start: s, End: e, Perms: f[1]})
	}
	return out, sc.Err()
}

// sendmsg sends msg with the control message oob on the socket f, whole.
func sendmsg(f *os.File, msg, oob []byte) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Write(func(fd uintptr) bool {
		serr = unix.Sendmsg(int(fd), msg, oob, nil, 0)
		return serr != unix.EAGAIN
	}); err != nil {
		return err
	}
	return serr
}
