package sandbox

import (
	"slices"
	"testing"
)

// TestFilterTemplate checks that the filter patched from the template is
// exactly the one built for the descriptor, for descriptors low and high
// (vmspace's slot sits at the program's RLIMIT_NOFILE), and that the
// template's placeholder is compared (a filter that ignored the memory
// file's descriptor would make every patch a no-op).
func TestFilterTemplate(t *testing.T) {
	tmpl, err := filterTemplate()
	if err != nil {
		t.Fatal(err)
	}
	uses := 0
	for _, in := range tmpl {
		if in.K == filterFDPlaceholder {
			uses++
		}
	}
	if uses == 0 {
		t.Fatal("the template never compares the placeholder descriptor")
	}
	for _, fd := range []int{3, 4, 17, 1023, 1024, 65535, 524287, 1 << 20, 1073741816} {
		want, err := seccompFilter(fd)
		if err != nil {
			t.Fatal(err)
		}
		got, err := filterFor(fd)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("the filter patched for descriptor %d differs from the one built for it", fd)
		}
	}
}
