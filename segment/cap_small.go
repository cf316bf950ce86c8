//go:build segment_small

package segment

// Tiny node capacities for testing deep trees: go test -tags segment_small.
const (
	smallCaps    = true
	leafCap      = 6
	leafMin      = 2
	leafMerge    = 4
	leafDissolve = 9
	innerCap     = 5
	innerMin     = 2
	innerMerge   = 3
	fixed16      = false
)

// lastLeaf returns the largest j with a[j] <= key, or 0 if there is none
// (a[0] is not looked at).
func lastLeaf[K Key](a *[leafCap]K, key K) int {
	j := 0
	for j+1 < len(a) && a[j+1] <= key {
		j++
	}
	return j
}

// lastInner is lastLeaf for an inner node's starts.
func lastInner[K Key](a *[innerCap]K, key K) int {
	j := 0
	for j+1 < len(a) && a[j+1] <= key {
		j++
	}
	return j
}
