package segment

import "fmt"

// checkTree verifies every structural invariant of s and returns the first
// violation found, or nil.
func checkTree[K Key, V comparable, F Functions[K, V]](s *Set[K, V, F]) error {
	var f F
	var zv V
	if s.first == nil {
		if s.root != nil || s.last != nil || s.len != 0 {
			return fmt.Errorf("empty set with root %p last %p len %d", s.root, s.last, s.len)
		}
		return nil
	}
	// The leaf list.
	var order []*leaf[K, V, F]
	count := 0
	end := f.MinKey()
	var prev *leaf[K, V, F]
	for l := s.first; l != nil; l = l.next {
		if l.prev != prev {
			return fmt.Errorf("leaf %d: prev link broken", len(order))
		}
		if l.n < 1 || l.n > leafCap {
			return fmt.Errorf("leaf %d: n = %d", len(order), l.n)
		}
		if l.parent != nil && l.n < leafMin {
			return fmt.Errorf("leaf %d: n = %d below leafMin", len(order), l.n)
		}
		if l.parent == nil && (s.root != nil || l != s.first || l.next != nil) {
			return fmt.Errorf("leaf %d: no parent in a tree with root %p", len(order), s.root)
		}
		for i := 0; i < l.n; i++ {
			r := l.rng(i)
			if r.Start >= r.End || r.Start < end || r.End > f.MaxKey() {
				return fmt.Errorf("leaf %d entry %d: range %v after end %#x", len(order), i, r, uint64(end))
			}
			end = r.End
		}
		for i := l.n; i < leafCap; i++ {
			if l.rng(i) != (Range[K]{noKey[K](), 0}) || l.vals[i] != zv {
				return fmt.Errorf("leaf %d: slot %d not cleared", len(order), i)
			}
		}
		if g := l.computeMaxGap(); g != l.maxGap {
			return fmt.Errorf("leaf %d: maxGap %#x, want %#x", len(order), uint64(l.maxGap), uint64(g))
		}
		count += l.n
		order = append(order, l)
		prev = l
	}
	if prev != s.last {
		return fmt.Errorf("last leaf %p, want %p", s.last, prev)
	}
	if count != s.len {
		return fmt.Errorf("len %d, counted %d", s.len, count)
	}
	if s.root == nil {
		if len(order) != 1 {
			return fmt.Errorf("no root but %d leaves", len(order))
		}
		return nil
	}
	if s.root.parent != nil {
		return fmt.Errorf("root has a parent")
	}
	if s.root.n < 2 {
		return fmt.Errorf("root has %d children", s.root.n)
	}
	// The tree above the leaves.
	var inTree []*leaf[K, V, F]
	depth := -1
	var walk func(p *inner[K, V, F], d int) (g, st K, err error)
	walk = func(p *inner[K, V, F], d int) (K, K, error) {
		if p.n < 1 || p.n > innerCap || (p.parent != nil && p.n < innerMin) {
			return 0, 0, fmt.Errorf("inner at depth %d: n = %d", d, p.n)
		}
		for j := p.n; j < innerCap; j++ {
			if p.starts[j] != noKey[K]() || p.gaps[j] != 0 || p.kids[j] != nil || p.leaves[j] != nil {
				return 0, 0, fmt.Errorf("inner at depth %d: slot %d not cleared", d, j)
			}
		}
		for j := 0; j < p.n; j++ {
			var g, st K
			if p.leafKids {
				l := p.leaves[j]
				if l == nil || p.kids[j] != nil || l.parent != p || l.pidx != j {
					return 0, 0, fmt.Errorf("inner at depth %d: bad leaf child %d", d, j)
				}
				if depth == -1 {
					depth = d
				} else if depth != d {
					return 0, 0, fmt.Errorf("leaves at depths %d and %d", depth, d)
				}
				inTree = append(inTree, l)
				g, st = l.maxGap, l.starts[0]
			} else {
				k := p.kids[j]
				if k == nil || p.leaves[j] != nil || k.parent != p || k.pidx != j {
					return 0, 0, fmt.Errorf("inner at depth %d: bad inner child %d", d, j)
				}
				var err error
				if g, st, err = walk(k, d+1); err != nil {
					return 0, 0, err
				}
			}
			if p.gaps[j] != g || p.starts[j] != st {
				return 0, 0, fmt.Errorf("inner at depth %d child %d: gap %#x start %#x, want %#x %#x",
					d, j, uint64(p.gaps[j]), uint64(p.starts[j]), uint64(g), uint64(st))
			}
		}
		g, st := p.summary()
		return g, st, nil
	}
	if _, _, err := walk(s.root, 0); err != nil {
		return err
	}
	if len(inTree) != len(order) {
		return fmt.Errorf("%d leaves in the tree, %d in the list", len(inTree), len(order))
	}
	for i := range inTree {
		if inTree[i] != order[i] {
			return fmt.Errorf("leaf %d of the tree is not leaf %d of the list", i, i)
		}
	}
	return nil
}

// height returns the number of levels of the tree (0 if empty).
func (s *Set[K, V, F]) height() int {
	if s.first == nil {
		return 0
	}
	h := 1
	for p := s.root; p != nil; h++ {
		if p.leafKids {
			p = nil
		} else {
			p = p.kids[0]
		}
	}
	return h
}
