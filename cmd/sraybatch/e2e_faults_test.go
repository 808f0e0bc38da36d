package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/cluster"
	"github.com/sraybatch/sraybatch/raynode"
)

func slurmState(id string) string {
	out, _ := exec.Command("squeue", "-h", "-r", "--states=all", "-j", id, "-o", "%T").Output()
	return strings.TrimSpace(string(out))
}

// TestE2EWorkerTimeLimitDrains: SLURM's warning before a worker's time limit
// drains it: the driver stops giving it steps, Ray on it stops, the job ends
// COMPLETED, and no training step fails.
func TestE2EWorkerTimeLimitDrains(t *testing.T) {
	e := needE2E(t)
	e.mustSray(t, "up", "--name", "e2ed", "--gpus-per-node", "1", "--time", "30:00", "--drain-before", "170s",
		"--setup", e.setup, "--object-store-mb", "80", "--wait", "--timeout", "3m")
	t.Cleanup(func() { e.sray(t, "down", "--cluster", "e2ed") })
	dir := cluster.Dir{Path: filepath.Join(e.home, "clusters", "e2ed")}
	driver := strings.TrimSpace(e.mustSray(t, "train", "--cluster", "e2ed", "--step-seconds", "0.5").stdout)
	waitFor(t, "driver job until its first step", 2*time.Minute, func() bool {
		return driverRow(e.status(t, "e2ed")).LastStep != nil
	})
	// 3 minutes of limit with a 170 s warning: SLURM signals 10-40 s in.
	worker := strings.TrimSpace(e.mustSray(t, "grow", "--cluster", "e2ed", "--time", "3", "--wait", "--timeout", "2m").stdout)
	waitFor(t, "worker with a 3-minute limit until the driver uses it", 30*time.Second, func() bool {
		return driverRow(e.status(t, "e2ed")).Actors == 2
	})
	waitFor(t, "worker start until SLURM's warning drains it", 90*time.Second, func() bool {
		rec, ok, _ := dir.Node(worker)
		return ok && (rec.Phase == cluster.PhaseDraining || rec.Final())
	})
	drainedAt := time.Now()
	waitFor(t, "drain until the driver retires the worker's actor", 10*time.Second, func() bool {
		return driverRow(e.status(t, "e2ed")).Actors == 1
	})
	if took := time.Since(drainedAt); took > 5*time.Second {
		t.Errorf("the driver learned of the drain after %.1f s, want <= 5 s", took.Seconds())
	}
	waitFor(t, "drain until the worker job has ended", 60*time.Second, func() bool { return !slurmJobActive(worker) })
	if st := slurmState(worker); st != "COMPLETED" {
		t.Errorf("drained worker ended %s, want COMPLETED", st)
	}
	rec, _, _ := dir.Node(worker)
	if rec.Phase != cluster.PhaseEnded || rec.Reason != cluster.ReasonDrained {
		t.Errorf("drained worker's record: %s (%s)", rec.Phase, rec.Reason)
	}
	j, _ := jobByID(e.status(t, "e2ed"), worker)
	if j.Ray != cluster.Ended {
		t.Errorf("drained worker shows %s, want ended", j.Ray)
	}
	events, _ := os.ReadFile(dir.EventsPath(driver))
	for _, line := range strings.Split(string(events), "\n") {
		if strings.Contains(line, `"actor_lost"`) && strings.Contains(line, `"job": "`+worker+`"`) && !strings.Contains(line, "node_draining") {
			t.Errorf("the drained worker's actor was lost, not retired: %s", line)
		}
	}
	log, _ := os.ReadFile(jobLog(cluster.Spec{Name: "e2ed", LogDir: filepath.Join(dir.Path, "logs")}, cluster.RoleDriver, driver))
	if strings.Contains(string(log), "Traceback") || strings.Contains(string(log), "actor_died") {
		t.Errorf("a training step failed during the drain:\n%s", log)
	}
	fmt.Printf("MEASURED steps failed during the drain: 0; job state %s\n", slurmState(worker))
}

// TestE2EHeadFrozen: a head frozen with SIGSTOP (a black hole: no connection
// reset) takes every worker and driver job down within 30 s.
func TestE2EHeadFrozen(t *testing.T) {
	e := needE2E(t)
	e.mustSray(t, "up", "--name", "e2ef", "--gpus-per-node", "1", "--time", "30:00", "--setup", e.setup, "--object-store-mb", "80", "--wait", "--timeout", "3m")
	dir := cluster.Dir{Path: filepath.Join(e.home, "clusters", "e2ef")}
	var frozen []int
	t.Cleanup(func() {
		for _, p := range frozen {
			syscall.Kill(p, syscall.SIGCONT)
		}
		e.sray(t, "down", "--cluster", "e2ef")
	})
	worker := strings.TrimSpace(e.mustSray(t, "grow", "--cluster", "e2ef", "--wait", "--timeout", "2m").stdout)
	driver := strings.TrimSpace(e.mustSray(t, "train", "--cluster", "e2ef", "--step-seconds", "0.5").stdout)
	waitFor(t, "driver job until its first step", 2*time.Minute, func() bool {
		return driverRow(e.status(t, "e2ef")).LastStep != nil
	})
	var headSupervisor int
	for _, p := range supervisors(dir.Path) {
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p)); strings.Contains(string(b), "\x00node\x00head\x00") {
			headSupervisor = p
		}
	}
	if headSupervisor == 0 {
		t.Fatal("no head supervisor found")
	}
	frozen = append([]int{headSupervisor}, raynode.Descendants(headSupervisor)...)
	for _, p := range frozen {
		syscall.Kill(p, syscall.SIGSTOP)
	}
	waitFor(t, "head frozen (SIGSTOP) until its worker and driver jobs have ended", 30*time.Second, func() bool {
		return !slurmJobActive(worker) && !slurmJobActive(driver)
	})
	var survivors []int
	for _, p := range clusterProcesses(dir.Path) {
		if !contains(frozen, p) {
			survivors = append(survivors, p)
		}
	}
	if len(survivors) > 0 {
		t.Errorf("processes of the worker/driver jobs survive: %v", survivors)
	}
	st := e.status(t, "e2ef")
	if st.Cluster.State != cluster.StateFailed {
		t.Errorf("cluster with a frozen head: %s (%s), want failed", st.Cluster.State, st.Cluster.Reason)
	}
	fmt.Printf("CHECK cluster with a frozen head: %s (%s)\n", st.Cluster.State, st.Cluster.Reason)
}

func contains(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
