package mm

import (
	"runtime"
	"sync"
	"unsafe"
)

// shardedRWMutex is a reader/writer lock whose readers do not share a
// cache line: a reader locks one of several shards, a writer locks them
// all. Readers on different threads (the I/O fast path of CopyIn and
// CopyOut) then scale instead of bouncing one counter between CPUs, at the
// cost of slower writers. It is used for activeMu, which faults and I/O
// take for reading far more often than anything takes it for writing.
//
// The zero value is unlocked.
type shardedRWMutex struct {
	shards [rwShards]paddedRWMutex
}

// rwShards is the most shards a lock has; rwShardsUsed, the number used,
// is four times the number of CPUs rounded up to a power of two, at least
// 8: enough that
// concurrent readers rarely pick the same shard, and no more, since a
// writer locks them all.
const rwShards = 16

var rwShardsUsed = func() int {
	n := 8
	for n < 4*runtime.NumCPU() && n < rwShards {
		n *= 2
	}
	return n
}()

type paddedRWMutex struct {
	sync.RWMutex
	_ [64 - unsafe.Sizeof(sync.RWMutex{})%64]byte
}

// rtoken identifies the shard a reader locked; RUnlock needs it.
type rtoken uint8

// RLock locks one shard for reading and returns it. The shard is chosen
// from the address of the caller's stack, which differs between
// goroutines, so that concurrent readers usually use different shards.
func (m *shardedRWMutex) RLock() rtoken {
	var probe byte
	a := uintptr(unsafe.Pointer(&probe))
	// Goroutine stacks start 2 KiB apart: mix the 2 KiB block number so that
	// neighbouring stacks spread over the shards.
	t := rtoken(uint64(a>>11) * 0x9E3779B97F4A7C15 >> 60 & uint64(rwShardsUsed-1))
	m.shards[t].RLock()
	return t
}

// RUnlock unlocks the shard RLock returned.
func (m *shardedRWMutex) RUnlock(t rtoken) { m.shards[t].RUnlock() }

// Lock locks every shard for writing, in order.
func (m *shardedRWMutex) Lock() {
	for i := 0; i < rwShardsUsed; i++ {
		m.shards[i].Lock()
	}
}

// Unlock unlocks every shard.
func (m *shardedRWMutex) Unlock() {
	for i := rwShardsUsed - 1; i >= 0; i-- {
		m.shards[i].Unlock()
	}
}
