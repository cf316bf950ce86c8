// Package loader loads ELF64 x86-64 programs into an mm.MemoryManager as
// Linux's execve(2) does (fs/binfmt_elf.c's load_elf_binary, fs/exec.c's
// argument copying and setup_arg_pages, and create_elf_tables), so that a
// sandbox can start the program at Result.Entry with the stack pointer at
// Result.StackPointer.
//
// # What Load does, in Linux's order
//
//  1. Opens the program (a regular file with execute permission: EACCES
//     otherwise) and reads its first 256 bytes. Checks the ELF magic, the
//     type (ET_EXEC or ET_DYN), the machine (EM_X86_64), and also the class
//     (ELFCLASS64) and byte order (little-endian), which Linux does not
//     check on x86-64 (it loads such a file if the rest parses as a
//     little-endian ELF64). Reads the program headers: e_phentsize must be
//     56 and the table at most 64 KiB (1170 headers). All of these are
//     ENOEXEC.
//  2. Reads the first PT_INTERP (2 to 4096 bytes, NUL-terminated: ENOEXEC),
//     opens the interpreter (open's errno: ENOENT, EACCES, ...; an empty
//     path is the current directory, EACCES), reads its header (a short
//     read is EIO, as Linux's elf_read) and program headers; anything wrong
//     with them is ELIBBAD.
//     The last PT_GNU_STACK decides whether the stack is executable (no
//     PT_GNU_STACK: not executable, as on x86-64 since Linux 5.8).
//  3. Checks every PT_LOAD before mapping anything (Linux finds some of
//     these only after the point of no return, when all it can do is kill
//     the process): p_filesz <= p_memsz, the segment within TASK_SIZE
//     (EINVAL); p_offset congruent to p_vaddr modulo the page size (EINVAL,
//     what mmap would say); no two PT_LOADs overlapping in memory (ENOEXEC;
//     Linux would silently map the later over the earlier); at least one
//     PT_LOAD (EINVAL). The interpreter's problems are ELIBBAD.
//  4. Sets the mmap layout (mm.SetMmapLayout): top-down below mmap_base =
//     TASK_SIZE - clamp(RLIMIT_STACK + stack guard gap, 128 MiB, 5/6
//     TASK_SIZE), or bottom-up from TASK_SIZE/3 with Options.LegacyLayout
//     (both moved at random with Options.ASLR: see below).
//  5. Copies the exec file name, the environment and the arguments to the
//     top of the stack (an empty argv gets "" as argv[0], as Linux 5.18+),
//     with Linux's E2BIG limits, and maps the stack: a growsdown anonymous
//     vma named [stack] ending at STACK_TOP, as large as the strings' pages
//     plus 128 KiB (at most RLIMIT_STACK), read-write (and executable if
//     PT_GNU_STACK asks).
//  6. Maps the PT_LOAD segments: private file mappings of the program
//     (linuxabi.MMap with the FD, as vm_mmap) with the segment's permissions;
//     the part of the last file page past p_filesz zeroed (only if the
//     segment is writable: Linux's clear_user fails silently otherwise), and
//     whole pages past it anonymous read-write memory (plus execute if the
//     segment is executable), as Linux 6.7+'s elf_load. ET_EXEC is mapped at
//     its addresses (MAP_FIXED_NOREPLACE for the first segment, MAP_FIXED
//     for the others). ET_DYN with an interpreter (PIE) is mapped at
//     ELF_ET_DYN_BASE (2/3 of the 47-bit TASK_SIZE, aligned down to the
//     largest power-of-two p_align: 0x555555554000 for page alignment); an
//     ET_DYN without one (static PIE, or ld.so run directly) goes where
//     mmap puts it, top-down, after reserving the whole image.
//  7. Sets the program break after the highest segment end, page-aligned
//     (ELF_ET_DYN_BASE for an ET_DYN without interpreter, as Linux 6.11+),
//     and the data segment [start_data, end_data) counted by RLIMIT_DATA.
//  8. Maps the interpreter where mmap puts it (top-down, hint its first
//     p_vaddr) the same way, and takes its entry point.
//  9. Calls Options.VDSO, if any, which may map a vDSO (Linux maps it here)
//     and returns its address for AT_SYSINFO_EHDR.
//  10. Writes the initial stack as create_elf_tables does: below the
//     strings (16-byte aligned) "x86_64" (AT_PLATFORM) and the 16 AT_RANDOM
//     bytes; then, from the final stack pointer (16-byte aligned, as the
//     x86-64 ABI requires at process entry), argc, the argv pointers, NULL,
//     the envp pointers, NULL and the auxiliary vector in Linux's order
//     (AT_SYSINFO_EHDR if a vDSO was mapped, AT_MINSIGSTKSZ, AT_HWCAP,
//     AT_PAGESZ, AT_CLKTCK, AT_PHDR, AT_PHENT, AT_PHNUM, AT_BASE, AT_FLAGS,
//     AT_ENTRY, AT_UID, AT_EUID, AT_GID, AT_EGID, AT_SECURE, AT_RANDOM,
//     AT_HWCAP2, AT_EXECFN, AT_PLATFORM, AT_RSEQ_FEATURE_SIZE,
//     AT_RSEQ_ALIGN, AT_NULL). If that reaches below the stack vma, the vma
//     grows down to the stack pointer's page (EFAULT beyond RLIMIT_STACK).
//     It records argv/envv ranges, the auxv and the executable in the
//     manager.
//
// The tests check all of this against Linux itself (6.18 when written):
// they start the same programs natively under ptrace with ASLR off,
// stopped before their first instruction, and compare /proc/PID/maps, the
// memory contents of every mapping, /proc/PID/auxv, the /proc/PID/stat
// addresses (start_code ... env_end), the entry point, the stack pointer
// and the initial stack, and execve's errno for malformed files.
//
// # Differences from Linux
//
//   - Randomization (Options.ASLR, what Linux does with PF_RANDOMIZE)
//     draws Linux's amounts: mmap_base (and the legacy base) lowered by
//     vm.mmap_rnd_bits bits of pages, with room left for the randomized
//     stack (16 GiB); a PIE's load address raised by the same number of
//     bits; the stack top lowered by up to 2^22 pages and then by
//     arch_align_stack (one page about half the time), and the tables
//     below the strings by up to 8 KiB; with ASLR.Brk, the break a page
//     above the data (unless a static PIE's, at ELF_ET_DYN_BASE) and then
//     up to 1 GiB higher. The random numbers come from ASLR.Rand, not the
//     kernel's generator, but for mmap_base with ASLR.VDSOAt: the draw
//     that puts the vDSO block (mapped top-down below the interpreter)
//     at that random address, if one of Linux's draws does. Without
//     Options.ASLR the layout is Linux's with
//     ASLR off (setarch -R, or randomize_va_space=0). AT_RANDOM's bytes
//     come from Options.Random (crypto/rand by default).
//   - No vDSO unless Options.VDSO maps one; without it AT_SYSINFO_EHDR is
//     left out (glibc and musl then use system calls).
//   - "#!" scripts, other binary formats, setuid/setgid and file
//     capabilities are not handled (scripts are ENOEXEC; Options.Creds says
//     what AT_SECURE and the ids are).
//   - TASK_SIZE is Linux's 47-bit one (0x7ffffffff000) when the manager's
//     platform allows mapping up to within 1 MiB of it (the ptrace
//     platform keeps its stub's two pages at the very top, so the stack
//     ends at the platform's MaxUserAddress, two pages lower than Linux's,
//     while mmap_base and ELF_ET_DYN_BASE are Linux's); otherwise it is the
//     platform's MaxUserAddress and every derived address scales with it.
//   - Checks that Linux makes after the point of no return (when exec can
//     no longer fail and the process is killed instead) are made before
//     anything is mapped, with the errno Linux's check would produce, or
//     ELIBBAD for the interpreter. A segment extending past the end of the
//     file is accepted, as by Linux: touching its pages past EOF faults
//     with SIGBUS (and zeroing a writable one's partial page is EFAULT).
//   - Stricter than Linux, which would load these and let the program
//     crash or misbehave: an otherwise valid file marked ELFCLASS32 or
//     big-endian (ENOEXEC), PT_LOADs sharing a byte of memory (ENOEXEC), an
//     ET_EXEC without PT_LOAD (EINVAL).
//
// On error, the MemoryManager may hold some of the program's mappings; the
// caller discards it, as Linux kills a process whose exec failed after the
// point of no return.
package loader
