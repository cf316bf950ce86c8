package sandbox

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/vmspace/vmspace/mm"
	"golang.org/x/sys/unix"
)

// coreSignals are the signals whose default action dumps core.
var coreSignals = map[unix.Signal]bool{
	unix.SIGQUIT: true, unix.SIGILL: true, unix.SIGTRAP: true, unix.SIGABRT: true,
	unix.SIGBUS: true, unix.SIGFPE: true, unix.SIGSEGV: true, unix.SIGXCPU: true,
	unix.SIGXFSZ: true, unix.SIGSYS: true,
}

// coreOnExit runs at t's exit-stop (Options.CoreFile only): if t's process
// is dying of a core-dumping signal, it writes the core dump of its address
// space with t's registers, once per run.
func (s *Sandbox) coreOnExit(t *task) {
	if s.coreDone || s.opts.CoreFile == "" || t.p.mm == nil {
		return
	}
	msg, err := unix.PtraceGetEventMsg(t.tid)
	if err != nil {
		return
	}
	ws := unix.WaitStatus(msg)
	if !ws.Signaled() || !coreSignals[ws.Signal()] {
		return
	}
	var r unix.PtraceRegs
	if err := ptraceGetRegs(t.tid, &r); err != nil {
		return
	}
	s.coreDone = true
	notes := mm.CoreNotes{
		Thread: mm.ThreadNotes{TID: int32(t.tid), Regs: mm.UserRegs{
			R15: r.R15, R14: r.R14, R13: r.R13, R12: r.R12, Rbp: r.Rbp, Rbx: r.Rbx,
			R11: r.R11, R10: r.R10, R9: r.R9, R8: r.R8, Rax: r.Rax, Rcx: r.Rcx,
			Rdx: r.Rdx, Rsi: r.Rsi, Rdi: r.Rdi, OrigRax: r.Orig_rax, Rip: r.Rip,
			Cs: r.Cs, Eflags: r.Eflags, Rsp: r.Rsp, Ss: r.Ss, FsBase: r.Fs_base,
			GsBase: r.Gs_base, Ds: r.Ds, Es: r.Es, Fs: r.Fs, Gs: r.Gs,
		}},
		Signal: int32(ws.Signal()),
		PID:    int32(t.p.pid),
		PPID:   int32(unix.Getpid()),
		UID:    uint32(unix.Getuid()),
		GID:    uint32(unix.Getgid()),
		Comm:   filepath.Base(t.p.name),
	}
	s.stats.CoreErr = writeCore(s.ctx, s.opts.CoreFile, t.p.mm, notes)
	s.stats.CoreDumped = s.stats.CoreErr == nil
}

// writeCore writes m's core dump to the file at path, opened only now: a
// regular file is truncated (or created, mode 0600) and gets holes where m
// has no memory; anything else (a device, a pipe) is written in full from
// where it stands. A process that is not dumpable gets no file at all.
func writeCore(ctx context.Context, path string, m *mm.MemoryManager, notes mm.CoreNotes) error {
	if m.Dumpability() == mm.NotDumpable {
		return fmt.Errorf("no core dump: %w", mm.ErrNotDumpable)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("core dump: %w", err)
	}
	var w io.Writer = struct{ io.Writer }{f} // no seeking
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		w = f
	}
	err = m.WriteCoreDump(ctx, w, notes)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("core dump: %w", cerr)
	}
	if err != nil {
		return fmt.Errorf("core dump %s incomplete: %w", path, err)
	}
	return nil
}
