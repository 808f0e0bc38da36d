//go:build linux

package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/creack/pty"
	"github.com/sraybatch/sraybatch/internal/testci"
)

// openPTY opens a pseudo-terminal: ptmx reads what is written to the
// terminal side, pts.
func openPTY(t *testing.T) (ptmx, pts *os.File) {
	t.Helper()
	ptmx, pts, err := pty.Open()
	if err != nil {
		testci.SkipOutsideCI(t, "no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { ptmx.Close(); pts.Close() })
	return ptmx, pts
}

// /dev/null is a character device, and used to count as a terminal: output
// redirected there got the styled table.
func TestIsTerminal(t *testing.T) {
	t.Parallel()
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	file, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	for name, f := range map[string]*os.File{"/dev/null": devNull, "a pipe": w, "a file": file} {
		if isTerminal(f) {
			t.Errorf("isTerminal(%s) = true", name)
		}
	}
	if _, pty := openPTY(t); !isTerminal(pty) {
		t.Error("isTerminal(a pty) = false")
	}
}

func TestUseColor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		tty  bool
		env  map[string]string
		want bool
	}{
		{true, nil, true},
		{false, nil, false},
		{true, map[string]string{"NO_COLOR": "1"}, false},
		{true, map[string]string{"NO_COLOR": "0"}, false}, // any non-empty value (no-color.org)
		{true, map[string]string{"NO_COLOR": ""}, true},
		{true, map[string]string{"TERM": "dumb"}, false},
		{true, map[string]string{"TERM": "xterm-256color"}, true},
	}
	for _, tt := range tests {
		if got := useColor(tt.tty, func(k string) string { return tt.env[k] }); got != tt.want {
			t.Errorf("useColor(%v, %v) = %v, want %v", tt.tty, tt.env, got, tt.want)
		}
	}
}
