package fuzz

import (
	"regexp"
	"strconv"
	"strings"

	"github.com/vmspace/vmspace/vmscript"
)

// ShrinkOptions bound a Shrink.
type ShrinkOptions struct {
	// Budget is the most calls of the oracle Shrink makes; zero means
	// 2000. When it is spent, Shrink returns the smallest script found.
	Budget int
}

// Shrink reduces a script to a smaller one on which interesting still holds,
// by delta debugging: it removes chunks of lines (halving the chunk size down
// to single lines) while the property persists, then simplifies what is left
// token by token (smaller numbers, fewer flag words, shorter data, no unused
// "-> NAME"), and repeats until nothing more can go or the budget is spent.
// interesting(src) must hold for src itself; it is called with candidate
// scripts (which may not parse: the oracle says no to those). Comment and
// blank lines are dropped first when that keeps the property.
func Shrink(src []byte, interesting func([]byte) bool, opts ShrinkOptions) []byte {
	budget := opts.Budget
	if budget <= 0 {
		budget = 2000
	}
	sh := &shrinker{test: interesting, budget: budget}
	lines := vmscript.SplitLines(string(src))
	// Comments and blank lines first.
	var code []string
	for _, l := range lines {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
			code = append(code, l)
		}
	}
	if len(code) < len(lines) && sh.try(code) {
		lines = code
	}
	for {
		before := strings.Join(lines, "\n")
		lines = sh.ddmin(lines)
		lines = sh.simplify(lines)
		if strings.Join(lines, "\n") == before || sh.budget <= 0 {
			break
		}
	}
	return []byte(joinLines(lines))
}

// shrinker holds the oracle and what is left of the budget.
type shrinker struct {
	test   func([]byte) bool
	budget int
}

func joinLines(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}

// try asks the oracle about lines (false once the budget is spent).
func (sh *shrinker) try(lines []string) bool {
	if sh.budget <= 0 {
		return false
	}
	sh.budget--
	return sh.test([]byte(joinLines(lines)))
}

// ddmin removes chunks of lines while the property holds.
func (sh *shrinker) ddmin(lines []string) []string {
	for n := len(lines) / 2; n >= 1; n /= 2 {
		for i := 0; i < len(lines) && sh.budget > 0; {
			end := min(i+n, len(lines))
			cand := append(append([]string(nil), lines[:i]...), lines[end:]...)
			if len(cand) > 0 && sh.try(cand) {
				lines = cand
				continue // the same i now names the next chunk
			}
			i += n
		}
		if n == 1 {
			break
		}
	}
	return lines
}

// simplify tries simpler versions of each line, one change at a time.
func (sh *shrinker) simplify(lines []string) []string {
	for i := 0; i < len(lines) && sh.budget > 0; i++ {
		for changed := true; changed && sh.budget > 0; {
			changed = false
			for _, alt := range simplerLines(lines[i], lines) {
				cand := append([]string(nil), lines...)
				cand[i] = alt
				if sh.try(cand) {
					lines = cand
					changed = true
					break
				}
			}
		}
	}
	return lines
}

// numRe finds numbers inside tokens (after @, $NAME+, brk+, or alone).
var numRe = regexp.MustCompile(`0x[0-9a-fA-F]+[kmg]?|[0-9]+[kmg]?`)

// simplerLines returns candidate simplifications of one line, simplest
// first. all is the whole script (to see whether a binding is used).
func simplerLines(line string, all []string) []string {
	toks := strings.Fields(line)
	var out []string
	with := func(i int, t string) {
		c := append([]string(nil), toks...)
		if t == "" {
			c = append(c[:i], c[i+1:]...)
		} else {
			c[i] = t
		}
		out = append(out, strings.Join(c, " "))
	}
	kw := 0
	if len(toks) > 0 && strings.HasSuffix(toks[0], ":") {
		kw = 1
	}
	for i, t := range toks {
		if i <= kw {
			continue
		}
		switch {
		case t == "->" && i+1 < len(toks):
			name := toks[i+1]
			used := false
			for _, l := range all {
				if strings.Contains(l, "$"+name) {
					used = true
				}
			}
			if !used {
				c := append([]string(nil), toks[:i]...)
				out = append(out, strings.Join(c, " "))
			}
		case i > 0 && toks[i-1] == "->":
		case t == "onfault" || t == "rdonly" || t == "ro" || strings.HasPrefix(t, "seed="):
			with(i, "")
		case strings.Contains(t, ",") && !strings.ContainsAny(t, "@$"):
			words := strings.Split(t, ",")
			for j := range words {
				rest := append(append([]string(nil), words[:j]...), words[j+1:]...)
				with(i, strings.Join(rest, ","))
			}
		case isHexData(toks, i):
			if len(t) > 2 {
				with(i, t[:2])
			}
		case strings.Contains(t, "+growsdown") || strings.Contains(t, "+growsup"):
			with(i, t[:strings.IndexByte(t, '+')])
		default:
			base := 0
			if strings.HasPrefix(t, "$") {
				// $NAME+OFF: only OFF is a number.
				base = strings.IndexAny(t, "+-") + 1
				if base == 0 {
					continue
				}
			}
			loc := numRe.FindStringIndex(t[base:])
			if loc == nil {
				continue
			}
			loc[0], loc[1] = loc[0]+base, loc[1]+base
			if loc[0] > 0 && !strings.ContainsAny(t[:loc[0]], "@+-") {
				continue
			}
			n, ok := vmscript.ParseNum(t[loc[0]:loc[1]])
			if !ok {
				continue
			}
			for _, v := range simplerNums(n) {
				with(i, t[:loc[0]]+numText(v, t[loc[0]:loc[1]])+t[loc[1]:])
			}
		}
	}
	return out
}

// isHexData says toks[i] is the HEX of a write or pwrite.
func isHexData(toks []string, i int) bool {
	k := 0
	if strings.HasSuffix(toks[0], ":") {
		k = 1
	}
	if k >= len(toks) {
		return false
	}
	switch toks[k] {
	case "write":
		return i == k+2
	case "pwrite":
		return i == k+3
	}
	return false
}

// simplerNums returns smaller values to try in place of n, smallest first.
// They keep page alignment (an unaligned length is a different case from an
// aligned one) and never come near huge values: halving a length that wraps
// around the address space could make one that reaches every mapping of the
// native process.
func simplerNums(n uint64) []uint64 {
	var out []uint64
	add := func(v uint64) {
		if v >= n {
			return
		}
		for _, o := range out {
			if o == v {
				return
			}
		}
		out = append(out, v)
	}
	add(0)
	if n%vmscript.PageSize != 0 {
		add(1)
		add(n &^ (vmscript.PageSize - 1))
		add(n % vmscript.PageSize)
	}
	add(vmscript.PageSize)
	if n <= 1<<32 {
		add(n / 2 &^ (vmscript.PageSize - 1))
		if n > vmscript.PageSize {
			add(n - vmscript.PageSize)
		}
		if n%vmscript.PageSize != 0 {
			add(n / 2)
		}
	}
	return out
}

// numText writes v in the style of orig (hex or decimal; a k suffix only
// when it stays exact).
func numText(v uint64, orig string) string {
	if strings.HasPrefix(orig, "0x") {
		return hx(v)
	}
	if strings.HasSuffix(orig, "k") && v%1024 == 0 {
		return strconv.FormatUint(v/1024, 10) + "k"
	}
	if strings.HasSuffix(orig, "k") || strings.HasSuffix(orig, "m") || strings.HasSuffix(orig, "g") {
		return hx(v)
	}
	return strconv.FormatUint(v, 10)
}
