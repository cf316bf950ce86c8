package sandbox

import "testing"

// TestKillableRecvFixed: the fast path is used on the kernel releases with
// the WAIT_KILLABLE_RECV fix (6.18 and later), whatever their suffixes,
// and not on older or unreadable ones.
func TestKillableRecvFixed(t *testing.T) {
	for release, want := range map[string]bool{
		"6.18.0":                  true,
		"6.18":                    true,
		"6.18-rc1":                true,
		"6.19.3-arch1-1":          true,
		"7.0.0":                   true,
		"6.17.9":                  false,
		"6.12.57-cloud-amd64":     false,
		"6.1.0-38-amd64":          false,
		"5.19.0":                  false,
		"4.18.0-553.el8_10":       false,
		"6":                       false,
		"":                        false,
		"six.eighteen":            false,
		"6.18.0-1024-firecracker": true,
	} {
		if got := killableRecvFixed(release); got != want {
			t.Errorf("killableRecvFixed(%q) = %v, want %v", release, got, want)
		}
	}
	if !killableRecvFixed("6.18") || !fastpathKernelOK() {
		t.Logf("this host's kernel is not known to have the fix: the fast path is off here")
	}
}
