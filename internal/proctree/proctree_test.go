package proctree

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/testci"
)

// startTree starts `sh -c script` and returns it once at least want live
// descendants of it exist.
func startTree(t *testing.T, script string, want int) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	if err := cmd.Start(); err != nil {
		testci.SkipOutsideCI(t, "cannot start sh: %v", err)
	}
	t.Cleanup(func() {
		for _, pid := range Descendants(cmd.Process.Pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		cmd.Process.Kill()
		cmd.Wait()
	})
	testci.EventuallyErr(t, "descendants of "+script, 5*time.Second, 10*time.Millisecond, func() error {
		if n := len(Descendants(cmd.Process.Pid)); n < want {
			return fmt.Errorf("%d descendants, want %d", n, want)
		}
		return nil
	})
	return cmd
}

func comm(pid int) string {
	b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
	return strings.TrimSpace(string(b))
}

func TestDescendants(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		testci.SkipOutsideCI(t, "no /proc")
	}
	t.Parallel()
	// The shell may exec its last command, so only the background sleep is
	// certain to be a child of the started process.
	cmd := startTree(t, "sleep 30 & sleep 30", 1)
	pids := Descendants(cmd.Process.Pid)
	for _, pid := range pids {
		// A child is "sh" between its fork and its exec of sleep.
		var c string
		testci.Poll(2*time.Second, 5*time.Millisecond, func() bool { c = comm(pid); return c != "sh" })
		if c != "sleep" {
			t.Errorf("descendant %d is %q, want sleep", pid, c)
		}
	}
	if slices.Contains(pids, cmd.Process.Pid) || slices.Contains(pids, os.Getpid()) {
		t.Errorf("Descendants(%d) = %v includes the process itself or its parent", cmd.Process.Pid, pids)
	}
	// This test's process sees the shell and everything below it.
	mine := Descendants(os.Getpid())
	for _, pid := range append(pids, cmd.Process.Pid) {
		if !slices.Contains(mine, pid) {
			t.Errorf("Descendants(self) = %v misses %d", mine, pid)
		}
	}

	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Errorf("kill %d: %v", pid, err)
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	// Killed processes are gone (or zombies, which do not count).
	testci.EventuallyErr(t, "killed descendants gone", 5*time.Second, 10*time.Millisecond, func() error {
		left := 0
		for _, pid := range pids {
			if slices.Contains(Descendants(os.Getpid()), pid) {
				left++
			}
		}
		if left > 0 {
			return fmt.Errorf("%d killed descendants still listed", left)
		}
		return nil
	})
}

func TestDescendantsFindsGrandchildren(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		testci.SkipOutsideCI(t, "no /proc")
	}
	t.Parallel()
	// outer sh -> { inner sh -> sleep, sleep }: three descendants, one a grandchild.
	cmd := startTree(t, `sh -c "sleep 30 & wait" & sleep 30 & wait`, 3)
	pids := Descendants(cmd.Process.Pid)
	var names []string
	// A forked child is "sh" until it execs sleep: look until the tree settles.
	testci.Poll(2*time.Second, 5*time.Millisecond, func() bool {
		names = names[:0]
		for _, pid := range pids {
			names = append(names, comm(pid))
		}
		slices.Sort(names)
		return slices.Equal(names, []string{"sh", "sleep", "sleep"})
	})
	if !slices.Equal(names, []string{"sh", "sleep", "sleep"}) {
		t.Errorf("descendants %v are %v, want sh, sleep, sleep", pids, names)
	}
}

func TestReadStat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, stat string
		ppid       int
		state      byte
		ok         bool
	}{
		{"plain", "4242 (sleep) S 17 4242 4242 0 -1 4194560 104 0 0 0", 17, 'S', true},
		{"spaces and parens in name", "4242 (ray::IDLE) (x) R 99 1 1 0", 99, 'R', true},
		{"zombie", "4242 (python) Z 1 1 1", 1, 'Z', true},
		{"no closing paren", "4242 (sleep S 17", 0, 0, false},
		{"truncated", "4242 (sleep)", 0, 0, false},
		{"one field", "4242 (sleep) S", 0, 0, false},
	}
	for _, tt := range tests {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(tt.stat), 0o600); err != nil {
			t.Fatal(err)
		}
		st, ok := readStat(dir)
		ppid, state := st.PPID, st.State
		if ok != tt.ok || (ok && (ppid != tt.ppid || state != tt.state)) {
			t.Errorf("%s: readStat = %d %q %v; want %d %q %v", tt.name, ppid, state, ok, tt.ppid, tt.state, tt.ok)
		}
	}
	if _, ok := readStat(filepath.Join(t.TempDir(), "gone")); ok {
		t.Error("readStat of a vanished process reported ok")
	}
}
