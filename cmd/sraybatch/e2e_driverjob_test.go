//go:build e2e

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

// TestE2EDriverJobSuccession: the driver job is a job too. A rollover
// cluster (head + 1 worker, 1 GPU each) runs the built-in loop; the
// driver job's own limit is shortened under --rollover-before as the user
// may (scontrol update). Its supervisor submits a successor driver job,
// stops the driver at its safe point (SIGINT: it checkpoints) and ends
// handed_over naming the successor, which resumes from the checkpoint and
// finishes the target step count. The step counter never goes back by more
// than the checkpoint interval across the two jobs' event files, the head
// and the worker keep their job ids (no head handover), status and events
// show the chain, and nothing is left after down. It shares the dev SLURM
// (its head and worker hold a GPU each; the driver jobs none): nothing it
// checks depends on timing that other tests' jobs would stretch.
func TestE2EDriverJobSuccession(t *testing.T) {
	e2eShare(t, 2)
	e := needE2E(t)
	began := time.Now()
	const name, steps, every = "e2eds", 120, 5
	dir, g1 := e.upRollover(t, name, 1)
	worker := onlyWorker(t, dir)
	driver := strings.TrimSpace(e.mustSray(t, "train", "--cluster", name, "--steps", fmt.Sprint(steps), "--step-seconds", "0.3",
		"--checkpoint-every", fmt.Sprint(every)).stdout)
	waitFor(t, "driver until step 10", 2*time.Minute, func() bool { return lastStep(t, dir.EventsPath(driver)) >= 10 })

	shortened := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	out, err := e.command(ctx, "scontrol", "update", "JobId="+driver, "TimeLimit-=25").CombinedOutput()
	cancel()
	if err != nil {
		t.Fatalf("scontrol update JobId=%s TimeLimit-=25 as the user: %v: %s", driver, err, out)
	}
	var old cluster.NodeRecord
	waitFor(t, "the driver job until it hands over", time.Minute, func() bool {
		old, _, _ = dir.Node(driver)
		return old.Final()
	})
	successor := successorDriver(t, dir, driver)
	if old.Outcome != cluster.OutcomeHandedOver || !strings.Contains(old.Reason, "driver job "+successor) {
		t.Fatalf("driver job %s ended %s (%s), want handed_over to %s", driver, old.Outcome, old.Reason, successor)
	}
	fmt.Printf("MEASURED driver job succession: limit shortened to the old driver job's end %.1f s\n", old.Updated.Sub(shortened).Seconds())

	var rec cluster.NodeRecord
	waitFor(t, "the successor driver job until it completes", 3*time.Minute, func() bool {
		rec, _, _ = dir.Node(successor)
		return rec.Final()
	})
	if rec.Outcome != cluster.OutcomeCompleted {
		t.Fatalf("successor driver job %s ended %s (%s), want completed", successor, rec.Outcome, rec.Reason)
	}
	checkSteps(t, joinedEvents(t, dir.EventsPath(driver), dir.EventsPath(successor)), steps, every)

	if _, ok, _ := dir.Generation(2); ok {
		t.Error("a head handover happened: the driver job's end is not the head's")
	}
	for _, j := range []string{g1.Job, worker} {
		if r, _, _ := dir.Node(j); r.Final() || r.Phase != cluster.PhaseRunning {
			t.Errorf("job %s after the driver job's succession: %s (%s), want the same job, running", j, r.Phase, r.Reason)
		}
	}
	e.checkDriverChainSeen(t, name, driver, successor)
	e.downLeavingNothing(t, dir, name)
	fmt.Printf("MEASURED TestE2EDriverJobSuccession wall time %.1f s\n", time.Since(began).Seconds())
}

// successorDriver is the driver job submitted after driver: its successor.
func successorDriver(t *testing.T, dir cluster.Dir, driver string) string {
	t.Helper()
	subs, err := dir.Submissions()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range subs {
		if s.Role == cluster.RoleDriver && s.JobID != driver {
			return s.JobID
		}
	}
	t.Fatalf("no successor driver job of %s submitted: %+v", driver, subs)
	return ""
}

// joinedEvents writes the event files of a chain of driver jobs, in order,
// into one file for checkSteps.
func joinedEvents(t *testing.T, paths ...string) string {
	t.Helper()
	var all []byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("driver events: %v", err)
		}
		all = append(all, b...)
	}
	joined := filepath.Join(t.TempDir(), "events.jsonl")
	if err := os.WriteFile(joined, all, 0o600); err != nil {
		t.Fatal(err)
	}
	return joined
}

// checkDriverChainSeen: status shows the old driver job handed over to
// its successor, which completed; events has the old job's end naming it.
func (e e2eEnv) checkDriverChainSeen(t *testing.T, name, driver, successor string) {
	t.Helper()
	st := e.status(t, name)
	if j := findJob(st, driver); j == nil || j.Outcome != cluster.OutcomeHandedOver || j.Successor != successor || !strings.Contains(j.Reason, successor) {
		t.Errorf("status of the old driver job: %+v, want handed_over naming %s", j, successor)
	}
	if j := findJob(st, successor); j == nil || j.Outcome != cluster.OutcomeCompleted {
		t.Errorf("status of the successor driver job: %+v, want completed", j)
	}
	fmt.Printf("STATUS TABLE\n%s", e.mustSray(t, "status", "--cluster", name, "-o", "table").stdout)
	ended := false
	for _, l := range strings.Split(strings.TrimSpace(e.mustSray(t, "events", "--cluster", name, "-o", "json").stdout), "\n") {
		var ev struct {
			Job    string         `json:"job"`
			Event  string         `json:"event"`
			Fields map[string]any `json:"fields"`
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("events line %q: %v", l, err)
		}
		if ev.Job == driver && ev.Event == "job_ended" && ev.Fields["outcome"] == string(cluster.OutcomeHandedOver) &&
			strings.Contains(fmt.Sprint(ev.Fields["reason"]), successor) {
			ended = true
			fmt.Println("EVENT", l)
		}
	}
	if !ended {
		t.Errorf("events: no job_ended of driver job %s handed_over naming %s", driver, successor)
	}
}
