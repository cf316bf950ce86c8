// Package linuxabi is the system-call layer of the memory calls: it takes
// their raw x86-64 Linux arguments (the six argument registers), checks and
// decodes them as Linux does, in Linux's order, and calls the typed methods
// of an mm.MemoryManager, returning a value or an errno.
//
// Everything that runs programs' memory calls goes through it: the runner
// (package sandbox, `vmspace run`), the vmspace executor of vmscript (and so
// the fuzzer and the corpus), and the ELF loader. What a flag means is
// therefore decided in one place, and a test of the decoding is a test of
// what programs get.
//
// mm knows no flag bits: it takes options (mm.DoMMapOpts, mm.MProtectOpts,
// mm.MRemapOpts, ...). The System V shared memory and AIO calls, which need
// objects that outlive one address space, are package kernel's.
package linuxabi
