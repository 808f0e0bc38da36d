// Package goldentest compares what a test produced with a golden file under
// the package's testdata/, and rewrites the file when the tests run with
// -update (as Go's own go/printer tests do). Every golden test of the module
// uses it, so one flag rewrites them all: go test ./... -update.
package goldentest

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// update is registered once here: a test binary that also defined its own
// -update would panic at start, which keeps the packages on this helper.
var update = flag.Bool("update", false, "rewrite the golden files under testdata/ from the current code")

// Check compares got with the file at path (relative to the test's package,
// e.g. testdata/head.golden). With -update it first writes got there, so a
// rewritten file is then checked like any other.
func Check(t testing.TB, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update creates it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -update rewrites it; then review the diff): %s", path, FirstDiff(got, want))
	}
}

// FirstDiff names the first line where got and want differ, with both
// lines: enough to see what changed without printing a whole page.
func FirstDiff(got, want []byte) string {
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < max(len(g), len(w)); i++ {
		gl, wl := lineAt(g, i), lineAt(w, i)
		if gl != wl {
			return fmt.Sprintf("line %d:\n--- got\n%s\n--- want\n%s", i+1, gl, wl)
		}
	}
	return "they are equal"
}

// lineAt is line i, or a mark past the end (which no real line equals).
func lineAt(lines []string, i int) string {
	if i < len(lines) {
		return lines[i]
	}
	return "(end of file)\x00"
}
