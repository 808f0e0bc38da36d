//go:build e2e

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

// The dev SLURM's preemption (scripts/dev-slurm): jobs of partition owner
// preempt jobs of scav, both over node3 alone; debug is never preempted.
const (
	preemptiblePartition = "scav"
	ownerPartition       = "owner"
	preemptNode          = "node3"
)

// TestE2EPreempt: a cluster with its head on debug and its one worker on
// the preemptible partition, the built-in training loop running on both,
// and --autoscale --min-workers 1. A job of the owner partition preempts
// the worker mid-training: the worker drains through Ray (reason
// PREEMPTION) before SLURM's kill, the run goes on, status shows the
// outcome preempted, and the capacity comes back as the requeued job
// itself, counted once (no second worker is submitted). Under
// proctrack/linuxproc SLURM's SIGTERM reaches Ray's own processes as well,
// so the node cannot drain: there the test checks the outcome, the run
// going on and the requeued rejoin only.
func TestE2EPreempt(t *testing.T) {
	e := needE2E(t)
	needPreemption(t)
	drains := proctrackCgroup(t)
	const name = "e2epre"
	e.mustSray(t, "up", "--name", name, "--gpus-per-node", "1", "--time", "30:00", "--setup", e.setup, "--object-store-mb", "80",
		"--partition", "debug", "--worker-partition", preemptiblePartition,
		"--autoscale", "--min-workers", "1", "--max-workers", "2", "--idle-timeout", "10m", "--upscale-delay", "1s", "--autoscale-interval", "1s",
		"--wait", "--timeout", "3m")
	t.Cleanup(func() { e.sray(t, "down", "--cluster", name) })
	dir := cluster.Dir{Path: filepath.Join(e.home, "clusters", name)}
	worker := onlyWorker(t, dir)
	if head := e.status(t, name).Head(); head == nil || strings.Contains(head.Node, preemptNode) {
		t.Fatalf("head on %v: the test needs %s free for the worker and the owner job", head, preemptNode)
	}
	driver := strings.TrimSpace(e.mustSray(t, "train", "--cluster", name, "--step-seconds", "0.5").stdout)
	waitFor(t, "driver until it steps on the head and the scav worker", 2*time.Minute, func() bool {
		d := driverRow(e.status(t, name))
		return d.Actors == 2 && d.LastStep != nil
	})

	submitted := time.Now()
	owner := submitOwnerJob(t, 25*time.Second)
	fmt.Printf("MEASURED owner job %s preempts worker %s\n", owner, worker)
	var rec cluster.NodeRecord
	waitFor(t, "owner job until the worker drains for the preemption", 60*time.Second, func() bool {
		rec, _, _ = dir.Node(worker)
		return rec.PreemptedAt != nil
	})
	fmt.Printf("MEASURED owner job submitted to the worker's preemption drain: %.1f s\n", rec.PreemptedAt.Sub(submitted).Seconds())
	before := driverRow(e.status(t, name))
	waitFor(t, "preempted worker until status shows the outcome preempted", 60*time.Second, func() bool {
		j, _ := jobByID(e.status(t, name), worker)
		return j.Outcome == cluster.OutcomePreempted
	})
	rec, _, _ = dir.Node(worker)
	if rec.Reason != cluster.ReasonPreempted {
		t.Errorf("worker record reason %q, want %q", rec.Reason, cluster.ReasonPreempted)
	}
	fmt.Printf("MEASURED worker preemption drain to its record's end: %.1f s\n", rec.Updated.Sub(*rec.PreemptedAt).Seconds())
	waitFor(t, "driver until it steps on after the preemption", 30*time.Second, func() bool {
		d := driverRow(e.status(t, name))
		return d.LastStep != nil && *d.LastStep > *before.LastStep+2 && d.SlurmState == "RUNNING"
	})
	gap, steps := stepGap(t, dir.EventsPath(driver), *rec.PreemptedAt)
	fmt.Printf("MEASURED longest gap between the driver's steps around the preemption: %.2f s (steps %v)\n", gap.Seconds(), steps)
	lost := lostActors(t, dir.EventsPath(driver), worker)
	fmt.Printf("MEASURED the preempted worker's actor left the pool: %v\n", lost)
	if drains && (len(lost) != 1 || lost[0] != "node_draining") {
		t.Errorf("the worker's actor left the pool %v, want once, by node_draining (no step in flight lost)", lost)
	}

	waitFor(t, "requeued worker until it rejoins Ray after the owner job", 4*time.Minute, func() bool {
		j, _ := jobByID(e.status(t, name), worker)
		return j.Ray == cluster.MembershipJoined
	})
	fmt.Printf("MEASURED owner job submitted to the requeued worker joined again: %.1f s\n", time.Since(submitted).Seconds())
	waitFor(t, "driver until it steps on the rejoined worker", 60*time.Second, func() bool {
		return driverRow(e.status(t, name)).Actors == 2
	})
	if w := workerJobs(t, dir); len(w) != 1 {
		t.Errorf("worker submissions %v, want the one requeued job, never a second for the same capacity", w)
	}
	e.mustSray(t, "down", "--cluster", name)
	heads, _ := filepath.Glob(filepath.Join(dir.Path, "logs", "ray-*", "gcs_server.out"))
	if drains && !fileContains(heads, "DRAIN_NODE_REASON_PREEMPTION") {
		t.Errorf("no GCS log of %v shows a drain with reason PREEMPTION", heads)
	}
}

// needPreemption skips (fails under CI) unless the dev SLURM has its
// preemption partitions.
func needPreemption(t *testing.T) {
	t.Helper()
	for _, p := range []string{preemptiblePartition, ownerPartition} {
		if err := exec.Command("scontrol", "show", "partition", p).Run(); err != nil {
			skipOutsideCI(t, "the dev SLURM lacks partition %s: restart it with scripts/dev-slurm down && scripts/dev-slurm up", p)
		}
	}
}

// proctrackCgroup reports whether SLURM tracks processes by cgroup, where
// a job's SIGTERM reaches only its batch shell, the supervisor.
func proctrackCgroup(t *testing.T) bool {
	t.Helper()
	out, err := exec.Command("scontrol", "show", "config").Output()
	if err != nil {
		t.Fatalf("scontrol show config: %v", err)
	}
	cgroup := strings.Contains(string(out), "proctrack/cgroup")
	if !cgroup {
		t.Log("proctrack/linuxproc: SLURM's SIGTERM reaches Ray itself, so the node cannot drain; drain checks skipped")
	}
	return cgroup
}

// submitOwnerJob submits a job of the owner partition that needs every GPU
// of the preemptible node, for d; it is cancelled at the test's end.
func submitOwnerJob(t *testing.T, d time.Duration) string {
	t.Helper()
	out, err := exec.Command("sbatch", "--parsable", "--job-name=e2e-owner", "-p", ownerPartition, "-w", preemptNode, "--gres=gpu:2",
		"-o", "/dev/null", "--wrap", fmt.Sprintf("sleep %d", int(d.Seconds()))).CombinedOutput()
	if err != nil {
		t.Fatalf("sbatch owner job: %v: %s", err, out)
	}
	id := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("scancel", id).Run() })
	return id
}

// onlyWorker returns the cluster's one worker job key.
func onlyWorker(t *testing.T, dir cluster.Dir) string {
	t.Helper()
	w := workerJobs(t, dir)
	if len(w) != 1 {
		t.Fatalf("worker jobs %v, want one", w)
	}
	return w[0]
}

func workerJobs(t *testing.T, dir cluster.Dir) []string {
	t.Helper()
	subs, err := dir.Submissions()
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, s := range subs {
		if s.Role == cluster.RoleWorker {
			keys = append(keys, s.JobKeys()...)
		}
	}
	return keys
}

// lostActors lists the reasons the driver's events give for each actor of
// job that left its pool.
func lostActors(t *testing.T, path, job string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("driver events: %v", err)
	}
	defer f.Close()
	var reasons []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev struct {
			Event, Job, Reason string
		}
		if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Event == "actor_lost" && ev.Job == job {
			reasons = append(reasons, ev.Reason)
		}
	}
	return reasons
}

// stepGap returns the longest time between two of the driver's steps from
// 5 s before at to 15 s after, and those steps' actor counts.
func stepGap(t *testing.T, path string, at time.Time) (time.Duration, []int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("driver events: %v", err)
	}
	var gap time.Duration
	var last time.Time
	var actors []int
	for _, line := range strings.Split(string(b), "\n") {
		var ev struct {
			TS     float64 `json:"ts"`
			Event  string  `json:"event"`
			Actors int     `json:"actors"`
		}
		if json.Unmarshal([]byte(line), &ev) != nil || ev.Event != "step_done" {
			continue
		}
		ts := time.Unix(0, int64(ev.TS*1e9))
		if ts.Before(at.Add(-5*time.Second)) || ts.After(at.Add(15*time.Second)) {
			continue
		}
		if !last.IsZero() {
			gap = max(gap, ts.Sub(last))
		}
		last = ts
		actors = append(actors, ev.Actors)
	}
	return gap, actors
}

func fileContains(paths []string, s string) bool {
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), s) {
			return true
		}
	}
	return false
}
