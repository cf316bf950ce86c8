// Package vmspace is vmscript's Executor for vmspace: New runs every script
// process on an mm.MemoryManager of its own, with files, memfds and shared
// memory from package hostfile, all in one memory file per run, and
// implements the checkpoint statement with mm.Saver and package checkpoint.
//
// Each manager is active on an AddressSpace, as a program's under `vmspace
// run` is. Nothing is mapped for the script (its accesses go through the
// manager's I/O path), but what the manager has its AddressSpace commit at
// once (MapFile's precommit, for MAP_POPULATE, MADV_POPULATE_* and mlock)
// is committed, so that mincore shows it as it shows the host's MAP_POPULATE
// under `vmspace run`.
//
// Outside the window, p0 starts with stand-ins for what the native agent
// has: its stack, and its libraries and their data laid out as the agent's
// are below mmap_base (the loader, then a small hole where the first
// mappings placed top-down go, then libc), so that where the kernel places
// a mapping relative to the others, and which holes it reuses, is as
// natively.
package vmspace
