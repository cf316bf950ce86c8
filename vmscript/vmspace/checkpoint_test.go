package vmspace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/vmspace/vmspace/vmscript"
	"golang.org/x/sys/unix"
)

// TestCheckpointFailureStops: a checkpoint that fails at any stage (here an
// injected ENOSPC, as a full memory file gives) stops the script with that
// error at the checkpoint's line, instead of printing it as the statement's
// errno and going on with released processes; closing the executor then
// does not panic.
func TestCheckpointFailureStops(t *testing.T) {
	const src = `mmap @0x10000 0x4000 rw private,anon
write @0x10000 68656c6c6f
fork p1
checkpoint
read @0x10000 5
p1: read @0x10000 5
`
	s, err := vmscript.Parse("fail.vms", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	for _, stage := range []string{"save", "release", "restore"} {
		ex := New(Options{}).(*vmspaceExec)
		ex.fault = func(st string) error {
			if st == stage {
				return fmt.Errorf("injected: %w", unix.ENOSPC)
			}
			return nil
		}
		var out bytes.Buffer
		err := vmscript.Run(context.Background(), s, ex, &out)
		var re *vmscript.RunError
		if !errors.As(err, &re) || re.Line != 4 || !errors.Is(err, unix.ENOSPC) {
			t.Errorf("%s: Run returned %v, want an ENOSPC error at line 4", stage, err)
		}
		if want := "1 = @0x10000\n2 ok\n3 ok\n"; out.String() != want {
			t.Errorf("%s: transcript\n%s\nwant\n%s", stage, out.String(), want)
		}
	}
}
