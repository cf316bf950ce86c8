// Package segment provides Set, a generic ordered set of non-overlapping,
// non-empty ranges of keys ("segments"), each carrying a value, with the
// spaces between them ("gaps") as first-class positions. The memory manager
// keeps its vmas and pmas in Sets keyed by address, and the memory file
// keeps its allocations and reference counts in Sets keyed by file offset.
//
// # Types
//
// A Set[K, V, F] is parameterised by the key type K (an unsigned integer
// type such as hostarch.Addr or uint64), the value type V, and a zero-size
// Functions type F that supplies the key bounds [MinKey, MaxKey) and tells
// the set how to merge, split and clear values. Range[K] has the layout of
// hostarch.AddrRange and memmap.FileRange, so those convert to it directly.
//
// Segments are reached through Iterator and gaps through GapIterator. A set
// with n segments has exactly n+1 gaps: before the first segment (from
// MinKey), between each pair of neighbours, and after the last (to MaxKey).
// A gap between touching segments, or at a bound a segment touches, is
// empty but still exists, so Iterator.PrevGap and NextGap always succeed.
//
// # Invalidation
//
// Any mutation of a Set (insertion, removal, splitting, merging) invalidates
// every Iterator and GapIterator into it except those the mutation returns.
// Changing a segment's range or value through an Iterator (SetRange,
// SetValue, ValuePtr) is not a mutation in this sense. Pointers from
// ValuePtr are valid until the next mutation.
//
// # Values and Functions
//
// Merge is consulted whenever two segments could become one: by Add and
// Insert (with the new segment's neighbours), Merge, MergeRange,
// MergeAdjacent and MergeAll. When it agrees, the merged value replaces the
// first segment's and ClearValue is called on the second segment's old value
// as it leaves the set; Merge itself must move or release whatever the
// second value holds. ClearValue is also called on every value Remove,
// RemoveAll, RemoveRange and RemoveFullRange take out. Split is called by
// Split, SplitAt, Isolate, RemoveRange and the *Split* lookups. Slots the
// set vacates internally are zeroed, so a removed value holds no references.
//
// # Errors and panics
//
// Methods panic, with a message starting "segment: ", only when the caller
// breaks a documented precondition (for example inserting a range that does
// not lie in the given gap, or splitting a segment outside its range). A
// panicking call leaves the set unchanged. Input that is merely unfortunate
// gets a result: Add reports overlap with false, ImportSortedSlices returns
// an error, lookups return terminal iterators.
//
// # Implementation and costs
//
// The set is a B+-tree. Leaves hold up to 16 segments with their values
// inline (no allocation per segment) and are linked in order; inner nodes
// hold up to 16 children with, for each, the start of its first segment and
// the largest gap beneath it. Lookups, insertions and removals take O(log n)
// time; NextLargeEnoughGap, PrevLargeEnoughGap, FindLowestGap and
// FindHighestGap skip subtrees whose largest gap is too small, so they take
// O(log n) time rather than visiting every gap. Moving between neighbouring
// segments or gaps takes O(1) time. Span and ExportSlices take O(n);
// ImportSortedSlices builds a packed tree in O(n).
//
// Nodes split unevenly when entries are appended at either end of a full
// leaf, and removals merge thin leaves into their siblings, so that sets
// built in order (as by top-down mmap, fork, or import) are nearly full and
// others about two-thirds full or better. A leaf costs 304 bytes plus 16
// values, rounded up to a Go size class; with 64-byte values a set of 10^5
// segments costs about 90 heap bytes per segment when built in order and
// about 110 when built in random order.
//
// A Set is not safe for concurrent mutation; concurrent reads of a set
// nothing mutates are safe.
package segment
