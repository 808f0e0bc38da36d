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

// TestE2EHandover: a rollover cluster (head + 2 workers, 1 GPU each) runs
// the built-in loop through two handovers, each brought on by shortening the
// head job's limit under --rollover-before (scontrol update, as the user
// may): first to a worker the head promotes, then, with the other worker's
// limit shortened too so that no worker can take the head, to a successor
// head job the head submits. The run finishes its target step count, its
// step counter never goes back by more than the checkpoint interval, the
// workers with time left keep their job ids, no node joined a generation
// after the next was published, and no Ray process is left at the end.
//
// It runs alone (no e2eShare): it measures the handovers' gaps and the
// GPUs' idle seconds, which other tests' jobs and Ray starts on the same
// nodes and controller would stretch, and its successor head job needs a
// GPU free when it is submitted.
func TestE2EHandover(t *testing.T) {
	e := needE2E(t)
	const name, steps, every = "e2eho", 200, 5
	dir, g1 := e.upRollover(t, name, 2)
	workers := workerJobs(t, dir)
	driver := strings.TrimSpace(e.mustSray(t, "train", "--cluster", name, "--steps", fmt.Sprint(steps), "--step-seconds", "0.5",
		"--checkpoint-every", fmt.Sprint(every)).stdout)
	waitFor(t, "driver until step 10", 2*time.Minute, func() bool { return lastStep(t, dir.EventsPath(driver)) >= 10 })

	// 30:00 less 25 min: under --rollover-before 5m at once.
	g2 := e.handover(t, dir, 1, map[string]string{g1.Job: "25"})
	if g2.How != cluster.GenerationPromoted || !slices.Contains(workers, g2.Job) {
		t.Errorf("generation 2 = %+v, want one of the workers %v promoted", g2, workers)
	}
	other := workers[0]
	if other == g2.Job {
		other = workers[1]
	}
	waitFor(t, "driver until 10 steps on generation 2", 2*time.Minute, func() bool { return stepsSinceStop(t, dir.EventsPath(driver)) >= 10 })

	// The promoted head as before, and the other worker down to about 10
	// min left: too little to take the head (rollover-before + 10 min),
	// enough to follow. The head submits a successor head job.
	g3 := e.handover(t, dir, 2, map[string]string{g2.Job: "25", other: "18"})
	if g3.How != cluster.GenerationSubmitted || slices.Contains(workers, g3.Job) {
		t.Errorf("generation 3 = %+v, want a submitted successor head job", g3)
	}

	driverCompletes(t, dir, driver, 4*time.Minute, steps, every)
	e.checkHandoversSeen(t, name, []cluster.Generation{g1, g2, g3}, every)
	if r, _, _ := dir.Node(other); r.Job != other || r.Final() || r.Phase != cluster.PhaseRunning {
		t.Errorf("worker %s after two handovers: %+v, want the same job, running", other, r)
	}
	e.downLeavingNothing(t, dir, name)
}

// upRollover starts a rollover cluster of 1-GPU nodes, its head and the
// given workers with 30 min each and --rollover-before 5m (so that
// shortening a job's limit by 25 min brings its handover on at once); it
// returns its directory and generation 1.
func (e e2eEnv) upRollover(t *testing.T, name string, workers int) (cluster.Dir, cluster.Generation) {
	t.Helper()
	e.mustSray(t, "up", "--name", name, "--gpus-per-node", "1", "--time", "30:00", "--setup", e.setup, "--object-store-mb", "80",
		"--partition", "debug", "--workers", fmt.Sprint(workers), "--rollover", "--rollover-before", "5m", "--wait", "--timeout", "3m")
	t.Cleanup(func() { e.sray(t, "down", "--cluster", name) })
	dir := cluster.Dir{Path: filepath.Join(e.home, "clusters", name)}
	g1, ok, err := dir.Generation(1)
	if err != nil || !ok {
		t.Fatalf("generation 1: %v, %v", ok, err)
	}
	return dir, g1
}

// handover shortens jobs' limits by the given minutes (as the user), waits
// for generation g+1, checks the fence and prints the handover's timing.
func (e e2eEnv) handover(t *testing.T, dir cluster.Dir, g int, shorten map[string]string) cluster.Generation {
	t.Helper()
	shortened := time.Now()
	for job, minutes := range shorten {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := e.command(ctx, "scontrol", "update", "JobId="+job, "TimeLimit-="+minutes).CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("scontrol update JobId=%s TimeLimit-=%s as the user: %v: %s", job, minutes, err, out)
		}
	}
	var next cluster.Generation
	waitFor(t, fmt.Sprintf("generation %d published", g+1), 3*time.Minute, func() bool {
		var ok bool
		next, ok, _ = dir.Generation(g + 1)
		return ok
	})
	h, _, _ := dir.Handover(g)
	if h.Sealed == nil || !h.Sealed.Before(next.Published) {
		t.Fatalf("handover %d sealed %v, generation %d published %v: want sealed first", g, h.Sealed, g+1, next.Published)
	}
	fmt.Printf("MEASURED handover %d (%s): limit shortened to started %.1f s, started to sealed %.1f s, sealed to generation %d published %.1f s\n",
		g, h.How, h.Started.Sub(shortened).Seconds(), h.Sealed.Sub(h.Started).Seconds(), g+1, next.Published.Sub(*h.Sealed).Seconds())
	if next.Job != h.Successor || next.TokenFile != fmt.Sprintf("token.g%d", g+1) || next.PreviousHeadJob != h.HeadJob {
		t.Errorf("generation %d = %+v, want handover %d's successor %s with its own token", g+1, next, g, h.Successor)
	}
	if len(h.Nodes) < 3 {
		t.Errorf("generation %d's GCS knew %d nodes at its seal, want its head, workers and the driver", g, len(h.Nodes))
	}
	if late := cluster.LateJoins(h.Nodes, next.Published); len(late) > 0 {
		t.Errorf("nodes joined generation %d after generation %d was published: %v", g, g+1, late)
	}
	return next
}

// checkHandoversSeen: status, events and the report show each handover of
// gens (the cluster's generations, in order) once, with how it happened,
// its gap and the steps lost (at most the checkpoint interval).
func (e e2eEnv) checkHandoversSeen(t *testing.T, name string, gens []cluster.Generation, every int) {
	t.Helper()
	st := e.status(t, name)
	last := gens[len(gens)-1]
	c := st.Cluster
	if c.Generation != last.Generation || c.GenerationHow != last.How || c.PreviousHeadJob != last.PreviousHeadJob || len(c.Handovers) != len(gens)-1 {
		t.Fatalf("status cluster = %+v, want generation %d (%s from %s) and %d handovers", c, last.Generation, last.How, last.PreviousHeadJob, len(gens)-1)
	}
	for i, h := range c.Handovers {
		if h.OldHeadJob != gens[i].Job || h.NewHeadJob != gens[i+1].Job || h.How != gens[i+1].How || h.GapS == nil || h.StepsLost == nil || *h.StepsLost > every {
			t.Errorf("status handover %d = %+v, want %s -> %s %s with a gap and at most %d steps lost", i+1, h, gens[i].Job, gens[i+1].Job, gens[i+1].How, every)
		}
	}
	fmt.Printf("STATUS TABLE\n%s", e.mustSray(t, "status", "--cluster", name, "-o", "table").stdout)
	var handovers, heads int
	for _, l := range strings.Split(strings.TrimSpace(e.mustSray(t, "events", "--cluster", name, "-o", "json").stdout), "\n") {
		var ev struct {
			Event  string         `json:"event"`
			Fields map[string]any `json:"fields"`
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("events line %q: %v", l, err)
		}
		switch {
		case ev.Event == "handover":
			handovers++
			if ev.Fields["gap_s"] == nil || ev.Fields["published_s"] == nil || ev.Fields["sealed_s"] == nil {
				t.Errorf("handover event %s lacks its facts", l)
			}
		case ev.Event == "head_up" && ev.Fields["generation"] != nil:
			heads++
		}
	}
	if handovers != len(gens)-1 || heads != len(gens) {
		t.Errorf("events: %d handovers and %d generations' head_up, want %d and %d", handovers, heads, len(gens)-1, len(gens))
	}
	fmt.Printf("EVENTS TABLE (handovers)\n")
	for _, l := range strings.Split(e.mustSray(t, "events", "--cluster", name).stdout, "\n") {
		if strings.Contains(l, "handover") || strings.Contains(l, "head_up") || strings.HasPrefix(strings.TrimSpace(l), "TIME") {
			fmt.Println(l)
		}
	}
	page := filepath.Join(e.userDir(t, "report"), name+".html")
	e.mustSray(t, "report", "--cluster", name, "-o", page)
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), `<g class="generation"`); n != len(gens) || !strings.Contains(string(b), `<table id="handovers">`) {
		t.Errorf("report: %d generation bands (want %d), handovers table %v", n, len(gens), strings.Contains(string(b), `id="handovers"`))
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

// stepsSinceStop counts the steps done since the driver last stopped (at a
// handover).
func stepsSinceStop(t *testing.T, path string) int {
	n := 0
	for _, ev := range stepEvents(t, path) {
		if ev.Event == "driver_stopping" {
			n = 0
		} else {
			n++
		}
	}
	return n
}

// checkSteps: the run reached its target, never went back more than the
// checkpoint interval; it prints each handover's gap, to the first step on
// the new generation and to the first at the largest world size it reached
// (the GPUs of the workers that followed idle until then), and steps lost.
func checkSteps(t *testing.T, path string, target, every int) {
	t.Helper()
	evs := stepEvents(t, path)
	var steps []stepEvent
	var stops []int // index in steps of the first step after each stop
	for _, ev := range evs {
		if ev.Event == "driver_stopping" {
			stops = append(stops, len(steps))
			continue
		}
		if n := len(steps); n > 0 && ev.Step <= steps[n-1].Step && steps[n-1].Step-ev.Step+1 > every {
			t.Errorf("step %d after step %d: more steps lost than the checkpoint interval %d", ev.Step, steps[n-1].Step, every)
		}
		steps = append(steps, ev)
	}
	for k, i := range stops {
		if i == 0 || i >= len(steps) {
			continue
		}
		end := len(steps)
		if k+1 < len(stops) {
			end = stops[k+1]
		}
		before, first, full := steps[i-1], steps[i], steps[i]
		for _, ev := range steps[i:end] {
			if ev.Actors > full.Actors {
				full = ev
			}
		}
		fmt.Printf("MEASURED handover %d: gap %.1f s to the first step (world size %d -> %d), %.1f s to %d actors (idle GPU-seconds per following worker); steps lost %d\n",
			k+1, first.TS-before.TS, before.Actors, first.Actors, full.TS-before.TS, full.Actors, before.Step-first.Step+1)
	}
	if n := len(steps); n == 0 || steps[n-1].Step != target {
		t.Errorf("last of %d steps is not the target %d", n, target)
	}
}

// driverCompletes waits until the driver completed, within limit, and
// checks its steps (checkSteps).
func driverCompletes(t *testing.T, dir cluster.Dir, driver string, limit time.Duration, steps, every int) {
	t.Helper()
	var rec cluster.NodeRecord
	waitFor(t, "driver until it completes", limit, func() bool {
		rec, _, _ = dir.Node(driver)
		return rec.Final()
	})
	if rec.Outcome != cluster.OutcomeCompleted {
		t.Fatalf("driver ended %s (%s), want completed", rec.Outcome, rec.Reason)
	}
	checkSteps(t, dir.EventsPath(driver), steps, every)
}

// TestE2EHandoverNoHeadInTime: a head whose one worker has too little time
// left to take the head submits a successor head job, which is held (and
// every other GPU is taken): the cluster is waiting for head, and the
// worker gives its GPU back after --head-wait, saying so.
//
// It runs alone (no e2eShare): it holds every GPU of the dev SLURM.
func TestE2EHandoverNoHeadInTime(t *testing.T) {
	e := needE2E(t)
	const name = "e2ehw"
	e.mustSray(t, "up", "--name", name, "--gpus-per-node", "1", "--time", "30:00", "--setup", e.setup, "--object-store-mb", "80",
		"--partition", "debug", "--workers", "1", "--rollover", "--rollover-before", "5m", "--head-wait", "30s", "--wait", "--timeout", "3m")
	t.Cleanup(func() { e.sray(t, "down", "--cluster", name) })
	dir := cluster.Dir{Path: filepath.Join(e.home, "clusters", name)}
	g1, _, _ := dir.Generation(1)
	worker := onlyWorker(t, dir)
	for range 4 { // the dev SLURM's 6 GPUs less the head's and the worker's
		holdGPUs(t, 1, "")
	}
	// The worker down to about 10 min left: too little to take the head,
	// enough to follow it; the head under --rollover-before at once.
	for job, minutes := range map[string]string{worker: "18", g1.Job: "25"} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := e.command(ctx, "scontrol", "update", "JobId="+job, "TimeLimit-="+minutes).CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("scontrol update %s: %v: %s", job, err, out)
		}
	}
	var successor string
	waitFor(t, "the head until it submits a successor head job", 2*time.Minute, func() bool {
		subs, _ := dir.Submissions()
		for _, s := range subs {
			if s.Role == cluster.RoleHead && s.JobID != g1.Job {
				successor = s.JobID
				return true
			}
		}
		return false
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := e.command(ctx, "scontrol", "hold", successor).CombinedOutput(); err != nil {
		t.Fatalf("scontrol hold %s: %v: %s", successor, err, out)
	}
	var h cluster.Handover
	waitFor(t, "generation 1 sealed", time.Minute, func() bool {
		var ok bool
		h, ok, _ = dir.Handover(1)
		return ok && h.Sealed != nil
	})
	if h.How != cluster.GenerationSubmitted || h.Successor != successor {
		t.Errorf("handover = %+v, want to the submitted job %s", h, successor)
	}
	if st := e.status(t, name); st.Cluster.State != cluster.StatePending || !strings.Contains(st.Cluster.Reason, "waiting for head") {
		t.Errorf("status = %s (%s), want pending, waiting for head", st.Cluster.State, st.Cluster.Reason)
	}
	var rec cluster.NodeRecord
	waitFor(t, "the worker until it gives its GPU back", 2*time.Minute, func() bool {
		rec, _, _ = dir.Node(worker)
		return rec.Final()
	})
	fmt.Printf("MEASURED generation 1 sealed to the waiting worker's end: %.1f s (--head-wait 30s)\n", rec.Updated.Sub(*h.Sealed).Seconds())
	if rec.Outcome != cluster.OutcomeHeadLost || !strings.Contains(rec.Reason, "waiting for head") {
		t.Errorf("worker ended %s (%s), want head_lost, waiting for head", rec.Outcome, rec.Reason)
	}
	if _, ok, _ := dir.Generation(2); ok {
		t.Error("generation 2 was published by a held successor")
	}
}
