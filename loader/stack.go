package loader

import (
	"bytes"
	"encoding/binary"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/mm"
)

// argStrings is the top of the initial stack as exec lays it out before
// loading the program: from low to high, the argument strings, the
// environment strings, the exec file name, and 8 zero bytes below the
// stack top.
type argStrings struct {
	// top is STACK_TOP, the stack's exclusive end. Page-aligned.
	top hostarch.Addr
	// argc and envc count the arguments (at least 1: an empty argv gets
	// "") and environment strings.
	argc, envc int
	// argStart is the first argument string (Linux's arg_start), argEnd
	// the end of the last one and the start of the environment (arg_end,
	// env_start), envEnd the end of the environment (env_end).
	argStart, argEnd, envEnd hostarch.Addr
	// execFn is the address of the exec file name (AT_EXECFN).
	execFn hostarch.Addr
	// data holds the bytes of [argStart, top).
	data []byte
	// vmaStart is where setup_arg_pages starts the stack vma: the
	// strings' lowest page, extended by 128 KiB within RLIMIT_STACK.
	vmaStart hostarch.Addr
	// tablesTop is where create_elf_tables starts below the strings:
	// argStart 16-byte aligned (arch_align_stack), up to 8 KiB lower
	// with randomization. Set by the caller of copyStrings.
	tablesTop hostarch.Addr
}

// copyStrings lays out argv, envv and execFn below top as Linux's
// do_execveat_common and copy_strings do, with their limits (E2BIG): each
// string with its NUL at most MAX_ARG_STRLEN; all of them, plus a pointer
// for each, at most a quarter of the stack limit (at most 6 MiB, at least
// 128 KiB). Strings holding a NUL byte are EINVAL.
func copyStrings(path string, top hostarch.Addr, argv, envv []string, execFn string, rlimStack uint64) (*argStrings, error) {
	for _, list := range [][]string{argv, envv, {execFn}} {
		for _, s := range list {
			if strings.IndexByte(s, 0) >= 0 {
				return nil, errorf(path, unix.EINVAL, "argument or environment string %q contains a NUL byte", s)
			}
		}
	}
	// bprm_stack_limits.
	limit := min(stkLim/4*3, rlimStack/4)
	limit = max(limit, argMax)
	ptrs := uint64(max(len(argv), 1)+len(envv)) * 8
	if limit <= ptrs {
		return nil, errorf(path, unix.E2BIG, "%d arguments and %d environment strings exceed the argument space", len(argv), len(envv))
	}
	limit -= ptrs

	// In copy order: the file name, the environment (last first), the
	// arguments (last first), and "" if there are none.
	var total uint64
	add := func(s string) error {
		n := uint64(len(s)) + 1
		if n > maxArgStrlen {
			return errorf(path, unix.E2BIG, "a string of %d bytes exceeds MAX_ARG_STRLEN", n)
		}
		total += n
		if total > limit {
			return errorf(path, unix.E2BIG, "arguments and environment exceed %d bytes", limit)
		}
		return nil
	}
	if err := add(execFn); err != nil {
		return nil, err
	}
	for _, list := range [][]string{envv, argv} {
		for _, s := range list {
			if err := add(s); err != nil {
				return nil, err
			}
		}
	}
	if len(argv) == 0 {
		argv = []string{""}
		if err := add(""); err != nil {
			return nil, err
		}
	}

	a := &argStrings{top: top, argc: len(argv), envc: len(envv)}
	end := top - 8 // bprm->p starts a pointer below the top
	a.argStart = end - hostarch.Addr(total)
	a.data = make([]byte, top-a.argStart)
	p := a.argStart
	put := func(s string) {
		copy(a.data[p-a.argStart:], s)
		p += hostarch.Addr(len(s)) + 1
	}
	for _, s := range argv {
		put(s)
	}
	a.argEnd = p
	for _, s := range envv {
		put(s)
	}
	a.envEnd = p
	a.execFn = p
	put(execFn)

	// setup_arg_pages: the vma covers the strings' pages, then grows by
	// 128 KiB but not beyond RLIMIT_STACK.
	low := a.argStart.RoundDown()
	size := uint64(top - low)
	expand := min(rlimStack&^(hostarch.PageSize-1), size+stackExpand)
	a.vmaStart = low
	if expand <= uint64(top) && top-hostarch.Addr(expand) < low {
		a.vmaStart = top - hostarch.Addr(expand)
	}
	return a, nil
}

// platformAddr is where create_elf_tables puts the AT_PLATFORM string:
// just below tablesTop.
func (a *argStrings) platformAddr() hostarch.Addr {
	return a.tablesTop - hostarch.Addr(len(platformString)+1)
}

// randomAddr is where the 16 AT_RANDOM bytes go: below the platform
// string.
func (a *argStrings) randomAddr() hostarch.Addr {
	return a.platformAddr() - 16
}

// build returns the final stack pointer and the bytes of [sp, top): argc,
// argv pointers, NULL, envp pointers, NULL, the auxiliary vector auxv
// followed by AT_NULL, the random bytes, the platform string and the
// strings, as create_elf_tables lays them out. sp is 16-byte aligned.
func (a *argStrings) build(auxv []mm.AuxEntry, random [16]byte) (hostarch.Addr, []byte) {
	p := a.randomAddr()
	sp := p - hostarch.Addr(len(auxv)+1)*16
	items := a.argc + 1 + a.envc + 1 + 1
	sp = (sp - hostarch.Addr(items)*8) &^ 15

	buf := make([]byte, a.top-sp)
	off := func(x hostarch.Addr) []byte { return buf[x-sp:] }
	copy(off(a.argStart), a.data)
	copy(off(a.platformAddr()), platformString)
	copy(off(a.randomAddr()), random[:])

	le := binary.LittleEndian
	w := buf
	put := func(v uint64) {
		le.PutUint64(w, v)
		w = w[8:]
	}
	put(uint64(a.argc))
	// Pointers to each string, found by walking them as Linux does.
	s := a.argStart
	next := func() uint64 {
		v := uint64(s)
		i := bytes.IndexByte(a.data[s-a.argStart:], 0)
		s += hostarch.Addr(i) + 1
		return v
	}
	for range a.argc {
		put(next())
	}
	put(0)
	for range a.envc {
		put(next())
	}
	put(0)
	for _, e := range auxv {
		put(e.Key)
		put(e.Value)
	}
	put(AT_NULL)
	put(0)
	return sp, buf
}
