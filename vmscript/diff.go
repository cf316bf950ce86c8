package vmscript

import (
	"fmt"
	"strconv"
	"strings"
)

// Difference is the first place where two transcripts of one script differ.
type Difference struct {
	// Line is the script line of the differing transcript line (0 if it
	// cannot be told).
	Line int
	// Stmt is that statement's text, or "" when Line is 0 or the script
	// has no statement there.
	Stmt string
	// A and B are the two results (without the line number); Missing
	// stands for a transcript that ended early.
	A, B string
}

// Missing is the result Diff reports for a transcript that has no line where
// the other has one.
const Missing = "(missing)"

// Format describes the difference, naming the two transcripts.
func (d *Difference) Format(nameA, nameB string) string {
	where := "line ?"
	if d.Line > 0 {
		where = "line " + strconv.Itoa(d.Line)
	}
	if d.Stmt != "" {
		where += ": " + d.Stmt
	}
	return fmt.Sprintf("%s\n  %s: %s\n  %s: %s", where, nameA, d.A, nameB, d.B)
}

func (d *Difference) String() string { return d.Format("a", "b") }

// Diff compares two transcripts of s (for example Linux's and vmspace's) and
// returns the first difference, or nil when they are identical byte for byte.
// s may be nil; then Stmt is left empty.
func Diff(s *Script, a, b []byte) *Difference {
	if string(a) == string(b) {
		return nil
	}
	la, lb := SplitLines(string(a)), SplitLines(string(b))
	for i := 0; i < len(la) || i < len(lb); i++ {
		var x, y string
		x, y = Missing, Missing
		if i < len(la) {
			x = la[i]
		}
		if i < len(lb) {
			y = lb[i]
		}
		if x == y {
			continue
		}
		d := &Difference{}
		nx, rx := splitResult(x)
		ny, ry := splitResult(y)
		switch {
		case nx > 0 && (nx == ny || ny == 0):
			d.Line = nx
		case ny > 0 && nx == 0:
			d.Line = ny
		}
		if nx == ny || nx == 0 || ny == 0 {
			d.A, d.B = rx, ry
		} else {
			// Different line numbers: show whole lines.
			d.A, d.B = x, y
		}
		if d.Line > 0 && s != nil {
			if st := s.StmtAt(d.Line); st != nil {
				d.Stmt = st.Text
			}
		}
		return d
	}
	// Only a trailing newline differs.
	return &Difference{A: fmt.Sprintf("%d bytes", len(a)), B: fmt.Sprintf("%d bytes", len(b))}
}

// SplitLines splits a script or a transcript into its lines (without the
// final newline); nil when s is empty.
func SplitLines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// splitResult splits "N RESULT" into N and RESULT; N is 0 when the line has
// no line number (Missing, or malformed input), and RESULT is then the
// whole line.
func splitResult(l string) (int, string) {
	i := strings.IndexByte(l, ' ')
	if i <= 0 {
		return 0, l
	}
	n, err := strconv.Atoi(l[:i])
	if err != nil || n <= 0 {
		return 0, l
	}
	return n, l[i+1:]
}
