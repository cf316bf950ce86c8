// Package hostfile provides the Mappables of vmspace that stand for files: a
// page cache for regular host files, directly mapped host files, memfds,
// and the objects behind shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS).
//
// # Which to use
//
// Where the host kernel does the program's file I/O (vmspace run: read,
// write, ftruncate and fallocate of a sandboxed program, and of every other
// process, go straight to the host), use directly mapped host files
// (NewDirectTable, NewDirectFile): their mappings map the host file itself,
// so the host's page cache is the only one and mappings, file I/O,
// truncation and holes agree at once, whoever makes them. Where the kernel
// embedding vmspace does all file I/O itself, through File.ReadAt, WriteAt,
// Truncate and Punch (vmscript, a user-space kernel with its own file
// system), the page cache (NewTable, NewFile, OpenFile) keeps the pages in
// the memory file, which any platform can map.
//
// # Files
//
// A File is the in-memory inode of one mappable object. It implements
// memmap.Mappable (what vmas map), memmap.MappingIdentity (what
// /proc/PID/maps names), and the memory manager's optional interfaces
// Residency (mincore), Puncher (MADV_REMOVE) and PageOuter (MADV_PAGEOUT),
// structurally: this package does not import mm.
//
// A File has one of three kinds:
//
//   - a host file (NewFile, Table.File, OpenFile): a regular host file whose
//     pages are cached in the memory file, or, made by NewDirectFile or a
//     NewDirectTable, mapped directly (see "Directly mapped host files"). The File owns its own descriptor
//     for the host file (a dup of the caller's, or a reopen when the
//     caller's is O_APPEND). A page is read from the host file with pread
//     the first time it is translated (or written partially by WriteAt
//     without being cached: then only the host file is written).
//   - a memfd (NewMemfd): memory with no host file, living only in the
//     memory file; pages are allocated zero-filled on first use.
//     /proc/PID/maps names it "/memfd:NAME (deleted)". It follows Linux's
//     shmem where that differs from disk file systems.
//   - shared anonymous memory (NewSharedAnon): as a memfd, named
//     "/dev/zero (deleted)".
//
// The page cache is a segment set of page-aligned file ranges mapped to
// memory-file offsets, with a dirty bit. Every cached page holds one
// memory-file reference owned by the cache; the memory manager takes its own
// references on what Translate returns, so dropping a page from the cache
// never pulls memory out from under a mapping.
//
// Translate returns read-only translations (Read|Execute) when at.Write is
// false - the memory manager asks that for private mappings, which copy on
// write themselves - and writable ones (AnyAccess) for writes to shared
// mappings, which also mark the translated pages dirty. A page wholly past
// end-of-file is a *memmap.BusError (SIGBUS in Linux); the last, partial page
// reads zeros past end-of-file. Translations of a host file extend over the
// optional range up to 2 MiB around the required range, reading it ahead,
// never past end-of-file rounded up to a page. A memfd or shared anonymous
// memory gets pages only where required (as Linux's shmem allocates only
// what is touched, which mincore shows); its optional range adds only pages
// that exist already.
//
// # Directly mapped host files
//
// A directly mapped host file has no cache. Translate returns one
// Translation whose File is the host file itself (a memmap.File whose FD is
// the File's own descriptor and whose offsets are file offsets), covering
// the required range and as much of the optional range as maxTranslateExtent
// and the end of the file allow, with AnyAccess if the descriptor can write
// (else Read|Execute); required pages wholly past the host file's end now
// are a *memmap.BusError. A platform maps the host file shared (private
// mappings read-only: the memory manager copies written pages into the
// memory file), so later truncation, growth, holes and writes by anybody
// show through, and an access past end-of-file faults with SIGBUS in the
// host. MapInternal maps the host file into vmspace in chunks of 2 to 64
// MiB, by the file's size (writable if the descriptor is), for the memory
// manager's own accesses,
// which fault past end-of-file too (safemem reports SIGBUS). ReadAt,
// WriteAt, Truncate (ftruncate, then, when shrinking, invalidation of the
// mappings past the new end, private copies included, as Linux) and Punch
// (fallocate) go to the host; Sync writes nothing back, Msync only flushes
// (fdatasync); Resident is the host's mincore. When the host file is
// truncated behind the File's back (by a host system call that vmspace
// sees), Table.HostTruncated invalidates the mappings past the new end,
// private copies included. The host descriptor and the
// internal mappings live until the File's last reference and the last page
// reference (memmap.File.IncRef, per page) have both gone. The Files of a
// direct Table keep their descriptors aside, in the file tables of keeper
// threads (keeper.go), so that vmspace's own RLIMIT_NOFILE does not bound
// how many files a program maps: FD is then -1, Path names the descriptor
// (/proc/PID/task/TID/fd/N) for a platform to open, and every host call on
// the file uses a duplicate taken for the moment.
//
// # Coherence
//
// This section is about the page cache. ReadAt and WriteAt (pread and
// pwrite through vmspace) go through the cache:
// WriteAt writes the host file and updates cached pages in place, so shared
// mappings and private mappings that have not copied see the write at once;
// ReadAt reads cached pages from the cache (seeing writes through shared
// mappings) and the rest from the host file. Writes through shared mappings
// reach the host file only when written back: by Sync (msync through
// MappingIdentity.Msync), and when the last reference goes.
//
// Dirty tracking is conservative. A page is dirty once translated writable;
// it stays dirty after Sync while a shared writable mapping covers it, since
// it may be written again without a new Translate; every cached page under a
// shared writable mapping counts as dirty at Sync, and removing a shared
// writable mapping marks the cached pages it covered dirty, whatever
// translations were made: a memory manager may write through a read-only
// translation of a shared mapping's page (internal copies), and such writes
// must not be lost.
//
// Host-side system calls on the same host file that bypass this package (a
// read(2) by the host kernel on behalf of a sandboxed program) do not see
// dirty cached pages until they are written back, and changes made to the
// host file by other processes are not seen by pages already cached; the
// cached size is the File's own. Table gives every descriptor of one host
// inode (same st_dev and st_ino) the same File, so that all of vmspace's
// mappings and I/O of that inode share one cache.
//
// # Truncation
//
// Truncate sets the size (ftruncate of the host file for host files). When
// it shrinks, it drops cached pages wholly past the new end, zeroes the tail
// of the last partial cached page, and invalidates every mapping of the pages
// past the new end with InvalidatePrivate, as Linux discards private
// copy-on-write copies of them too. Growing makes pages valid again; they
// read as zeros. Punch (MADV_REMOVE) drops the cached pages of a range,
// punches a hole in the host file (fallocate PUNCH_HOLE|KEEP_SIZE), and
// invalidates shared translations of the range (private copies stay, as in
// Linux). PageOut (MADV_PAGEOUT) drops the cached pages of a range that one
// pma alone maps and that are clean (a host file's not dirty; memory
// without a host file, all zeros), as Linux reclaims them without swap.
// For a directly mapped file the host kernel decides: the memory manager
// first unmaps the caller's pmas (PageOutUnmapsFirst), flushing the
// platform's deferred host unmaps (mm.UnmapFlusher), and PageOut then asks
// the host for MADV_PAGEOUT of the range through vmspace's internal view,
// which then is the only mapping of pages nobody else maps.
//
// Pages are dropped from the cache in three steps: first they are taken out
// of the cache set with dataMu held (so that later Translates see the new
// state); then every mapping of the range is invalidated with mapsMu held
// (MappingSpace.Invalidate waits for any Translate in progress in that
// address space, which holds its activeMu, and removes what it installed);
// only then is the cache's memory-file reference dropped. A translation
// returned just before the drop thus still refers to a page with a reference
// when the memory manager takes its own.
//
// # Reference counting
//
// A File starts with one reference, its creator's. vmas hold one each (taken
// by the memory manager through MappingIdentity.IncRef), FDs hold one each.
// When the last goes, dirty pages are written back, every cached page is
// released to the memory file, the host descriptor is closed, and a File
// registered in a Table leaves it.
//
// # Locks
//
// Lock order, outermost first, including the memory manager's locks (the
// system's order is declared in internal/lockrank, and race builds check
// every acquisition of these locks against it):
//
//	mm.MemoryManager.mappingMu     (held by mm around AddMapping, RemoveMapping,
//	  |                             CopyMapping, Punch, and MappingIdentity.DecRef)
//	  Table.mu                     (open/import; the last DecRef of a Table's File)
//	    File.mapsMu                (the mapping set; AddMapping, RemoveMapping,
//	      |                         CopyMapping, Truncate, Punch, Sync, release)
//	      mm.MemoryManager.activeMu  (taken by MappingSpace.Invalidate, which
//	        |                         this package calls with mapsMu held)
//	        File.dataMu            (size, cache, host descriptor; Translate,
//	          |                     ReadAt, WriteAt, and the data phases of the
//	          |                     operations above; a direct File's
//	          |                     MapInternal, FD and last page DecRef)
//	          hostMem.mu           (a direct File's internal mappings)
//	          keepers.mu           (the keeper threads; a leaf)
//	          pgalloc.MemoryFile locks
//
// Translate is called by the memory manager with activeMu held and takes
// only dataMu. MappingSpace.Invalidate takes activeMu, so it is never called
// with dataMu held: that would deadlock against a Translate of the same
// address space waiting for dataMu while holding activeMu. It is called with
// mapsMu held, which Translate never takes. Host system calls (pread,
// pwrite, ftruncate, fallocate) are made with dataMu held, so that the cache
// and the host file change together.
package hostfile
