package vmscript

import (
	"encoding/hex"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// ParseError is a malformed line.
type ParseError struct {
	// Script is the script name given to Parse.
	Script string
	// Line is the 1-based line number.
	Line int
	// Msg says what was expected.
	Msg string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("%s:%d: %s", e.Script, e.Line, e.Msg)
}

// MaxRead is the largest LEN of a read statement.
const MaxRead = 64

// maxNameLen bounds identifiers (process, binding, file, shm and AIO names).
const maxNameLen = 63

// Parse parses a script. It is strict: any malformed line, unknown keyword,
// missing or extra argument, use of a process that does not exist at that
// point, or $NAME that no earlier statement binds, is an error naming the
// line and what was expected. Nothing is run.
func Parse(name string, src []byte) (*Script, error) {
	s := &Script{Name: name}
	// Static process tracking: scripts have no control flow, so which
	// processes exist and which one is current is known at every line.
	procs := map[string]bool{"p0": true}
	current := "p0"
	bound := map[string]bool{}

	lines := strings.Split(string(src), "\n")
	if len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	s.Lines = len(lines)
	for i, raw := range lines {
		lineNo := i + 1
		text := strings.TrimSuffix(raw, "\r")
		if j := strings.IndexByte(text, '#'); j >= 0 {
			text = text[:j]
		}
		text = strings.Trim(text, " \t")
		if text == "" {
			continue
		}
		toks := strings.FieldsFunc(text, func(r rune) bool { return r == ' ' || r == '\t' })
		p := &lineParser{script: name, line: lineNo, toks: toks}
		st, err := p.parse(text)
		if err != nil {
			return nil, err
		}
		// Static checks.
		switch st.Op {
		case OpFork:
			if st.Prefixed {
				if err := p.needProc(procs, st.Proc); err != nil {
					return nil, err
				}
			} else if current == "" {
				return nil, p.errf("fork: no current process (it exited); use one first")
			} else {
				st.Proc = current
			}
			if procs[st.Name] {
				return nil, p.errf("fork: process %q already exists", st.Name)
			}
			procs[st.Name] = true
		case OpUse:
			if !procs[st.Name] {
				return nil, p.errf("use: expected an existing process, got %q", st.Name)
			}
			current = st.Name
		case OpExit:
			if !procs[st.Name] {
				return nil, p.errf("exit: expected an existing process, got %q", st.Name)
			}
			delete(procs, st.Name)
			if current == st.Name {
				current = ""
			}
		case OpCheckpoint:
		default:
			if st.Prefixed {
				if err := p.needProc(procs, st.Proc); err != nil {
					return nil, err
				}
			} else if current == "" {
				return nil, p.errf("%s: no current process (it exited); use one first", st.Op)
			} else {
				st.Proc = current
			}
		}
		for _, a := range []*Addr{&st.Addr, &st.NewAddr} {
			if a.Kind == AddrBound && !bound[a.Name] {
				return nil, p.errf("%s: $%s is not bound by an earlier \"-> %s\"", st.Op, a.Name, a.Name)
			}
		}
		if st.Bind != "" {
			bound[st.Bind] = true
		}
		s.Stmts = append(s.Stmts, st)
	}
	return s, nil
}

// lineParser parses the tokens of one line.
type lineParser struct {
	script string
	line   int
	toks   []string
	i      int
	op     Op
}

func (p *lineParser) errf(format string, args ...any) error {
	return &ParseError{Script: p.script, Line: p.line, Msg: fmt.Sprintf(format, args...)}
}

func (p *lineParser) needProc(procs map[string]bool, name string) error {
	if !procs[name] {
		return p.errf("expected an existing process before ':', got %q", name)
	}
	return nil
}

// next returns the next token, or an error saying what was expected.
func (p *lineParser) next(what string) (string, error) {
	if p.i >= len(p.toks) {
		return "", p.errf("%s: expected %s, got end of line", p.op, what)
	}
	t := p.toks[p.i]
	p.i++
	return t, nil
}

// peek returns the next token without consuming it, or "".
func (p *lineParser) peek() string {
	if p.i >= len(p.toks) {
		return ""
	}
	return p.toks[p.i]
}

func (p *lineParser) more() bool { return p.i < len(p.toks) }

func (p *lineParser) bad(what, tok string) error {
	return p.errf("%s: expected %s, got %q", p.op, what, tok)
}

func (p *lineParser) parse(text string) (*Stmt, error) {
	st := &Stmt{Line: p.line, Text: text}
	first := p.toks[0]
	if strings.HasSuffix(first, ":") {
		name := strings.TrimSuffix(first, ":")
		if !isIdent(name) {
			return nil, p.errf("expected a process name before ':', got %q", first)
		}
		st.Proc = name
		st.Prefixed = true
		p.i++
		if !p.more() {
			return nil, p.errf("expected a statement after %q", first)
		}
	}
	kw := p.toks[p.i]
	p.i++
	op, ok := opByName[kw]
	if !ok {
		return nil, p.errf("expected a statement keyword, got %q", kw)
	}
	st.Op = op
	p.op = op
	if st.Prefixed && (op == OpUse || op == OpExit || op == OpCheckpoint) {
		return nil, p.errf("%s: takes no PROC: prefix", op)
	}

	// Strip a trailing "-> NAME".
	if n := len(p.toks); n >= 2 && p.toks[n-2] == "->" {
		switch op {
		case OpMmap, OpMremap, OpShmat, OpBrk, OpIoSetup:
		default:
			return nil, p.errf("%s: has no address result to bind with \"->\"", op)
		}
		name := p.toks[n-1]
		if !isIdent(name) {
			return nil, p.errf("%s: expected a NAME after \"->\", got %q", op, name)
		}
		st.Bind = name
		p.toks = p.toks[:n-2]
	}
	for _, t := range p.toks[p.i:] {
		if t == "->" || strings.HasPrefix(t, "->") {
			return nil, p.errf("%s: expected \"-> NAME\" at the end of the line, got %q", op, t)
		}
	}

	var err error
	switch op {
	case OpFork, OpUse, OpExit, OpClose, OpShmrm, OpIoDestroy:
		st.Name, err = p.ident("NAME")
	case OpMmap:
		err = p.all(
			func() (err error) { st.Addr, err = p.addr(); return },
			func() (err error) { st.Len, err = p.size("LEN"); return },
			func() (err error) { st.Prot, err = p.prot(false); return },
			func() (err error) {
				st.MapFlags, err = flagList(p, mapFlagWords, "FLAGS (0 or a comma list of "+wordNames(mapFlagWords)+")")
				return
			},
		)
		if err == nil && p.more() {
			st.HasFile = true
			err = p.all(
				func() (err error) { st.Name, err = p.ident("FILE"); return },
				func() (err error) { st.Off, err = p.size("OFF"); return },
			)
		}
	case OpMunmap, OpMincore, OpMseal, OpMunlock, OpRead, OpSum, OpState:
		err = p.all(
			func() (err error) { st.Addr, err = p.addr(); return },
			func() (err error) { st.Len, err = p.size("LEN"); return },
		)
		if err == nil && op == OpRead && (st.Len == 0 || st.Len > MaxRead) {
			err = p.errf("read: expected LEN from 1 to %d, got %d", MaxRead, st.Len)
		}
	case OpMprotect:
		err = p.all(
			func() (err error) { st.Addr, err = p.addr(); return },
			func() (err error) { st.Len, err = p.size("LEN"); return },
			func() (err error) { st.Prot, err = p.prot(true); return },
		)
	case OpMremap:
		err = p.all(
			func() (err error) { st.Addr, err = p.addr(); return },
			func() (err error) { st.Len, err = p.size("OLDLEN"); return },
			func() (err error) { st.NewLen, err = p.size("NEWLEN"); return },
			func() (err error) {
				st.MremapFlags, err = flagList(p, mremapFlagWords, "FLAGS (0 or a comma list of "+wordNames(mremapFlagWords)+")")
				return
			},
		)
		if err == nil && p.more() {
			st.HasNewAddr = true
			st.NewAddr, err = p.addr()
		}
	case OpMadvise:
		err = p.all(
			func() (err error) { st.Addr, err = p.addr(); return },
			func() (err error) { st.Len, err = p.size("LEN"); return },
			func() error {
				t, err := p.next("ADVICE")
				if err != nil {
					return err
				}
				a, ok := lookupWord(adviceWords, t)
				if !ok {
					return p.bad("ADVICE (one of "+wordNames(adviceWords)+")", t)
				}
				st.Advice = a
				return nil
			},
		)
	case OpMlock:
		err = p.all(
			func() (err error) { st.Addr, err = p.addr(); return },
			func() (err error) { st.Len, err = p.size("LEN"); return },
		)
		if err == nil && p.more() {
			t, _ := p.next("")
			if t != "onfault" {
				err = p.bad("onfault or end of line", t)
			}
			st.OnFault = true
		}
	case OpMlockall:
		st.MlockallFlags, err = flagList(p, mlockallFlagWords, "FLAGS (0 or a comma list of "+wordNames(mlockallFlagWords)+")")
	case OpMunlockall, OpVmsize, OpVmlck, OpCheckpoint:
	case OpMsync:
		err = p.all(
			func() (err error) { st.Addr, err = p.addr(); return },
			func() (err error) { st.Len, err = p.size("LEN"); return },
			func() (err error) {
				st.MsyncFlags, err = flagList(p, msyncFlagWords, "FLAGS (0 or a comma list of "+wordNames(msyncFlagWords)+")")
				return
			},
		)
	case OpAnonname:
		err = p.all(
			func() (err error) { st.Addr, err = p.addr(); return },
			func() (err error) { st.Len, err = p.size("LEN"); return },
			func() error {
				t, err := p.next("NAME (or - to clear)")
				if err != nil {
					return err
				}
				if t == "-" {
					st.ClearName = true
				} else {
					st.Name = t
				}
				return nil
			},
		)
	case OpBrk, OpShmdt:
		st.Addr, err = p.addr()
	case OpSetrlimit:
		err = p.all(
			func() error {
				t, err := p.next("RES")
				if err != nil {
					return err
				}
				r, ok := lookupWord(resourceWords, t)
				if !ok {
					return p.bad("RES (one of "+wordNames(resourceWords)+")", t)
				}
				st.Resource = r
				return nil
			},
			func() error {
				t, err := p.next("VALUE")
				if err != nil {
					return err
				}
				switch {
				case t == "inf":
					st.Limit = Limit{Kind: LimitInf}
				case strings.HasPrefix(t, "+"):
					n, ok := ParseNum(t[1:])
					if !ok {
						return p.bad("VALUE (inf, a number, or +N)", t)
					}
					st.Limit = Limit{Kind: LimitPlus, N: n}
				default:
					n, ok := ParseNum(t)
					if !ok {
						return p.bad("VALUE (inf, a number, or +N)", t)
					}
					st.Limit = Limit{Kind: LimitValue, N: n}
				}
				return nil
			},
		)
	case OpWrite:
		err = p.all(
			func() (err error) { st.Addr, err = p.addr(); return },
			func() (err error) { st.Data, err = p.hexData(); return },
		)
	case OpFill:
		err = p.all(
			func() (err error) { st.Addr, err = p.addr(); return },
			func() (err error) { st.Len, err = p.size("LEN"); return },
			func() error {
				t, err := p.next("BYTE")
				if err != nil {
					return err
				}
				n, ok := ParseNum(t)
				if !ok || n > 255 || strings.ContainsAny(t, "kmg") {
					return p.bad("BYTE (0 to 255)", t)
				}
				st.Byte = byte(n)
				return nil
			},
		)
	case OpFile:
		err = p.all(
			func() (err error) { st.Name, err = p.ident("NAME"); return },
			func() (err error) { st.Len, err = p.size("SIZE"); return },
		)
		seenRO, seenSeed := false, false
		for err == nil && p.more() {
			t, _ := p.next("")
			switch {
			case t == "ro" && !seenRO:
				st.ReadOnly, seenRO = true, true
			case strings.HasPrefix(t, "seed=") && !seenSeed:
				n, ok := ParseNum(t[len("seed="):])
				if !ok {
					err = p.bad("seed=N", t)
				}
				st.Seed, seenSeed = n, true
			default:
				err = p.bad("ro, seed=N or end of line", t)
			}
		}
	case OpMemfd, OpFtruncate, OpShmget:
		err = p.all(
			func() (err error) { st.Name, err = p.ident("NAME"); return },
			func() (err error) { st.Len, err = p.size("SIZE"); return },
		)
	case OpPwrite:
		err = p.all(
			func() (err error) { st.Name, err = p.ident("NAME"); return },
			func() (err error) { st.Off, err = p.size("OFF"); return },
			func() (err error) { st.Data, err = p.hexData(); return },
		)
	case OpPsum:
		err = p.all(
			func() (err error) { st.Name, err = p.ident("NAME"); return },
			func() (err error) { st.Off, err = p.size("OFF"); return },
			func() (err error) { st.Len, err = p.size("LEN"); return },
		)
	case OpShmat:
		err = p.all(
			func() (err error) { st.Name, err = p.ident("NAME"); return },
			func() (err error) { st.Addr, err = p.addr(); return },
		)
		if err == nil && p.more() {
			t, _ := p.next("")
			if t != "rdonly" {
				err = p.bad("rdonly or end of line", t)
			}
			st.ReadOnly = true
		}
	case OpIoSetup:
		err = p.all(
			func() (err error) { st.Name, err = p.ident("NAME"); return },
			func() (err error) {
				st.Len, err = p.size("NR")
				if err == nil && st.Len > 0xffffffff {
					err = p.errf("io_setup: expected NR below 2^32, got %d", st.Len)
				}
				return
			},
		)
	default:
		return nil, p.errf("unknown statement %q", kw)
	}
	if err != nil {
		return nil, err
	}
	if p.more() {
		return nil, p.errf("%s: expected end of line, got %q", op, p.peek())
	}
	return st, nil
}

// all runs argument parsers in order, stopping at the first error.
func (p *lineParser) all(fs ...func() error) error {
	for _, f := range fs {
		if err := f(); err != nil {
			return err
		}
	}
	return nil
}

func (p *lineParser) ident(what string) (string, error) {
	t, err := p.next(what)
	if err != nil {
		return "", err
	}
	if !isIdent(t) {
		return "", p.bad(what+" (letters, digits and _, not starting with a digit)", t)
	}
	return t, nil
}

func (p *lineParser) size(what string) (uint64, error) {
	t, err := p.next(what)
	if err != nil {
		return 0, err
	}
	n, ok := ParseNum(t)
	if !ok {
		return 0, p.bad(what+" (a number: decimal or 0x hex, optional k/m/g suffix)", t)
	}
	return n, nil
}

const addrWhat = "ADDR (@OFF, $NAME[+-OFF], brk[+-OFF], 0 or a number)"

func (p *lineParser) addr() (Addr, error) {
	t, err := p.next("ADDR")
	if err != nil {
		return Addr{}, err
	}
	a, ok := parseAddr(t)
	if !ok {
		return Addr{}, p.bad(addrWhat, t)
	}
	return a, nil
}

// parseAddr parses one address token.
func parseAddr(t string) (Addr, bool) {
	switch {
	case strings.HasPrefix(t, "@"):
		n, ok := ParseNum(t[1:])
		return Addr{Kind: AddrWindow, Off: n}, ok
	case strings.HasPrefix(t, "$"):
		rest := t[1:]
		j := strings.IndexAny(rest, "+-")
		name := rest
		if j >= 0 {
			name = rest[:j]
		}
		if !isIdent(name) {
			return Addr{}, false
		}
		a := Addr{Kind: AddrBound, Name: name}
		if j >= 0 {
			n, ok := ParseNum(rest[j+1:])
			if !ok {
				return Addr{}, false
			}
			a.Off, a.Neg = n, rest[j] == '-'
		}
		return a, true
	case strings.HasPrefix(t, "brk"):
		rest := t[3:]
		a := Addr{Kind: AddrBrk}
		if rest == "" {
			return a, true
		}
		if rest[0] != '+' && rest[0] != '-' {
			return Addr{}, false
		}
		n, ok := ParseNum(rest[1:])
		if !ok {
			return Addr{}, false
		}
		a.Off, a.Neg = n, rest[0] == '-'
		return a, true
	default:
		n, ok := ParseNum(t)
		return Addr{Kind: AddrAbs, Off: n}, ok
	}
}

func (p *lineParser) prot(allowGrow bool) (Prot, error) {
	what := "PROT (none or letters of rwx)"
	if allowGrow {
		what = "PROT (none or letters of rwx, optionally +growsdown or +growsup)"
	}
	t, err := p.next("PROT")
	if err != nil {
		return 0, err
	}
	parts := strings.Split(t, "+")
	var prot Prot
	if parts[0] != "none" {
		if parts[0] == "" {
			return 0, p.bad(what, t)
		}
		for _, c := range parts[0] {
			var b Prot
			switch c {
			case 'r':
				b = ProtRead
			case 'w':
				b = ProtWrite
			case 'x':
				b = ProtExec
			default:
				return 0, p.bad(what, t)
			}
			if prot&b != 0 {
				return 0, p.bad(what, t)
			}
			prot |= b
		}
	}
	for _, g := range parts[1:] {
		if !allowGrow {
			return 0, p.bad(what, t)
		}
		var b Prot
		switch g {
		case "growsdown":
			b = ProtGrowsDown
		case "growsup":
			b = ProtGrowsUp
		default:
			return 0, p.bad(what, t)
		}
		if prot&b != 0 {
			return 0, p.bad(what, t)
		}
		prot |= b
	}
	return prot, nil
}

// flagList parses "0" or a comma list of words, ORing their values.
func flagList[T ~uint32](p *lineParser, ws []Word[T], what string) (T, error) {
	t, err := p.next("FLAGS")
	if err != nil {
		return 0, err
	}
	if t == "0" {
		return 0, nil
	}
	var v T
	seen := map[string]bool{}
	for _, w := range strings.Split(t, ",") {
		b, ok := lookupWord(ws, w)
		if !ok || seen[w] {
			return 0, p.bad(what, t)
		}
		seen[w] = true
		v |= b
	}
	return v, nil
}

func (p *lineParser) hexData() ([]byte, error) {
	t, err := p.next("HEX")
	if err != nil {
		return nil, err
	}
	b, derr := hex.DecodeString(t)
	if derr != nil || len(b) == 0 {
		return nil, p.bad("HEX (an even number of hex digits)", t)
	}
	return b, nil
}

// ParseNum parses a script's number: a decimal or 0x-hex number with an optional k, m or g
// suffix, rejecting overflow.
func ParseNum(s string) (uint64, bool) {
	if s == "" {
		return 0, false
	}
	shift := uint(0)
	switch s[len(s)-1] {
	case 'k':
		shift = 10
	case 'm':
		shift = 20
	case 'g':
		shift = 30
	}
	if shift != 0 {
		s = s[:len(s)-1]
	}
	base := 10
	if strings.HasPrefix(s, "0x") {
		s, base = s[2:], 16
	}
	if s == "" || s[0] == '+' || s[0] == '-' || strings.Contains(s, "_") {
		return 0, false
	}
	n, err := strconv.ParseUint(s, base, 64)
	if err != nil {
		return 0, false
	}
	if shift != 0 {
		if bits.LeadingZeros64(n) < int(shift) {
			return 0, false
		}
		n <<= shift
	}
	return n, true
}

func isIdent(s string) bool {
	if s == "" || len(s) > maxNameLen {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z'):
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

func hx(n uint64) string  { return "0x" + strconv.FormatUint(n, 16) }
func dec(n uint64) string { return strconv.FormatUint(n, 10) }
