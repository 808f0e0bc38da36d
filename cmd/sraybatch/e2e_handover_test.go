//go:build e2e

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

// TestE2EHandoverByPromotion: a rollover cluster (head + 2 workers, 1 GPU
// each) runs the built-in loop; the head job's limit is shortened under
// --rollover-before (scontrol update, as the user may), so the head hands
// the cluster to a worker it promotes. The run finishes its target step
// count, its step counter never goes back by more than the checkpoint
// interval, the workers keep their job ids, no node joined generation 1
// after generation 2 was published, and no Ray process is left at the end.
//
// It runs alone (no e2eShare): it measures the handover's gap and the
// GPUs' idle seconds, which other tests' jobs and Ray starts on the same
// nodes and controller would stretch.
func TestE2EHandoverByPromotion(t *testing.T) {
	e := needE2E(t)
	const name, steps, every = "e2eho", 60, 5
	e.mustSray(t, "up", "--name", name, "--gpus-per-node", "1", "--time", "30:00", "--setup", e.setup, "--object-store-mb", "80",
		"--partition", "debug", "--workers", "2", "--rollover", "--rollover-before", "5m", "--wait", "--timeout", "3m")
	t.Cleanup(func() { e.sray(t, "down", "--cluster", name) })
	dir := cluster.Dir{Path: filepath.Join(e.home, "clusters", name)}
	g1, ok, err := dir.Generation(1)
	if err != nil || !ok {
		t.Fatalf("generation 1: %v, %v", ok, err)
	}
	workers := workerJobs(t, dir)
	driver := strings.TrimSpace(e.mustSray(t, "train", "--cluster", name, "--steps", fmt.Sprint(steps), "--step-seconds", "0.5",
		"--checkpoint-every", fmt.Sprint(every)).stdout)
	waitFor(t, "driver until step 10", 2*time.Minute, func() bool { return lastStep(t, dir.EventsPath(driver)) >= 10 })

	// 30:00 less 24 min: about 4.5 min left, under --rollover-before 5m.
	shortened := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := e.command(ctx, "scontrol", "update", "JobId="+g1.Job, "TimeLimit-=24").CombinedOutput(); err != nil {
		t.Fatalf("scontrol update TimeLimit as the user: %v: %s", err, out)
	}
	var g2 cluster.Generation
	waitFor(t, "generation 2 published", 2*time.Minute, func() bool {
		g2, ok, _ = dir.Generation(2)
		return ok
	})
	h1, _, _ := dir.Handover(1)
	fmt.Printf("MEASURED limit shortened to handover started: %.1f s; started to sealed: %.1f s; sealed to generation 2 published: %.1f s\n",
		h1.Started.Sub(shortened).Seconds(), h1.Sealed.Sub(h1.Started).Seconds(), g2.Published.Sub(*h1.Sealed).Seconds())
	checkFence(t, h1, g2, workers)

	var rec cluster.NodeRecord
	waitFor(t, "driver until it completes", 4*time.Minute, func() bool {
		rec, _, _ = dir.Node(driver)
		return rec.Final()
	})
	if rec.Outcome != cluster.OutcomeCompleted {
		t.Fatalf("driver ended %s (%s), want completed", rec.Outcome, rec.Reason)
	}
	checkSteps(t, dir.EventsPath(driver), steps, every)
	for _, w := range workers {
		if r, _, _ := dir.Node(w); r.Job != w || r.Final() {
			t.Errorf("worker %s after the handover: %+v, want the same job, still running", w, r)
		}
	}
	e.mustSray(t, "down", "--cluster", name)
	waitFor(t, "every job of the cluster until it ended", time.Minute, func() bool {
		for _, j := range append([]string{g1.Job, driver}, workers...) {
			if slurmJobActive(j) {
				return false
			}
		}
		return true
	})
	if left := rayProcessesOf(dir, append([]string{g1.Job, driver}, workers...)); len(left) > 0 {
		t.Errorf("processes left after down: %v", left)
	}
}

// checkFence: generation 1 sealed before 2 was published, the promoted head
// is one of the workers, and no node registered with generation 1's GCS
// after generation 2 was published.
func checkFence(t *testing.T, h1 cluster.Handover, g2 cluster.Generation, workers []string) {
	t.Helper()
	if h1.Sealed == nil || !h1.Sealed.Before(g2.Published) {
		t.Errorf("handover 1 sealed %v, generation 2 published %v: want sealed first", h1.Sealed, g2.Published)
	}
	if g2.How != cluster.GenerationPromoted || g2.Job != h1.Successor || !slices.Contains(workers, g2.Job) || g2.TokenFile != "token.g2" {
		t.Errorf("generation 2 = %+v, want worker %s promoted, with its own token", g2, h1.Successor)
	}
	if len(h1.Nodes) < 4 {
		t.Errorf("generation 1's GCS knew %d nodes at its seal, want head, 2 workers and the driver", len(h1.Nodes))
	}
	if late := cluster.LateJoins(h1.Nodes, g2.Published); len(late) > 0 {
		t.Errorf("nodes joined generation 1 after generation 2 was published: %v", late)
	}
}

// stepEvent is a driver's step_done or driver_stopping event.
type stepEvent struct {
	TS     float64 `json:"ts"`
	Event  string  `json:"event"`
	Step   int     `json:"step"`
	Actors int     `json:"actors"`
}

func stepEvents(t *testing.T, path string) []stepEvent {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var evs []stepEvent
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev stepEvent
		if json.Unmarshal(sc.Bytes(), &ev) == nil && (ev.Event == "step_done" || ev.Event == "driver_stopping") {
			evs = append(evs, ev)
		}
	}
	return evs
}

func lastStep(t *testing.T, path string) int {
	last := 0
	for _, ev := range stepEvents(t, path) {
		if ev.Event == "step_done" {
			last = ev.Step
		}
	}
	return last
}

// checkSteps: the run reached its target, never went back more than the
// checkpoint interval; it prints the handover's gap and steps lost.
func checkSteps(t *testing.T, path string, target, every int) {
	t.Helper()
	evs := stepEvents(t, path)
	prev, stopAt := stepEvent{}, stepEvent{}
	for _, ev := range evs {
		if ev.Event == "driver_stopping" {
			stopAt = ev
			continue
		}
		if ev.Step <= prev.Step {
			lost := prev.Step - ev.Step + 1
			if lost > every {
				t.Errorf("step %d after step %d: %d steps lost, more than the checkpoint interval %d", ev.Step, prev.Step, lost, every)
			}
		}
		if stopAt.TS > 0 && ev.TS > stopAt.TS {
			fmt.Printf("MEASURED handover gap (last step on generation 1 to first on generation 2): %.1f s; steps lost: %d; world size %d -> %d; idle GPU-seconds per worker: %.1f\n",
				ev.TS-prev.TS, prev.Step-ev.Step+1, prev.Actors, ev.Actors, ev.TS-prev.TS)
			stopAt = stepEvent{}
		}
		prev = ev
	}
	if prev.Step != target {
		t.Errorf("last step %d, want the target %d", prev.Step, target)
	}
}

// rayProcessesOf lists live processes of the cluster: its supervisors and
// their trees, and any process that names one of its jobs' Ray temp dirs.
func rayProcessesOf(dir cluster.Dir, jobs []string) []string {
	var left []string
	for _, p := range clusterProcesses(dir.Path) {
		left = append(left, fmt.Sprint(p))
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, j := range jobs {
			if strings.Contains(string(b), "/srb-"+j+"-") {
				left = append(left, p+": "+strings.ReplaceAll(string(b), "\x00", " "))
			}
		}
	}
	return left
}
