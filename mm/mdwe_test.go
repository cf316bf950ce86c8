package mm

import (
	"errors"
	"testing"

	"github.com/vmspace/vmspace/hostarch"
	"golang.org/x/sys/unix"
)

// TestMDWE checks prctl(PR_SET_MDWE) and what it refuses, as Linux 6.18
// does (the cases and results were taken from a native run).
func TestMDWE(t *testing.T) {
	m := newTestMM(t)
	errIs := func(what string, err, want error) {
		t.Helper()
		if want == nil && err != nil || want != nil && !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", what, err, want)
		}
	}
	// prctl's arguments.
	errIs("bad bits", m.SetMDWE(4, 0, 0, 0), unix.EINVAL)
	errIs("NO_INHERIT alone", m.SetMDWE(uint64(MDWENoInherit), 0, 0, 0), unix.EINVAL)
	errIs("arg3", m.SetMDWE(1, 1, 0, 0), unix.EINVAL)
	_, err := m.GetMDWE(1, 0, 0, 0)
	errIs("get arg2", err, unix.EINVAL)
	errIs("set 0 without MDWE", m.SetMDWE(0, 0, 0, 0), nil)

	const r, rw, rx, x, rwx = ProtRead, ProtRead | ProtWrite, ProtRead | ProtExec, ProtExec, ProtRead | ProtWrite | ProtExec
	mapAt := func(off hostarch.Addr, prot int) hostarch.Addr {
		t.Helper()
		a, err := m.mmapFlags(ctx, window+off, hostarch.PageSize, prot, MapPrivate|MapAnonymous|MapFixed, nil, 0)
		if err != nil {
			t.Fatalf("mmap %#x prot %d: %v", off, prot, err)
		}
		return a
	}
	// Mappings made before MDWE, including a writable executable one.
	rwA, rA, rxA, rwxA := mapAt(0, rw), mapAt(0x2000, r), mapAt(0x4000, rx), mapAt(0x6000, rwx)

	errIs("set", m.SetMDWE(uint64(MDWERefuseExecGain), 0, 0, 0), nil)
	if b, _ := m.GetMDWE(0, 0, 0, 0); b != MDWERefuseExecGain {
		t.Errorf("PR_GET_MDWE = %d", b)
	}
	errIs("set the same again", m.SetMDWE(uint64(MDWERefuseExecGain), 0, 0, 0), nil)
	errIs("add NO_INHERIT", m.SetMDWE(uint64(MDWERefuseExecGain|MDWENoInherit), 0, 0, 0), unix.EPERM)
	errIs("clear", m.SetMDWE(0, 0, 0, 0), unix.EPERM)

	mmap := func(addr hostarch.Addr, length uint64, prot, flags int) error {
		_, err := m.mmapFlags(ctx, addr, length, prot, flags|MapPrivate|MapAnonymous, nil, 0)
		return err
	}
	errIs("mmap rwx", mmap(0, 4096, rwx, 0), unix.EACCES)
	errIs("mmap wx", mmap(0, 4096, ProtWrite|ProtExec, 0), unix.EACCES)
	errIs("mmap rx", mmap(0, 4096, rx, 0), nil)
	errIs("mmap x", mmap(0, 4096, x, 0), nil)
	errIs("mmap rw", mmap(0, 4096, rw, 0), nil)
	errIs("mmap 0 bytes rwx", mmap(0, 0, rwx, 0), unix.EINVAL)
	errIs("mmap fixed_noreplace rwx over rw", mmap(rwA, 4096, rwx, MapFixedNoReplace), unix.EEXIST)
	errIs("mmap fixed rwx over rw", mmap(rwA, 4096, rwx, MapFixed), unix.EACCES)
	if got := m.Regions(hostarch.AddrRange{Start: rwA, End: rwA + 0x1000}); len(got) != 1 || got[0].Perms != "rw-p" {
		t.Errorf("the rw mapping after a refused MAP_FIXED rwx over it: %+v", got)
	}
	_, err = m.mmapFlags(ctx, 0, 4096, rwx, MapShared|MapAnonymous, nil, 0)
	errIs("mmap shared rwx", err, unix.ENODEV) // no factory: the file's check comes first
	errIs("mmap locked rwx", mmap(0, 4096, rwx, MapLocked), unix.EACCES)
	lim := m.Limits()
	lim.AS.Cur = m.VirtualMemorySize()
	m.SetLimits(lim)
	errIs("mmap rwx over RLIMIT_AS", mmap(0, 1<<30, rwx, 0), unix.EACCES)
	errIs("mmap rw over RLIMIT_AS", mmap(0, 1<<30, rw, 0), unix.ENOMEM)
	lim.AS.Cur = RLimInfinity
	m.SetLimits(lim)

	mprotect := func(a hostarch.Addr, n uint64, prot int) error {
		return m.MProtect(ctx, a, n, hostarch.AccessTypeFromProt(prot), MProtectOpts{})
	}
	errIs("mprotect rw->rx", mprotect(rwA, 4096, rx), unix.EACCES)
	errIs("mprotect r->rx", mprotect(rA, 4096, rx), unix.EACCES)
	errIs("mprotect r->x", mprotect(rA, 4096, x), unix.EACCES)
	errIs("mprotect rx->rwx", mprotect(rxA, 4096, rwx), unix.EACCES)
	errIs("mprotect rx->x", mprotect(rxA, 4096, x), nil)
	errIs("mprotect x->rx", mprotect(rxA, 4096, rx), nil)
	errIs("mprotect rx->r", mprotect(rxA, 4096, r), nil)
	errIs("mprotect r (was rx)->rx", mprotect(rxA, 4096, rx), unix.EACCES)
	errIs("mprotect rwx->rwx", mprotect(rwxA, 4096, rwx), unix.EACCES)
	errIs("mprotect rwx->rx", mprotect(rwxA, 4096, rx), nil)
	errIs("mprotect rx (was rwx)->rwx", mprotect(rwxA, 4096, rwx), unix.EACCES)
	// Over three vmas: the first changes, the second refuses.
	a := mapAt(0xa000, rx)
	mapAt(0xb000, r)
	mapAt(0xc000, rx)
	errIs("mprotect rx|r|rx -> x", mprotect(a, 0x3000, x), unix.EACCES)
	var perms []string
	for _, rg := range m.Regions(hostarch.AddrRange{Start: a, End: a + 0x3000}) {
		perms = append(perms, rg.Perms)
	}
	if len(perms) != 3 || perms[0] != "--xp" || perms[1] != "r--p" || perms[2] != "r-xp" {
		t.Errorf("after a partial mprotect: %v, want [--xp r--p r-xp]", perms)
	}

	// fork and exec inherit it.
	c, err := m.Fork(ctx)
	mustOK(t, "fork", err)
	if b, _ := c.GetMDWE(0, 0, 0, 0); b != MDWERefuseExecGain {
		t.Errorf("child's PR_GET_MDWE = %d", b)
	}
	if _, err := c.mmapFlags(ctx, 0, 4096, rwx, MapPrivate|MapAnonymous, nil, 0); !errors.Is(err, unix.EACCES) {
		t.Errorf("child's mmap rwx: %v", err)
	}
	e := New(Options{MemoryFile: m.MemoryFile()})
	e.InheritMDWE(c)
	if b, _ := e.GetMDWE(0, 0, 0, 0); b != MDWERefuseExecGain {
		t.Errorf("exec'd image's PR_GET_MDWE = %d", b)
	}
	// The main stack of an exec is exempt (an executable stack).
	mustOK(t, "executable main stack", e.MapStack(ctx, hostarch.AddrRange{Start: window, End: window + 0x2000}, hostarch.AnyAccess))
	c.DecUsers(ctx)
	e.DecUsers(ctx)

	// PR_MDWE_NO_INHERIT: neither a child nor an exec'd image keeps it.
	n := newTestMM(t)
	mustOK(t, "set NO_INHERIT", n.SetMDWE(uint64(MDWERefuseExecGain|MDWENoInherit), 0, 0, 0))
	if b, _ := n.GetMDWE(0, 0, 0, 0); b != MDWERefuseExecGain|MDWENoInherit {
		t.Errorf("PR_GET_MDWE = %d", b)
	}
	if _, err := n.mmapFlags(ctx, 0, 4096, rwx, MapPrivate|MapAnonymous, nil, 0); !errors.Is(err, unix.EACCES) {
		t.Errorf("mmap rwx with NO_INHERIT: %v", err)
	}
	nc, err := n.Fork(ctx)
	mustOK(t, "fork", err)
	if b, _ := nc.GetMDWE(0, 0, 0, 0); b != 0 {
		t.Errorf("child's PR_GET_MDWE with NO_INHERIT = %d", b)
	}
	if _, err := nc.mmapFlags(ctx, 0, 4096, rwx, MapPrivate|MapAnonymous, nil, 0); err != nil {
		t.Errorf("child's mmap rwx with NO_INHERIT: %v", err)
	}
	ne := New(Options{MemoryFile: n.MemoryFile()})
	ne.InheritMDWE(n)
	if b, _ := ne.GetMDWE(0, 0, 0, 0); b != 0 {
		t.Errorf("exec'd image's PR_GET_MDWE with NO_INHERIT = %d", b)
	}
	nc.DecUsers(ctx)
	ne.DecUsers(ctx)
	check(t, m)
}
