// Package vmscript implements the vmscript language of
// shared/spec/vmscript.md: a plain-text list of memory-management operations
// that runs natively on Linux and on vmspace, each printing a transcript that
// must be identical byte for byte.
//
// # Layers
//
// Package vmscript is the language alone: it imports no executor (no mm, no
// agent), so a tool that parses, prints or compares scripts needs neither.
//
//   - Parse turns a script into typed statements (Script, Stmt), rejecting any
//     malformed line with a *ParseError naming the line and what was expected.
//     Nothing runs on a parse error.
//   - Run drives a Script against an Executor and prints the transcript. All
//     formatting lives in the driver (address results, fault lines, read and
//     sum hashes, state runs, vmsize/vmlck deltas, errno names, bindings), so
//     an executor only answers primitive questions: "mmap returned this
//     address or this errno", "these are the mappings over this range", "this
//     many bytes were accessed before a SIGBUS".
//   - Diff compares two transcripts and reports the first difference.
//
// The executors and the fuzzer are packages of their own, each importing
// this one:
//
//   - vmscript/native is the Executor for Linux: every script process is a C
//     agent (native/agent/agent.c, built with the C compiler at first use and
//     exec'd as a program of its own; forks are its forks) that serves
//     requests over a socket with raw system calls.
//   - vmscript/vmspace is the Executor for vmspace's mm.MemoryManager.
//   - vmscript/fuzz generates scripts, runs them on both executors, and
//     shrinks every difference to a minimal reproducer.
//
// # The corpus
//
// testdata/*.vms are scripts named by topic; testdata/*.out are their Linux
// transcripts, recorded by the native executor. The corpus tests live here
// (an external test package that imports both executors):
//
//	go test ./vmscript -run TestCorpusNative -args -update
//
// -update runs every script twice and refuses scripts whose two runs differ.
// A script may require kernel features in a comment ("# requires: mseal
// guard"); it is skipped, with the reason, on a kernel without them. The
// anonname_* transcripts were written from the kernel source because the
// reference machine's kernel lacks CONFIG_ANON_VMA_NAME (the spec asks vmspace
// to behave as if it had it); -update on a kernel with it records them.
// Whether the kernel has the shared zero page is a property of the host
// (Linux has it; some virtualised kernels boot without it, as the first
// reference machine did): scripts whose transcript depends on it say
// "# requires: zeropage" (recorded on a kernel with it; the first ones
// were derived from the kernel source, each script's comment naming the
// functions that decide it) or "# requires: nozeropage", usually as twins
// NAME and NAME_nozeropage. TestZeroPageOracle runs each zero-page script
// on vmspace in both modes (Limits.NoZeroPage): the zero-page mode must
// give the stored transcript and the other mode must not. Every other
// script must give its transcript in both modes (TestCorpusOnVmspace).
//
// # Decisions where the spec is silent
//
//   - brk, brk±OFF and the "= brk+OFF" result are relative to p0's break at
//     script start, in every process (forked processes inherit it). The native
//     agent's break is at its heap's start, as in a fresh process, so the
//     break cannot go below brk.
//   - A $NAME must be bound by an earlier "-> NAME" (a parse error otherwise);
//     when the binding statement failed at run time, a statement using $NAME
//     prints "unbound $NAME".
//   - Processes are checked statically: PROC: must exist at that line, fork
//     must name a new process, and use, exit and checkpoint take no PROC:
//     prefix. A statement in a process whose fork failed prints -ESRCH.
//   - state needs a page-aligned ADDR and a non-zero LEN (else -EINVAL); LEN
//     is rounded up to pages. Adjacent pages with equal attributes form one
//     run even across mappings.
//   - mincore over zero pages prints "ok". read takes LEN 1..64.
//   - The address 0 is the absolute address 0 (no address).
//   - Names of files and memfds share one namespace, shm segments and AIO
//     contexts each have their own. Making an object under a name in use
//     rebinds the name and leaves the old object alive; close forgets the
//     name; a failed creation leaves the names as they were. io_destroy uses
//     the id that io_setup returned, so after the ring moved (or was
//     unmapped) it is -EINVAL, as on Linux.
//   - Flag words may not repeat; PROT letters come in any order, once each.
//     '#' anywhere starts a comment.
package vmscript
