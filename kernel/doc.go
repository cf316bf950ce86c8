// Package kernel emulates the kernel objects behind memory system calls
// that outlive one call and one address space: the System V shared memory
// segments of an IPC namespace (ShmRegistry: shmget, shmat, shmdt,
// shmctl) and the execution of AIO requests (io_submit and friends; the
// contexts' rings are mm's special mappings).
//
// Like linuxabi, it takes the calls' raw x86-64 arguments and returns a
// value or an errno, and serves both the runner (package sandbox) and
// vmscript's vmspace executor, so that what the fuzzer checks is what
// programs get. It sits between mm (and hostfile, whose memfds hold the
// segments) and those users.
package kernel
