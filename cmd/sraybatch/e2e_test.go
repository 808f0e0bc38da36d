//go:build e2e

package main

// End-to-end tests against the real SLURM started by scripts/dev-slurm and the
// real Ray installed by scripts/setup-ray. They build only with -tags e2e (as
// scripts/test runs them), so a plain `go test ./...` is the unit tests alone;
// built in, they skip outside CI when either system is missing, and fail when
// CI=true.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/proctree"
	"github.com/sraybatch/sraybatch/internal/testci"
)

// e2eEnv is what the end-to-end tests need from the machine.
type e2eEnv struct {
	bin   string   // the sraybatch binary under test
	home  string   // SRAYBATCH_HOME
	venv  string   // the Ray venv
	setup string   // --setup for every cluster
	env   []string // the CLI's environment
	// user runs the CLI, its jobs and drivers: an unprivileged test user
	// when the tests run as root (e2e_testuser_test.go), else nil (this user).
	user *testUser
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// devGPUs is what the dev SLURM has: scripts/dev-slurm's 3 nodes × 2 fake GPUs.
const devGPUs = 6

var (
	// gpuTokens are the dev SLURM's GPUs not lent to a sharing test.
	gpuTokens = func() chan struct{} {
		c := make(chan struct{}, devGPUs)
		for range devGPUs {
			c <- struct{}{}
		}
		return c
	}()
	// gpuTake lets one test take its GPUs at a time, so two tests never
	// each hold part of what they need and wait on each other.
	gpuTake sync.Mutex
)

// e2eShare runs t side by side with the other sharing tests: most of an
// end-to-end test is waiting on SLURM and Ray, not CPU. A test that needs the
// dev SLURM to itself — it holds GPUs to make jobs pend, drains a partition,
// takes a node or the controller down, places jobs on one node, or checks a
// margin of a few seconds — does not call it, and so runs first, alone (Go
// runs parallel tests after the sequential ones). t borrows gpus of the dev
// SLURM's GPUs until its clusters are down (call e2eShare before needE2E, so
// its cleanup runs after theirs): no sharing test's job pends for another's.
// -parallel (GOMAXPROCS by default) caps how many share at once.
func e2eShare(t *testing.T, gpus int) {
	t.Helper()
	t.Parallel()
	gpuTake.Lock()
	for range gpus {
		<-gpuTokens
	}
	gpuTake.Unlock()
	t.Cleanup(func() {
		for range gpus {
			gpuTokens <- struct{}{}
		}
	})
}

// skipOutsideCI skips an end-to-end test, except under CI=true, where the
// same reason fails it: CI must never pass by skipping.
func skipOutsideCI(t *testing.T, format string, args ...any) {
	t.Helper()
	testci.SkipOutsideCI(t, format, args...)
}

// needE2E skips (or, with CI=true, fails) unless a real SLURM and Ray are here.
func needE2E(t *testing.T) e2eEnv {
	t.Helper()
	if testing.Short() {
		skipOutsideCI(t, "end-to-end test: skipped with -short")
	}
	missing := func(what string) {
		skipOutsideCI(t, "end-to-end test needs %s (run scripts/dev-slurm up; eval \"$(scripts/dev-slurm env)\"; scripts/setup-ray)", what)
	}
	if os.Getenv("SLURM_CONF") == "" {
		missing("SLURM_CONF is unset")
	}
	if out, err := exec.Command("scontrol", "ping").CombinedOutput(); err != nil || !strings.Contains(string(out), "UP") {
		missing("no SLURM controller answers `scontrol ping`")
	}
	return newE2EEnv(t, "sraybatch-e2e-home-", missing)
}

// needE2EAs is needE2E for a given test user (the second user of a node).
func needE2EAs(t *testing.T, name string) e2eEnv {
	t.Helper()
	needE2E(t)
	u, err := lookupTestUser(name)
	if os.Geteuid() != 0 {
		skipOutsideCI(t, "acting as the test user %s needs root", name)
	}
	if err != nil {
		skipOutsideCI(t, "%v", err)
	}
	return newE2EEnvFor(t, "sraybatch-e2e-"+name+"-", u, func(what string) { skipOutsideCI(t, "%s", what) })
}

// newE2EEnv finds the Ray venv (calling missing when there is none), builds
// the binary once, and makes a fresh SRAYBATCH_HOME, kept when the test fails.
func newE2EEnv(t *testing.T, homePrefix string, missing func(what string)) e2eEnv {
	t.Helper()
	return newE2EEnvFor(t, homePrefix, e2eUser(missing), missing)
}

func newE2EEnvFor(t *testing.T, homePrefix string, u *testUser, missing func(what string)) e2eEnv {
	t.Helper()
	venv := os.Getenv("SRAYBATCH_VENV")
	if venv == "" {
		venv, _ = filepath.Abs("../../.venv")
	}
	if _, err := os.Stat(filepath.Join(venv, "bin", "ray")); err != nil {
		missing("no Ray venv at " + venv)
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sraybatch-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "sraybatch")
		out, err := exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		buildErr = os.Chmod(dir, 0o755) // every test user runs it
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	u.checkReach(t, venv, builtBin)
	home, err := os.MkdirTemp("", homePrefix)
	if err != nil {
		t.Fatal(err)
	}
	u.give(t, home)
	t.Cleanup(func() {
		if t.Failed() {
			dumpLogs(t, home)
			return // kept for a post-mortem
		}
		os.RemoveAll(home)
	})
	return e2eEnv{bin: builtBin, home: home, venv: venv, setup: "source " + filepath.Join(venv, "bin", "activate"),
		env: append(os.Environ(), "SRAYBATCH_HOME="+home), user: u}
}

// cmd is the sraybatch binary with args, run by the test user in the test's
// environment.
func (e e2eEnv) cmd(ctx context.Context, args ...string) *exec.Cmd {
	return e.command(ctx, e.bin, args...)
}

type result struct {
	stdout, stderr string
	code           int
}

// sray runs the sraybatch binary.
func (e e2eEnv) sray(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := e.cmd(ctx, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errOut.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("sraybatch %v: %v", args, err)
	}
	t.Logf("$ sraybatch %s  -> exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r
}

func (e e2eEnv) mustSray(t *testing.T, args ...string) result {
	t.Helper()
	r := e.sray(t, args...)
	if r.code != 0 {
		t.Fatalf("sraybatch %v failed (exit %d): %s", args, r.code, r.stderr)
	}
	return r
}

func (e e2eEnv) status(t *testing.T, name string) cluster.Status {
	t.Helper()
	r := e.mustSray(t, "status", "--cluster", name, "--output", "json")
	var st cluster.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status json: %v\n%s", err, r.stdout)
	}
	return st
}

// waitFor polls cond every 250 ms (each poll may run a CLI command) and
// returns how long it took to hold.
func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) time.Duration {
	t.Helper()
	return testci.Eventually(t, what, limit, 250*time.Millisecond, cond)
}

func jobByID(st cluster.Status, id string) (cluster.JobStatus, bool) {
	for _, j := range st.Jobs {
		if j.JobID == id {
			return j, true
		}
	}
	return cluster.JobStatus{}, false
}

// slurmJobActive reports whether any of the jobs ids is still active in
// SLURM (one squeue for all of them).
func slurmJobActive(ids ...string) bool {
	if len(ids) == 0 {
		return false
	}
	out, err := exec.Command("squeue", "-h", "-r", "--states=all", "-j", strings.Join(ids, ","), "-o", "%T").Output()
	if err != nil {
		return false
	}
	for _, s := range strings.Fields(string(out)) {
		switch s {
		case "PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED":
			return true
		}
	}
	return false
}

// holdGPUs occupies GPUs with a plain job so tests can make others pend.
func holdGPUs(t *testing.T, gpus int, node string) string {
	t.Helper()
	args := []string{"--parsable", "--job-name=e2e-holder", "--gres=gpu:" + strconv.Itoa(gpus), "--wrap", "sleep 600", "-o", "/dev/null"}
	if node != "" {
		args = append(args, "-w", node)
	}
	out, err := exec.Command("sbatch", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("sbatch holder: %v: %s", err, out)
	}
	id := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("scancel", id).Run() })
	waitFor(t, "holder job "+id+" running", 60*time.Second, func() bool {
		o, _ := exec.Command("squeue", "-h", "-j", id, "-o", "%T").Output()
		return strings.TrimSpace(string(o)) == "RUNNING"
	})
	return id
}

// supervisors returns the pids of the cluster's `sraybatch node` processes.
func supervisors(clusterDir string) []int {
	var pids []int
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) > 2 && args[1] == "node" && strings.Contains(string(b), "\x00--cluster-dir\x00"+clusterDir+"\x00") {
			pid, _ := strconv.Atoi(filepath.Base(d))
			pids = append(pids, pid)
		}
	}
	return pids
}

// clusterProcesses lists every live process of a cluster: its supervisors and
// everything below them.
func clusterProcesses(clusterDir string) []int {
	var all []int
	for _, p := range supervisors(clusterDir) {
		all = append(all, p)
		all = append(all, proctree.Descendants(p)...)
	}
	return all
}

var ssLine = regexp.MustCompile(`^\S+\s+\d+\s+\d+\s+(\S+):(\d+)\s+\S+\s+(.*)$`)
var ssPid = regexp.MustCompile(`pid=(\d+)`)

// listeningPorts maps each TCP port some process in pids listens on.
func listeningPorts(t *testing.T, pids []int) []int {
	t.Helper()
	want := map[int]bool{}
	for _, p := range pids {
		want[p] = true
	}
	out, err := exec.Command("ss", "-ltnpH").Output()
	if err != nil {
		t.Fatalf("ss: %v", err)
	}
	var ports []int
	for _, line := range strings.Split(string(out), "\n") {
		m := ssLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		for _, pm := range ssPid.FindAllStringSubmatch(m[3], -1) {
			pid, _ := strconv.Atoi(pm[1])
			if want[pid] {
				port, _ := strconv.Atoi(m[2])
				ports = append(ports, port)
				break
			}
		}
	}
	return ports
}

func tempDirsOf(st cluster.Status, dir string) []string {
	var dirs []string
	for _, j := range st.Jobs {
		b, err := os.ReadFile(filepath.Join(dir, "nodes", j.JobID+".json"))
		if err != nil {
			continue
		}
		var rec cluster.NodeRecord
		if json.Unmarshal(b, &rec) == nil && rec.TempDir != "" {
			dirs = append(dirs, rec.TempDir)
		}
	}
	return dirs
}

type rayNodeReport struct {
	Job                string  `json:"job"`
	IP                 string  `json:"ip"`
	NodeIP             string  `json:"node_ip"`
	GPUs               float64 `json:"gpus"`
	CUDAVisibleDevices string  `json:"cuda_visible_devices"`
	// Resources are the node's totals in the GCS; Labels what a task on
	// it reads from its raylet.
	Resources map[string]float64 `json:"resources"`
	Labels    map[string]string  `json:"labels"`
}

// rayNodes asks the cluster itself, through Ray, where its nodes are.
func (e e2eEnv) rayNodes(t *testing.T, name string) []rayNodeReport {
	t.Helper()
	envOut := e.mustSray(t, "env", "--cluster", name).stdout
	st := e.status(t, name)
	headIP := strings.Split(st.Cluster.HeadAddress, ":")[0]
	script := e.userFile(t, "testdata/ray_nodes.py")
	e.env = append(e.env, "E2E_DRIVER_IP="+headIP)
	out, err := e.command(context.Background(), "bash", "-c", envOut+"\nexec \"$0\" \"$1\"", filepath.Join(e.venv, "bin", "python"), script).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("ray_nodes.py: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	var nodes []rayNodeReport
	if err := json.Unmarshal(out, &nodes); err != nil {
		t.Fatalf("ray_nodes.py output: %v\n%s", err, out)
	}
	return nodes
}

func slurmNodeAddr(t *testing.T, node string) string {
	out, err := exec.Command("scontrol", "show", "node", "-o", node).Output()
	if err != nil {
		t.Fatalf("scontrol show node %s: %v", node, err)
	}
	m := regexp.MustCompile(`NodeAddr=(\S+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no NodeAddr for %s", node)
	}
	return string(m[1])
}

// dumpLogs prints the tail of every job log of a failed test.
func dumpLogs(t *testing.T, home string) {
	logs, _ := filepath.Glob(filepath.Join(home, "clusters", "*", "logs", "*.out"))
	for _, l := range logs {
		t.Logf("--- tail of %s:\n%s", l, logTail(l, 30))
	}
}
