package goldentest

import (
	"strings"
	"testing"
)

func TestFirstDiff(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		got, want, line string
	}{
		{"a\nb\nc\n", "a\nx\nc\n", "line 2:"},
		{"a\nb\n", "a\nb\nc\n", "line 3:"},
		{"a\n", "a\n", "they are equal"},
	} {
		if d := FirstDiff([]byte(tt.got), []byte(tt.want)); !strings.HasPrefix(d, tt.line) {
			t.Errorf("FirstDiff(%q, %q) = %q, want it to start %q", tt.got, tt.want, d, tt.line)
		}
	}
}

func TestCheckEqual(t *testing.T) {
	t.Parallel()
	Check(t, "testdata/check.golden", []byte("one golden line\n"))
}
