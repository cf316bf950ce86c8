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

// fixed16 is true when both capacities are 16, so that search can use its
// four-step branchless form.
const fixed16 = leafCap == 16 && innerCap == 16

// Searches in small nodes are not needed with these capacities.
func lastLeaf[K Key](a *[leafCap]K, key K) int   { panic("unreachable") }
func lastInner[K Key](a *[innerCap]K, key K) int { panic("unreachable") }
