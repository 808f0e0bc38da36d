//go:build linux

package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/testci"
)

// demoPrelude is scripts/demo up to its first step: its settings and its
// say and run helpers, which the test calls instead of the demo's steps.
func demoPrelude(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "scripts", "demo"))
	if err != nil {
		t.Fatal(err)
	}
	prelude, _, ok := strings.Cut(string(b), "\nsay \"")
	if !ok {
		t.Fatal("scripts/demo has no say step")
	}
	return prelude + "\nsay 'a step'\nrun echo shown\n"
}

// The demo printed ANSI escapes even into a pipe or a log file.
func TestDemoColoursOnlyATerminal(t *testing.T) {
	t.Parallel()
	bash, err := exec.LookPath("bash")
	if err != nil {
		testci.SkipOutsideCI(t, "no bash")
	}
	script := filepath.Join(t.TempDir(), "demo")
	if err := os.WriteFile(script, []byte(demoPrelude(t)), 0o700); err != nil {
		t.Fatal(err)
	}
	demo := func(noColor string, stdout, stderr io.Writer) {
		t.Helper()
		cmd := exec.Command(bash, script)
		cmd.Env = append(os.Environ(), "NO_COLOR="+noColor, "TERM=xterm")
		cmd.Stdout, cmd.Stderr = stdout, stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("demo prelude: %v", err)
		}
	}

	var out, errOut bytes.Buffer
	demo("", &out, &errOut)
	if got := out.String() + errOut.String(); strings.Contains(got, "\x1b") || !strings.Contains(got, "== a step") || !strings.Contains(got, "$ echo shown") {
		t.Errorf("piped demo output = %q, want the steps without escapes", got)
	}

	for _, noColor := range []string{"", "1"} {
		ptmx, pts := openPTY(t)
		demo(noColor, pts, pts)
		pts.Close() // the demo has exited: reading ptmx ends once it is drained
		ptmx.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, _ := io.ReadAll(ptmx) // ends with EIO
		if has := bytes.Contains(got, []byte("\x1b[")); has != (noColor == "") {
			t.Errorf("demo on a terminal, NO_COLOR=%q: escapes %v in %q", noColor, has, got)
		}
	}
}
