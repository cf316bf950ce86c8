package sandbox

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/vmspace/vmspace/loader"
)

// Address space layout randomization follows the host, as Linux's exec
// decides it: a program is laid out at random (loader.ASLR) if
// kernel.randomize_va_space is not 0 and the exec'ing process's
// personality lacks ADDR_NO_RANDOMIZE (setarch -R, personality(2)), the
// program break too if it is 2; mmap_base and a PIE's load address get
// vm.mmap_rnd_bits bits of randomness (28 if vmspace may not read it).
// Options.NoASLR (vmspace run --no-aslr) turns it off for every program.
// The personality's ADDR_COMPAT_LAYOUT, or vm.legacy_va_layout, gives the
// bottom-up layout.

// personality(2) flags.
const (
	addrNoRandomize  = 0x0040000
	addrCompatLayout = 0x0200000
)

// layoutOpts returns the randomization and whether the layout is the
// legacy one, for an exec by process p.
func (s *Sandbox) layoutOpts(p *process) (aslr *loader.ASLR, legacy bool) {
	pers, _ := readSysctl(fmt.Sprintf("/proc/%d/personality", p.pid), 16)
	lv, _ := readSysctl("/proc/sys/vm/legacy_va_layout", 10)
	legacy = pers&addrCompatLayout != 0 || lv != 0
	if s.opts.NoASLR || pers&addrNoRandomize != 0 {
		return nil, legacy
	}
	rva, ok := readSysctl("/proc/sys/kernel/randomize_va_space", 10)
	if !ok || rva == 0 {
		return nil, legacy
	}
	bits, _ := readSysctl("/proc/sys/vm/mmap_rnd_bits", 10)
	return &loader.ASLR{Brk: rva > 1, MmapRndBits: uint(bits)}, legacy
}

// readSysctl reads a number from a /proc file in the given base.
func readSysctl(path string, base int) (uint64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), base, 64)
	return v, err == nil
}
