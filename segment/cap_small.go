//go:build segment_small

package segment

// Tiny node capacities for testing deep trees: go test -tags segment_small.
const (
	leafCap    = 6
	leafMin    = 2
	leafMerge  = 4
	innerCap   = 5
	innerMin   = 2
	innerMerge = 3
)
