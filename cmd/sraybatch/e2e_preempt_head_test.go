//go:build e2e

package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

// TestE2EPreemptHead: a rollover cluster's head on the preemptible
// partition (node3), its one worker (--autoscale --min-workers 1) and the
// driver on debug, the built-in loop running. A job of the owner partition
// preempts the head: SLURM's SIGTERM starts the handover at once, the
// worker is promoted, its autoscaler polls and submits a worker for the
// floor, and the driver resumes on generation 2 from its checkpoint (steps
// lost at most the checkpoint interval), back at two actors, and finishes. The old head's job is killed, not
// requeued (a head is --no-requeue), and never heads again; no node joined
// generation 1 after generation 2 was published; no Ray process is left
// after down.
//
// It runs alone (no e2eShare): the owner job needs both GPUs of node3.
func TestE2EPreemptHead(t *testing.T) {
	began := time.Now()
	e := needE2E(t)
	needPreemption(t)
	const name, steps, every = "e2eph", 150, 5
	e.mustSray(t, "up", "--name", name, "--gpus-per-node", "1", "--time", "30:00", "--setup", e.setup, "--object-store-mb", "80",
		"--partition", preemptiblePartition, "--worker-partition", "debug",
		"--autoscale", "--min-workers", "1", "--max-workers", "2", "--idle-timeout", "10m", "--upscale-delay", "1s", "--autoscale-interval", "1s",
		"--rollover", "--rollover-before", "5m", "--wait", "--timeout", "3m")
	t.Cleanup(func() { e.sray(t, "down", "--cluster", name) })
	dir := cluster.Dir{Path: filepath.Join(e.home, "clusters", name)}
	g1, ok, err := dir.Generation(1)
	if err != nil || !ok {
		t.Fatalf("generation 1: %v, %v", ok, err)
	}
	worker := onlyWorker(t, dir)
	st := e.status(t, name)
	if j, _ := jobByID(st, worker); st.Head() == nil || !strings.Contains(st.Head().Node, preemptNode) || strings.Contains(j.Node, preemptNode) {
		t.Fatalf("head on %v, worker on %q: the test needs the head alone on %s", st.Head(), j.Node, preemptNode)
	}
	driver := strings.TrimSpace(e.mustSray(t, "train", "--cluster", name, "--partition", "debug", "--steps", fmt.Sprint(steps),
		"--step-seconds", "0.3", "--checkpoint-every", fmt.Sprint(every)).stdout)
	waitFor(t, "driver until step 10", 2*time.Minute, func() bool { return lastStep(t, dir.EventsPath(driver)) >= 10 })

	submitted := time.Now()
	owner := submitOwnerJob(t, 20*time.Second)
	var g2 cluster.Generation
	waitFor(t, "owner job "+owner+" until generation 2 is published", 2*time.Minute, func() bool {
		g2, ok, _ = dir.Generation(2)
		return ok
	})
	h, _, _ := dir.Handover(1)
	if g2.How != cluster.GenerationPromoted || g2.Job != worker || g2.PreviousHeadJob != g1.Job || !strings.Contains(h.Why, "preempt") {
		t.Errorf("generation 2 = %+v after handover %+v; want worker %s promoted, for the preemption", g2, h, worker)
	}
	sealed := "not sealed (published once the old head was gone)"
	if h.Sealed != nil {
		sealed = fmt.Sprintf("sealed %.1f s later", h.Sealed.Sub(h.Started).Seconds())
		if !h.Sealed.Before(g2.Published) {
			t.Errorf("handover sealed %v, generation 2 published %v: want sealed first", h.Sealed, g2.Published)
		}
	}
	fmt.Printf("MEASURED head preemption: owner job submitted to the handover started %.1f s, %s, generation 2 published %.1f s after the start\n",
		h.Started.Sub(submitted).Seconds(), sealed, g2.Published.Sub(h.Started).Seconds())
	if late := cluster.LateJoins(h.Nodes, g2.Published); len(late) > 0 {
		t.Errorf("nodes joined generation 1 after generation 2 was published: %v", late)
	}

	promotedHeadAutoscales(t, e, dir, name, g2)

	driverCompletes(t, dir, driver, 3*time.Minute, steps, every)
	// The driver's GCS died with the head (SLURM's SIGTERM reaches Ray's
	// processes under linuxproc): it is stopped without its own word
	// (driver_stopping), so its gap is the longest between two steps.
	before, after := longestStepGap(t, dir.EventsPath(driver))
	full := firstStepWith(t, dir.EventsPath(driver), after.TS, before.Actors)
	fmt.Printf("MEASURED head preemption: gap %.1f s from step %d (%d actors) to step %d (%d actors), %.1f s to step %d at %d actors again; steps lost %d\n",
		after.TS-before.TS, before.Step, before.Actors, after.Step, after.Actors, full.TS-before.TS, full.Step, full.Actors, before.Step-after.Step+1)
	if state, restarts := slurmJobState(t, g1.Job); state != "PREEMPTED" || restarts != "0" {
		t.Errorf("old head job %s: %s, Restarts=%s; want PREEMPTED and never requeued", g1.Job, state, restarts)
	}
	if old, _, _ := dir.Node(g1.Job); old.Outcome != cluster.OutcomeHandedOver || !strings.Contains(old.Reason, "preemption") {
		t.Errorf("old head's record: %s (%s), want handed_over for the preemption", old.Outcome, old.Reason)
	}
	if head, _, _ := dir.Head(); head.Job != worker || head.Generation != 2 {
		t.Errorf("current head %s (generation %d), want the promoted worker %s of generation 2", head.Job, head.Generation, worker)
	}
	e.downLeavingNothing(t, dir, name)
	fmt.Printf("MEASURED TestE2EPreemptHead wall time: %.0f s\n", time.Since(began).Seconds())
}

var jobStateRE = regexp.MustCompile(`JobState=(\S+).*Restarts=(\d+)`)

// slurmJobState is a job's state and restart count as scontrol shows them.
func slurmJobState(t *testing.T, id string) (state, restarts string) {
	t.Helper()
	out, err := exec.Command("scontrol", "-o", "show", "job", id).Output()
	if err != nil {
		t.Fatalf("scontrol show job %s: %v", id, err)
	}
	m := jobStateRE.FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("scontrol show job %s: no JobState/Restarts in %s", id, out)
	}
	return m[1], m[2]
}

// longestStepGap returns the two consecutive steps of a driver's run with
// the longest time between them.
func longestStepGap(t *testing.T, path string) (before, after stepEvent) {
	t.Helper()
	var last *stepEvent
	for _, ev := range stepEvents(t, path) {
		if ev.Event != "step_done" {
			continue
		}
		if last != nil && ev.TS-last.TS > after.TS-before.TS {
			before, after = *last, ev
		}
		last = &ev
	}
	return before, after
}

// promotedHeadAutoscales checks that generation 2's head, a promoted
// worker, runs the autoscaler: it polls (its status is written after the
// publication) and submits a worker for the --min-workers floor, which
// joins. It returns that worker's job key.
func promotedHeadAutoscales(t *testing.T, e e2eEnv, dir cluster.Dir, name string, g2 cluster.Generation) string {
	t.Helper()
	var sub cluster.Submission
	waitFor(t, "the promoted head's autoscaler until it submits a worker", time.Minute, func() bool {
		subs, _ := dir.Submissions()
		for _, s := range subs {
			if s.Role == cluster.RoleWorker && s.Autoscaled && s.Submitted.After(g2.Published) {
				sub = s
				return true
			}
		}
		return false
	})
	if as, ok, _ := dir.Autoscaler(); !ok || !as.Updated.After(g2.Published) || as.LastDecision == nil {
		t.Errorf("autoscaler status %+v: want it polling on generation 2's head", as)
	}
	fmt.Printf("MEASURED generation 2 published to the promoted head's first worker submitted: %.1f s\n", sub.Submitted.Sub(g2.Published).Seconds())
	key := sub.JobKeys()[0]
	waitFor(t, "the new worker "+key+" until it joins generation 2", 2*time.Minute, func() bool {
		j, _ := jobByID(e.status(t, name), key)
		return j.Ray == cluster.MembershipJoined
	})
	return key
}

// firstStepWith is the driver's first step after ts with at least actors
// actors (the zero step when none).
func firstStepWith(t *testing.T, path string, ts float64, actors int) stepEvent {
	t.Helper()
	for _, ev := range stepEvents(t, path) {
		if ev.Event == "step_done" && ev.TS >= ts && ev.Actors >= actors {
			return ev
		}
	}
	return stepEvent{}
}
