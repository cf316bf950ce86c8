//go:build !segment_small

package segment

// Node capacities. The segment_small build tag shrinks them (cap_small.go)
// so that tests build deep trees from few segments.
const (
	// leafCap is the largest number of segments in a leaf.
	leafCap = 16
	// leafMin is the smallest number of segments in a leaf other than the
	// root. A split that appends at either end of a full leaf leaves leafMin
	// segments in the new leaf and the rest in the full one.
	leafMin = leafCap / 4
	// leafMerge: after a removal, a leaf is merged with a sibling if
	// together they hold at most leafMerge segments.
	leafMerge = leafCap * 3 / 4
	// innerCap is the largest number of children of an inner node.
	innerCap = 16
	// innerMin is the smallest number of children of an inner node other
	// than the root.
	innerMin = innerCap / 4
	// innerMerge is leafMerge for inner nodes.
	innerMerge = innerCap * 3 / 4
)
