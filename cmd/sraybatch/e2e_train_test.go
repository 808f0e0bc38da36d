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

// spawnTimes reads when each job's first actor entered the pool, from a driver's events.
func spawnTimes(t *testing.T, path string) map[string]time.Time {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	out := map[string]time.Time{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev struct {
			TS    float64 `json:"ts"`
			Event string  `json:"event"`
			Job   string  `json:"job"`
		}
		if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Event == "actor_spawned" {
			if _, seen := out[ev.Job]; !seen {
				out[ev.Job] = time.Unix(0, int64(ev.TS*1e9))
			}
		}
	}
	return out
}

func driverRow(st cluster.Status) cluster.JobStatus {
	for _, j := range st.Jobs {
		if j.Role == cluster.RoleDriver {
			return j
		}
	}
	return cluster.JobStatus{}
}

// TestE2ETrain: the driver job scales its actors onto joining nodes and keeps
// training as nodes leave.
func TestE2ETrain(t *testing.T) {
	e2eShare(t, 3)
	e := needE2E(t)
	e.mustSray(t, "up", "--name", "e2et", "--gpus-per-node", "1", "--time", "30:00", "--setup", e.setup, "--object-store-mb", "80", "--wait", "--timeout", "3m")
	t.Cleanup(func() { e.sray(t, "down", "--cluster", "e2et") })
	dir := cluster.Dir{Path: filepath.Join(e.home, "clusters", "e2et")}
	driver := strings.TrimSpace(e.mustSray(t, "train", "--cluster", "e2et", "--step-seconds", "0.5").stdout)
	waitFor(t, "driver job until its first step", 2*time.Minute, func() bool {
		d := driverRow(e.status(t, "e2et"))
		return d.LastStep != nil && d.Actors == 1
	})

	workers := strings.Fields(e.mustSray(t, "grow", "--cluster", "e2et", "-n", "2", "--wait", "--timeout", "3m").stdout)
	waitFor(t, "grow -n 2 until the driver runs 3 actors", 30*time.Second, func() bool {
		return driverRow(e.status(t, "e2et")).Actors == 3
	})
	members, err := dir.Membership()
	if err != nil {
		t.Fatal(err)
	}
	spawned := spawnTimes(t, dir.EventsPath(driver))
	for _, w := range workers {
		m := members.Nodes[w]
		if m == nil || spawned[w].IsZero() {
			t.Fatalf("worker %s: membership %+v, actor spawned %v", w, m, spawned[w])
		}
		lag := spawned[w].Sub(m.Registered)
		t.Logf("MEASURED worker %s: registration in Ray to its actor in the pool: %.2f s", w, lag.Seconds())
		if lag > 5*time.Second {
			t.Errorf("worker %s: actor ready %.1f s after the node registered, want <= 5 s", w, lag.Seconds())
		}
	}

	log := cluster.JobLog(filepath.Join(dir.Path, "logs"), "e2et", cluster.RoleDriver, driver)
	for i, w := range workers {
		before := driverRow(e.status(t, "e2et"))
		exec.Command("scancel", w).Run()
		waitFor(t, fmt.Sprintf("scancel of worker %d until the driver steps on %d actors", i+1, 2-i), 60*time.Second, func() bool {
			d := driverRow(e.status(t, "e2et"))
			return d.Actors == 2-i && d.LastStep != nil && *d.LastStep > *before.LastStep+2
		})
		d := driverRow(e.status(t, "e2et"))
		if d.SlurmState != "RUNNING" || d.Ray != cluster.MembershipJoined {
			t.Errorf("driver after losing worker %s: %s/%s", w, d.SlurmState, d.Ray)
		}
	}
	if b, _ := os.ReadFile(log); strings.Contains(string(b), "Traceback") {
		t.Errorf("driver log has a traceback:\n%s", b)
	}

	// The demo driver's actors hold the GPUs; a second pool would wait for them.
	exec.Command("scancel", driver).Run()
	waitFor(t, "scancel of the demo driver until its job ended", 30*time.Second, func() bool { return !slurmJobActive(driver) })

	t.Run("a user's own driver gets the same environment", func(t *testing.T) {
		script := e.userFile(t, "../../trainloop/python/examples/elastic_driver.py")
		r := e.mustSray(t, "train", "--cluster", "e2et", "--follow", "--", "python3", script, "--steps", "5")
		if !strings.Contains(r.stdout, "step 4: 1 actors") {
			t.Errorf("own driver output lacks its last step:\n%s", r.stdout)
		}
	})

	t.Run("a failing driver shows its exit code and log tail", func(t *testing.T) {
		r := e.sray(t, "train", "--cluster", "e2et", "--follow", "--", "python3", "/nonexistent/driver.py")
		if r.code != exitFailure || !strings.Contains(r.stderr, "exited with code 2") || !strings.Contains(r.stdout, "No such file") {
			t.Fatalf("exit %d; stdout %q; stderr %q: want exit 1, code 2 and Python's message", r.code, r.stdout, r.stderr)
		}
		job := strings.Fields(r.stdout)[0]
		j, _ := jobByID(e.status(t, "e2et"), job)
		if j.ExitCode == nil || *j.ExitCode != 2 || !strings.Contains(j.Reason, "No such file") {
			t.Errorf("status of the failed driver: exit %v reason %q", j.ExitCode, j.Reason)
		}
	})

	t.Run("down ends a running driver too", func(t *testing.T) {
		other := strings.TrimSpace(e.mustSray(t, "train", "--cluster", "e2et", "--step-seconds", "0.5").stdout)
		waitFor(t, "second demo driver until it steps", 2*time.Minute, func() bool {
			j, _ := jobByID(e.status(t, "e2et"), other)
			return j.LastStep != nil
		})
		e.mustSray(t, "down", "--cluster", "e2et")
		if slurmJobActive(other) {
			t.Errorf("driver job %s survives down", other)
		}
	})
}
