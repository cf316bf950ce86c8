package ptrace

import "testing"

// The NoYield benchmarks measure requests whose requester sleeps on the
// futex at once instead of first yielding the CPU (yieldSpins = 0), the
// alternative the yielding was measured against.

func withoutYield(b *testing.B, bench func(*testing.B)) {
	old := yieldSpins
	yieldSpins = 0
	defer func() { yieldSpins = old }()
	bench(b)
}

func BenchmarkMapFile4KNoYield(b *testing.B) { withoutYield(b, BenchmarkMapFile4K) }
func BenchmarkSyscallNoYield(b *testing.B)   { withoutYield(b, BenchmarkSyscall) }
