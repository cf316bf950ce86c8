// Package sandbox runs unmodified Linux x86-64 programs with their entire
// address space created and managed by mm.MemoryManager: "vmspace run".
//
// # Processes
//
// Every process of the program is a host process traced (ptrace) by one
// thread of vmspace, the tracer, which serves all of them in one event
// loop (Run). The first is started from the ptrace platform's stub image,
// a tiny static ELF that vmspace writes to a memfd (ptrace.Exe); every exec makes the exec'ing
// thread execute the stub image again on the host (through a symbolic
// link named as the program's thread must be, which names it as Linux's
// exec would: comm.go). Right after the host
// exec, vmspace maps its own two pages at the top of the user range (the
// ptrace platform's StubComm and StubCode: a scratch page for the
// arguments of the system calls it injects, and a code page holding
// "syscall; int3"; shared read-only mappings of two pages of the memory
// file, which the program cannot write by any means, and which the memory
// system calls treat as a hole: see stub.go) and unmaps everything else
// but the host's vDSO, which the new image's manager maps where Linux
// would put it and the host's is moved to (vdso.go; the first
// process's layout is drawn to put it where the host's is: freshVDSO).
// From then on the program's
// address space [MinUserAddress, StubStart) holds only what the memory
// manager maps there: shared mappings of the memory file (descriptor
// memFDNum in every process), and shared mappings of host files, which
// are mapped directly (the host's page cache is the only one: see below).
//
// System calls are injected into a stopped thread by pointing its rip at
// the code page's "syscall; int3" with the arguments in its registers
// (inject, with the ptrace platform's injector, ptrace.Inject, whose
// Waiter is the sandbox's wait); the thread's own registers are restored when it resumes. An
// injected call always ends: a fault on the way (the kernel failing to
// update the thread's rseq area, say) ends it with an error, and signals
// that arrive meanwhile are kept for the thread (a standard signal once),
// except one that would end the process, which is delivered at once. Kept
// signals are delivered with their own siginfo, one at each
// signal-delivery-stop of the thread, a SIGSTOP of vmspace's making the
// stop for the next (sigqueue.go), never sent again (which would lose
// si_code, si_addr and the sender). A SIGCONT discards that SIGSTOP as
// it discards every pending stop signal: vmspace sends it again when it
// sees the SIGCONT (contSeen). Kept signals sent to the process go to
// another thread if theirs exits first (handOver); a child's exit
// signal goes to the thread that forked it (childSignal), before that
// thread's wait for the child returns (waitDone).
// stubAS is the platform.AddressSpace of a process built on that: the
// ptrace platform's driver of a process's host mappings
// (ptrace.HostMappings), whose mmap and munmap calls are injected. Its
// record of the host mappings it made tells the sandbox whether a buffer
// is mapped in the host, and lets MapFile map only what is missing (the
// manager maps whole pmas).
//
// # Freed memory (the shootdown)
//
// Private and shared anonymous memory (and memfds) are shared mappings of
// the memory file in the host, so such a host mapping that outlives the
// manager's unmapping of it sees whatever is later stored in its pages. The manager's unmaps reach the
// host late: stubAS defers them until the process's stopped task resumes,
// its other threads run on meanwhile, and an invalidation of shared memory
// reaches other processes' address spaces while they run. So the memory
// file holds the pages the managers free (pgalloc.Options.HoldFreed) and
// releases them only once every address space's deferred unmaps have been
// made (Sandbox.shootdown, before any task resumes) and no heap shrink's
// rewritten brk (brk.go) is still to confirm that the host dropped its
// tail: a write through a stale mapping lands in a page nobody else has,
// and is erased by its release. The host caps a process's mappings (vm.max_map_count), and
// pieces of the memory file never merge into one host mapping as an
// anonymous region's pages do in Linux: when the host refuses a mapping,
// the manager drops all its host mappings (mm's mapASEvictingLocked) and
// stubAS makes the pending unmaps at once, except on the pages of the
// tasks' kernel areas (kareas.go), which stay mapped until the shootdown
// has the manager map them again, and removes the holes heap shrinks
// left (stubAS.holes), before mapping again; faults remake the rest.
// Fork children start with copies of their parent's host
// mappings; fixFork keeps only those that the child's own manager maps
// the same way before the child runs (fork.go).
//
// # What stops
//
// A seccomp filter (seccomp.go) installed in the first process and
// inherited by all returns SECCOMP_RET_TRACE only for the memory system
// calls, process_mrelease, exec, clone3, the limits and privileges the manager follows, every
// call with a non-NULL pointer argument (the table of every x86-64 system
// call's arguments in sysargs.go), every call that names the memory file's
// descriptor, prctl's PR_SET_MDWE and PR_GET_MDWE, userfaultfd, and
// ioctl's USERFAULTFD_IOC_NEW. Everything else runs
// at native speed without a stop (the filter's decision for those depends
// only on the system call number, so the kernel's seccomp cache skips it).
//
//   - Memory calls (but those of the fast path, which do not stop: see
//     below) (mmap, munmap, mprotect, pkey_mprotect with key -1,
//     mremap, brk, madvise, the mlock family, msync, mincore, mseal, the
//     System V shared memory calls, the AIO calls) are decoded by package
//     linuxabi (the memory calls) or served by package kernel (System V
//     shared memory, AIO), both calling the manager, and return its result
//     (syscalls.go, shm.go). mmap of a file
//     takes the program's descriptor with pidfd_getfd and maps it through a
//     direct hostfile.Table shared by the whole sandbox: since the host
//     kernel does the program's file I/O (read, write, ftruncate,
//     fallocate, by this process or any other), its page cache must be the
//     one mappings see, so a host file (or a memfd of the program's) is
//     mapped from the host file itself, read-only for private mappings
//     until a write copies the page into the memory file. vmspace keeps one
//     descriptor per mapped file outside its own file table (in hostfile's
//     keeper threads), so that its RLIMIT_NOFILE does not bound how many
//     files a program maps. To map one, the sandbox opens
//     /proc/<vmspace>/task/<keeper>/fd/N (or, for a program that changed
//     its user ids, the file's path, or, if that is out of its reach,
//     vmspace's descriptor passed over a socket: fdpass.go) in the program process for the moment
//     of the injected mmap and closes it again (mapFD; at a hard
//     RLIMIT_NOFILE with every number used, at the memory file's number,
//     lent for the moment); the mappings made at the program's own mmap
//     of a file use the descriptor it passed (progfd.go), and an exec's
//     image opens each of its files once (withFDCache). Accesses
//     past end-of-file then fault with SIGBUS in the host, which reaches the
//     program as Linux's would. A truncation of a mapped file by the
//     program (ftruncate, truncate, O_TRUNC, creat, fallocate's collapse
//     and insert) runs to its exit-stop, where the private copies of the
//     pages past the new end are dropped as Linux drops them
//     (truncate.go); a truncation by a process outside the sandbox is
//     seen through inotify and applied between two stops (outside.go).
//     /dev/zero is anonymous memory (mm.ZeroFile,
//     checked as a file); pipes, sockets, directories and other devices
//     are mm.UnmappableFiles, refused with Linux's errnos in Linux's order.
//     remap_file_pages is emulated with mmap, as Linux does. System V
//     segments (one kernel.ShmRegistry for the sandbox) and AIO are
//     emulated inside the sandbox (not visible to host processes outside
//     it); AIO requests run at submission as injected pread/pwrite/fsync
//     calls (aioRunner, a kernel.IORunner).
//   - Limits and privileges that memory calls consult follow the program:
//     setrlimit and prlimit64 of RLIMIT_AS, DATA, MEMLOCK and STACK, and the
//     effective CAP_IPC_LOCK and CAP_SYS_RAWIO, read from the thread's
//     status after capset, setuid, setreuid, setresuid and exec.
//   - Memory-deny-write-execute (prctl PR_SET_MDWE) is the manager's state,
//     which its mmap, mprotect and shmat enforce and fork and exec pass on;
//     the host process never gets it (it would refuse vmspace's own
//     mappings).
//   - Page faults are SIGSEGV signal-delivery-stops (fault.go): the access
//     type is inferred from the host's si_code and rip (see fault.go; a
//     fault in a shared writable mapping is served as a write, mapping
//     the page writable at once as Linux does), the
//     manager serves the fault and maps the whole pma; a fault it refuses
//     becomes the SIGSEGV or SIGBUS the program gets on Linux, which, like
//     Linux's, cannot be blocked or ignored. A fault that comes back with
//     no host mapping changed since it was served is retried as a write,
//     then given to the program.
//   - userfaultfd(2) and /dev/userfaultfd's USERFAULTFD_IOC_NEW make a
//     context of the process's manager (mm.Userfaultfd) whose descriptor
//     is the read end of a pipe vmspace writes its messages into, so
//     that read, poll and epoll are the host's; the UFFDIO ioctls on it
//     are served by the context, and a thread whose fault waits on it
//     stays stopped until the fault is resolved (uffd.go); the faulting
//     instruction is decoded to tell a write from a read
//     (uffd_access.go), and a system call whose buffer would wait is held
//     at its entry until then. A hugetlbfs file is mapped only where the
//     host's mmap of it succeeds (uffd_hugetlb.go), and so is anonymous
//     MAP_HUGETLB memory (linuxabi/hugetlb.go); on a host without huge
//     pages every access to such a mapping is SIGBUS, as on Linux
//     (hostfile/hugetlb.go).
//   - rseq, set_tid_address and set_robust_list stop so that vmspace
//     knows the memory the host kernel writes on each thread's behalf; it
//     keeps that memory mapped in the host (kareas.go).
//   - process_vm_readv and process_vm_writev whose target is one of the
//     program's processes (itself included) are served through the two
//     memory managers (procvm.go), which hold memory the host has not
//     mapped; the host kernel only decides whether the caller may access
//     the target (an injected probe). Other targets are the host's.
//     process_madvise with a pidfd of one of the program's processes
//     advises its manager (procmadvise.go), the host again deciding only
//     the pidfd and the permissions; process_mrelease (which always
//     stops) is the host's, and a released process's manager then drops
//     its private memory.
//   - exec is served by the loader (exec.go): see there for how a program
//     image replaces the process's address space. The image's file
//     segments and stack are mapped at once; the writable segments the
//     dynamic loader relocates at once (its own, and a library's that it
//     maps with MAP_DENYWRITE) are copied for writing when mapped.
//     The layout is randomized as the host's kernel.randomize_va_space
//     and the process's personality say (aslr.go; Options.NoASLR turns
//     it off).
//   - fork, vfork and clone are ptrace events (fork.go): threads share
//     their process's manager; CLONE_VM children (vfork, posix_spawn) share
//     their parent's host address space and manager until they exec; fork
//     children get mm.ForkPinned's copy-on-write copy, and their host
//     mappings follow its plan: the private memory both now share is
//     read-only in both host processes (made so in the parent without
//     ever being unmapped, while its other threads run on) until a write
//     (a fault, or a system call's buffer) breaks copy-on-write in the
//     writer's manager, except the pages the host kernel may write for
//     the parent's threads (signal frames, buffers of calls in flight,
//     rseq areas), which the child gets copies of at once; a fork that
//     mm refuses (ENOMEM) returns the error with no child the program
//     can see.
//
// # The fast path
//
// By default (VMSPACE_FASTPATH=0 turns it off; kernels before 6.18 never
// have it), brk, anonymous mmap, munmap, mprotect and madvise do not
// stop: a second filter hands them to a goroutine of vmspace through
// seccomp's user notifications, and each process's helper
// thread makes the host mapping changes (fastpath.go), reading its
// requests from the end of the process's own read-only scratch page and
// reporting each result by a system call the same filter hands to
// vmspace (it writes no memory, and is idle once it has reported).
// ptrace remains for everything else.
//
// # The EFAULT hazard
//
// The host kernel reads and writes the program's buffers itself during the
// system calls it runs for it, and must see exactly the memory the manager
// holds: a page the manager has not mapped in the host would make such a
// call fail with EFAULT where Linux would have faulted it in. Two rules
// keep them equal. The pages the manager holds stay mapped in the host
// with their permissions: mprotect and mremap map again at once what they
// unmapped (mm.MapPresent), and the memory the kernel writes by itself
// for a thread (rseq, clear_child_tid, robust list: kareas.go) is made
// private and writable before a fork's copy-on-write makes it read-only
// in the host (fork.go). And every system call with a pointer
// argument stops, and its buffers are faulted in as the kernel will use
// them before it runs (prevalidate.go, driven by the table in
// sysargs.go): what the manager refuses (PROT_NONE, unmapped, guard
// pages) stays unmapped, so the host fails the call with EFAULT as Linux
// does. The memory file's descriptor looks closed to the program: every
// call naming it fails with EBADF, and opening or truncating it by a
// path through a descriptor directory (/proc/self/fd/N, /dev/fd/N, a
// sibling's) fails with ENOENT; passing it in SCM_RIGHTS fails with EBADF.
//
// # Resource limits
//
// vmspace's own process maps the memory file and runs the Go runtime, which
// must not be charged to the program: it lifts its own RLIMIT_AS and
// RLIMIT_DATA (to infinity with CAP_SYS_RESOURCE, else the soft limits to
// the hard ones) and gives the program's first process the limits it was
// started with, which the manager enforces (a hard limit vmspace cannot
// raise binds it too: the Go runtime alone reserves about 1.1 GiB, and
// vmspace then maps the memory file only in the 2 MiB windows it uses,
// keeping the room left for the runtime's heap, whose place the command
// draws again at start-up when its arena is nearly full:
// internal/runtimeroom). Its
// descriptors are its own; the one it keeps in every program process (the memory file's) sits at the program's soft
// RLIMIT_NOFILE where possible, outside the numbers the program can use
// (vmspaceFDSlot).
//
// # Waits, exits and signals
//
// The tracer never waits for one task alone: a wait for a task it has
// resumed (an injected call, a stop it asked for) takes any report of its
// own tracees (__WNOTHREAD) and keeps the others for the main loop, since a
// thread-group leader killed with its process is reported only after its
// other threads have been reaped. Every task stops at its exit
// (PTRACE_O_TRACEEXIT), where a core is taken if one is due, and is then
// let go (PTRACE_DETACH), so that its real parent can wait for it as soon
// as its pidfd says it has exited (a traced zombie is waitable by its
// parent only once its tracer has reaped it); the address space of a
// process let go is released when its pidfd says the host process has
// ended. A task that leaves its exit-stop unseen (a SIGKILL woke it from a
// stop vmspace held it at, whose resumption then let it go on) ends as a
// traced zombie: before every wait4 and waitid of the program, vmspace
// reaps those (reapExited). Only the first process's leader, whose parent is vmspace, is
// reaped by vmspace: its wait status is Run's Result. Options.Signals
// passes signals sent to vmspace on to every process of the program,
// except to those that got their own copy of a signal sent to a whole
// process group (a terminal's, a kill -SIG -PGID): vmspace records who
// sent each of its own signals (sigrecord_amd64.s) and matches them to
// the copies its processes got (forwarder); vmspace
// run dies of the signal that killed the program.
//
// # Files
//
//   - sandbox.go: Options, Run, the Sandbox; system calls injected through
//     platform/ptrace's injector (inject), and the waits that keep other
//     tasks' reports for the main loop (waitFor, keep, holder, stopTask).
//   - loop.go: the event loop (wait4, the dispatch of each stop, resume).
//   - task.go: a task and its stop state (taskState, regState);
//     process.go: a process's lifecycle (address space, exit, release).
//   - start.go: start-up (the first process, a fresh image, the seccomp
//     filter's installation; filtercache.go: the filter built once, in
//     the background, for any descriptor); exec.go: execve; comm.go:
//     the links that name an exec's thread.
//   - syscalls.go, sysargs.go, prevalidate.go, shm.go, fork.go,
//     truncate.go, outside.go, procvm.go, procmadvise.go: the system calls the sandbox serves (the memory calls
//     decoded by linuxabi, System V shm and AIO in kernel); seccomp.go:
//     the filter that stops them.
//   - brk.go: heap shrinks whose host unmap is the program's own brk,
//     rewritten into an mmap of an inaccessible reservation (a hole the
//     fault path counts as no mapping), with no injected call.
//   - fault.go, kareas.go: page faults and the areas the kernel uses;
//     lostsiginfo.go: a fault whose siginfo the kernel lost, retried;
//     uffd.go, uffd_access.go, uffd_hugetlb.go: userfaultfd.
//   - signals.go: SIGSEGV kept unblocked, forwarding; sigrecord_amd64.go,
//     sigrecord_amd64.s: the senders of vmspace's signals; sigqueue.go: signals
//     that arrive while vmspace uses a task.
//   - aslr.go: whether an exec's layout is randomized; vdso.go: the
//     host's vDSO in every program (vdso_io.go: reading it; vdso_advise.go:
//     madvise of it).
//   - fds.go, fdpass.go, progfd.go: descriptors in program processes (the memory
//     file's, files opened or passed there, the program's own lent to
//     mapFD) and writes to their memory; limits.go: address-space
//     limits and capabilities; hostptrace.go: ptrace requests.
//   - as.go: the AddressSpace in the host (stubAS); stub.go: the stub
//     pages; fastpath.go: the fast path (user notifications, helper
//     threads); demo.go: the built-in demonstration program.
//   - trace.go: Options.Trace lines, VMSPACE_DEBUG; core.go: core dumps.
//   - report.go: the hooks that feed Options.Report (package report:
//     forks, execs, exits, address spaces' ends, memory calls' times,
//     the timeline's samples after stops); each is a nil check without
//     a report.
//   - procview.go, procview_io.go, procview_ioctl.go: the program's
//     /proc/PID/maps, smaps, smaps_rollup, numa_maps, status, statm,
//     pagemap and mem, served from the memory managers (opens watched at
//     their exit, reads and ioctls at their stop).
//
// # Limits
//
// vmspace run is not an isolation boundary: all other system calls reach
// the host kernel. Job control does not stop programs (group-stops are
// resumed); programs cannot be traced (ptrace) inside the sandbox;
// /proc/PID/cmdline and the /proc files procview.go does not serve are the
// host's view (the memory file's mappings); processes left running when the first one exits are waited
// for; a truncation by a process outside the sandbox reaches the program's
// private copies of the file's pages a moment later than on Linux (inotify
// tells vmspace after the fact; the lowest size seen is applied, but a
// truncation that the file's regrowth hides before vmspace looks at its
// size is missed; a hole punched from outside shows at once,
// and private copies keep their data through it, as on Linux).
package sandbox
