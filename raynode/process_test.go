package raynode

import (
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/proctree"
)

// fuseLike starts what ch-run is with a SquashFS image: a parent that on
// SIGTERM exits at once without signalling its child (as ch-run's FUSE
// server unmounts and leaves), and otherwise waits for the child.
func fuseLike(t *testing.T) (*child, int) {
	t.Helper()
	cmd := exec.Command("bash", "-c", `trap 'exit 0' TERM; sleep 300 & echo $!; wait`)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p, err := systemProcesses{}.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 32)
	n, _ := out.Read(buf)
	inside, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	if err != nil {
		t.Fatalf("read the child's pid: %v (%q)", err, buf[:n])
	}
	t.Cleanup(func() { syscall.Kill(inside, syscall.SIGKILL) })
	return p.(*child), inside
}

func alive(pid int) bool {
	st, ok := proctree.ReadProcStat(pid)
	return ok && st.Live()
}

// TestParentLastStopsInsideFirst: stopped as a plain process, such a parent
// leaves its child running (with a dead root, under ch-run); parentLast
// stops the child first, and the parent ends by itself after it.
func TestParentLastStopsInsideFirst(t *testing.T) {
	plain, orphan := fuseLike(t)
	plain.Stop(syscall.SIGTERM, false, 2*time.Second)
	if !alive(orphan) {
		t.Fatal("the fake FUSE parent took its child down: it does not behave like ch-run")
	}

	p, inside := fuseLike(t)
	start := time.Now()
	parentLast{Process: p, pid: p.Pid()}.Stop(syscall.SIGTERM, false, 5*time.Second)
	if alive(inside) {
		t.Errorf("parentLast left the process inside running (pid %d)", inside)
	}
	select {
	case <-p.Done():
	default:
		t.Error("parentLast returned with the parent still running")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("stopping took %s: the child's SIGTERM should end both at once", d)
	}
}
