//go:build race || lockrank

package mm

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
)

// lockRankChecks is true: every acquisition of a ranked lock is checked
// against the locks its goroutine holds, and one out of order panics.
const lockRankChecks = true

// heldLock is a ranked lock a goroutine holds.
type heldLock struct {
	rank lockRank
	lock any
	read bool
}

// lockRankState records the ranked locks each goroutine holds.
var lockRankState struct {
	// mu protects held. It is not ranked.
	mu sync.Mutex
	// held maps a goroutine's id to the locks it holds, in the order it
	// took them. Protected by mu.
	held map[uint64][]heldLock
}

// goid returns the current goroutine's id, from the header of its stack
// trace ("goroutine N [...").
func goid() uint64 {
	var buf [64]byte
	s := string(buf[:runtime.Stack(buf[:], false)])
	s = strings.TrimPrefix(s, "goroutine ")
	if i := strings.IndexByte(s, ' '); i > 0 {
		s = s[:i]
	}
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		panic("mm: lock rank: cannot read the goroutine id from " + strconv.Quote(s))
	}
	return id
}

// lockRankAcquire checks that the current goroutine may take lock, of
// rank r, and records that it holds it.
func lockRankAcquire(r lockRank, lock any, read bool) {
	g := goid()
	st := &lockRankState
	st.mu.Lock()
	defer st.mu.Unlock()
	held := st.held[g]
	for _, h := range held {
		if h.lock == lock {
			panic(fmt.Sprintf("mm: lock rank: %v taken again (read %v) while held (read %v)", r, read, h.read))
		}
		switch {
		case lockRanks[h.rank].leaf:
			panic(fmt.Sprintf("mm: lock rank: %v taken while holding %v, a leaf of the lock order (held: %v)", r, h.rank, held))
		case h.rank > r:
			panic(fmt.Sprintf("mm: lock rank: %v taken while holding %v, which comes after it in the lock order (held: %v)", r, h.rank, held))
		case h.rank == r && !lockRanks[r].multi:
			panic(fmt.Sprintf("mm: lock rank: %v taken while holding another lock of its rank (held: %v)", r, held))
		}
	}
	if st.held == nil {
		st.held = map[uint64][]heldLock{}
	}
	st.held[g] = append(held, heldLock{rank: r, lock: lock, read: read})
}

// lockRankUnshared runs f, which takes only locks of objects no other
// goroutine can reach (a fork child that failed), without checking them
// against the locks the goroutine holds.
func lockRankUnshared(f func()) {
	g := goid()
	st := &lockRankState
	st.mu.Lock()
	held := st.held[g]
	delete(st.held, g)
	st.mu.Unlock()
	defer func() {
		if len(held) == 0 {
			return
		}
		st.mu.Lock()
		st.held[g] = append(held, st.held[g]...)
		st.mu.Unlock()
	}()
	f()
}

// lockRankRelease records that the current goroutine no longer holds lock.
func lockRankRelease(lock any) {
	g := goid()
	st := &lockRankState
	st.mu.Lock()
	defer st.mu.Unlock()
	held := st.held[g]
	for i := len(held) - 1; i >= 0; i-- {
		if held[i].lock == lock {
			held = append(held[:i], held[i+1:]...)
			if len(held) == 0 {
				delete(st.held, g)
			} else {
				st.held[g] = held
			}
			return
		}
	}
	panic(fmt.Sprintf("mm: lock rank: releasing a lock the goroutine does not hold (%T)", lock))
}

// lockRankDowngrade records that the current goroutine's write lock is now
// a read lock.
func lockRankDowngrade(lock any) {
	g := goid()
	st := &lockRankState
	st.mu.Lock()
	defer st.mu.Unlock()
	for i := range st.held[g] {
		if st.held[g][i].lock == lock {
			st.held[g][i].read = true
		}
	}
}

func (h heldLock) String() string { return h.rank.String() }
