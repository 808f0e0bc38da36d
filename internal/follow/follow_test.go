package follow

import (
	"os"
	"path/filepath"
	"testing"
)

// A followed file gives each byte once: an output file grows; a copy of a
// Ray log is replaced by one with its newest bytes, overlapping or not.
func TestFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "raylet.out")
	f := New(path)
	read := func() string {
		t.Helper()
		b, err := f.Next()
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	replace := func(s string) { // as the supervisor's copyTail does: a new file renamed over
		t.Helper()
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	if got := read(); got != "" {
		t.Fatalf("missing file: %q", got)
	}
	replace("l1\nl2\n")
	if got := read(); got != "l1\nl2\n" {
		t.Fatalf("first read %q", got)
	}
	if got := read(); got != "" {
		t.Fatalf("nothing new: %q", got)
	}
	appendTo := func(s string) {
		fh, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		fh.WriteString(s)
		fh.Close()
	}
	appendTo("l3\n")
	if got := read(); got != "l3\n" {
		t.Fatalf("grown: %q", got)
	}
	replace("l1\nl2\nl3\nl4\n") // a copy of a log still under the cap
	if got := read(); got != "l4\n" {
		t.Fatalf("replaced, all shown still in it: %q", got)
	}
	replace("l2\nl3\nl4\nl5\n") // the capped copy moved on: l1 dropped
	if got := read(); got != "l5\n" {
		t.Fatalf("replaced, starting within what was shown: %q", got)
	}
	replace("line 9\nline 10\n") // more than the cap came in between
	if got := read(); got != Gap+"line 9\nline 10\n" {
		t.Fatalf("replaced without overlap: %q", got)
	}
	replace("line 10\nline 11\n")
	if got := read(); got != "line 11\n" {
		t.Fatalf("after a gap: %q", got)
	}
}

func TestAfterShown(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, all, shown, want string
	}{
		{"nothing shown yet", "a\nb\n", "", "a\nb\n"},
		{"holds all shown", "x\nabcdefgh\nnew\n", "abcdefgh\n", "new\n"},
		{"starts within what was shown", "bcdefghij\nnew\n", "abcdefghij\n", "new\n"},
		{"overlap too short to trust", "ij\nnew\n", "abcdefghij\n", Gap + "ij\nnew\n"},
	} {
		if got := string(afterShown([]byte(tt.all), []byte(tt.shown))); got != tt.want {
			t.Errorf("%s: afterShown = %q, want %q", tt.name, got, tt.want)
		}
	}
}
