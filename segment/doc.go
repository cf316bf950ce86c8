// Package segment provides Set, a generic ordered set of non-overlapping,
// non-empty ranges of keys ("segments"), each carrying a value, with the
// spaces between them ("gaps") as first-class positions.
//
// A Set is parameterised by the key type K (an unsigned integer type such as
// hostarch.Addr), the value type V, and a zero-size Functions type F that
// supplies the key bounds and tells the set how to merge, split and clear
// values. Segments are reached through Iterator and gaps through
// GapIterator; any mutation invalidates all iterators except those the
// mutation returns.
package segment
