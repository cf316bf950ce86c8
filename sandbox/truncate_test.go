package sandbox

import "testing"

// truncateProgram writes private copies of pages of file mappings, then
// truncates the files in every way the program can (ftruncate, truncate,
// O_TRUNC, creat, a child's ftruncate, fallocate's COLLAPSE_RANGE) and
// loads the pages: Linux drops the private copies of pages past the new
// end (SIGBUS then) and keeps the others, and keeps them after a hole
// punch or a failed truncation.
const truncateProgram = fileProbeC + `
/* cow maps name (3 pages) private and writes 'P' at the start of each page. */
static char *cow(const char *name, int *fdp) {
	int fd = mkfile(name, 3, 'f');
	char *m = mmap(0, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	for (int i = 0; i < 3; i++) m[i * 4096] = 'P';
	*fdp = fd;
	return m;
}
int main(void) {
	struct sigaction sa = {0};
	sa.sa_handler = onbus;
	sigaction(SIGBUS, &sa, 0);
	sigaction(SIGSEGV, &sa, 0);
	setvbuf(stdout, 0, _IONBF, 0);
	int fd;
	char *m = cow("a", &fd);
	ftruncate(fd, 4096 + 100);
	show("ftruncate: page 0", load(m));
	show("ftruncate: partial page 1", load(m + 4096));
	show("ftruncate: page 1 past EOF", load(m + 4096 + 200));
	show("ftruncate: page 2", load(m + 2 * 4096));
	ftruncate(fd, 3 * 4096);
	show("grow: page 2", load(m + 2 * 4096));
	show("grow: page 1", load(m + 4096));
	m = cow("b", &fd);
	truncate("b", 4096);
	show("truncate: page 0", load(m));
	show("truncate: page 1", load(m + 4096));
	m = cow("c", &fd);
	close(open("c", O_WRONLY | O_TRUNC));
	show("O_TRUNC: page 0", load(m));
	m = cow("d", &fd);
	close(creat("d", 0644));
	show("creat: page 0", load(m));
	m = cow("e", &fd);
	pid_t pid = fork();
	if (pid == 0) { ftruncate(fd, 0); _exit(0); }
	waitpid(pid, 0, 0);
	show("child ftruncate: page 0 in parent", load(m));
	m = cow("g", &fd);
	pid = fork();
	if (pid == 0) { show("before: child page 1", load(m + 4096)); ftruncate(fd, 4096); show("child page 1", load(m + 4096)); _exit(0); }
	waitpid(pid, 0, 0);
	show("parent page 1 after child's ftruncate", load(m + 4096));
	m = cow("h", &fd);
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 8192)) perror("punch");
	show("punch: page 0 keeps its copy", load(m));
	m = cow("i", &fd);
	errno = 0;
	int r = ftruncate(fd, -1);
	printf("bad ftruncate %d %d\n", r, errno);
	show("bad ftruncate: page 2", load(m + 2 * 4096));
	int ro = open("i", O_RDONLY);
	r = ftruncate(ro, 0);
	printf("ro ftruncate %d %d\n", r, errno);
	show("ro ftruncate: page 2", load(m + 2 * 4096));
	m = cow("j", &fd);
	r = fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, 0, 4096);
	printf("collapse %d %d\n", r, r ? errno : 0);
	show("collapse: page 0", load(m));
	show("collapse: page 1", load(m + 4096));
	show("collapse: page 2", load(m + 2 * 4096));
	return 0;
}
`

// TestTruncatedCopies compares, natively and under vmspace, what a program
// reads from private copies of file pages after the file is truncated
// below them.
func TestTruncatedCopies(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "trunc", truncateProgram, false)
	compare(t, t.TempDir(), "", exe)
}
