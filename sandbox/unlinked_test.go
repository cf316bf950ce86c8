package sandbox

import (
	"os"
	"path/filepath"
	"testing"
)

// linkedDeletedProgram maps a file whose own name ends in " (deleted)"
// (linked), closes it, becomes nobody, and only then touches the mapping
// (far into it, so that vmspace has not mapped that page yet): vmspace's
// descriptors are out of its reach, so the file is opened by its path,
// which must not be taken for an unlinked file's.
const linkedDeletedProgram = `
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>
int main(void) {
	int fd = open("data (deleted)", O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || ftruncate(fd, 64 << 20) || pwrite(fd, "linked", 6, 40 << 20) != 6) { perror("open"); return 1; }
	char *m = mmap(0, 64 << 20, PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED) { perror("mmap"); return 1; }
	close(fd);
	if (setgid(65534) || setuid(65534)) { perror("setuid"); return 1; }
	printf("%.6s\n", m + (40 << 20));
	return 0;
}
`

// TestLinkedDeletedName checks that a mapped file whose name ends in
// " (deleted)" but which is linked is faulted in by its path after the
// program changed its user ids, as natively.
func TestLinkedDeletedName(t *testing.T) {
	needPtrace(t)
	if os.Geteuid() != 0 {
		t.Skip("changing user ids needs root")
	}
	dir, exe := reachableByNobody(t, buildC(t, "linkeddeleted", linkedDeletedProgram, false))
	compare(t, dir, "", exe)
}

// reachableByNobody copies exe into a new directory that any user can
// reach (as can its parent), for a program that changes its user ids to
// nobody's, and returns the directory and the copy.
func reachableByNobody(t *testing.T, exe string) (dir, copied string) {
	t.Helper()
	dir = t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	copied = filepath.Join(dir, filepath.Base(exe))
	if err := os.WriteFile(copied, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, copied
}
