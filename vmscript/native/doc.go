// Package native is vmscript's Executor for Linux: New runs every script
// process as a C agent (agent/agent.c, built with the C compiler at first use
// and exec'd as a program of its own; forks are its forks) that serves
// requests over a socket with raw system calls.
//
// An agent is a small dynamically linked C program (non-PIE, so its break
// is low): outside the window it has its own binary, libc, the loader, its
// static buffers and stack, a few MiB in all, as a small Linux program has,
// and nothing of the coordinator. So mlockall(MCL_CURRENT), which compares
// everything mapped with RLIMIT_MEMLOCK, succeeds under the usual 8 MiB limit
// as it does for a small program (and on vmspace, whose stand-ins are
// similar in size); deltas (vmsize, vmlck) and relative limits (setrlimit
// RES +N) hide the remaining differences in layout, except brk's RLIMIT_DATA
// check, which counts the binary's data segment: the corpus avoids it.
// Agents run on one CPU (the first they may use): the kernel's per-CPU page
// batches, which MADV_PAGEOUT drains only on its own CPU, would otherwise
// make what it reclaims depend on the scheduler.
// Every agent is a child of the coordinator (forks use
// CLONE_PARENT), so Close, a context cancellation or a failure kills and reaps
// every one of them through pidfds, and removes the shm segments the script
// made.
package native
