//go:build e2e

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

// TestE2EWorkerTypes starts an autoscaled cluster from a cluster file (with
// user and site defaults), grows it by a CPU-only type and checks what
// SLURM and Ray made of the type: the job's partition and GRES, the node's
// ray.io/node-group label and the type's resources and labels, and
// status's line per type. Then demand for the CPU type's custom resource
// (a request_resources floor) starts one more CPU-type job, and no GPU-type
// job; so do CPU tasks, which the GPU head's CPUs no longer absorb; a shape no type holds, and a task whose label selector no type
// satisfies, are reported infeasible, nothing submitted.
func TestE2EWorkerTypes(t *testing.T) {
	e2eShare(t, 1) // the head's GPU; the cpu type holds none
	e := needE2E(t)
	start := time.Now()
	file, xdg := typesFiles(t, &e)
	// The test user's login environment has no XDG_CONFIG_HOME of ours
	// (userEnv drops it): up gets it through env(1), and no other test
	// sees these defaults.
	up := func(args ...string) string {
		t.Helper()
		cmd := e.command(context.Background(), "env", append([]string{"XDG_CONFIG_HOME=" + xdg, e.bin, "up", "-f", file}, args...)...)
		out, err := cmd.Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				t.Fatalf("up -f %s %v: %v\n%s", file, args, err, ee.Stderr)
			}
			t.Fatal(err)
		}
		return string(out)
	}
	dry := up("--dry-run")
	for _, want := range []string{"site " + filepath.Join(filepath.Dir(file), "site.yaml") + ":1", "user " + filepath.Join(xdg, "sraybatch", "config.yaml") + ":1", "--type cpu"} {
		if !strings.Contains(dry, want) {
			t.Errorf("dry run lacks %q", want)
		}
	}
	up("--wait", "--timeout", "3m")
	t.Cleanup(func() { e.sray(t, "down", "--cluster", "e2etypes") })
	c := typesCluster(t, e, "e2etypes", map[string]string{"floor.py": floorPy, "selector.py": selectorPy, "cputasks.py": cpuTasksPy})

	keys := strings.Fields(e.mustSray(t, "grow", "--cluster", "e2etypes", "--type", "cpu", "--wait", "--timeout", "3m").stdout)
	if len(keys) != 1 {
		t.Fatalf("grow printed %v, want one job", keys)
	}
	checkCPUTypeNode(t, e, keys[0])
	st := e.status(t, "e2etypes")
	if len(st.Types) != 2 || st.Types[0].Name != "gpu" || st.Types[1].Name != "cpu" || st.Types[1].Joined != 1 || st.Types[1].Max != 3 || st.Types[0].Joined != 0 {
		t.Errorf("status types = %+v", st.Types)
	}
	if j, ok := jobByID(st, keys[0]); !ok || j.Type != "cpu" {
		t.Errorf("status row of %s: %+v", keys[0], j)
	}

	// Two decode:2 bundles: the grown node holds one, so one more CPU-type job.
	before := len(c.workerSubs(t))
	c.floor(t, `[{"decode": 2}, {"decode": 2}]`)
	sub := c.newWorkerSub(t, "a cpu-type job for the decode floor", before, time.Minute)
	if sub.Type != "cpu" || !sub.Autoscaled || sub.Tasks != 0 {
		t.Errorf("autoscaled submission = %+v, want one cpu-type job", sub)
	}
	waitFor(t, "the autoscaled cpu worker joins", 2*time.Minute, func() bool {
		j, ok := jobByID(c.quietStatus(t), sub.JobID)
		return ok && j.Ray == cluster.MembershipJoined
	})
	checkCPUTypeNode(t, e, sub.JobID)
	cpuTrap(t, e, c)

	c.floor(t, `[{"GPU": 4}]`) // no type has 4 GPUs
	c.infeasible(t, "the 4-GPU floor", "GPU:4", "no worker type holds it")
	c.noSbatchFor(t, "an infeasible floor", 5*time.Second)

	// A task whose label selector names a node group no type has: Ray
	// sends the selector with the demand, so it is infeasible (a CPU:1
	// task without it would fit the head or the cpu type).
	sel := c.startPy(t, "selector.py", "h100")
	sel.line(t, "SUBMITTED", time.Minute)
	c.infeasible(t, "the h100-selector task", "CPU:1", "ray.io/node-group in (h100)")
	c.noSbatchFor(t, "a task selecting no type", 3*time.Second)
	sel.stop(t)
	for _, s := range c.workerSubs(t) {
		if s.Type != "cpu" {
			t.Errorf("a %q job was submitted (%+v): only CPU-type demand was made", s.Type, s)
		}
	}
	e.mustSray(t, "down", "--cluster", "e2etypes")
	t.Logf("MEASURED worker types e2e: %.1f s", time.Since(start).Seconds())
}

// typesFiles writes the test's cluster file and user and site defaults,
// points the test's environment at the site's and returns the file and the
// XDG_CONFIG_HOME of the user's.
func typesFiles(t *testing.T, e *e2eEnv) (file, xdg string) {
	t.Helper()
	files := e.userDir(t, "cfg")
	write := func(name, content string) string { return writeFile(t, files, name, content) }
	write("site.yaml", "object_store_mb: 80\nhead: {partition: debug}\n")
	write(filepath.Join("xdg", "sraybatch", "config.yaml"), "head: {time: \"15:00\"}\n")
	file = write("types.yaml", fmt.Sprintf(`name: e2etypes
head: {gpus: 1, cpus: 2}
setup: %q
autoscale: {enabled: true, upscale_delay: 1s, interval: 1s}
workers:
  gpu: {gpus: 1, max: 1}
  cpu: {partition: cpu, gpus: 0, cpus: 1, max: 3, resources: {decode: 2}, labels: {disk: nvme}}
`, e.setup))
	e.user.give(t, files)
	e.env = append(e.env, "SRAYBATCH_SITE_CONFIG="+filepath.Join(files, "site.yaml"))
	return file, filepath.Join(files, "xdg")
}

// writeFile writes content to name under dir, making its directories, and
// returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// typesCluster is the autoscale tests' handle on the running cluster
// name, with its drivers (file name to source) written out for the test user.
func typesCluster(t *testing.T, e e2eEnv, name string, drivers map[string]string) *asCluster {
	t.Helper()
	c := &asCluster{e: e, name: name, dir: cluster.Dir{Path: filepath.Join(e.home, "clusters", name)}, scripts: e.userDir(t, "scripts-"+name)}
	h, ok, err := c.dir.Head()
	if err != nil || !ok {
		t.Fatalf("no head.json after up --wait: %v", err)
	}
	c.headIP, c.head = strings.Split(h.Address, ":")[0], h.Job
	for name, py := range drivers {
		if err := os.WriteFile(filepath.Join(c.scripts, name), []byte(py), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e.user.give(t, c.scripts)
	return c
}

// infeasible waits for the autoscaler to report shape infeasible, with a
// reason that says why.
func (c *asCluster) infeasible(t *testing.T, what, shape, why string) {
	t.Helper()
	waitFor(t, what+" reported infeasible", 30*time.Second, func() bool {
		for _, x := range c.autoscaler(t).Infeasible {
			if x.Shape == shape && strings.Contains(x.Why, why) {
				return true
			}
		}
		return false
	})
}

// cpuTrap checks the CPU trap is closed: the GPU head, given 2 CPUs by
// SLURM, advertises one (one per GPU, beside a CPU type), so of 4 one-CPU
// tasks on a cluster with 3 free CPUs (the head's and the two CPU-type
// nodes') one waits: Ray shows it as demand, and a CPU-type job is
// submitted for it.
func cpuTrap(t *testing.T, e e2eEnv, c *asCluster) {
	t.Helper()
	h, _, err := c.dir.Head()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range e.rayNodes(t, "e2etypes") {
		if n.Job == h.Job && n.Resources["CPU"] != 1 {
			t.Errorf("the GPU head advertises %v CPUs, want 1 (one per GPU; SLURM gave 2)", n.Resources["CPU"])
		}
	}
	before := len(c.workerSubs(t))
	tasks := c.startPy(t, "cputasks.py", "4")
	tasks.line(t, "SUBMITTED", time.Minute)
	waitFor(t, "the waiting CPU task seen as demand", 30*time.Second, func() bool {
		return c.autoscaler(t).Demand["CPU:1"] > 0
	})
	if sub := c.newWorkerSub(t, "a cpu-type job for the CPU tasks", before, time.Minute); sub.Type != "cpu" || !sub.Autoscaled {
		t.Errorf("submission for CPU tasks = %+v, want an autoscaled cpu-type job", sub)
	}
	tasks.stop(t)
}

// squeueOf is squeue's line for a job, in format.
func squeueOf(t *testing.T, job, format string) string {
	t.Helper()
	out, err := exec.Command("squeue", "-h", "-j", job, "-o", format).Output()
	if err != nil {
		t.Fatalf("squeue -j %s: %v", job, err)
	}
	return strings.TrimSpace(string(out))
}

// cpuTasksPy keeps argv[1] one-CPU tasks running or waiting until its
// stdin closes.
const cpuTasksPy = `import os, sys, time
import ray
ray.init(_node_ip_address=os.environ["E2E_DRIVER_IP"], log_to_driver=False)

@ray.remote(num_cpus=1)
def hold():
    time.sleep(600)

refs = [hold.remote() for _ in range(int(sys.argv[1]))]
print("SUBMITTED", flush=True)
sys.stdin.read()
for r in refs:
    ray.cancel(r, force=True)
`

// selectorPy submits a one-CPU task that only a node of group argv[1]
// may run, and keeps it waiting until its stdin closes.
const selectorPy = `import os, sys
import ray
ray.init(_node_ip_address=os.environ["E2E_DRIVER_IP"], log_to_driver=False)

@ray.remote(num_cpus=1, label_selector={"ray.io/node-group": sys.argv[1]})
def where():
    return ray.get_runtime_context().get_node_id()

ref = where.remote()
print("SUBMITTED", flush=True)
sys.stdin.read()
ray.cancel(ref, force=True)
`

// checkCPUTypeNode checks a cpu-type job in SLURM (partition cpu, node4
// without GRES, no GPU asked) and its node in Ray (the node group, the type's resource and label,
// no GPU).
func checkCPUTypeNode(t *testing.T, e e2eEnv, job string) {
	t.Helper()
	if got := squeueOf(t, job, "%P|%b"); got != "cpu|N/A" {
		t.Errorf("cpu job %s's partition|gres = %q, want cpu|N/A (the CPU-only partition, no GPU held)", job, got)
	}
	var node *rayNodeReport
	for _, n := range e.rayNodes(t, "e2etypes") {
		if n.Job == job {
			node = &n
		}
	}
	if node == nil {
		t.Fatalf("job %s has no Ray node", job)
	}
	if node.Labels["ray.io/node-group"] != "cpu" || node.Labels["disk"] != "nvme" {
		t.Errorf("node labels of %s = %v, want ray.io/node-group=cpu and disk=nvme", job, node.Labels)
	}
	if node.Resources["decode"] != 2 || node.Resources["GPU"] != 0 {
		t.Errorf("node resources of %s = %v, want decode=2 and no GPU", job, node.Resources)
	}
}
