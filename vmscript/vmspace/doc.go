// Package vmspace is vmscript's Executor for vmspace: New runs every script
// process on an mm.MemoryManager of its own, with files, memfds and shared
// memory from package hostfile, all in one memory file per run, and
// implements the checkpoint statement with mm.Saver and package checkpoint.
package vmspace
