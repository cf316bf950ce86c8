package mm

// Test hooks let race tests force the window they guard: each is nil
// except while a test sets it, and is called with the locks of the moment
// held.

// testHookIODowngraded is called by the slow I/O path just before and just
// after it downgrades activeMu.
var testHookIODowngraded func(mm *MemoryManager)

// testHookUnlockedReadCopied is called by CopyIn's lock-free path
// (fastread.go) after its copy, before it checks that no writer came.
var testHookUnlockedReadCopied func(mm *MemoryManager)

// testHookForkCopyingPMAs is called by Fork with the child, just before it
// copies the parent's pmas into it.
var testHookForkCopyingPMAs func(child *MemoryManager)

// testHookResidencyQuery is called each time fork or copy-on-write asks
// the host which pages of private memory hold data (mincore).
var testHookResidencyQuery func()
