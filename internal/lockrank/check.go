//go:build race || lockrank

package lockrank

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
)

// Checks is true: every acquisition of a ranked lock is checked against
// the locks its goroutine holds, and one out of order panics.
const Checks = true

// heldLock is a ranked lock a goroutine holds.
type heldLock struct {
	rank Rank
	lock any
	read bool
}

// state records the ranked locks each goroutine holds.
var state struct {
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
		panic("lockrank: cannot read the goroutine id from " + strconv.Quote(s))
	}
	return id
}

// Acquire checks that the current goroutine may take lock, of rank r
// (for reading if read), and records that it holds it. For locks that
// are not a Mutex or RWMutex of this package (mm's sharded activeMu).
func Acquire(r Rank, lock any, read bool) {
	g := goid()
	st := &state
	st.mu.Lock()
	defer st.mu.Unlock()
	held := st.held[g]
	for _, h := range held {
		if h.lock == lock {
			panic(fmt.Sprintf("lockrank: %v taken again (read %v) while held (read %v)", r, read, h.read))
		}
		switch {
		case ranks[h.rank].leaf:
			panic(fmt.Sprintf("lockrank: %v taken while holding %v, a leaf of the lock order (held: %v)", r, h.rank, held))
		case h.rank > r:
			panic(fmt.Sprintf("lockrank: %v taken while holding %v, which comes after it in the lock order (held: %v)", r, h.rank, held))
		case h.rank == r && !ranks[r].multi:
			panic(fmt.Sprintf("lockrank: %v taken while holding another lock of its rank (held: %v)", r, held))
		}
	}
	if st.held == nil {
		st.held = map[uint64][]heldLock{}
	}
	st.held[g] = append(held, heldLock{rank: r, lock: lock, read: read})
}

// note records that the current goroutine holds lock, of rank r, which it
// took without waiting (TryLock: out of order cannot deadlock).
func note(r Rank, lock any, read bool) {
	g := goid()
	state.mu.Lock()
	defer state.mu.Unlock()
	if state.held == nil {
		state.held = map[uint64][]heldLock{}
	}
	state.held[g] = append(state.held[g], heldLock{rank: r, lock: lock, read: read})
}

// Unshared runs f, which takes only locks of objects no other goroutine
// can reach (a fork child that failed), without checking them against the
// locks the goroutine holds.
func Unshared(f func()) {
	g := goid()
	st := &state
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

// Release records that the current goroutine no longer holds lock.
func Release(lock any) {
	g := goid()
	st := &state
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
	panic(fmt.Sprintf("lockrank: releasing a lock the goroutine does not hold (%T)", lock))
}

// Downgrade records that the current goroutine's write lock is now a read
// lock.
func Downgrade(lock any) {
	g := goid()
	st := &state
	st.mu.Lock()
	defer st.mu.Unlock()
	for i := range st.held[g] {
		if st.held[g][i].lock == lock {
			st.held[g][i].read = true
		}
	}
}

func (h heldLock) String() string { return h.rank.String() }
