package segment

import (
	"math/rand/v2"
	"testing"
)

// randomOps returns n pseudo-random bytes from seed.
func randomOps(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// TestAgainstModel runs random operation sequences on a Set and on the
// sorted-slice model and checks that they agree after every operation.
func TestAgainstModel(t *testing.T) {
	seeds, n := 16, 15000
	if testing.Short() {
		seeds, n = 4, 8000
	}
	for seed := range uint64(seeds) {
		runOps[uint64, smallFns](t, randomOps(seed, n), smallSpace{})
		runOps[uintptr, fullFns](t, randomOps(seed+1000, n), fullSpace{})
	}
	// Fewer, longer runs in a wide key space grow trees several levels
	// deep.
	for seed := range uint64(max(1, seeds/8)) {
		runOps[uint64, wideFns](t, randomOps(seed+2000, 30*n), wideSpace{})
	}
}

// FuzzSet decodes the input into an operation sequence and checks the Set
// against the model after every operation.
func FuzzSet(f *testing.F) {
	for seed := range uint64(4) {
		f.Add(randomOps(seed, 600))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		switch data[0] % 3 {
		case 0:
			runOps[uint64, smallFns](t, data[1:], smallSpace{})
		case 1:
			runOps[uintptr, fullFns](t, data[1:], fullSpace{})
		default:
			runOps[uint64, wideFns](t, data[1:], wideSpace{})
		}
	})
}
