package mm

import (
	"testing"

	"github.com/vmspace/vmspace/hostarch"
)

// TestCheckpointLockedReplacedFamily is issue 12's crash: with
// mlockall(MCL_FUTURE) a populated mapping is forked, then partly replaced
// in the parent by a new locked mapping; the pages counts must stay true
// live and across a checkpoint.
func TestCheckpointLockedReplacedFamily(t *testing.T) {
	mf := newMF(t, 0)
	p := New(Options{MemoryFile: mf})
	l := p.Limits()
	l.MemLock = RLimit{64 << 20, 64 << 20}
	p.SetLimits(l)
	mustOK(t, "mlockall", p.MLockAll(ctx, MLockAllOpts{Future: true}))
	mustMap(t, p, anon(window+0xf000, 0x4000, hostarch.ReadWrite))
	c, err := p.Fork(ctx)
	mustOK(t, "fork", err)
	mustOK(t, "CheckPrivateRefs after fork", CheckPrivateRefs(p, c))
	mustMap(t, p, anon(window+0x7000, 0xa000, hostarch.ReadWrite))
	mustOK(t, "CheckPrivateRefs after the replacing mmap", CheckPrivateRefs(p, c))
	restored, _ := checkpointCycle(t, mf, []*MemoryManager{p, c}, nil, nil)
	mustOK(t, "CheckPrivateRefs after restore", CheckPrivateRefs(restored...))
	releaseAll(t, mf, restored)
}
