package mm

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/vmspace/vmspace/safemem"
)

// shardedRWMutex is a reader/writer lock whose readers do not share a
// cache line: a reader locks one of several shards, a writer locks them
// all. Readers on different threads (the I/O fast path of CopyIn and
// CopyOut) then scale instead of bouncing one counter between CPUs, at the
// cost of slower writers. It is used for activeMu, which faults and I/O
// take for reading far more often than anything takes it for writing; it
// has activeMu's rank in the lock order (rankActive, lockrank.go).
//
// The zero value is unlocked.
type shardedRWMutex struct {
	shards [rwShards]paddedRWMutex

	// seq counts write-lock changes: it is odd while a writer holds the
	// lock (from just after Lock acquires every shard to just before
	// Unlock or DowngradeLock lets go), even otherwise, so that a reader
	// that takes no lock can tell whether what it read stayed unchanged
	// (the CopyIn fast path, fastread.go). Changed only by the writer
	// holding every shard; read atomically by anyone. DowngradeLock
	// makes it even again: what a caller changes after downgrading is
	// not seen by such readers, so nothing may change pmas or free
	// pages under a downgraded lock.
	seq atomic.Uint64
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

// paddedRWMutex is a shard: 64 bytes of padding after each keep any two
// shards' mutexes off a shared 64-byte cache line.
type paddedRWMutex struct {
	sync.RWMutex
	_ [64]byte
}

// rtoken identifies the shard a reader locked; RUnlock needs it.
type rtoken uint8

// readerShard returns the shard a reader locks: its processor's (P's), so
// that readers on different CPUs keep to different shards, each shard's
// cache line staying with its CPU. (A shard picked at random for every
// read made each reader's lock word miss in its cache: bench's
// parallel_copyin_8 went from about 22 to 55 ns/op; a sync.Pool of shard
// numbers, one per P, cost 4.5 ns of copyin_8's 35.)
func readerShard() rtoken {
	return rtoken(safemem.Processor() & (rwShardsUsed - 1))
}

// RLock locks one shard for reading and returns it: the shard of the
// caller's processor (readerShard), so that concurrent readers usually use
// different shards.
func (m *shardedRWMutex) RLock() rtoken {
	t := readerShard()
	if lockRankChecks {
		lockRankAcquire(rankActive, m, true)
	}
	m.shards[t].RLock()
	return t
}

// RUnlock unlocks the shard RLock returned.
func (m *shardedRWMutex) RUnlock(t rtoken) {
	if lockRankChecks {
		lockRankRelease(m)
	}
	m.shards[t].RUnlock()
}

// Lock locks every shard for writing, in order.
func (m *shardedRWMutex) Lock() {
	if lockRankChecks {
		lockRankAcquire(rankActive, m, false)
	}
	for i := 0; i < rwShardsUsed; i++ {
		m.shards[i].Lock()
	}
	m.seq.Add(1)
}

// DowngradeLock turns the caller's write lock into a read lock, letting
// other readers in while no writer can get in between, and returns the
// token for RUnlock. Writers lock the shards in order, so none can hold
// the last shard while the caller holds the others: the last is unlocked
// and read-locked again before the others are unlocked.
func (m *shardedRWMutex) DowngradeLock() rtoken {
	if lockRankChecks {
		lockRankDowngrade(m)
	}
	m.seq.Add(1)
	last := rwShardsUsed - 1
	m.shards[last].Unlock()
	m.shards[last].RLock()
	for i := last - 1; i >= 0; i-- {
		m.shards[i].Unlock()
	}
	return rtoken(last)
}

// Unlock unlocks every shard.
func (m *shardedRWMutex) Unlock() {
	if lockRankChecks {
		lockRankRelease(m)
	}
	m.seq.Add(1)
	for i := rwShardsUsed - 1; i >= 0; i-- {
		m.shards[i].Unlock()
	}
}
