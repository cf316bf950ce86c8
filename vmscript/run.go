package vmscript

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// RunError is an executor failure while running a statement.
type RunError struct {
	// Script is the script name.
	Script string
	// Line is the line of the statement that failed (0 at start-up).
	Line int
	// Err is the executor's error.
	Err error
}

func (e *RunError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %v", e.Script, e.Err)
	}
	return fmt.Sprintf("%s:%d: %v", e.Script, e.Line, e.Err)
}

func (e *RunError) Unwrap() error { return e.Err }

// Run runs s on ex and writes its transcript to w: for every statement, its
// line number, a space and its result. It returns an error (a *RunError) only
// when the executor fails, ctx ends (checked between statements, and
// within long ones by the executors: populating, copying, agents' calls)
// or w cannot be written; the transcript up to the failing statement has
// been written then. Run always calls ex.Close.
func Run(ctx context.Context, s *Script, ex Executor, w io.Writer) (err error) {
	bw := bufio.NewWriter(w)
	defer func() {
		if cerr := ex.Close(); cerr != nil && err == nil {
			err = &RunError{Script: s.Name, Err: cerr}
		}
		if ferr := bw.Flush(); ferr != nil && err == nil {
			err = ferr
		}
	}()
	p0, err := ex.Start(ctx)
	if err != nil {
		return &RunError{Script: s.Name, Err: err}
	}
	d := &driver{ex: ex, procs: map[string]Proc{"p0": p0}, binds: map[string]uint64{}}
	if d.brk0, err = p0.Brk(ctx, 0); err != nil {
		return &RunError{Script: s.Name, Err: fmt.Errorf("reading the initial break: %w", err)}
	}
	if d.base, err = p0.Usage(ctx); err != nil {
		return &RunError{Script: s.Name, Err: fmt.Errorf("reading the initial usage: %w", err)}
	}
	for _, st := range s.Stmts {
		if err := ctx.Err(); err != nil {
			return &RunError{Script: s.Name, Line: st.Line, Err: err}
		}
		res, err := d.exec(ctx, st)
		if err == nil {
			// A statement cut short by the deadline may have returned
			// a result (an errno) that is not the system's answer.
			err = ctx.Err()
		}
		if err != nil {
			return &RunError{Script: s.Name, Line: st.Line, Err: err}
		}
		bw.WriteString(strconv.Itoa(st.Line))
		bw.WriteByte(' ')
		bw.WriteString(res)
		bw.WriteByte('\n')
	}
	return nil
}

// executorError marks an executor failure that must stop the script even
// though it may wrap an errno.
type executorError struct{ err error }

func (e *executorError) Error() string { return e.err.Error() }

// driver holds the state of one run.
type driver struct {
	ex Executor
	// procs are the live processes by name.
	procs map[string]Proc
	// binds are the $NAME bindings.
	binds map[string]uint64
	// brk0 is p0's program break at script start (the base of brk±OFF).
	brk0 uint64
	// base is p0's usage at script start (the base of vmsize and vmlck).
	base Usage
}

// errUnresolved is returned by resolve for an address whose $NAME is not
// bound at run time (the statement that bound it failed).
type errUnresolved struct{ name string }

func (e errUnresolved) Error() string { return "unbound $" + e.name }

func (d *driver) resolve(a Addr) (uint64, error) {
	var base uint64
	switch a.Kind {
	case AddrAbs:
		return a.Off, nil
	case AddrWindow:
		return Window + a.Off, nil
	case AddrBrk:
		base = d.brk0
	case AddrBound:
		v, ok := d.binds[a.Name]
		if !ok {
			return 0, errUnresolved{a.Name}
		}
		base = v
	}
	if a.Neg {
		return base - a.Off, nil
	}
	return base + a.Off, nil
}

// exec runs one statement and returns its result text; err is an executor
// failure.
func (d *driver) exec(ctx context.Context, st *Stmt) (string, error) {
	var addr, newAddr uint64
	var err error
	if addr, err = d.resolve(st.Addr); err == nil && st.HasNewAddr {
		newAddr, err = d.resolve(st.NewAddr)
	}
	if err != nil {
		if st.Bind != "" {
			delete(d.binds, st.Bind)
		}
		return err.Error(), nil
	}
	var p Proc
	if st.Proc != "" {
		if p = d.procs[st.Proc]; p == nil {
			// The fork that made it failed.
			return "-" + ErrnoName(unix.ESRCH), nil
		}
	}
	res, err := d.run(ctx, st, p, addr, newAddr)
	if ee, ok := err.(*executorError); ok {
		return "", ee.err
	}
	if e, ok := AsErrno(err); ok {
		if st.Bind != "" {
			delete(d.binds, st.Bind)
		}
		return "-" + ErrnoName(e), nil
	}
	return res, err
}

func (d *driver) run(ctx context.Context, st *Stmt, p Proc, addr, newAddr uint64) (string, error) {
	switch st.Op {
	case OpFork:
		c, err := p.Fork(ctx)
		if err != nil {
			return "", err
		}
		d.procs[st.Name] = c
		return "ok", nil
	case OpUse:
		return "ok", nil
	case OpExit:
		q := d.procs[st.Name]
		if q == nil {
			return "-" + ErrnoName(unix.ESRCH), nil
		}
		delete(d.procs, st.Name)
		return okOr(q.Exit(ctx))
	case OpCheckpoint:
		// A checkpoint has no system answer: any failure (even one
		// carrying an errno, such as ENOSPC from the memory file) is
		// the executor's, and stops the script.
		if err := d.ex.Checkpoint(ctx); err != nil {
			return "", &executorError{err}
		}
		return "ok", nil

	case OpMmap:
		r, err := p.Mmap(ctx, MmapArgs{Addr: addr, Len: st.Len, Prot: st.Prot, Flags: st.MapFlags, File: fileName(st), Off: st.Off})
		if err != nil {
			return "", err
		}
		return d.addrResult(st, r, addr, false), nil
	case OpMunmap:
		return okOr(p.Munmap(ctx, addr, st.Len))
	case OpMprotect:
		return okOr(p.Mprotect(ctx, addr, st.Len, st.Prot))
	case OpMremap:
		r, err := p.Mremap(ctx, addr, st.Len, st.NewLen, st.MremapFlags, newAddr)
		if err != nil {
			return "", err
		}
		return d.addrResult(st, r, addr, true), nil
	case OpMadvise:
		return okOr(p.Madvise(ctx, addr, st.Len, st.Advice))
	case OpMlock:
		return okOr(p.Mlock(ctx, addr, st.Len, st.OnFault))
	case OpMunlock:
		return okOr(p.Munlock(ctx, addr, st.Len))
	case OpMlockall:
		return okOr(p.Mlockall(ctx, st.MlockallFlags))
	case OpMunlockall:
		return okOr(p.Munlockall(ctx))
	case OpMsync:
		return okOr(p.Msync(ctx, addr, st.Len, st.MsyncFlags))
	case OpMincore:
		vec, err := p.Mincore(ctx, addr, st.Len)
		if err != nil {
			return "", err
		}
		return formatMincore(vec), nil
	case OpMseal:
		return okOr(p.Mseal(ctx, addr, st.Len))
	case OpAnonname:
		return okOr(p.SetAnonName(ctx, addr, st.Len, st.Name, st.ClearName))
	case OpBrk:
		r, err := p.Brk(ctx, addr)
		if err != nil {
			return "", err
		}
		if st.Bind != "" {
			d.binds[st.Bind] = r
		}
		return "= " + relative("brk", r, d.brk0), nil
	case OpSetrlimit:
		v, err := d.limitValue(ctx, p, st)
		if err != nil {
			return "", err
		}
		return okOr(p.Setrlimit(ctx, st.Resource, v))

	case OpWrite:
		f, err := p.Write(ctx, addr, st.Data)
		if err != nil {
			return "", err
		}
		return okOrFault(f), nil
	case OpFill:
		f, err := p.Fill(ctx, addr, st.Len, st.Byte)
		if err != nil {
			return "", err
		}
		return okOrFault(f), nil
	case OpRead:
		b, f, err := p.Read(ctx, addr, st.Len)
		if err != nil {
			return "", err
		}
		return formatRead(b, f), nil
	case OpSum:
		h, f, err := p.Sum(ctx, addr, st.Len)
		if err != nil {
			return "", err
		}
		return formatSum(h, f), nil

	case OpFile:
		return okOr(p.File(ctx, st.Name, st.Len, st.ReadOnly, st.Seed))
	case OpMemfd:
		return okOr(p.Memfd(ctx, st.Name, st.Len))
	case OpFtruncate:
		return okOr(p.Ftruncate(ctx, st.Name, st.Len))
	case OpPwrite:
		return okOr(p.Pwrite(ctx, st.Name, st.Off, st.Data))
	case OpPsum:
		h, n, err := p.Psum(ctx, st.Name, st.Off, st.Len)
		if err != nil {
			return "", err
		}
		return formatPsum(h, n, st.Len), nil
	case OpClose:
		return okOr(p.Close(ctx, st.Name))
	case OpShmget:
		return okOr(p.Shmget(ctx, st.Name, st.Len))
	case OpShmat:
		r, err := p.Shmat(ctx, st.Name, addr, st.ReadOnly)
		if err != nil {
			return "", err
		}
		return d.addrResult(st, r, addr, false), nil
	case OpShmdt:
		return okOr(p.Shmdt(ctx, addr))
	case OpShmrm:
		return okOr(p.Shmrm(ctx, st.Name))
	case OpIoSetup:
		id, err := p.IoSetup(ctx, st.Name, uint32(st.Len))
		if err != nil {
			return "", err
		}
		if st.Bind != "" {
			d.binds[st.Bind] = id
		}
		return "ok", nil
	case OpIoDestroy:
		return okOr(p.IoDestroy(ctx, st.Name))

	case OpState:
		start, end, ok := stateRange(addr, st.Len)
		if !ok {
			return "-" + ErrnoName(unix.EINVAL), nil
		}
		regions, err := p.State(ctx, start, end-start)
		if err != nil {
			return "", err
		}
		return formatState(start, end, regions), nil
	case OpVmsize, OpVmlck:
		u, err := p.Usage(ctx)
		if err != nil {
			return "", err
		}
		if st.Op == OpVmsize {
			return "vmsize " + signedDelta(u.VmSize, d.base.VmSize) + " kB", nil
		}
		return "vmlck " + signedDelta(u.VmLck, d.base.VmLck) + " kB", nil
	}
	return "", fmt.Errorf("statement %q: unknown op %d", st.Text, st.Op)
}

func fileName(st *Stmt) string {
	if st.HasFile {
		return st.Name
	}
	return ""
}

// okOr returns "ok" for a nil error and passes any other error on.
func okOr(err error) (string, error) {
	if err != nil {
		return "", err
	}
	return "ok", nil
}

// addrResult formats an address result and binds it.
func (d *driver) addrResult(st *Stmt, r, old uint64, remap bool) string {
	if st.Bind != "" {
		d.binds[st.Bind] = r
	}
	return "= " + FormatAddr(r, old, remap)
}

// FormatAddr formats an mmap, mremap or shmat result (without the "= "):
// "same" for an mremap that left the mapping at old, "@OFF" inside the
// window, "new" anywhere else.
func FormatAddr(r, old uint64, remap bool) string {
	switch {
	case remap && r == old:
		return "same"
	case r >= Window && r-Window < WindowSize:
		return "@" + hx(r-Window)
	default:
		return "new"
	}
}

// relative formats v as base±OFF.
func relative(name string, v, base uint64) string {
	if v >= base {
		return name + "+" + hx(v-base)
	}
	return name + "-" + hx(base-v)
}

func signedDelta(now, base uint64) string {
	if now >= base {
		return "+" + dec(now-base)
	}
	return "-" + dec(base-now)
}

// FormatFault formats a fault line ("segv +0x1000", "bus +0x0").
func FormatFault(f Fault) string {
	kind := "segv"
	if f.Kind == FaultBUS {
		kind = "bus"
	}
	return kind + " +" + hx(f.Off)
}

func okOrFault(f Fault) string {
	if f.Kind == FaultNone {
		return "ok"
	}
	return FormatFault(f)
}

func formatRead(b []byte, f Fault) string {
	h := hex.EncodeToString(b)
	if f.Kind == FaultNone {
		return h
	}
	if len(b) == 0 {
		return FormatFault(f)
	}
	return h + " " + FormatFault(f)
}

func formatSum(h uint64, f Fault) string {
	s := fmt.Sprintf("sum %016x", h)
	if f.Kind != FaultNone {
		s += " " + FormatFault(f)
	}
	return s
}

func formatPsum(h, n, want uint64) string {
	s := fmt.Sprintf("sum %016x", h)
	if n < want {
		s += " eof +" + dec(n)
	}
	return s
}

// formatMincore prints one 0/1 per page (bit 0 of each vector byte), or
// "ok" for an empty range.
func formatMincore(vec []byte) string {
	if len(vec) == 0 {
		return "ok"
	}
	b := make([]byte, len(vec))
	for i, v := range vec {
		b[i] = '0' + v&1
	}
	return string(b)
}

// stateRange returns the pages a state statement covers: ADDR must be
// page-aligned and LEN non-zero; LEN is rounded up to whole pages.
func stateRange(addr, length uint64) (start, end uint64, ok bool) {
	if addr%PageSize != 0 || length == 0 {
		return 0, 0, false
	}
	n := (length + PageSize - 1) / PageSize * PageSize
	if n < length || addr+n < addr {
		return 0, 0, false
	}
	return addr, addr + n, true
}

// FormatAttr formats a region's ATTR: the permission letters and, where any
// apply, ':' and the VmFlags in the spec's order.
func FormatAttr(perms string, flags VMFlags) string {
	if flags == 0 {
		return perms
	}
	var names []string
	for i, n := range vmFlagNames {
		if flags&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	return perms + ":" + strings.Join(names, ",")
}

// formatState prints [start, end) as runs of pages with equal attributes.
// regions must be sorted and non-overlapping; they are clipped to the range
// and the gaps between them are "unmapped".
func formatState(start, end uint64, regions []Region) string {
	type run struct {
		start, end uint64
		attr       string
	}
	var runs []run
	add := func(s, e uint64, attr string) {
		if s >= e {
			return
		}
		if n := len(runs); n > 0 && runs[n-1].attr == attr && runs[n-1].end == s {
			runs[n-1].end = e
			return
		}
		runs = append(runs, run{s, e, attr})
	}
	cur := start
	for _, r := range regions {
		s, e := max(r.Start, start), min(r.End, end)
		if s >= e || s < cur {
			continue
		}
		add(cur, s, "unmapped")
		add(s, e, FormatAttr(r.Perms, r.Flags))
		cur = e
	}
	add(cur, end, "unmapped")
	items := make([]string, len(runs))
	for i, r := range runs {
		items[i] = "+" + hx(r.start-start) + " " + hx(r.end-r.start) + " " + r.attr
	}
	return strings.Join(items, " | ")
}

// limitValue computes a setrlimit VALUE in bytes.
func (d *driver) limitValue(ctx context.Context, p Proc, st *Stmt) (uint64, error) {
	switch st.Limit.Kind {
	case LimitInf:
		return unix.RLIM_INFINITY, nil
	case LimitValue:
		return st.Limit.N, nil
	}
	u, err := p.Usage(ctx)
	if err != nil {
		return 0, err
	}
	var kb uint64
	switch st.Resource {
	case RlimitAS:
		kb = u.VmSize
	case RlimitData:
		kb = u.VmData
	case RlimitMemlock:
		kb = u.VmLck
	case RlimitStack:
		kb = u.VmStk
	default:
		return 0, errors.New("setrlimit: unknown resource")
	}
	return kb*1024 + st.Limit.N, nil
}
