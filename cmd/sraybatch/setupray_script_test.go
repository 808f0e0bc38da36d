//go:build linux

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sraybatch/sraybatch/internal/testci"
)

// setup-ray read a clone under /tmp as unreachable by others, because /tmp's
// mode ends in "t" (sticky), and put the venv in /var/tmp for no reason.
func TestSetupRayVenvOfACloneOthersCanReach(t *testing.T) {
	t.Parallel()
	bash, err := exec.LookPath("bash")
	if err != nil {
		testci.SkipOutsideCI(t, "no bash")
	}
	// Under /tmp itself (mode 1777), whatever TMPDIR says: it is the case.
	top, err := os.MkdirTemp("/tmp", "setup-ray-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	clone := filepath.Join(top, "clone")
	if err := os.MkdirAll(filepath.Join(clone, "scripts"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"setup-ray", "requirements.txt"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "scripts", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(clone, "scripts", name), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	venvPath := func() string {
		t.Helper()
		cmd := exec.Command(bash, filepath.Join(clone, "scripts", "setup-ray"), "--path")
		cmd.Env = append(os.Environ(), "SRAYBATCH_VENV=")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("setup-ray --path: %v", err)
		}
		return strings.TrimSpace(string(out))
	}

	for _, tc := range []struct {
		mode      os.FileMode
		reachable bool
	}{{0o755, true}, {0o750, false}, {0o701, true}} {
		if err := os.Chmod(top, tc.mode); err != nil {
			t.Fatal(err)
		}
		got := venvPath()
		if want := filepath.Join(clone, ".venv"); (got == want) != tc.reachable || (!tc.reachable && !strings.HasPrefix(got, "/var/tmp/sraybatch-venv-")) {
			t.Errorf("venv of a clone under /tmp (%s, its parent %o): %s; reachable by others: %v", clone, tc.mode, got, tc.reachable)
		}
	}
}
