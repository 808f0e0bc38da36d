//go:build e2e

package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/proctree"
)

// testImages are scripts/container-image's images: Ray 2.60 in /opt/venv
// as a directory and as SquashFS, and the same Debian without ray.
type testImages struct{ dir, sqfs, noRay string }

// imageMark is the file at the test image's root: a process whose
// /proc/PID/root holds it runs in the image (the host has none).
const imageMark = "IMAGE"

// setupMark is exported by the tests' --setup, which runs on the host
// before the container: nothing of its environment may go in.
const setupMark = "SRB_FROM_SETUP"

// hostSetup fails when it runs inside the image (which has /IMAGE).
var hostSetup = "test ! -e /" + imageMark + "; export " + setupMark + "=1 LD_LIBRARY_PATH=/host-only"

// needImages builds the test images, or finds them cached (milliseconds).
func needImages(t *testing.T) testImages {
	t.Helper()
	if _, err := exec.LookPath("ch-run"); err != nil {
		skipOutsideCI(t, "container test needs Charliecloud's ch-run (scripts/install-deps)")
	}
	vars := map[string]string{}
	var out []byte
	if os.Getenv("SRAYBATCH_TEST_IMAGE") != "" { // given: no build
		for _, k := range []string{"SRAYBATCH_TEST_IMAGE", "SRAYBATCH_TEST_IMAGE_SQFS", "SRAYBATCH_TEST_IMAGE_NORAY"} {
			out = append(out, k+"="+os.Getenv(k)+"\n"...)
		}
	} else {
		var err error
		if out, err = exec.Command("../../scripts/container-image", "--env").Output(); err != nil {
			skipOutsideCI(t, "scripts/container-image --env: %v", err)
		}
	}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "="); ok {
			vars[k] = v
		}
	}
	im := testImages{dir: vars["SRAYBATCH_TEST_IMAGE"], sqfs: vars["SRAYBATCH_TEST_IMAGE_SQFS"], noRay: vars["SRAYBATCH_TEST_IMAGE_NORAY"]}
	if im.dir == "" || im.sqfs == "" || im.noRay == "" {
		t.Fatalf("scripts/container-image --env named no images: %s", out)
	}
	if _, err := os.Stat("/" + imageMark); err == nil {
		t.Fatalf("the host has /%s: it cannot tell the image's root from the host's", imageMark)
	}
	if _, err := os.Stat("/opt/venv/bin/ray"); err == nil {
		t.Fatal("the host has /opt/venv/bin/ray: --ray must name a path only the image has")
	}
	return im
}

// withoutRay drops every PATH directory that holds a ray, so nothing on the
// host can start Ray: whatever runs must come from the image.
func withoutRay(t *testing.T, e e2eEnv) e2eEnv {
	t.Helper()
	env := make([]string, 0, len(e.env))
	for _, kv := range e.env {
		if p, ok := strings.CutPrefix(kv, "PATH="); ok {
			var keep []string
			for _, d := range filepath.SplitList(p) {
				if _, err := os.Stat(filepath.Join(d, "ray")); err != nil {
					keep = append(keep, d)
				}
			}
			kv = "PATH=" + strings.Join(keep, ":")
		}
		env = append(env, kv)
	}
	e.env = env
	if out, err := e.command(t.Context(), "sh", "-c", "command -v ray python3 && python3 -c 'import ray'").CombinedOutput(); err == nil {
		t.Fatalf("the host still has Ray on PATH: %s", out)
	}
	return e
}

func allProcs() []int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var out []int
	for _, d := range dirs {
		if p, err := strconv.Atoi(filepath.Base(d)); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// inImage reports whether pid runs in the test image: its root holds the
// image's mark. CH_RUNNING is checked where the environment is still the
// process's own: Ray's Python processes that retitle themselves ("ray::…",
// "ray-dashboard-…") overwrite it with their titles. The mark is read as the
// test user: a SquashFS image is a FUSE mount, closed to every other user,
// root included.
func inImage(t *testing.T, e e2eEnv, pid int, cmd string) (bool, string) {
	proc := "/proc/" + strconv.Itoa(pid)
	mark, err := e.command(t.Context(), "cat", filepath.Join(proc, "root", imageMark)).Output()
	if err != nil || !strings.HasPrefix(string(mark), "sraybatch test image") {
		return false, "its root is not the image"
	}
	env, _ := os.ReadFile(filepath.Join(proc, "environ"))
	if strings.HasPrefix(cmd, "/") && !bytes.Contains(env, []byte("CH_RUNNING=")) {
		return false, "no CH_RUNNING in its environment"
	}
	if bytes.Contains(env, []byte(setupMark+"=")) {
		return false, "--setup's environment leaked into the image"
	}
	return true, ""
}

// checkAllInImage checks every process below the cluster's supervisors
// (but ch-run itself, a SquashFS image's FUSE server on the host) runs in
// the image, and returns how many it checked.
func checkAllInImage(t *testing.T, e e2eEnv, clusterDir string) int {
	t.Helper()
	n := 0
	for _, sup := range supervisors(clusterDir) {
		for _, p := range proctree.Descendants(sup) { // the supervisor itself stays on the host
			cmd := cmdline(p)
			if cmd == "" || isChRun(cmd) {
				continue
			}
			if ok, why := inImage(t, e, p, cmd); !ok {
				if st, ok := proctree.ReadProcStat(p); ok && st.Live() { // not one that ended meanwhile
					t.Errorf("process %d (%.100s) of the cluster does not run in the image: %s", p, cmd, why)
				}
				continue
			}
			n++
		}
	}
	return n
}

// isChRun reports whether a command line runs ch-run (by whatever path:
// the local backend's tests find it through a PATH of links).
func isChRun(cmd string) bool {
	argv0, _, _ := strings.Cut(cmd, " ")
	return filepath.Base(argv0) == "ch-run"
}

func upContainer(t *testing.T, e e2eEnv, name, image string, extra ...string) cluster.Dir {
	t.Helper()
	// /opt/venv/bin/ray exists only inside the image.
	args := append([]string{"up", "--name", name, "--gpus-per-node", "1", "--time", "10:00", "--object-store-mb", "80",
		"--container", image, "--ray", "/opt/venv/bin/ray", "--setup", hostSetup, "--wait", "--timeout", "3m"}, extra...)
	r := e.mustSray(t, args...)
	if !strings.Contains(r.stderr, "ray 2.60.0, Python ") {
		t.Errorf("up did not say what the image holds: %s", r.stderr)
	}
	t.Cleanup(func() { e.sray(t, "down", "--cluster", name) })
	return cluster.Dir{Path: filepath.Join(e.home, "clusters", name)}
}

// TestE2EContainer: a cluster whose every Ray process runs from a
// Charliecloud directory image, on a host with no Ray on PATH: up, grow,
// the built-in training loop as the driver, status, logs --ray, down, and
// nothing of the image left running.
func TestE2EContainer(t *testing.T) {
	e2eShare(t, 2)
	im := needImages(t)
	e := withoutRay(t, needE2E(t))
	start := time.Now()
	dir := upContainer(t, e, "e2ec", im.dir)
	e.mustSray(t, "grow", "--cluster", "e2ec", "-n", "1", "--wait", "--timeout", "3m")
	driver := strings.TrimSpace(e.mustSray(t, "train", "--cluster", "e2ec", "--step-seconds", "0.25", "--steps", "40").stdout)
	waitFor(t, "the driver's first step on 2 actors", 2*time.Minute, func() bool {
		d := driverRow(e.status(t, "e2ec"))
		return d.LastStep != nil && d.Actors == 2
	})
	n := checkAllInImage(t, e, dir.Path)
	if n < 10 {
		t.Errorf("found only %d processes of the cluster to check", n)
	}
	t.Logf("%d processes of the cluster (head, worker, driver) run in the image", n)
	waitFor(t, "the driver's end", 2*time.Minute, func() bool {
		j, ok := jobByID(e.status(t, "e2ec"), driver)
		return ok && j.Ray == cluster.MembershipEnded
	})
	if d := driverRow(e.status(t, "e2ec")); d.ExitCode == nil || *d.ExitCode != 0 {
		t.Errorf("driver: %+v", d)
	}
	waitFor(t, "logs --ray of the head", 30*time.Second, func() bool {
		out, err := e.cmd(t.Context(), "logs", "--cluster", "e2ec", "--role", "head", "--ray").Output()
		return err == nil && strings.Contains(string(out), "(raylet)")
	})
	e.downLeavingNothing(t, dir, "e2ec")
	t.Logf("wall time: %s", time.Since(start).Round(time.Second))
}

// TestE2EContainerSquashFS: the same from a SquashFS image, where ch-run
// stays the FUSE server of what runs inside: after down nothing is left,
// neither the processes inside nor ch-run. And the negative control: an
// image without ray fails up with one line, before anything is submitted.
func TestE2EContainerSquashFS(t *testing.T) {
	e2eShare(t, 1)
	im := needImages(t)
	e := withoutRay(t, needE2E(t))
	start := time.Now()
	r := e.sray(t, "up", "--name", "e2ecn", "--container", im.noRay, "--ray", "/opt/venv/bin/ray")
	if r.code == 0 || !strings.Contains(r.stderr, "no working ray inside") || strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
		t.Errorf("up with an image without ray: exit %d, %s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(e.home, "clusters", "e2ecn")); err == nil {
		t.Error("up with an image without ray left a cluster behind")
	}
	dir := upContainer(t, e, "e2ecs", im.sqfs)
	if n := checkAllInImage(t, e, dir.Path); n < 5 {
		t.Errorf("found only %d processes of the cluster to check", n)
	}
	e.downLeavingNothing(t, dir, "e2ecs")
	t.Logf("wall time: %s", time.Since(start).Round(time.Second))
}

// TestE2EContainerAutoscaleRayTrain: a user's script as the driver (Ray
// Train's elastic example, with the image's Python and numpy) on an
// autoscaled containerised cluster: its demand makes the autoscaler submit
// a worker, which runs from the same image, and the trainer grows onto it.
func TestE2EContainerAutoscaleRayTrain(t *testing.T) {
	e2eShare(t, 2)
	im := needImages(t)
	e := withoutRay(t, needE2E(t))
	start := time.Now()
	dir := upContainer(t, e, "e2eca", im.dir, "--autoscale", "--max-workers", "1", "--idle-timeout", "15s",
		"--upscale-delay", "2s", "--autoscale-interval", "1s")
	script := e.userFile(t, "../../trainloop/python/examples/ray_train_elastic.py")
	driver := strings.TrimSpace(e.mustSray(t, "train", "--cluster", "e2eca", "--", "python3", script,
		"--max-workers", "2", "--epochs", "12", "--epoch-seconds", "0.5", "--resize-interval-s", "2").stdout)
	log := cluster.JobLog(filepath.Join(dir.Path, "logs"), "e2eca", cluster.RoleDriver, driver)
	waitFor(t, "the trainer at world size 2, on the autoscaler's worker", 4*time.Minute, func() bool {
		b, _ := os.ReadFile(log)
		if !slurmJobActive(driver) && !strings.Contains(string(b), "world size 2") {
			t.Fatalf("the driver ended before world size 2:\n%s", logTail(log, 20))
		}
		return strings.Contains(string(b), "world size 2")
	})
	if n := checkAllInImage(t, e, dir.Path); n < 15 {
		t.Errorf("found only %d processes of the cluster to check", n)
	}
	waitFor(t, "the trainer's end", 3*time.Minute, func() bool { return !slurmJobActive(driver) })
	if d, _ := jobByID(e.status(t, "e2eca"), driver); d.ExitCode == nil || *d.ExitCode != 0 {
		t.Errorf("trainer job %s: exit %v:\n%s", driver, d.ExitCode, logTail(log, 20))
	}
	subs, err := dir.Submissions()
	if err != nil {
		t.Fatal(err)
	}
	autoscaled := 0
	for _, s := range subs {
		if s.Autoscaled {
			autoscaled++
		}
	}
	if autoscaled == 0 {
		t.Error("the autoscaler submitted no worker for the trainer")
	}
	checkTracebacks(t, log)
	e.downLeavingNothing(t, dir, "e2eca")
	t.Logf("wall time: %s", time.Since(start).Round(time.Second))
}

// TestLocalE2EContainer: the local backend runs the same containers. A
// cluster on one host without SLURM, from the SquashFS image (ch-run stays
// its FUSE server), on a host with no Ray on PATH: the built-in loop runs,
// every process of the cluster runs in the image, and down leaves none.
func TestLocalE2EContainer(t *testing.T) {
	e2eShare(t, 0)
	im := needImages(t)
	e := withoutRay(t, needLocalE2E(t))
	start := time.Now()
	up := e.mustSray(t, "up", "--name", "locc", "--gpus-per-node", "0", "--object-store-mb", "80",
		"--container", im.sqfs, "--ray", "/opt/venv/bin/ray", "--setup", hostSetup, "--wait", "--timeout", "3m")
	t.Cleanup(func() { e.sray(t, "down", "--cluster", "locc") })
	if !strings.Contains(up.stderr, "using the local backend") {
		t.Errorf("up did not say it chose the local backend: %s", up.stderr)
	}
	dir := cluster.Dir{Path: filepath.Join(e.home, "clusters", "locc")}
	train := e.mustSray(t, "train", "--cluster", "locc", "--steps", "3", "--gpus-per-actor", "0", "--follow")
	if !strings.Contains(train.stdout, "step 3:") {
		t.Errorf("the demo driver's output lacks its last step:\n%s", train.stdout)
	}
	if n := checkAllInImage(t, e, dir.Path); n < 5 {
		t.Errorf("found only %d processes of the local cluster to check", n)
	}
	e.downLeavingNothing(t, dir, "locc")
	t.Logf("wall time: %s", time.Since(start).Round(time.Second))
}
