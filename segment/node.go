package segment

// The tree is a B+-tree: every segment lives in a leaf, leaves are linked in
// key order, and inner nodes hold, for each child, the start of the first
// segment beneath it (to search by key) and the largest gap owned by a leaf
// beneath it (to search for gaps by size).
//
// Gap ownership: a set with n segments has n+1 gaps. The gap just before
// segment j belongs to the leaf holding segment j; the last gap (after the
// last segment, up to MaxKey) belongs to no leaf and is handled apart. So a
// leaf owns exactly one gap per segment, the first of which runs from the end
// of the previous leaf's last segment (or MinKey).
//
// Balance: all leaves are at the same depth. Every leaf holds at most
// leafCap segments and, unless it is the root, at least leafMin; every inner
// node holds at most innerCap children and at least innerMin (2 for the
// root). Insertion into a full leaf first shifts entries into a sibling with
// room, and otherwise splits the leaf, unevenly when appending at either end
// so that ordered insertion leaves full leaves behind. Removal merges a leaf
// into a sibling when the two fit in leafMerge entries, shares it out
// between both siblings when the three fit in leafDissolve, and otherwise
// restores leafMin by merging or borrowing; inner nodes likewise, without
// the sharing out.

// leaf is a leaf node: up to leafCap segments with their values inline.
// Nodes belong to one Set and are protected by whatever serialises that
// Set's mutations.
//
// The fields a key search reads (n, then starts) come first, and starts are
// kept apart from ends so that a search touches as few cache lines as
// possible.
type leaf[K Key, V any, F Functions[K, V]] struct {
	// n is the number of segments, in starts[:n], ends[:n] and vals[:n];
	// 1 <= n <= leafCap except transiently inside a mutation.
	n int
	// starts[i] and ends[i] are the bounds of segment i. The segments are
	// sorted, non-empty and non-overlapping. Entries at n and above are
	// noKey in starts (so that searches need not look at n) and 0 in ends.
	starts, ends [leafCap]K
	// pidx is the index of this leaf in parent's children; 0 if parent is
	// nil.
	pidx int
	// parent is the inner node holding this leaf, or nil if this leaf is the
	// whole tree.
	parent *inner[K, V, F]
	// prev and next are the neighbouring leaves in key order (across
	// parents), or nil at the ends.
	prev, next *leaf[K, V, F]
	// maxGap is the length of the largest gap this leaf owns: the gaps
	// before each of its segments.
	maxGap K
	// vals[i] is the value of segment i; entries at n and above are zero so
	// that they hold no references.
	vals [leafCap]V
}

// rng returns the range of segment i of l.
func (l *leaf[K, V, F]) rng(i int) Range[K] { return Range[K]{l.starts[i], l.ends[i]} }

// setRng sets the range of segment i of l.
func (l *leaf[K, V, F]) setRng(i int, r Range[K]) { l.starts[i], l.ends[i] = r.Start, r.End }

// inner is an inner node: up to innerCap children, all leaves or all inner
// nodes.
type inner[K Key, V any, F Functions[K, V]] struct {
	// n is the number of children; 2 <= n <= innerCap for the root and
	// innerMin <= n <= innerCap otherwise, except transiently.
	n int
	// pidx is the index of this node in parent's children; 0 if parent is
	// nil.
	pidx int
	// parent is the inner node holding this one, or nil for the root.
	parent *inner[K, V, F]
	// leafKids is true if the children are leaves[:n], false if they are
	// kids[:n].
	leafKids bool
	// starts[i] is the start of the first segment beneath child i;
	// entries at n and above are noKey.
	starts [innerCap]K
	// gaps[i] is the largest gap owned by a leaf beneath child i.
	gaps [innerCap]K
	// kids are the inner children when !leafKids; otherwise nil.
	kids [innerCap]*inner[K, V, F]
	// leaves are the leaf children when leafKids; otherwise nil.
	leaves [innerCap]*leaf[K, V, F]
}

// noKey is the start recorded in unused slots: greater than any key a
// search looks for (search never looks for noKey itself).
func noKey[K Key]() K { return ^K(0) }

// newLeaf returns an empty leaf.
func newLeaf[K Key, V any, F Functions[K, V]]() *leaf[K, V, F] {
	l := &leaf[K, V, F]{}
	l.clearTail(0)
	return l
}

// newInner returns an empty inner node whose children will be leaves if
// leafKids.
func newInner[K Key, V any, F Functions[K, V]](leafKids bool) *inner[K, V, F] {
	p := &inner[K, V, F]{leafKids: leafKids}
	p.clearTail(0)
	return p
}

// prevEnd returns the end of the segment before segment 0: the previous leaf's
// last segment's end, or MinKey.
func (l *leaf[K, V, F]) prevEnd() K {
	if p := l.prev; p != nil {
		return p.ends[p.n-1]
	}
	var f F
	return f.MinKey()
}

// gapStart returns the start of the gap before segment i (i <= n).
func (l *leaf[K, V, F]) gapStart(i int) K {
	if i == 0 {
		return l.prevEnd()
	}
	return l.ends[i-1]
}

// computeMaxGap returns the largest gap l owns.
func (l *leaf[K, V, F]) computeMaxGap() K {
	end := l.prevEnd()
	var m K
	for i := 0; i < l.n; i++ {
		if g := l.starts[i] - end; g > m {
			m = g
		}
		end = l.ends[i]
	}
	return m
}

// fix recomputes l.maxGap and brings its ancestors' starts and gaps up to
// date. l must be non-empty and its neighbours linked.
func (l *leaf[K, V, F]) fix() {
	l.maxGap = l.computeMaxGap()
	propagate(l.parent, l.pidx, l.maxGap, l.starts[0])
}

// fixNext fixes l's next leaf, if any: needed when l's last segment's end
// changed, since the next leaf owns the gap after it.
func (l *leaf[K, V, F]) fixNext() {
	if l.next != nil {
		l.next.fix()
	}
}

// propagate records that child idx of p now has largest gap g and first
// start st, and carries the change up as far as it changes anything.
func propagate[K Key, V any, F Functions[K, V]](p *inner[K, V, F], idx int, g, st K) {
	for p != nil {
		if p.gaps[idx] == g && p.starts[idx] == st {
			return
		}
		p.gaps[idx] = g
		p.starts[idx] = st
		g, st = p.summary()
		idx = p.pidx
		p = p.parent
	}
}

// summary returns the largest gap beneath p and the first start beneath p.
func (p *inner[K, V, F]) summary() (g, st K) {
	g = p.gaps[0]
	for j := 1; j < p.n; j++ {
		if p.gaps[j] > g {
			g = p.gaps[j]
		}
	}
	return g, p.starts[0]
}

// fix brings p's ancestors up to date with p's entries.
func (p *inner[K, V, F]) fix() {
	if p.parent != nil {
		g, st := p.summary()
		propagate(p.parent, p.pidx, g, st)
	}
}

// insertEntry inserts r with value v at index i of l, which must not be
// full.
func (l *leaf[K, V, F]) insertEntry(i int, r Range[K], v V) {
	copy(l.starts[i+1:l.n+1], l.starts[i:l.n])
	copy(l.ends[i+1:l.n+1], l.ends[i:l.n])
	copy(l.vals[i+1:l.n+1], l.vals[i:l.n])
	l.setRng(i, r)
	l.vals[i] = v
	l.n++
}

// removeEntry removes entry i of l, zeroing the slot it vacates.
func (l *leaf[K, V, F]) removeEntry(i int) {
	copy(l.starts[i:l.n-1], l.starts[i+1:l.n])
	copy(l.ends[i:l.n-1], l.ends[i+1:l.n])
	copy(l.vals[i:l.n-1], l.vals[i+1:l.n])
	l.n--
	var zv V
	l.starts[l.n], l.ends[l.n] = noKey[K](), 0
	l.vals[l.n] = zv
}

// clearTail empties l's entries from i to the end.
func (l *leaf[K, V, F]) clearTail(i int) {
	for j := i; j < leafCap; j++ {
		l.starts[j] = noKey[K]()
	}
	clear(l.ends[i:])
	clear(l.vals[i:])
}

// moveLeafLeft moves the first m entries of src to the end of dst.
func moveLeafLeft[K Key, V any, F Functions[K, V]](dst, src *leaf[K, V, F], m int) {
	copy(dst.starts[dst.n:dst.n+m], src.starts[:m])
	copy(dst.ends[dst.n:dst.n+m], src.ends[:m])
	copy(dst.vals[dst.n:dst.n+m], src.vals[:m])
	dst.n += m
	copy(src.starts[:src.n-m], src.starts[m:src.n])
	copy(src.ends[:src.n-m], src.ends[m:src.n])
	copy(src.vals[:src.n-m], src.vals[m:src.n])
	src.n -= m
	src.clearTail(src.n)
}

// moveLeafRight moves the last m entries of src to the front of dst.
func moveLeafRight[K Key, V any, F Functions[K, V]](src, dst *leaf[K, V, F], m int) {
	copy(dst.starts[m:dst.n+m], dst.starts[:dst.n])
	copy(dst.ends[m:dst.n+m], dst.ends[:dst.n])
	copy(dst.vals[m:dst.n+m], dst.vals[:dst.n])
	copy(dst.starts[:m], src.starts[src.n-m:src.n])
	copy(dst.ends[:m], src.ends[src.n-m:src.n])
	copy(dst.vals[:m], src.vals[src.n-m:src.n])
	dst.n += m
	src.n -= m
	src.clearTail(src.n)
}

// relink sets the parent and pidx of p's children from index from on.
func (p *inner[K, V, F]) relink(from int) {
	if p.leafKids {
		for j := from; j < p.n; j++ {
			p.leaves[j].parent = p
			p.leaves[j].pidx = j
		}
		return
	}
	for j := from; j < p.n; j++ {
		p.kids[j].parent = p
		p.kids[j].pidx = j
	}
}

// insertChildAt inserts a child (kid or lf, whichever matches p.leafKids)
// with largest gap g and first start st at index j of p, which must not be
// full.
func (p *inner[K, V, F]) insertChildAt(j int, g, st K, kid *inner[K, V, F], lf *leaf[K, V, F]) {
	copy(p.starts[j+1:p.n+1], p.starts[j:p.n])
	copy(p.gaps[j+1:p.n+1], p.gaps[j:p.n])
	copy(p.kids[j+1:p.n+1], p.kids[j:p.n])
	copy(p.leaves[j+1:p.n+1], p.leaves[j:p.n])
	p.starts[j] = st
	p.gaps[j] = g
	p.kids[j] = kid
	p.leaves[j] = lf
	p.n++
	p.relink(j)
}

// removeChildAt removes child j of p.
func (p *inner[K, V, F]) removeChildAt(j int) {
	copy(p.starts[j:p.n-1], p.starts[j+1:p.n])
	copy(p.gaps[j:p.n-1], p.gaps[j+1:p.n])
	copy(p.kids[j:p.n-1], p.kids[j+1:p.n])
	copy(p.leaves[j:p.n-1], p.leaves[j+1:p.n])
	p.n--
	p.clearTail(p.n)
	p.relink(j)
}

// clearTail empties p's entries from i to the end.
func (p *inner[K, V, F]) clearTail(i int) {
	for j := i; j < innerCap; j++ {
		p.starts[j] = noKey[K]()
	}
	clear(p.gaps[i:])
	clear(p.kids[i:])
	clear(p.leaves[i:])
}

// moveInnerLeft moves the first m children of src to the end of dst.
func moveInnerLeft[K Key, V any, F Functions[K, V]](dst, src *inner[K, V, F], m int) {
	copy(dst.starts[dst.n:dst.n+m], src.starts[:m])
	copy(dst.gaps[dst.n:dst.n+m], src.gaps[:m])
	copy(dst.kids[dst.n:dst.n+m], src.kids[:m])
	copy(dst.leaves[dst.n:dst.n+m], src.leaves[:m])
	old := dst.n
	dst.n += m
	dst.relink(old)
	copy(src.starts[:src.n-m], src.starts[m:src.n])
	copy(src.gaps[:src.n-m], src.gaps[m:src.n])
	copy(src.kids[:src.n-m], src.kids[m:src.n])
	copy(src.leaves[:src.n-m], src.leaves[m:src.n])
	src.n -= m
	src.clearTail(src.n)
	src.relink(0)
}

// moveInnerRight moves the last m children of src to the front of dst.
func moveInnerRight[K Key, V any, F Functions[K, V]](src, dst *inner[K, V, F], m int) {
	copy(dst.starts[m:dst.n+m], dst.starts[:dst.n])
	copy(dst.gaps[m:dst.n+m], dst.gaps[:dst.n])
	copy(dst.kids[m:dst.n+m], dst.kids[:dst.n])
	copy(dst.leaves[m:dst.n+m], dst.leaves[:dst.n])
	copy(dst.starts[:m], src.starts[src.n-m:src.n])
	copy(dst.gaps[:m], src.gaps[src.n-m:src.n])
	copy(dst.kids[:m], src.kids[src.n-m:src.n])
	copy(dst.leaves[:m], src.leaves[src.n-m:src.n])
	dst.n += m
	dst.relink(0)
	src.n -= m
	src.clearTail(src.n)
}

// splitPoint returns how many of cap+1 entries the left node keeps when a
// full node of capacity cap and minimum min splits to take a new entry at
// index i. Appending at either end leaves the old node as full as the
// minimum allows, so that sequential insertion fills nodes well; otherwise
// the entries are shared evenly.
func splitPoint(i, cap, min int) int {
	switch i {
	case cap:
		return cap + 1 - min
	case 0:
		return min
	default:
		return (cap + 1) / 2
	}
}

// insertAt inserts r with value v before entry i of l (i == l.n appends),
// or into a new root leaf if l is nil (the set is empty), rebalancing as
// needed, and returns the new segment.
func (s *Set[K, V, F]) insertAt(l *leaf[K, V, F], i int, r Range[K], v V) Iterator[K, V, F] {
	if l == nil {
		if s.first != nil {
			panic("segment: insert through a gap iterator of the set when it was empty")
		}
		s.len++
		l = s.takeLeaf()
		l.n = 1
		l.setRng(0, r)
		l.vals[0] = v
		s.root, s.first, s.last = nil, l, l
		l.fix()
		return Iterator[K, V, F]{l, 0}
	}
	s.len++
	if l.n < leafCap {
		l.insertEntry(i, r, v)
		l.fix()
		if i == l.n-1 {
			l.fixNext()
		}
		return Iterator[K, V, F]{l, i}
	}
	return s.insertFull(l, i, r, v)
}

// insertFull is insertAt into a full leaf: it shifts entries into a sibling
// with room if there is one, and otherwise splits l.
func (s *Set[K, V, F]) insertFull(l *leaf[K, V, F], i int, r Range[K], v V) Iterator[K, V, F] {
	p := l.parent
	if p != nil && l.pidx > 0 {
		if left := p.leaves[l.pidx-1]; left.n < leafCap {
			if i == 0 {
				left.insertEntry(left.n, r, v)
				left.fix()
				l.fix()
				return Iterator[K, V, F]{left, left.n - 1}
			}
			m := min(i, max(1, (leafCap-left.n)/2))
			moveLeafLeft(left, l, m)
			l.insertEntry(i-m, r, v)
			left.fix()
			l.fix()
			if i-m == l.n-1 {
				l.fixNext()
			}
			return Iterator[K, V, F]{l, i - m}
		}
	}
	if p != nil && l.pidx < p.n-1 {
		if right := p.leaves[l.pidx+1]; right.n < leafCap {
			if i == l.n {
				right.insertEntry(0, r, v)
				right.fix()
				return Iterator[K, V, F]{right, 0}
			}
			m := min(l.n-i, max(1, (leafCap-right.n)/2))
			moveLeafRight(l, right, m)
			l.insertEntry(i, r, v)
			l.fix()
			right.fix()
			return Iterator[K, V, F]{l, i}
		}
	}

	// Split l, moving its upper part to a new leaf nl after it.
	nl := s.takeLeaf()
	k := splitPoint(i, leafCap, leafMin)
	var pos Iterator[K, V, F]
	if i < k {
		moveLeafRight(l, nl, leafCap-(k-1))
		l.insertEntry(i, r, v)
		pos = Iterator[K, V, F]{l, i}
	} else {
		moveLeafRight(l, nl, leafCap-k)
		nl.insertEntry(i-k, r, v)
		pos = Iterator[K, V, F]{nl, i - k}
	}
	nl.prev, nl.next = l, l.next
	if l.next != nil {
		l.next.prev = nl
	} else {
		s.last = nl
	}
	l.next = nl
	l.maxGap = l.computeMaxGap()
	nl.maxGap = nl.computeMaxGap()
	if p == nil {
		root := newInner[K, V, F](true)
		root.n = 2
		root.leaves[0], root.leaves[1] = l, nl
		root.starts[0], root.gaps[0] = l.starts[0], l.maxGap
		root.starts[1], root.gaps[1] = nl.starts[0], nl.maxGap
		root.relink(0)
		s.root = root
	} else {
		s.insertChild(p, l.pidx+1, nl.maxGap, nl.starts[0], nil, nl)
	}
	l.fix()
	nl.fix()
	nl.fixNext()
	return pos
}

// insertChild inserts a new child (kid or lf) with largest gap g and first
// start st at index j of p, splitting p if it is full, and brings the
// ancestors up to date.
func (s *Set[K, V, F]) insertChild(p *inner[K, V, F], j int, g, st K, kid *inner[K, V, F], lf *leaf[K, V, F]) {
	if p.n < innerCap {
		p.insertChildAt(j, g, st, kid, lf)
		p.fix()
		return
	}
	np := newInner[K, V, F](p.leafKids)
	k := splitPoint(j, innerCap, innerMin)
	if j < k {
		moveInnerRight(p, np, innerCap-(k-1))
		p.insertChildAt(j, g, st, kid, lf)
	} else {
		moveInnerRight(p, np, innerCap-k)
		np.insertChildAt(j-k, g, st, kid, lf)
	}
	if p.parent == nil {
		root := newInner[K, V, F](false)
		root.n = 2
		root.kids[0], root.kids[1] = p, np
		root.gaps[0], root.starts[0] = p.summary()
		root.gaps[1], root.starts[1] = np.summary()
		root.relink(0)
		s.root = root
	} else {
		ng, nst := np.summary()
		s.insertChild(p.parent, p.pidx+1, ng, nst, np, nil)
	}
	p.fix()
	np.fix()
}

// removeAt removes entry i of l, calling ClearValue on its value, and
// rebalances. It returns the gap that replaced the entry.
func (s *Set[K, V, F]) removeAt(l *leaf[K, V, F], i int) GapIterator[K, V, F] {
	var f F
	f.ClearValue(&l.vals[i])
	l.removeEntry(i)
	s.len--
	if l.n == 0 && l.parent == nil {
		s.root, s.first, s.last = nil, nil, nil
		// Keep the emptied leaf for the next insertion: a set that
		// alternates between empty and one segment (an address space
		// mapping and unmapping one region) then allocates nothing.
		s.keepLeaf(l)
		return GapIterator[K, V, F]{nil, emptySetGap}
	}
	if l.parent != nil && l.n <= leafMerge {
		l, i = s.rebalanceLeaf(l, i)
	} else {
		l.fix()
		if i == l.n {
			l.fixNext()
		}
	}
	return gapAt(l, i)
}

// gapAt returns the canonical iterator for the gap before entry i of l
// (i == l.n: after its last entry).
func gapAt[K Key, V any, F Functions[K, V]](l *leaf[K, V, F], i int) GapIterator[K, V, F] {
	if i == l.n && l.next != nil {
		return GapIterator[K, V, F]{l.next, 0}
	}
	return GapIterator[K, V, F]{l, i}
}

// rebalanceLeaf is called after entry i of l, a non-root leaf, was
// removed. It merges l with a sibling if together they fit in leafMerge
// entries, or shares l out between both siblings if the three fit in
// leafDissolve; failing that, if l fell below leafMin, it merges with a
// sibling if they fit in leafCap or else borrows from one. It brings the
// gaps up to date and returns where position i of l ended up.
func (s *Set[K, V, F]) rebalanceLeaf(l *leaf[K, V, F], i int) (*leaf[K, V, F], int) {
	p := l.parent
	var left, right *leaf[K, V, F]
	if l.pidx > 0 {
		left = p.leaves[l.pidx-1]
	}
	if l.pidx < p.n-1 {
		right = p.leaves[l.pidx+1]
	}
	limit := leafMerge
	if l.n < leafMin {
		limit = leafCap
	}
	switch {
	case left != nil && left.n+l.n <= limit:
		i += left.n
		moveLeafLeft(left, l, l.n)
		s.unlinkLeaf(l)
		s.removeChild(p, l.pidx)
		s.keepLeaf(l)
		left.fix()
		left.fixNext()
		return left, i
	case right != nil && l.n+right.n <= limit:
		moveLeafLeft(l, right, right.n)
		s.unlinkLeaf(right)
		s.removeChild(p, right.pidx)
		s.keepLeaf(right)
		l.fix()
		l.fixNext()
		return l, i
	case left != nil && right != nil && left.n+l.n+right.n <= leafDissolve:
		// Send l's first a entries to left and the rest to right, evening
		// out the two.
		total := left.n + l.n + right.n
		a := min(l.n, max(0, total/2-left.n))
		if over := right.n + l.n - a - leafCap; over > 0 {
			a += over
		}
		inLeft := i <= a
		if inLeft {
			i += left.n
		} else {
			i -= a
		}
		moveLeafLeft(left, l, a)
		moveLeafRight(l, right, l.n)
		s.unlinkLeaf(l)
		s.removeChild(p, l.pidx)
		s.keepLeaf(l)
		left.fix()
		right.fix()
		if inLeft {
			return left, i
		}
		return right, i
	case l.n >= leafMin:
		l.fix()
		if i == l.n {
			l.fixNext()
		}
		return l, i
	case left != nil:
		// left.n + l.n > leafCap, so left has plenty to spare.
		m := (left.n - l.n) / 2
		moveLeafRight(left, l, m)
		left.fix()
		l.fix()
		l.fixNext()
		return l, i + m
	default:
		m := (right.n - l.n) / 2
		moveLeafLeft(l, right, m)
		l.fix()
		right.fix()
		return l, i
	}
}

// maxSpareLeaves bounds the empty leaves a Set keeps for reuse. Sets whose
// segments are split and merged back in bulk (mprotect over thousands of
// pages, then back) then allocate their leaves once instead of in every
// round, and the garbage collector, with its write barriers on every value
// moved while it runs, has that much less to do.
const maxSpareLeaves = 512

// takeLeaf returns an empty leaf: a spare one, or a new one.
func (s *Set[K, V, F]) takeLeaf() *leaf[K, V, F] {
	l := s.spare
	if l == nil {
		return newLeaf[K, V, F]()
	}
	s.spare, l.next = l.next, nil
	s.nspare--
	return l
}

// keepLeaf keeps l, emptied (its entries cleared by the moves or the
// removal that emptied it) and unlinked from the tree, for takeLeaf, if
// there is room.
func (s *Set[K, V, F]) keepLeaf(l *leaf[K, V, F]) {
	if s.nspare >= maxSpareLeaves {
		return
	}
	l.prev, l.parent, l.pidx, l.maxGap = nil, nil, 0, 0
	l.next = s.spare
	s.spare = l
	s.nspare++
}

// unlinkLeaf removes l from the list of leaves.
func (s *Set[K, V, F]) unlinkLeaf(l *leaf[K, V, F]) {
	if l.prev != nil {
		l.prev.next = l.next
	} else {
		s.first = l.next
	}
	if l.next != nil {
		l.next.prev = l.prev
	} else {
		s.last = l.prev
	}
	l.prev, l.next, l.parent = nil, nil, nil
}

// removeChild removes child j of p, rebalancing p if it falls below
// innerMin, and brings the ancestors up to date.
func (s *Set[K, V, F]) removeChild(p *inner[K, V, F], j int) {
	p.removeChildAt(j)
	gp := p.parent
	if gp == nil {
		if p.n == 1 {
			// Collapse the root.
			if p.leafKids {
				l := p.leaves[0]
				l.parent, l.pidx = nil, 0
				s.root = nil
			} else {
				c := p.kids[0]
				c.parent, c.pidx = nil, 0
				s.root = c
			}
		}
		return
	}
	if p.n > innerMerge {
		p.fix()
		return
	}
	var left, right *inner[K, V, F]
	if p.pidx > 0 {
		left = gp.kids[p.pidx-1]
	}
	if p.pidx < gp.n-1 {
		right = gp.kids[p.pidx+1]
	}
	limit := innerMerge
	if p.n < innerMin {
		limit = innerCap
	}
	switch {
	case left != nil && left.n+p.n <= limit:
		moveInnerLeft(left, p, p.n)
		s.removeChild(gp, p.pidx)
		left.fix()
	case right != nil && p.n+right.n <= limit:
		moveInnerLeft(p, right, right.n)
		s.removeChild(gp, right.pidx)
		p.fix()
	case p.n >= innerMin:
		p.fix()
	case left != nil:
		moveInnerRight(left, p, (left.n-p.n)/2)
		left.fix()
		p.fix()
	default:
		moveInnerLeft(p, right, (right.n-p.n)/2)
		p.fix()
		right.fix()
	}
}

// search descends to the leaf where key belongs and returns it with the
// number of its entries that start at or before key. Only the first leaf
// can return 0. It returns nil for an empty set.
func (s *Set[K, V, F]) search(key K) (*leaf[K, V, F], int) {
	if key == noKey[K]() {
		// No segment starts at noKey, so this finds the same entries
		// without counting unused slots.
		key--
	}
	l := s.first
	if p := s.root; p != nil {
		for {
			// j is the last child whose first start is at or before key,
			// or 0.
			var j int
			if fixed16 {
				// A branchless binary search: four dependent steps.
				a := (*[16]K)(p.starts[:])
				j = b2i(a[8] <= key) << 3
				j += b2i(a[(j+4)&15] <= key) << 2
				j += b2i(a[(j+2)&15] <= key) << 1
				j += b2i(a[(j+1)&15] <= key)
			} else {
				j = lastInner(&p.starts, key)
			}
			if p.leafKids {
				l = p.leaves[j]
				break
			}
			p = p.kids[j]
		}
	} else if l == nil {
		return nil, 0
	}
	// Count the entries that start at or before key: find the last, as
	// above, then add one unless there is none.
	var j int
	if fixed16 {
		a := (*[16]K)(l.starts[:])
		j = b2i(a[8] <= key) << 3
		j += b2i(a[(j+4)&15] <= key) << 2
		j += b2i(a[(j+2)&15] <= key) << 1
		j += b2i(a[(j+1)&15] <= key)
	} else {
		j = lastLeaf(&l.starts, key)
	}
	return l, j + b2i(l.starts[0] <= key)
}

// b2i returns 1 for true and 0 for false, without a branch.
func b2i(b bool) int {
	x := 0
	if b {
		x = 1
	}
	return x
}

// rightmostLeaf returns the last leaf beneath p.
func rightmostLeaf[K Key, V any, F Functions[K, V]](p *inner[K, V, F]) *leaf[K, V, F] {
	for !p.leafKids {
		p = p.kids[p.n-1]
	}
	return p.leaves[p.n-1]
}

// firstGapFrom returns the index of the first gap of l at or after index
// from whose length is at least minSize, or -1.
func (l *leaf[K, V, F]) firstGapFrom(from int, minSize K) int {
	end := l.gapStart(from)
	for j := from; j < l.n; j++ {
		if l.starts[j]-end >= minSize {
			return j
		}
		end = l.ends[j]
	}
	return -1
}

// lastGapBefore returns the index of the last gap of l at or before index
// from (from < l.n) whose length is at least minSize, or -1.
func (l *leaf[K, V, F]) lastGapBefore(from int, minSize K) int {
	for j := from; j >= 0; j-- {
		if l.starts[j]-l.gapStart(j) >= minSize {
			return j
		}
	}
	return -1
}

// nextLargeGap returns the first gap after the gap before entry i of l (i <
// l.n) with length at least minSize, or a terminal iterator.
func nextLargeGap[K Key, V any, F Functions[K, V]](l *leaf[K, V, F], i int, minSize K) GapIterator[K, V, F] {
	if l.maxGap >= minSize {
		if j := l.firstGapFrom(i+1, minSize); j >= 0 {
			return GapIterator[K, V, F]{l, j}
		}
	}
	// Climb until an ancestor has a later child with a large enough gap.
	var c *inner[K, V, F]
	p, idx := l.parent, l.pidx
	for p != nil {
		found := -1
		for j := idx + 1; j < p.n; j++ {
			if p.gaps[j] >= minSize {
				found = j
				break
			}
		}
		if found >= 0 {
			// Descend to the first leaf beneath with a large enough gap.
			for !p.leafKids {
				p = p.kids[found]
				found = 0
				for p.gaps[found] < minSize {
					found++
				}
			}
			nl := p.leaves[found]
			return GapIterator[K, V, F]{nl, nl.firstGapFrom(0, minSize)}
		}
		c = p
		idx = p.pidx
		p = p.parent
	}
	// No leaf after l owns a large enough gap; try the last gap.
	last := l
	if c != nil {
		last = rightmostLeaf(c)
	}
	var f F
	if f.MaxKey()-last.ends[last.n-1] >= minSize {
		return GapIterator[K, V, F]{last, last.n}
	}
	return GapIterator[K, V, F]{}
}

// prevLargeGap returns the last gap before the gap before entry i of l (i <=
// l.n) with length at least minSize, or a terminal iterator.
func prevLargeGap[K Key, V any, F Functions[K, V]](l *leaf[K, V, F], i int, minSize K) GapIterator[K, V, F] {
	if i > 0 && l.maxGap >= minSize {
		if j := l.lastGapBefore(i-1, minSize); j >= 0 {
			return GapIterator[K, V, F]{l, j}
		}
	}
	p, idx := l.parent, l.pidx
	for p != nil {
		found := -1
		for j := idx - 1; j >= 0; j-- {
			if p.gaps[j] >= minSize {
				found = j
				break
			}
		}
		if found >= 0 {
			for !p.leafKids {
				p = p.kids[found]
				found = p.n - 1
				for p.gaps[found] < minSize {
					found--
				}
			}
			pl := p.leaves[found]
			return GapIterator[K, V, F]{pl, pl.lastGapBefore(pl.n-1, minSize)}
		}
		idx = p.pidx
		p = p.parent
	}
	return GapIterator[K, V, F]{}
}
