//go:build !segment_small

package segment

// Node capacities. The segment_small build tag shrinks them (cap_small.go)
// so that tests build deep trees from few segments.
const (
	// smallCaps is true under the segment_small build tag.
	smallCaps = false
	// leafCap is the largest number of segments in a leaf.
	leafCap = 16
	// leafMin is the smallest number of segments in a leaf other than the
	// root. A split that appends at either end of a full leaf leaves leafMin
	// segments in the new leaf and the rest in the full one.
	leafMin = leafCap / 4
	// leafMerge: after a removal, a leaf is merged with a sibling if
	// together they hold at most leafMerge segments.
	leafMerge = leafCap - 2
	// leafDissolve: after a removal, a leaf is shared out between its two
	// siblings if the three hold at most leafDissolve segments. With
	// leafMerge, this keeps leaves about two-thirds full or better as
	// segments are removed, while leaving room so that the next insertion
	// does not split again at once.
	leafDissolve = 2*leafCap - 4
	// innerCap is the largest number of children of an inner node.
	innerCap = 16
	// innerMin is the smallest number of children of an inner node other
	// than the root.
	innerMin = innerCap / 4
	// innerMerge is leafMerge for inner nodes.
	innerMerge = innerCap * 3 / 4
)

// The searches below are written for 16 slots.
var (
	_ [leafCap - 16]struct{}
	_ [16 - leafCap]struct{}
	_ [innerCap - 16]struct{}
	_ [16 - innerCap]struct{}
)

// lastLeaf returns the largest j with a[j] <= key, or 0 if there is none
// (a[0] is not looked at). a must be sorted, and key less than noKey. It
// takes four steps and no unpredictable branches.
func lastLeaf[K Key](a *[leafCap]K, key K) int {
	return last16((*[16]K)(a), key)
}

// lastInner is lastLeaf for an inner node's starts.
func lastInner[K Key](a *[innerCap]K, key K) int {
	return last16((*[16]K)(a), key)
}

func last16[K Key](a *[16]K, key K) int {
	j := b2i(a[8] <= key) << 3
	j += b2i(a[j+4] <= key) << 2
	j += b2i(a[(j+2)&15] <= key) << 1
	j += b2i(a[(j+1)&15] <= key)
	return j
}
