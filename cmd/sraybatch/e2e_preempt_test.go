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
// itself, counted once (no second worker is submitted).
func TestE2EPreempt(t *testing.T) {
	e := needE2E(t)
	needPreemption(t)
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
	lost := lostActors(t, dir.EventsPath(driver), worker)
	fmt.Printf("MEASURED the preempted worker's actor left the pool: %v\n", lost)
	if len(lost) != 1 || lost[0] != "node_draining" {
		t.Errorf("the worker's actor left the pool %v, want once, by node_draining (no step in flight lost)", lost)
	}

	waitFor(t, "requeued worker until it rejoins Ray after the owner job", 4*time.Minute, func() bool {
		j, _ := jobByID(e.status(t, name), worker)
		return j.Ray == cluster.Joined
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
	if !fileContains(heads, "DRAIN_NODE_REASON_PREEMPTION") {
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

func fileContains(paths []string, s string) bool {
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), s) {
			return true
		}
	}
	return false
}
