//go:build e2e

package main

// End-to-end tests of the local backend: real Ray, real processes, and no
// SLURM on PATH. They skip outside CI when the Ray venv is missing, and fail
// when CI=true.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/proctree"
	"github.com/sraybatch/sraybatch/internal/testci"
)

// slurmPrograms are hidden from the local tests' PATH.
var slurmPrograms = map[string]bool{"sbatch": true, "squeue": true, "scancel": true, "scontrol": true, "sinfo": true, "srun": true, "salloc": true, "sacct": true}

// needLocalE2E is an e2eEnv whose PATH hides SLURM and whose GPU claims
// are private to the test.
func needLocalE2E(t *testing.T) e2eEnv {
	t.Helper()
	if testing.Short() {
		skipOutsideCI(t, "end-to-end test: skipped with -short")
	}
	e := newE2EEnv(t, "sraybatch-e2e-local-", func(what string) {
		skipOutsideCI(t, "local end-to-end test needs the Ray venv: %s (scripts/setup-ray)", what)
	})
	e.env = append(e.env, "SRAYBATCH_GPU_CLAIMS="+filepath.Join(e.home, "gpu-claims"), "PATH="+pathWithoutSlurm(t, e.home))
	e.user.give(t, filepath.Join(e.home, "path"))
	if _, err := exec.LookPath("sbatch"); err == nil {
		t.Logf("sbatch is on this machine's PATH; the test runs with a PATH that hides it")
	}
	return e
}

// pathWithoutSlurm is one directory of links to every program on PATH but
// SLURM's, so the CLI finds bash and python but no sbatch.
func pathWithoutSlurm(t *testing.T, home string) string {
	t.Helper()
	dir := filepath.Join(home, "path")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		if os.Geteuid() == 0 && (d == "/root" || strings.HasPrefix(d, "/root/")) {
			continue // the test user runs it, and cannot reach root's programs
		}
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			if slurmPrograms[e.Name()] {
				continue
			}
			os.Symlink(filepath.Join(d, e.Name()), filepath.Join(dir, e.Name())) // the first on PATH wins
		}
	}
	return dir
}

// proc is a process seen by a test, with its start time so that a recycled
// pid is not taken for it.
type proc struct {
	pid   int
	start string
}

func procStart(pid int) (start string, state byte, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	f := bytes.Fields(b[i+2:])
	if len(f) < 20 {
		return "", 0, false
	}
	return string(f[19]), f[0][0], true
}

func (p proc) alive() bool {
	start, state, ok := procStart(p.pid)
	return ok && start == p.start && state != 'Z' && state != 'X'
}

// clusterProcs lists the job processes of a cluster (their pids are the job
// ids) and everything below them, checking each job id is a live local job.
func clusterProcs(t *testing.T, st cluster.Status) []proc {
	t.Helper()
	var procs []proc
	for _, j := range st.Jobs {
		pid, err := strconv.Atoi(j.JobID)
		if err != nil {
			t.Errorf("job id %q is not a pid", j.JobID)
			continue
		}
		if j.SlurmState != "RUNNING" {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if !strings.Contains(string(cmdline), "local-job") {
			t.Errorf("job %s: process %d runs %q, want sraybatch local-job", j.JobID, pid, cmdline)
		}
		for _, p := range append([]int{pid}, proctree.Descendants(pid)...) {
			if start, _, ok := procStart(p); ok {
				procs = append(procs, proc{p, start})
			}
		}
	}
	return procs
}

func waitGoneProcs(t *testing.T, procs []proc, limit time.Duration) {
	t.Helper()
	var left []int
	if !testci.Poll(limit, 200*time.Millisecond, func() bool {
		left = left[:0]
		for _, p := range procs {
			if p.alive() {
				left = append(left, p.pid)
			}
		}
		return len(left) == 0
	}) {
		t.Errorf("%d processes of the cluster survive: %v", len(left), left)
	}
}

func checkTempDirsGone(t *testing.T, dirs []string) {
	t.Helper()
	for _, d := range dirs {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("temp dir %s survives", d)
		}
	}
}

// localSyncBuffer collects a running command's output for a test to read.
type localSyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *localSyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *localSyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestLocalE2ELifecycle: up, grow, the demo driver, status and down on one
// host without SLURM.
func TestLocalE2ELifecycle(t *testing.T) {
	e2eShare(t, 0)
	e := needLocalE2E(t)
	up := e.mustSray(t, "up", "--name", "loc1", "--workers", "1", "--gpus-per-node", "0", "--setup", e.setup,
		"--object-store-mb", "80", "--wait", "--timeout", "3m")
	t.Cleanup(func() { e.sray(t, "down", "--cluster", "loc1") })
	if !strings.Contains(up.stderr, "using the local backend") {
		t.Errorf("up did not say it chose the local backend: %s", up.stderr)
	}
	grow := e.mustSray(t, "grow", "--cluster", "loc1", "--wait", "--timeout", "3m")
	worker := strings.TrimSpace(grow.stdout)

	train := e.mustSray(t, "train", "--cluster", "loc1", "--steps", "5", "--gpus-per-actor", "0", "--follow")
	if !strings.Contains(train.stdout, "step 5:") {
		t.Errorf("the demo driver's output lacks its last step:\n%s", train.stdout)
	}

	st := e.status(t, "loc1")
	if st.Cluster.State != cluster.StateRunning || !strings.HasPrefix(st.Cluster.HeadAddress, "127.0.0.1:") {
		t.Errorf("cluster: %+v", st.Cluster)
	}
	if len(st.Jobs) != 4 {
		t.Fatalf("want head, 2 workers and the driver: %+v", st.Jobs)
	}
	for _, j := range st.Jobs {
		switch {
		case j.Role == cluster.RoleDriver:
			if j.SlurmState != "COMPLETED" || j.ExitCode == nil || *j.ExitCode != 0 {
				t.Errorf("driver %s: %s exit %v", j.JobID, j.SlurmState, j.ExitCode)
			}
		case j.SlurmState != "RUNNING" || j.Ray != cluster.MembershipJoined || j.IP != "127.0.0.1":
			t.Errorf("%s %s: %s/%s at %q, want RUNNING/joined at 127.0.0.1", j.Role, j.JobID, j.SlurmState, j.Ray, j.IP)
		}
	}
	if _, ok := jobByID(st, worker); !ok {
		t.Errorf("grown worker %s not in status", worker)
	}
	procs := clusterProcs(t, st)
	if len(procs) < 10 {
		t.Fatalf("found only %d processes of the cluster: %v", len(procs), procs)
	}
	temps := tempDirsOf(st, filepath.Join(e.home, "clusters", "loc1"))

	e.mustSray(t, "down", "--cluster", "loc1")
	waitGoneProcs(t, procs, 5*time.Second)
	checkTempDirsGone(t, temps)
	after := e.status(t, "loc1")
	for _, j := range after.Jobs {
		if j.SlurmState == "RUNNING" || (j.Ray != cluster.MembershipEnded && j.Ray != cluster.MembershipLost) {
			t.Errorf("job %s after down: %s/%s", j.JobID, j.SlurmState, j.Ray)
		}
	}
}

// TestLocalE2EForegroundCtrlC: Ctrl+C on `up --foreground` takes down
// everything it started.
func TestLocalE2EForegroundCtrlC(t *testing.T) {
	e2eShare(t, 0)
	e := needLocalE2E(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := e.cmd(ctx, "up", "--name", "fg", "--workers", "1", "--gpus-per-node", "0", "--setup", e.setup,
		"--object-store-mb", "80", "--foreground", "--timeout", "3m")
	stderr := &localSyncBuffer{}
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		e.sray(t, "down", "--cluster", "fg")
	})
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	waitFor(t, "up --foreground until it says the cluster is up", 3*time.Minute, func() bool {
		select {
		case err := <-exited:
			t.Fatalf("up --foreground exited early (%v): %s", err, stderr.String())
		default:
		}
		return strings.Contains(stderr.String(), "Ctrl+C takes the cluster down")
	})
	if !strings.Contains(stderr.String(), "dashboard: http://127.0.0.1:") {
		t.Errorf("no dashboard URL printed: %s", stderr.String())
	}
	dir := filepath.Join(e.home, "clusters", "fg")
	waitFor(t, "the foreground cluster's worker joins", 2*time.Minute, func() bool {
		st := e.status(t, "fg")
		for _, j := range st.Jobs {
			if j.Role == cluster.RoleWorker && j.Ray == cluster.MembershipJoined {
				return len(tempDirsOf(st, dir)) == 2 // both supervisors have recorded theirs
			}
		}
		return false
	})
	st := e.status(t, "fg")
	procs := clusterProcs(t, st)
	temps := tempDirsOf(st, dir)
	if len(procs) < 8 || len(temps) != 2 {
		t.Fatalf("found %d processes and temp dirs %v of the cluster", len(procs), temps)
	}

	cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("up --foreground after Ctrl+C: %v: %s", err, stderr.String())
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("up --foreground still runs 90 s after Ctrl+C: %s", stderr.String())
	}
	t.Logf("up --foreground stderr:\n%s", stderr.String())
	waitGoneProcs(t, procs, 5*time.Second)
	checkTempDirsGone(t, temps)
	if st := e.status(t, "fg"); st.Cluster.State != cluster.StateEnded {
		t.Errorf("cluster after Ctrl+C: %s", st.Cluster.State)
	}
}
