//go:build e2e

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

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/proctree"
)

func slurmState(id string) string {
	out, _ := exec.Command("squeue", "-h", "-r", "--states=all", "-j", id, "-o", "%T").Output()
	return strings.TrimSpace(string(out))
}

// TestE2EWorkerTimeLimitDrains: SLURM's warning before a worker's time limit
// drains it: the driver stops giving it steps, Ray on it stops, the job ends
// COMPLETED, and no training step fails.
func TestE2EWorkerTimeLimitDrains(t *testing.T) {
	e2eShare(t, 2)
	e := needE2E(t)
	e.mustSray(t, "up", "--name", "e2ed", "--gpus-per-node", "1", "--time", "30:00", "--drain-before", "170s",
		"--setup", e.setup, "--object-store-mb", "80", "--wait", "--timeout", "3m")
	t.Cleanup(func() { e.sray(t, "down", "--cluster", "e2ed") })
	dir := cluster.Dir{Path: filepath.Join(e.home, "clusters", "e2ed")}
	driver := strings.TrimSpace(e.mustSray(t, "train", "--cluster", "e2ed", "--step-seconds", "0.5").stdout)
	waitFor(t, "driver job until its first step", 2*time.Minute, func() bool {
		return driverRow(e.status(t, "e2ed")).LastStep != nil
	})
	// 4 minutes of limit with a 170 s warning: SLURM signals 170-200 s
	// before the limit (its limit check runs every 30 s), 40-70 s in. With
	// 3 minutes the warning could come before the driver had used the node.
	worker := strings.TrimSpace(e.mustSray(t, "grow", "--cluster", "e2ed", "--time", "4", "--wait", "--timeout", "2m").stdout)
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
	if j.Ray != cluster.MembershipEnded {
		t.Errorf("drained worker shows %s, want ended", j.Ray)
	}
	events, _ := os.ReadFile(dir.EventsPath(driver))
	for _, line := range strings.Split(string(events), "\n") {
		if strings.Contains(line, `"actor_lost"`) && strings.Contains(line, `"job": "`+worker+`"`) && !strings.Contains(line, "node_draining") {
			t.Errorf("the drained worker's actor was lost, not retired: %s", line)
		}
	}
	log, _ := os.ReadFile(cluster.JobLog(filepath.Join(dir.Path, "logs"), "e2ed", cluster.RoleDriver, driver))
	if strings.Contains(string(log), "Traceback") || strings.Contains(string(log), "actor_died") {
		t.Errorf("a training step failed during the drain:\n%s", log)
	}
	t.Logf("MEASURED steps failed during the drain: 0; job state %s", slurmState(worker))
}

// TestE2EHeadFrozen: a head frozen with SIGSTOP (a black hole: no connection
// reset) takes every worker and driver job down within 30 s.
func TestE2EHeadFrozen(t *testing.T) {
	e2eShare(t, 2)
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
	headSupervisor := headSupervisorOf(t, dir)
	frozen = append([]int{headSupervisor}, proctree.Descendants(headSupervisor)...)
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
	t.Logf("CHECK cluster with a frozen head: %s (%s)", st.Cluster.State, st.Cluster.Reason)
}

func contains(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// TestE2EControllerDown: with slurmctld gone, status answers within 2 s from
// the recorded state and grow fails fast; after a restart all is correct.
func TestE2EControllerDown(t *testing.T) {
	// Alone, not e2eShare: it stops slurmctld.
	e := needE2E(t)
	e.mustSray(t, "up", "--name", "e2ec2", "--gpus-per-node", "1", "--time", "30:00", "--setup", e.setup, "--object-store-mb", "80", "--wait", "--timeout", "3m")
	t.Cleanup(func() { e.sray(t, "down", "--cluster", "e2ec2") })
	pidFile := filepath.Join(filepath.Dir(os.Getenv("SLURM_CONF")), "run", "slurmctld.pid")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("slurmctld pid file: %v", err)
	}
	var pid int
	fmt.Sscan(string(b), &pid)
	restart := func() {
		if exec.Command("scontrol", "ping").Run() == nil {
			return
		}
		if out, err := exec.Command("slurmctld", "-f", os.Getenv("SLURM_CONF")).CombinedOutput(); err != nil {
			t.Errorf("restart slurmctld: %v %s", err, out)
		}
		waitFor(t, "slurmctld restart until it answers", 60*time.Second, func() bool {
			out, _ := exec.Command("scontrol", "ping").Output()
			return strings.Contains(string(out), "UP")
		})
	}
	t.Cleanup(restart)
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatalf("stop slurmctld: %v", err)
	}
	waitFor(t, "slurmctld stop", 30*time.Second, func() bool {
		out, _ := exec.Command("scontrol", "ping").Output()
		return !strings.Contains(string(out), "UP")
	})

	start := time.Now()
	r := e.sray(t, "status", "--cluster", "e2ec2", "--output", "json")
	took := time.Since(start)
	t.Logf("MEASURED status with the controller down answered in %.2f s", took.Seconds())
	if r.code != 0 || took > 3*time.Second || !strings.Contains(r.stderr, "does not answer") || !strings.Contains(r.stdout, `"state": "running"`) {
		t.Errorf("status with the controller down: exit %d after %s; want the last known state within 2 s and a warning: %s %s", r.code, took, r.stdout, r.stderr)
	}
	start = time.Now()
	g := e.sray(t, "grow", "--cluster", "e2ec2")
	t.Logf("MEASURED grow with the controller down failed in %.2f s", time.Since(start).Seconds())
	if g.code != exitFailure || time.Since(start) > 3*time.Second {
		t.Errorf("grow with the controller down: exit %d after %s, want a fast failure", g.code, time.Since(start))
	}

	restart()
	e.mustSray(t, "grow", "--cluster", "e2ec2", "--wait", "--timeout", "2m")
	st := e.status(t, "e2ec2")
	if st.Cluster.SlurmError != "" || len(st.Jobs) != 2 {
		t.Fatalf("after the restart: %+v", st)
	}
	for _, j := range st.Jobs {
		if j.SlurmState != "RUNNING" || j.Ray != cluster.MembershipJoined {
			t.Errorf("after the restart, job %s: %s/%s", j.JobID, j.SlurmState, j.Ray)
		}
	}
}

// TestE2EWorkerNeverJoins: a worker whose --setup fails, or whose head is
// frozen, ends within 60 s with the reason recorded, and grow --wait says so.
func TestE2EWorkerNeverJoins(t *testing.T) {
	e2eShare(t, 2)
	e := needE2E(t)
	broken := filepath.Join(e.userDir(t, "faults"), "break-setup") // the user's job looks for it
	setup := e.setup + "\nif [ -e " + broken + " ]; then echo worker-setup-is-broken >&2; exit 1; fi"
	e.mustSray(t, "up", "--name", "e2en", "--gpus-per-node", "1", "--time", "30:00", "--setup", setup, "--object-store-mb", "80", "--wait", "--timeout", "3m")
	dir := cluster.Dir{Path: filepath.Join(e.home, "clusters", "e2en")}
	var frozen []int
	t.Cleanup(func() {
		for _, p := range frozen {
			syscall.Kill(p, syscall.SIGCONT)
		}
		e.sray(t, "down", "--cluster", "e2en")
	})
	expectFailure := func(what, want string) {
		t.Helper()
		start := time.Now()
		r := e.sray(t, "grow", "--cluster", "e2en", "--wait", "--timeout", "3m")
		took := time.Since(start)
		t.Logf("MEASURED grow --wait of a worker that cannot join (%s) failed after %.1f s", what, took.Seconds())
		if r.code != exitFailure || !strings.Contains(r.stderr, want) || took > 60*time.Second {
			t.Errorf("%s: exit %d after %s; want %d within 60 s naming %q: %s", what, r.code, took, exitFailure, want, r.stderr)
		}
		job := strings.TrimSpace(r.stdout)
		waitFor(t, what+": until the job has ended", 30*time.Second, func() bool { return !slurmJobActive(job) })
		j, _ := jobByID(e.status(t, "e2en"), job)
		if j.Ray != cluster.MembershipFailed || !strings.Contains(j.Reason, want) {
			t.Errorf("%s: status shows %s (%s), want failed naming %q", what, j.Ray, j.Reason, want)
		}
	}

	if err := os.WriteFile(broken, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	expectFailure("--setup fails", "worker-setup-is-broken")
	os.Remove(broken)

	for _, p := range supervisors(dir.Path) {
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p)); strings.Contains(string(b), "\x00node\x00head\x00") {
			frozen = append([]int{p}, proctree.Descendants(p)...)
		}
	}
	for _, p := range frozen {
		syscall.Kill(p, syscall.SIGSTOP)
	}
	expectFailure("head frozen", "unresponsive")
}

// TestE2EHeadNodeDown: `scontrol update NodeName=<head node> State=DOWN`
// ends the head's job; every other job of the cluster ends within 30 s.
func TestE2EHeadNodeDown(t *testing.T) {
	// Alone, not e2eShare: it takes a node DOWN.
	e := needE2E(t)
	e.mustSray(t, "up", "--name", "e2ehd", "--gpus-per-node", "1", "--time", "30:00", "--setup", e.setup, "--object-store-mb", "80", "--wait", "--timeout", "3m")
	t.Cleanup(func() { e.sray(t, "down", "--cluster", "e2ehd") })
	st := e.status(t, "e2ehd")
	headNode := st.Cluster.HeadNode
	// Keep the worker off the head's node: only the head's node goes down.
	holdGPUs(t, 1, headNode)
	worker := strings.TrimSpace(e.mustSray(t, "grow", "--cluster", "e2ehd", "--wait", "--timeout", "2m").stdout)
	driver := strings.TrimSpace(e.mustSray(t, "train", "--cluster", "e2ehd", "--step-seconds", "0.5").stdout)
	waitFor(t, "driver job until its first step", 2*time.Minute, func() bool {
		return driverRow(e.status(t, "e2ehd")).LastStep != nil
	})
	t.Cleanup(func() {
		exec.Command("scontrol", "update", "NodeName="+headNode, "State=RESUME").Run()
	})
	if out, err := exec.Command("scontrol", "update", "NodeName="+headNode, "State=DOWN", "Reason=sraybatch-e2e").CombinedOutput(); err != nil {
		t.Fatalf("scontrol update: %v %s", err, out)
	}
	waitFor(t, "head node DOWN until the cluster's worker and driver jobs have ended", 30*time.Second, func() bool {
		return !slurmJobActive(worker) && !slurmJobActive(driver)
	})
	if procs := clusterProcesses(filepath.Join(e.home, "clusters", "e2ehd")); len(procs) > 0 {
		time.Sleep(5 * time.Second) // the head's own job may still be stopping
		if procs = clusterProcesses(filepath.Join(e.home, "clusters", "e2ehd")); len(procs) > 0 {
			t.Errorf("processes of the cluster survive: %v", procs)
		}
	}
	st = e.status(t, "e2ehd")
	if st.Cluster.State != cluster.StateFailed {
		t.Errorf("cluster after its head's node went down: %s (%s)", st.Cluster.State, st.Cluster.Reason)
	}
	t.Logf("CHECK cluster after its head's node went down: %s (%s)", st.Cluster.State, st.Cluster.Reason)
}

// TestE2EHeadTimeLimitWarns: before the head's time limit, status warns and
// the driver gets a head_time_limit event it can checkpoint on.
func TestE2EHeadTimeLimitWarns(t *testing.T) {
	e2eShare(t, 1)
	e := needE2E(t)
	// 3 minutes of limit with a 170 s warning: SLURM signals 10-40 s in.
	e.mustSray(t, "up", "--name", "e2ehl", "--gpus-per-node", "1", "--time", "3", "--drain-before", "170s",
		"--setup", e.setup, "--object-store-mb", "80", "--wait", "--timeout", "2m")
	t.Cleanup(func() { e.sray(t, "down", "--cluster", "e2ehl") })
	dir := cluster.Dir{Path: filepath.Join(e.home, "clusters", "e2ehl")}
	driver := strings.TrimSpace(e.mustSray(t, "train", "--cluster", "e2ehl", "--step-seconds", "0.5").stdout)
	waitFor(t, "head start until status warns of its time limit", 90*time.Second, func() bool {
		st := e.status(t, "e2ehl")
		return strings.Contains(st.Cluster.Warning, "time limit") && st.Cluster.State == cluster.StateRunning
	})
	waitFor(t, "the warning until the driver has its head_time_limit event", 30*time.Second, func() bool {
		b, _ := os.ReadFile(dir.EventsPath(driver))
		return strings.Contains(string(b), `"head_time_limit"`)
	})
	if d := driverRow(e.status(t, "e2ehl")); d.SlurmState != "RUNNING" || d.Ray != cluster.MembershipJoined {
		t.Errorf("driver after the warning: %s/%s, want it still training", d.SlurmState, d.Ray)
	}
}

// TestE2EHeadLossMargins: no false alarms. A head whose supervisor alone
// stalls for 30 s (its heartbeat stops, as under an NFS stall, while its GCS
// answers), and a head frozen whole for a little less than the threshold
// (headSilentAfter + the GCS probe's bound, 7 s), keep their worker.
func TestE2EHeadLossMargins(t *testing.T) {
	// Alone, not e2eShare: its margins are seconds, which a busy host could eat.
	e := needE2E(t)
	e.mustSray(t, "up", "--name", "e2em", "--gpus-per-node", "1", "--time", "30:00", "--setup", e.setup, "--object-store-mb", "80", "--wait", "--timeout", "3m")
	dir := cluster.Dir{Path: filepath.Join(e.home, "clusters", "e2em")}
	var stopped []int
	t.Cleanup(func() {
		for _, p := range stopped {
			syscall.Kill(p, syscall.SIGCONT)
		}
		e.sray(t, "down", "--cluster", "e2em")
	})
	worker := strings.TrimSpace(e.mustSray(t, "grow", "--cluster", "e2em", "--wait", "--timeout", "2m").stdout)
	headSupervisor := headSupervisorOf(t, dir)
	stillJoined := func(what string) {
		t.Helper()
		rec, _, err := dir.Node(worker)
		if err != nil || rec.Phase != cluster.PhaseRunning || !slurmJobActive(worker) {
			t.Fatalf("%s: worker %s left (record %+v, %v)", what, worker, rec, err)
		}
	}

	stopped = []int{headSupervisor}
	syscall.Kill(headSupervisor, syscall.SIGSTOP)
	time.Sleep(30 * time.Second) // the stall itself, not a wait for an outcome
	resumed := time.Now()
	syscall.Kill(headSupervisor, syscall.SIGCONT)
	stopped = nil
	stillJoined("the head's heartbeat stalled 30 s while its GCS answered")
	// The two margins are separate cases: the freeze starts from a fresh
	// heartbeat, not from the stall's stale one.
	waitFor(t, "the head's heartbeat after the stall", 10*time.Second, func() bool {
		m, err := dir.Membership()
		return err == nil && m.Heartbeat.After(resumed)
	})

	stopped = append([]int{headSupervisor}, proctree.Descendants(headSupervisor)...)
	for _, p := range stopped {
		syscall.Kill(p, syscall.SIGSTOP)
	}
	time.Sleep(4 * time.Second) // the threshold (7 s) minus 3 s
	for _, p := range stopped {
		syscall.Kill(p, syscall.SIGCONT)
	}
	stopped = nil
	time.Sleep(3 * time.Second) // a tick and a probe after the freeze
	stillJoined("the head frozen for 4 s")
	waitFor(t, "the worker joined again in the head's snapshot", 30*time.Second, func() bool {
		for _, j := range e.status(t, "e2em").Jobs {
			if j.JobID == worker {
				return j.Ray == cluster.MembershipJoined
			}
		}
		return false
	})
}

// headSupervisorOf is the pid of the cluster's head supervisor.
func headSupervisorOf(t *testing.T, dir cluster.Dir) int {
	t.Helper()
	for _, p := range supervisors(dir.Path) {
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p)); strings.Contains(string(b), "\x00node\x00head\x00") {
			return p
		}
	}
	t.Fatal("no head supervisor found")
	return 0
}
