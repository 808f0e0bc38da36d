//go:build e2e

package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

// trainerEpochs reads the `epoch E: world size W` lines Ray Train's elastic
// example prints, in order.
func trainerEpochs(t *testing.T, log string) (epochs, worlds []int) {
	t.Helper()
	b, _ := os.ReadFile(log)
	for _, m := range regexp.MustCompile(`epoch (\d+): world size (\d+)`).FindAllStringSubmatch(string(b), -1) {
		e, _ := strconv.Atoi(m[1])
		w, _ := strconv.Atoi(m[2])
		epochs, worlds = append(epochs, e), append(worlds, w)
	}
	return epochs, worlds
}

// TestE2ETrainRayTrainElastic: Ray Train's elastic trainer on a cluster grown
// by hand: `grow` raises its world size, cancelling a worker lowers it, and
// it resumes from its checkpoint each time and reaches its last epoch.
func TestE2ETrainRayTrainElastic(t *testing.T) {
	e2eShare(t, 3)
	e := needE2E(t)
	e.mustSray(t, "up", "--name", "e2ert", "--gpus-per-node", "1", "--time", "30:00", "--setup", e.setup, "--object-store-mb", "100", "--wait", "--timeout", "3m")
	t.Cleanup(func() { e.sray(t, "down", "--cluster", "e2ert") })
	dir := cluster.Dir{Path: filepath.Join(e.home, "clusters", "e2ert")}
	example := e.userFile(t, "../../trainloop/python/examples/ray_train_elastic.py")
	const epochs = 45
	driver := strings.TrimSpace(e.mustSray(t, "train", "--cluster", "e2ert", "--", "python", example,
		"--max-workers", "3", "--epochs", strconv.Itoa(epochs), "--epoch-seconds", "1", "--resize-interval-s", "2").stdout)
	log := cluster.JobLog(filepath.Join(dir.Path, "logs"), "e2ert", cluster.RoleDriver, driver)
	worldNow := func() int {
		_, w := trainerEpochs(t, log)
		if len(w) == 0 {
			return 0
		}
		return w[len(w)-1]
	}
	waitFor(t, "the trainer training at world size 1 on the head's GPU", 3*time.Minute, func() bool { return worldNow() == 1 })

	workers := strings.Fields(e.mustSray(t, "grow", "--cluster", "e2ert", "-n", "2", "--wait", "--timeout", "3m").stdout)
	waitFor(t, "grow -n 2 until the trainer's world size is 3", 2*time.Minute, func() bool { return worldNow() == 3 })
	ep, _ := trainerEpochs(t, log)
	atThree := ep[len(ep)-1]

	if out, err := exec.Command("scancel", workers[0]).CombinedOutput(); err != nil {
		t.Fatalf("scancel %s: %v: %s", workers[0], err, out)
	}
	waitFor(t, "a cancelled worker until the trainer's world size is 2", 2*time.Minute, func() bool { return worldNow() == 2 })
	waitFor(t, "the driver job until the trainer finished", 4*time.Minute, func() bool { return !slurmJobActive(driver) })

	ep, worlds := trainerEpochs(t, log)
	if ep[len(ep)-1] != epochs-1 {
		t.Errorf("last epoch %d, want %d", ep[len(ep)-1], epochs-1)
	}
	// Every resize resumed from the checkpoint: the epochs never restart at 0
	// after the first, and none is skipped.
	for i := 1; i < len(ep); i++ {
		if ep[i] < ep[i-1] && ep[i] == 0 {
			t.Fatalf("epochs %v restart from 0 after a resize (worlds %v): the checkpoint was not used", ep, worlds)
		}
		if ep[i] > ep[i-1]+1 {
			t.Fatalf("epochs %v skip from %d to %d", ep, ep[i-1], ep[i])
		}
	}
	if atThree == 0 {
		t.Errorf("world size 3 reached at epoch 0: the trainer should have started smaller")
	}
	if d, _ := jobByID(e.status(t, "e2ert"), driver); d.Outcome != cluster.OutcomeCompleted {
		t.Errorf("driver job outcome %q, want completed", d.Outcome)
	}
}

// regressionSteps reads linear_regression.py's `step K: R replicas, loss L` lines.
func regressionSteps(t *testing.T, log string) (replicas []int, losses []float64) {
	t.Helper()
	b, _ := os.ReadFile(log)
	for _, m := range regexp.MustCompile(`step \d+: (\d+) replicas, loss ([0-9.e+-]+)`).FindAllStringSubmatch(string(b), -1) {
		r, _ := strconv.Atoi(m[1])
		l, _ := strconv.ParseFloat(m[2], 64)
		replicas, losses = append(replicas, r), append(losses, l)
	}
	return replicas, losses
}

// TestE2ETrainRegressionAcrossGrowAndCancel: the data-parallel regression
// example trains right while a node joins and leaves: the newcomer starts
// from its peers' weights (state_synced from a peer), so the loss never
// rises at a join or a leave, and the run reaches its last step.
func TestE2ETrainRegressionAcrossGrowAndCancel(t *testing.T) {
	e2eShare(t, 2)
	e := needE2E(t)
	e.mustSray(t, "up", "--name", "e2elr", "--gpus-per-node", "1", "--time", "30:00", "--setup", e.setup, "--object-store-mb", "100", "--wait", "--timeout", "3m")
	t.Cleanup(func() { e.sray(t, "down", "--cluster", "e2elr") })
	dir := cluster.Dir{Path: filepath.Join(e.home, "clusters", "e2elr")}
	example := e.userFile(t, "../../trainloop/python/examples/linear_regression.py")
	const steps = 80
	driver := strings.TrimSpace(e.mustSray(t, "train", "--cluster", "e2elr", "--", "python", example,
		"--steps", strconv.Itoa(steps), "--lr", "0.05", "--step-seconds", "0.4").stdout)
	log := cluster.JobLog(filepath.Join(dir.Path, "logs"), "e2elr", cluster.RoleDriver, driver)
	replicasNow := func() int {
		r, _ := regressionSteps(t, log)
		if len(r) == 0 {
			return 0
		}
		return r[len(r)-1]
	}
	waitFor(t, "the regression stepping on the head's GPU", 3*time.Minute, func() bool { return replicasNow() == 1 })
	worker := strings.TrimSpace(e.mustSray(t, "grow", "--cluster", "e2elr", "--wait", "--timeout", "3m").stdout)
	waitFor(t, "grow until 2 replicas step", time.Minute, func() bool { return replicasNow() == 2 })
	if out, err := exec.Command("scancel", worker).CombinedOutput(); err != nil {
		t.Fatalf("scancel %s: %v: %s", worker, err, out)
	}
	waitFor(t, "a cancelled worker until 1 replica steps", time.Minute, func() bool {
		r, _ := regressionSteps(t, log)
		return len(r) > 0 && r[len(r)-1] == 1 && contains(r, 2)
	})
	waitFor(t, "the driver job until the regression finished", 3*time.Minute, func() bool { return !slurmJobActive(driver) })

	replicas, losses := regressionSteps(t, log)
	if len(losses) < steps {
		t.Fatalf("%d steps logged, want %d", len(losses), steps)
	}
	// Full-batch gradient descent with a step size below 2/λmax never raises
	// the loss; ε covers float rounding only. A newcomer training from zero
	// weights would raise it at the join.
	const eps = 1e-6
	for i := 1; i < len(losses); i++ {
		if losses[i] > losses[i-1]*(1+eps) {
			t.Errorf("loss rose from %g to %g at step %d (replicas %d → %d)", losses[i-1], losses[i], i+1, replicas[i-1], replicas[i])
		}
	}
	synced := false
	for _, ev := range readEventLines(t, dir.EventsPath(driver)) {
		if ev["event"] == "state_synced" && ev["job"] == worker && ev["source"] == "peer" {
			synced = true
		}
	}
	if !synced {
		t.Errorf("no state_synced from a peer for the joining worker %s", worker)
	}
	if d, _ := jobByID(e.status(t, "e2elr"), driver); d.Outcome != cluster.OutcomeCompleted {
		t.Errorf("driver job outcome %q, want completed", d.Outcome)
	}
}

// readEventLines reads a JSON-lines event file.
func readEventLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, _ := os.ReadFile(path)
	var out []map[string]any
	for _, line := range strings.Split(string(b), "\n") {
		var ev map[string]any
		if json.Unmarshal([]byte(line), &ev) == nil {
			out = append(out, ev)
		}
	}
	return out
}
