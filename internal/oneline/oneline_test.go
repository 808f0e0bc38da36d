package oneline

import "testing"

func TestOf(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                                   "",
		"one line":                           "one line",
		"  spaced\tout  ":                    "spaced out",
		"sbatch: error: x\nsbatch: error: y": "sbatch: error: x sbatch: error: y",
		"a\r\n\n  \nb  c\n":                  "a b c",
	} {
		if got := Of(in); got != want {
			t.Errorf("Of(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLines(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                                   "",
		"sbatch: error: x\nsbatch: error: y": "sbatch: error: x; sbatch: error: y",
		"a\r\n\n  \n b  c \n":                "a; b  c",
	} {
		if got := Lines(in); got != want {
			t.Errorf("Lines(%q) = %q, want %q", in, got, want)
		}
	}
}
