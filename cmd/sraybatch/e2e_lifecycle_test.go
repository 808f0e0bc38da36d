//go:build e2e

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

// TestE2ELifecycle walks the life of a cluster on the real SLURM and Ray: up,
// grow, status, what Ray itself sees, a job pending for resources, a worker
// lost, down — all while a second cluster shares the nodes.
func TestE2ELifecycle(t *testing.T) {
	// Alone, not e2eShare: it holds GPUs so that a job pends for resources.
	e := needE2E(t)
	lo, hi := freePortBlock(t, 300) // room for the head, two workers and a spare block
	common := []string{"--gpus-per-node", "1", "--time", "30:00", "--setup", e.setup, "--object-store-mb", "80"}
	e.mustSray(t, append([]string{"up", "--name", "e2ea", "--port-range", fmt.Sprintf("%d-%d", lo, hi), "--wait", "--timeout", "3m"}, common...)...)
	t.Cleanup(func() { e.sray(t, "down", "--cluster", "e2ea") })
	e.mustSray(t, append([]string{"up", "--name", "e2eb", "--wait", "--timeout", "3m"}, common...)...)
	t.Cleanup(func() { e.sray(t, "down", "--cluster", "e2eb") })

	grow := e.mustSray(t, "grow", "--cluster", "e2ea", "-n", "2", "--wait", "--timeout", "3m")
	workers := strings.Fields(grow.stdout)
	if len(workers) != 2 {
		t.Fatalf("grow -n 2 printed %q, want two job ids", grow.stdout)
	}
	dirA := cluster.Dir{Path: filepath.Join(e.home, "clusters", "e2ea")}
	subs, err := dirA.Submissions()
	if err != nil {
		t.Fatal(err)
	}
	if len(subs) != 2 || subs[1].Role != cluster.RoleWorker || subs[1].Tasks != 2 {
		t.Fatalf("want the head and ONE worker submission of 2 tasks, got %+v", subs)
	}

	t.Run("status shows three joined jobs", func(t *testing.T) {
		st := e.status(t, "e2ea")
		if st.Cluster.State != cluster.StateRunning || st.Cluster.HeadAddress == "" || st.Cluster.Dashboard == "" {
			t.Errorf("cluster line: %+v", st.Cluster)
		}
		if len(st.Jobs) != 3 {
			t.Fatalf("want 3 jobs, got %+v", st.Jobs)
		}
		for _, j := range st.Jobs {
			if j.SlurmState != "RUNNING" || j.Ray != cluster.MembershipJoined || j.RayNodeID == "" || j.TimeLeftS == nil {
				t.Errorf("job %s: %s/%s node %q left %v, want RUNNING/joined", j.JobID, j.SlurmState, j.Ray, j.RayNodeID, j.TimeLeftS)
			}
		}
	})

	t.Run("Ray sees each job's GPUs and SLURM address", func(t *testing.T) {
		st := e.status(t, "e2ea")
		nodes := e.rayNodes(t, "e2ea")
		if len(nodes) != 3 {
			t.Fatalf("Ray reports %d sraybatch nodes, want 3: %+v", len(nodes), nodes)
		}
		pairs := map[string]bool{}
		for _, n := range nodes {
			j, ok := jobByID(st, n.Job)
			if !ok {
				t.Errorf("Ray node of unknown job %q", n.Job)
				continue
			}
			if int(n.GPUs) != j.GPUs || j.GPUs != 1 {
				t.Errorf("job %s: Ray advertises %v GPUs, SLURM allocated %d", n.Job, n.GPUs, j.GPUs)
			}
			if want := slurmNodeAddr(t, j.Node); n.NodeIP != want || n.IP != want {
				t.Errorf("job %s on %s: Ray IP %s / task IP %s, SLURM NodeAddr %s", n.Job, j.Node, n.NodeIP, n.IP, want)
			}
			pair := j.Node + "/" + n.CUDAVisibleDevices
			if n.CUDAVisibleDevices == "" || pairs[pair] {
				t.Errorf("job %s: (SLURM node, GPU) %q missing or not unique", n.Job, pair)
			}
			pairs[pair] = true
		}
	})

	t.Run("every listening port of the cluster is inside --port-range", func(t *testing.T) {
		ports := listeningPorts(t, clusterProcesses(dirA.Path))
		if len(ports) < 10 {
			t.Fatalf("found only %d listening ports of cluster e2ea: %v", len(ports), ports)
		}
		for _, p := range ports {
			if p < lo || p > hi {
				t.Errorf("port %d outside %d-%d", p, lo, hi)
			}
		}
	})

	t.Run("a job pending for resources shows its reason", func(t *testing.T) {
		holdGPUs(t, 1, "")
		holdGPUs(t, 1, "")
		r := e.sray(t, "grow", "--cluster", "e2eb", "-n", "1", "--wait", "--timeout", "15s")
		if r.code != exitTimeout || !strings.Contains(r.stderr, "PENDING") {
			t.Fatalf("grow --wait on a job that cannot start: exit %d, want %d naming PENDING and its reason: %s", r.code, exitTimeout, r.stderr)
		}
		st := e.status(t, "e2eb")
		j, ok := jobByID(st, strings.TrimSpace(r.stdout))
		if !ok || j.SlurmState != "PENDING" || j.Reason == "" || j.Ray != cluster.MembershipWaiting {
			t.Errorf("pending worker: %+v, want PENDING with a reason and waiting", j)
		}
	})

	t.Run("a cancelled worker is lost within 10 s", func(t *testing.T) {
		victim := workers[0]
		if out, err := exec.Command("scancel", victim).CombinedOutput(); err != nil {
			t.Fatalf("scancel: %v %s", err, out)
		}
		waitFor(t, "scancel of a worker until status shows lost", 10*time.Second, func() bool {
			j, _ := jobByID(e.status(t, "e2ea"), victim)
			return j.Ray == cluster.MembershipLost
		})
	})

	t.Run("down leaves nothing of the cluster; the other cluster still runs Ray tasks", func(t *testing.T) {
		before := e.status(t, "e2ea")
		temps := tempDirsOf(before, dirA.Path)
		if len(temps) != 3 {
			t.Fatalf("want 3 temp dirs recorded, got %v", temps)
		}
		e.mustSray(t, "down", "--cluster", "e2ea")
		for _, j := range before.Jobs {
			if slurmJobActive(j.JobID) {
				t.Errorf("job %s still active after down", j.JobID)
			}
		}
		if procs := clusterProcesses(dirA.Path); len(procs) > 0 {
			t.Errorf("processes of cluster e2ea survive down: %v", procs)
		}
		for _, d := range temps {
			if _, err := os.Stat(d); err == nil {
				t.Errorf("temp dir %s survives down", d)
			}
		}
		after := e.status(t, "e2ea")
		if after.Cluster.State != cluster.StateEnded {
			t.Errorf("cluster state after down: %s", after.Cluster.State)
		}
		for _, j := range after.Jobs {
			if j.Ray != cluster.MembershipEnded && j.Ray != cluster.MembershipLost {
				t.Errorf("job %s after down: %s", j.JobID, j.Ray)
			}
		}
		if nodes := e.rayNodes(t, "e2eb"); len(nodes) == 0 {
			t.Errorf("cluster e2eb runs no Ray task after e2ea went down")
		}
	})

	t.Run("workers end within 30 s of their head being cancelled", func(t *testing.T) {
		st := e.status(t, "e2eb")
		var worker, head string
		for _, j := range st.Jobs {
			if j.Role == cluster.RoleWorker {
				worker = j.JobID
			} else {
				head = j.JobID
			}
		}
		waitFor(t, "pending e2eb worker joins once a GPU is free", 3*time.Minute, func() bool {
			j, _ := jobByID(e.status(t, "e2eb"), worker)
			return j.Ray == cluster.MembershipJoined
		})
		exec.Command("scancel", head).Run()
		waitFor(t, "scancel of the head until its worker job has ended", 30*time.Second, func() bool {
			return !slurmJobActive(worker)
		})
		st = e.status(t, "e2eb")
		if st.Cluster.State != cluster.StateFailed || !strings.Contains(st.Cluster.Reason, head) {
			t.Errorf("cluster after its head was cancelled: %s (%s), want failed naming the head", st.Cluster.State, st.Cluster.Reason)
		}
	})
}

// TestE2EPendingHeadCancelled: workers of a head cancelled while pending
// never hold GPUs for long once they start.
func TestE2EPendingHeadCancelled(t *testing.T) {
	// Alone, not e2eShare: it holds every GPU.
	e := needE2E(t)
	var holders []string
	for _, n := range []string{"node1", "node2", "node3"} {
		holders = append(holders, holdGPUs(t, 2, n))
	}
	e.mustSray(t, "up", "--name", "e2ec", "--gpus-per-node", "1", "--setup", e.setup, "--workers", "1")
	t.Cleanup(func() { e.sray(t, "down", "--cluster", "e2ec") })
	st := e.status(t, "e2ec")
	if len(st.Jobs) != 2 || st.Cluster.State != cluster.StatePending {
		t.Fatalf("want a pending head and worker: %+v", st)
	}
	head, worker := st.Jobs[0].JobID, st.Jobs[1].JobID
	exec.Command("scancel", head).Run()
	exec.Command("scancel", holders...).Run()
	var started time.Time
	waitFor(t, "worker of a cancelled pending head starts or ends", 2*time.Minute, func() bool {
		out, _ := exec.Command("squeue", "-h", "-r", "--states=all", "-j", worker, "-o", "%T").Output()
		s := strings.TrimSpace(string(out))
		if s != "PENDING" && started.IsZero() {
			started = time.Now()
		}
		return s != "PENDING"
	})
	waitFor(t, "worker of a cancelled pending head holds its GPU", 30*time.Second, func() bool { return !slurmJobActive(worker) })
	rec, ok, err := cluster.Dir{Path: filepath.Join(e.home, "clusters", "e2ec")}.Node(worker)
	if err != nil || !ok || rec.Phase != cluster.PhaseFailed || !strings.Contains(rec.Reason, head) {
		t.Errorf("worker record: %+v (%v), want failed naming head job %s", rec, err, head)
	}
}

// TestE2EFailingSetup: up --wait reports a failing --setup with its output.
func TestE2EFailingSetup(t *testing.T) {
	e2eShare(t, 0)
	e := needE2E(t)
	start := time.Now()
	r := e.sray(t, "up", "--name", "e2ebad", "--gpus-per-node", "0", "--setup", "echo boom-from-setup >&2\nfalse", "--wait", "--timeout", "2m")
	t.Cleanup(func() { e.sray(t, "down", "--cluster", "e2ebad") })
	took := time.Since(start)
	t.Logf("MEASURED up --wait with a failing --setup returned after: %.1f s", took.Seconds())
	if r.code != exitFailure || !strings.Contains(r.stderr, "boom-from-setup") || took > 60*time.Second {
		t.Fatalf("exit %d after %s, want %d within 60 s showing the setup's output: %s", r.code, took, exitFailure, r.stderr)
	}
}

// TestE2EBadInput: each bad input gives one clear line, exit != 0, and no
// half-written state.
func TestE2EBadInput(t *testing.T) {
	e2eShare(t, 0)
	e := needE2E(t)
	oneLine := func(t *testing.T, r result, code int, want string) {
		t.Helper()
		if r.code != code || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || !strings.Contains(r.stderr, want) {
			t.Errorf("exit %d, stderr %q; want exit %d and one line containing %q", r.code, r.stderr, code, want)
		}
	}
	oneLine(t, e.sray(t, "up", "--name", "Bad_Name"), exitUsage, "invalid cluster name")
	oneLine(t, e.sray(t, "up", "--name", "ok1", "--partition", "debug\nrm -rf ~"), exitUsage, "newline")
	oneLine(t, e.sray(t, "up", "--name", "ok1", "--sbatch-arg", "--exclusive\ntouch /tmp/x"), exitUsage, "newline")
	oneLine(t, e.sray(t, "up", "--name", "ok1", "--partition", "nosuchpart"), exitFailure, "invalid partition")
	if _, err := os.Stat(filepath.Join(e.home, "clusters", "ok1")); err == nil {
		t.Errorf("a refused up left a cluster directory behind")
	}
	oneLine(t, e.sray(t, "grow", "--cluster", "missing"), exitFailure, "not found")
	oneLine(t, e.sray(t, "status", "--cluster", "missing"), exitFailure, "not found")

	// A held head keeps this cluster's jobs pending: no Ray needed.
	e.mustSray(t, "up", "--name", "held", "--gpus-per-node", "1", "--sbatch-arg=--hold")
	t.Cleanup(func() { e.sray(t, "down", "--cluster", "held", "--timeout", "30s") })
	dir := cluster.Dir{Path: filepath.Join(e.home, "clusters", "held")}

	t.Run("20 concurrent grows lose nothing", func(t *testing.T) {
		var wg sync.WaitGroup
		codes := make([]int, 20)
		for i := range codes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				codes[i] = e.sray(t, "grow", "--cluster", "held", "-n", "1").code
			}()
		}
		wg.Wait()
		for i, c := range codes {
			if c != 0 {
				t.Errorf("grow %d exited %d", i, c)
			}
		}
		subs, err := dir.Submissions()
		if err != nil {
			t.Fatal(err)
		}
		workers := map[string]bool{}
		for _, s := range subs {
			if s.Role == cluster.RoleWorker {
				workers[s.JobID] = true
			}
		}
		if len(workers) != 20 {
			t.Errorf("%d distinct workers recorded, want 20", len(workers))
		}
		st := e.status(t, "held")
		if len(st.Jobs) != 21 {
			t.Errorf("status shows %d jobs, want 21", len(st.Jobs))
		}
	})

	t.Run("20 concurrent grows, one SIGKILLed mid-way: the state stays valid", func(t *testing.T) {
		before, err := dir.Submissions()
		if err != nil {
			t.Fatal(err)
		}
		var cmds []*exec.Cmd
		for i := 0; i < 20; i++ {
			cmd := e.cmd(context.Background(), "grow", "--cluster", "held", "-n", "1")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			cmds = append(cmds, cmd)
		}
		time.Sleep(8 * time.Millisecond)
		cmds[7].Process.Kill()
		for i, cmd := range cmds {
			if err := cmd.Wait(); err != nil && i != 7 {
				t.Errorf("grow %d: %v", i, err)
			}
		}
		after, err := dir.Submissions() // every file parses: no torn writes
		if err != nil {
			t.Fatalf("state after a SIGKILL: %v", err)
		}
		recorded := len(after) - len(before)
		out, _ := exec.Command("squeue", "-h", "-r", "-n", "sray-held-worker", "-o", "%i").Output()
		inSlurm := len(strings.Fields(string(out)))
		t.Logf("MEASURED 20 grows with one SIGKILLed: %d submitted to SLURM, %d recorded", inSlurm-20, recorded)
		// The killed grow may have died before sbatch (nothing submitted), or
		// between sbatch and its record (its worker then ends itself with the cluster).
		if recorded < 19 || recorded > inSlurm-20 {
			t.Errorf("%d recorded of %d submitted; want every other grow recorded", recorded, inSlurm-20)
		}
		if st := e.status(t, "held"); len(st.Jobs) != 1+20+recorded {
			t.Errorf("status shows %d jobs, want %d", len(st.Jobs), 1+20+recorded)
		}
	})

	t.Run("a truncated state file is named, and left alone", func(t *testing.T) {
		spec := filepath.Join(dir.Path, "spec.json")
		orig, err := os.ReadFile(spec)
		if err != nil {
			t.Fatal(err)
		}
		truncated := orig[:len(orig)/2]
		if err := os.WriteFile(spec, truncated, 0o600); err != nil {
			t.Fatal(err)
		}
		oneLine(t, e.sray(t, "status", "--cluster", "held"), exitFailure, spec)
		oneLine(t, e.sray(t, "grow", "--cluster", "held"), exitFailure, spec)
		if now, _ := os.ReadFile(spec); string(now) != string(truncated) {
			t.Errorf("sraybatch rewrote the corrupt file")
		}
		os.WriteFile(spec, orig, 0o600)
	})
}
