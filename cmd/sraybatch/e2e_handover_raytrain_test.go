//go:build e2e

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

// Lines of the Ray Train example and of Ray Train itself in a driver's log.
const (
	// rayTrainResumedLine is the example's first line when sraybatch runs it
	// again after a handover (SRAYBATCH_RESUMED=1).
	rayTrainResumedLine = "resumed after a head handover"
	// raySnapshotFoundLine is what Ray Train's controller logs when it loads
	// <storage>/<name>/checkpoint_manager_snapshot.json (Ray 2.60,
	// train/v2/_internal/execution/checkpoint/checkpoint_manager.py).
	raySnapshotFoundLine = "A run snapshot was found in storage folder at"
)

var resumedFromRE = regexp.MustCompile(`resumed from epoch (\d+) step (\d+)`)

// TestE2EHandoverRayTrain: Ray Train's elastic example (a user's driver,
// `train -- python ray_train_elastic.py`) on a rollover cluster (head + 1
// worker, 1 GPU each) goes through a handover by promotion, brought on by
// shortening the head's limit under --rollover-before as the user. sraybatch
// stops the driver with SIGINT (Ray Train's safe point) and runs it again on
// generation 2; Ray Train finds the run's snapshot (its own log line says
// so), the first epoch after the handover is past 0 and at most one epoch
// behind the last one printed before, and the run completes. Negative
// control: the same example under a new --name on generation 2 starts at
// epoch 0, with no snapshot found. No Ray process is left after down.
//
// It runs alone (no e2eShare), as TestE2EHandover does: the handover's
// timing is measured, and its promoted head must not wait for a GPU.
func TestE2EHandoverRayTrain(t *testing.T) {
	began := time.Now()
	e := needE2E(t)
	// An epoch takes about 2 s, not --epoch-seconds 0.5: Ray Train's
	// controller takes a report every 2 s (RAY_TRAIN_HEALTH_CHECK_INTERVAL_S).
	// The handover starts within 20 s of the shortened limit (the head's
	// check) and stops the driver about 8 s later: by epoch 16.
	const name, epochs = "e2erth", 25
	dir, g1 := e.upRollover(t, name, 1)
	worker := onlyWorker(t, dir)
	example := e.userFile(t, "../../trainloop/python/examples/ray_train_elastic.py")
	train := func(args ...string) (job, log string) {
		argv := append([]string{"train", "--cluster", name, "--", "python", example, "--max-workers", "2", "--resize-interval-s", "2"}, args...)
		job = strings.TrimSpace(e.mustSray(t, argv...).stdout)
		return job, cluster.JobLog(filepath.Join(dir.Path, "logs"), name, cluster.RoleDriver, job)
	}
	driver, log := train("--epochs", strconv.Itoa(epochs), "--epoch-seconds", "0.5")
	waitFor(t, "the trainer until its epoch 2", 3*time.Minute, func() bool {
		ep, _ := trainerEpochs(t, log)
		return len(ep) > 0 && ep[len(ep)-1] >= 2
	})

	// 30:00 less 25 min: under --rollover-before 5m at once.
	g2 := e.handover(t, dir, 1, map[string]string{g1.Job: "25"})
	if g2.How != cluster.GenerationPromoted || g2.Job != worker {
		t.Errorf("generation 2 = %+v, want the worker %s promoted", g2, worker)
	}
	var rec cluster.NodeRecord
	waitFor(t, "the driver until it completes", 3*time.Minute, func() bool {
		rec, _, _ = dir.Node(driver)
		return rec.Final()
	})
	if rec.Outcome != cluster.OutcomeCompleted {
		t.Fatalf("driver ended %s (%s), want completed", rec.Outcome, rec.Reason)
	}
	checkRayTrainResumed(t, log, epochs)

	// Negative control: a new name on the new generation has no snapshot.
	fresh, freshLog := train("--name", "ray-train-fresh", "--epochs", "1", "--epoch-seconds", "0.2")
	waitFor(t, "the fresh run's driver until it ends", 2*time.Minute, func() bool {
		rec, _, _ = dir.Node(fresh)
		return rec.Final()
	})
	b, _ := os.ReadFile(freshLog)
	if ep, _ := trainerEpochs(t, freshLog); rec.Outcome != cluster.OutcomeCompleted || len(ep) == 0 || ep[0] != 0 {
		t.Errorf("a new --name on generation 2: %s, epochs %v; want completed from epoch 0", rec.Outcome, ep)
	}
	if strings.Contains(string(b), raySnapshotFoundLine) || resumedFromRE.Match(b) {
		t.Errorf("a new --name found a snapshot or resumed: the name must be what Ray Train resumes by")
	}

	e.downLeavingNothing(t, dir, name)
	fmt.Printf("MEASURED TestE2EHandoverRayTrain wall time %.0f s\n", time.Since(began).Seconds())
}

// checkRayTrainResumed: the driver's log has a first run, then the re-run
// after the handover, in which Ray Train found the run's snapshot and the
// workers started from its checkpoint: past epoch 0, at most one epoch
// behind the last epoch before; and the run reached its last epoch.
func checkRayTrainResumed(t *testing.T, log string, epochs int) {
	t.Helper()
	b, _ := os.ReadFile(log)
	before, after, ok := strings.Cut(string(b), rayTrainResumedLine)
	if !ok {
		t.Fatalf("the driver was not run again after the handover (no %q in %s)", rayTrainResumedLine, log)
	}
	if strings.Contains(before, raySnapshotFoundLine) || !strings.Contains(after, raySnapshotFoundLine) {
		t.Errorf("Ray Train's %q: want it only after the handover", raySnapshotFoundLine)
	}
	last := lastEpochIn(before)
	m := resumedFromRE.FindStringSubmatch(after)
	if m == nil || last < 0 {
		t.Fatalf("no epoch before the handover (%d) or no resume after it", last)
	}
	first, _ := strconv.Atoi(m[1])
	fmt.Printf("MEASURED Ray Train across the handover: last epoch before %d, resumed from epoch %s step %s; epochs redone %d\n",
		last, m[1], m[2], last+1-first)
	// Ray Train registers a report as a checkpoint when its controller next
	// polls the workers: the one in flight at the stop may be lost.
	if first == 0 || first < last-1 || first > last+1 {
		t.Errorf("resumed from epoch %d after epoch %d: want the checkpoint's (past 0, at most one epoch behind)", first, last)
	}
	if got := lastEpochIn(after); got != epochs-1 {
		t.Errorf("last epoch %d, want %d", got, epochs-1)
	}
}

// lastEpochIn is the last `epoch E: world size W` line's epoch in s; -1: none.
func lastEpochIn(s string) int {
	ms := regexp.MustCompile(`epoch (\d+): world size`).FindAllStringSubmatch(s, -1)
	if len(ms) == 0 {
		return -1
	}
	e, _ := strconv.Atoi(ms[len(ms)-1][1])
	return e
}
