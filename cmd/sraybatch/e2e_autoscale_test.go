//go:build e2e

package main

// End-to-end tests of the head job's autoscaler on the real SLURM and Ray:
// demand from request_resources, pending tasks and Ray Train's elastic
// trainer becomes worker jobs; idle workers leave through Ray's drain; limits,
// infeasible shapes, a drained partition, a short partition MaxTime, the
// upscale delay, live setting changes and a cancelled head all behave.
//
// Three clusters, one after the other (the partition changes of the first
// would disturb the others): asb (--max-workers 2) for the cap and the
// partition cases, asa (--max-workers 3) for request_resources, drains, the
// environment, infeasible demand, the upscale delay, live changes and the
// head's end, and asc for Ray Train (whose coordinator actor outlives the
// trainer and keeps rewriting request_resources). Drivers other than Ray
// Train's run on the test's host, connected like `sraybatch env` says.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

const (
	asIdle     = 15 * time.Second // --idle-timeout of every cluster here
	asInterval = time.Second      // --autoscale-interval
	// asDrainSlack is what a drain takes beyond the autoscaler's decision:
	// Ray drains the raylet, the supervisor exits, SLURM ends the job.
	asDrainSlack = 8 * time.Second
)

// asCluster is one autoscaling cluster of a test.
type asCluster struct {
	e       e2eEnv
	name    string
	dir     cluster.Dir
	head    string // the head's job id
	headIP  string
	scripts string // the Python drivers below, written out
	// idle is the workers' idle timeout; 0: asIdle, every untyped cluster's.
	idle time.Duration
}

// upAutoscaled starts a head-only autoscaling cluster and takes it down in
// t.Cleanup.
func upAutoscaled(t *testing.T, e e2eEnv, name string, maxWorkers int) *asCluster {
	t.Helper()
	args := []string{"up", "--name", name, "--gpus-per-node", "1", "--time", "20:00", "--setup", e.setup,
		"--object-store-mb", "100", "--autoscale", "--max-workers", strconv.Itoa(maxWorkers),
		"--idle-timeout", asIdle.String(), "--upscale-delay", "2s", "--autoscale-interval", asInterval.String(),
		"--wait", "--timeout", "3m"}
	start := time.Now()
	e.mustSray(t, args...)
	t.Cleanup(func() { e.sray(t, "down", "--cluster", name) })
	t.Logf("MEASURED up --autoscale --wait of %s: %.1f s", name, time.Since(start).Seconds())
	c := &asCluster{e: e, name: name, dir: cluster.Dir{Path: filepath.Join(e.home, "clusters", name)}, scripts: e.userDir(t, "scripts-"+name)}
	subs, err := c.dir.Submissions()
	if err != nil {
		t.Fatal(err)
	}
	var ok bool
	if c.head, ok = cluster.HeadJobID(subs); !ok {
		t.Fatalf("cluster %s: no head submission", name)
	}
	h, ok, err := c.dir.Head()
	if err != nil || !ok {
		t.Fatalf("cluster %s: no head.json after up --wait: %v", name, err)
	}
	c.headIP = strings.Split(h.Address, ":")[0]
	for file, src := range map[string]string{"floor.py": floorPy, "holder.py": holderPy, "tasks.py": tasksPy} {
		if err := os.WriteFile(filepath.Join(c.scripts, file), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e.user.give(t, c.scripts)
	waitFor(t, name+": first autoscaler poll", 30*time.Second, func() bool {
		_, ok, _ := c.dir.Autoscaler()
		return ok
	})
	return c
}

// floorPy sets request_resources(bundles=argv[1]); with argv[2], holds it
// that many seconds and clears it. The floor stands in Ray's GCS after the
// driver exits, until a later call replaces it.
const floorPy = `import json, os, sys, time
import ray
from ray.autoscaler.sdk import request_resources
ray.init(_node_ip_address=os.environ["E2E_DRIVER_IP"], log_to_driver=False)
request_resources(bundles=json.loads(sys.argv[1]))
print("SET", time.time(), flush=True)
if len(sys.argv) > 2:
    time.sleep(float(sys.argv[2]))
    request_resources(bundles=[])
    print("CLEARED", time.time(), flush=True)
`

// holderPy keeps a one-GPU actor on the node of job argv[1] until its stdin closes.
const holderPy = `import os, sys
import ray
ray.init(_node_ip_address=os.environ["E2E_DRIVER_IP"], log_to_driver=False)

@ray.remote
class Holder:
    def node(self):
        return ray.get_runtime_context().get_node_id()

h = Holder.options(num_gpus=1, num_cpus=0, resources={"sraybatch_job_" + sys.argv[1]: 0.01}).remote()
print("READY", ray.get(h.node.remote(), timeout=120), flush=True)
sys.stdin.read()
`

// tasksPy blocks the GPU of the head (job argv[1]) with an actor, then runs
// argv[2] one-GPU tasks of argv[3] seconds each and prints where they ran.
const tasksPy = `import json, os, sys, time
import ray
ray.init(_node_ip_address=os.environ["E2E_DRIVER_IP"], log_to_driver=False)

@ray.remote
class Blocker:
    def ready(self):
        return True

blocker = Blocker.options(num_gpus=1, num_cpus=0, resources={"sraybatch_job_" + sys.argv[1]: 0.01}).remote()
ray.get(blocker.ready.remote(), timeout=120)

@ray.remote(num_gpus=1)
def work(i, secs):
    time.sleep(secs)
    return {"i": i, "node": ray.get_runtime_context().get_node_id()}

print("SUBMITTING", flush=True)
out = ray.get([work.remote(i, float(sys.argv[3])) for i in range(int(sys.argv[2]))], timeout=300)
print(json.dumps(out), flush=True)
`

// pyCmd is a Python driver on the test's host connected to the cluster.
func (c *asCluster) pyCmd(t *testing.T, script string, args ...string) *exec.Cmd {
	t.Helper()
	envOut := c.e.mustSray(t, "env", "--cluster", c.name).stdout
	e := c.e
	e.env = append(e.env, "E2E_DRIVER_IP="+c.headIP)
	return e.command(context.Background(), "bash", append([]string{"-c", envOut + "\nexec \"$@\"", "driver",
		filepath.Join(c.e.venv, "bin", "python"), filepath.Join(c.scripts, script)}, args...)...)
}

// py runs a driver to its end and returns its stdout.
func (c *asCluster) py(t *testing.T, script string, args ...string) string {
	t.Helper()
	cmd := c.pyCmd(t, script, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s %v: %v\n%s\n%s", script, args, err, out.String(), errOut.String())
		}
	case <-time.After(5 * time.Minute):
		cmd.Process.Kill()
		t.Fatalf("%s %v: still running after 5 minutes\n%s", script, args, errOut.String())
	}
	return out.String()
}

// floor sets the cluster's request_resources floor.
func (c *asCluster) floor(t *testing.T, bundles string) {
	t.Helper()
	c.py(t, "floor.py", bundles)
}

// pyProc is a driver running in the background.
type pyProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	done  chan struct{}
	err   error
	errs  bytes.Buffer
}

func (c *asCluster) startPy(t *testing.T, script string, args ...string) *pyProc {
	t.Helper()
	p := &pyProc{cmd: c.pyCmd(t, script, args...), lines: make(chan string, 100), done: make(chan struct{})}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = &p.errs
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// line waits for the driver's next line starting with prefix.
func (p *pyProc) line(t *testing.T, prefix string, limit time.Duration) string {
	t.Helper()
	deadline := time.After(limit)
	for {
		select {
		case l := <-p.lines:
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-p.done:
			select {
			case l := <-p.lines:
				if strings.HasPrefix(l, prefix) {
					return l
				}
				continue
			default:
			}
			t.Fatalf("driver ended (%v) before printing %q:\n%s", p.err, prefix, p.errs.String())
		case <-deadline:
			t.Fatalf("driver printed no %q within %s:\n%s", prefix, limit, p.errs.String())
		}
	}
}

// stop closes the driver's stdin and waits for it to exit.
func (p *pyProc) stop(t *testing.T) {
	t.Helper()
	p.stdin.Close()
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("driver did not exit within 60 s of its stdin closing:\n%s", p.errs.String())
	}
}

// quietStatus is status -o json without logging every poll.
func (c *asCluster) quietStatus(t *testing.T) cluster.Status {
	t.Helper()
	cmd := c.e.cmd(context.Background(), "status", "--cluster", c.name, "--output", "json")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	var st cluster.Status
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("status json: %v\n%s", err, out)
	}
	return st
}

// autoscaleLineOf is the autoscale line of `status -o table`.
func (c *asCluster) autoscaleLineOf(t *testing.T) string {
	t.Helper()
	out := c.e.mustSray(t, "status", "--cluster", c.name, "--output", "table").stdout
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "autoscale") {
			return l
		}
	}
	t.Fatalf("status table has no autoscale line:\n%s", out)
	return ""
}

// rayNode is the Ray node id of a job, as status has it.
func (c *asCluster) rayNode(t *testing.T, key string) string {
	t.Helper()
	j, ok := jobByID(c.quietStatus(t), key)
	if !ok || j.RayNodeID == "" {
		t.Fatalf("job %s has no Ray node in status", key)
	}
	return j.RayNodeID
}

// autoscaler reads what the head's autoscaler last wrote.
func (c *asCluster) autoscaler(t *testing.T) cluster.AutoscalerStatus {
	t.Helper()
	a, ok, err := c.dir.Autoscaler()
	if err != nil || !ok {
		t.Fatalf("autoscaler.json: ok %v, %v", ok, err)
	}
	return a
}

type asEvent struct {
	TS        float64  `json:"ts"`
	Event     string   `json:"event"`
	Submitted []string `json:"submitted"`
	Cancelled []string `json:"cancelled"`
	Drained   []string `json:"drained"`
	Reason    string   `json:"reason"`
}

func (ev asEvent) at() time.Time { return time.Unix(0, int64(ev.TS*1e9)) }

// events reads the autoscaler's decisions at or after since.
func (c *asCluster) events(t *testing.T, since time.Time) []asEvent {
	t.Helper()
	b, err := os.ReadFile(c.dir.AutoscalerEventsPath())
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []asEvent
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(l) == "" {
			continue
		}
		var ev asEvent
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("autoscaler event %q: %v", l, err)
		}
		if ev.Event != "autoscaler_decision" {
			t.Errorf("autoscaler event %q: event %q, want autoscaler_decision", l, ev.Event)
		}
		if !ev.at().Before(since) {
			out = append(out, ev)
		}
	}
	return out
}

// workerSubs lists the cluster's worker submissions.
func (c *asCluster) workerSubs(t *testing.T) []cluster.Submission {
	t.Helper()
	subs, err := c.dir.Submissions()
	if err != nil {
		t.Fatal(err)
	}
	var out []cluster.Submission
	for _, s := range subs {
		if s.Role == cluster.RoleWorker {
			out = append(out, s)
		}
	}
	return out
}

// workerScripts counts the rendered worker scripts: one per sbatch call
// made or attempted.
func (c *asCluster) workerScripts(t *testing.T) int {
	t.Helper()
	m, err := filepath.Glob(c.dir.ScriptPath("worker-*.sbatch"))
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}

// noSbatchFor fails the test if a worker sbatch is made or attempted (a
// submission recorded, or a worker script rendered) within d.
func (c *asCluster) noSbatchFor(t *testing.T, what string, d time.Duration) {
	t.Helper()
	subs, scripts := len(c.workerSubs(t)), c.workerScripts(t)
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if n, m := len(c.workerSubs(t)), c.workerScripts(t); n != subs || m != scripts {
			t.Fatalf("%s: a worker sbatch was made (%d→%d submissions, %d→%d scripts); autoscaler: %+v",
				what, subs, n, scripts, m, c.autoscaler(t))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// newWorkerSub waits for the one worker submission made after before.
func (c *asCluster) newWorkerSub(t *testing.T, what string, before int, limit time.Duration) cluster.Submission {
	t.Helper()
	waitFor(t, what, limit, func() bool { return len(c.workerSubs(t)) > before })
	subs := c.workerSubs(t)
	return subs[len(subs)-1]
}

// joinedGPUs sums the GPUs of the cluster's jobs joined in Ray.
func joinedGPUs(st cluster.Status) int {
	n := 0
	for _, j := range st.Jobs {
		if j.Ray == cluster.MembershipJoined && j.SlurmState == "RUNNING" {
			n += j.GPUs
		}
	}
	return n
}

// activeWorkers lists the worker jobs SLURM still has pending or running.
func activeWorkers(st cluster.Status) []string {
	var out []string
	for _, j := range st.Jobs {
		if j.Role == cluster.RoleWorker && slurmJobActive(j.JobID) {
			out = append(out, j.JobID)
		}
	}
	return out
}

// checkDrained: the workers' jobs COMPLETED, and status says drained_idle.
func (c *asCluster) checkDrained(t *testing.T, keys ...string) {
	t.Helper()
	st := c.e.status(t, c.name)
	for _, k := range keys {
		if s := slurmState(k); s != "COMPLETED" {
			t.Errorf("drained worker %s ended %q in SLURM, want COMPLETED", k, s)
		}
		j, ok := jobByID(st, k)
		if !ok || j.Outcome != cluster.OutcomeDrainedIdle || j.SlurmState != "COMPLETED" || j.Ray != cluster.MembershipEnded {
			t.Errorf("drained worker %s in status: %s/%s outcome %q, want COMPLETED/ended drained_idle", k, j.SlurmState, j.Ray, j.Outcome)
		}
	}
}

// drainDecidedWithin: the autoscaler decided to drain each worker (its
// drain event, whose reason says idle) within the idle timeout plus two
// polls of since, when the worker became idle (2 s more: a poll takes time
// of its own, and Ray reports idleness with a lag).
func (c *asCluster) drainDecidedWithin(t *testing.T, what string, since time.Time, keys ...string) {
	t.Helper()
	idle := c.idle
	if idle == 0 {
		idle = asIdle
	}
	at, why := map[string]time.Time{}, map[string]string{}
	for _, ev := range c.events(t, since) {
		for _, k := range ev.Drained {
			if _, ok := at[k]; !ok {
				at[k], why[k] = ev.at(), ev.Reason
			}
		}
	}
	for _, k := range keys {
		d, ok := at[k]
		if !ok {
			t.Errorf("no drain event names worker %s", k)
			continue
		}
		if !strings.Contains(why[k], "idle") {
			t.Errorf("the decision that drained worker %s says %q, not idle", k, why[k])
		}
		took := d.Sub(since)
		t.Logf("MEASURED %s until the autoscaler drained worker %s: %.1f s (%s)", what, k, took.Seconds(), why[k])
		if took > idle+2*asInterval+2*time.Second {
			t.Errorf("worker %s drained %s after %s: over the idle timeout %s plus two polls", k, took.Round(100*time.Millisecond), what, idle)
		}
	}
}

// partitionName is the default partition (the clusters here give none).
func partitionName(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("sinfo", "-h", "-o", "%P").Output()
	if err != nil {
		t.Fatalf("sinfo: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasSuffix(p, "*") {
			return strings.TrimSuffix(p, "*")
		}
	}
	t.Fatalf("no default partition in %q", out)
	return ""
}

// setPartition sets a partition field and restores its value in t.Cleanup
// (the returned func restores it now).
func setPartition(t *testing.T, part, field, value string) func() {
	t.Helper()
	out, err := exec.Command("scontrol", "show", "partition", "-o", part).Output()
	if err != nil {
		t.Fatalf("scontrol show partition: %v", err)
	}
	m := regexp.MustCompile(`\b` + field + `=(\S+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("partition %s has no %s: %s", part, field, out)
	}
	orig := string(m[1])
	scontrol := func(v string) error {
		out, err := exec.Command("scontrol", "update", "PartitionName="+part, field+"="+v).CombinedOutput()
		if err != nil {
			return fmt.Errorf("scontrol update %s=%s: %v %s", field, v, err, out)
		}
		return nil
	}
	restored := false
	restore := func() {
		if !restored {
			if err := scontrol(orig); err != nil {
				t.Errorf("restore partition %s: %v", part, err)
			}
			restored = true
		}
	}
	t.Cleanup(restore)
	if err := scontrol(value); err != nil {
		t.Fatal(err)
	}
	t.Logf("partition %s: %s=%s (was %s)", part, field, value, orig)
	return restore
}

// TestE2EAutoscaleCapAndPartition: --max-workers caps pending tasks' demand;
// idle workers are drained; a partition MaxTime below the worker's time caps
// the worker's --time; a drained partition makes the autoscaler back off.
func TestE2EAutoscaleCapAndPartition(t *testing.T) {
	// Alone, not e2eShare: it changes the partition's MaxTime and State.
	e := needE2E(t)
	c := upAutoscaled(t, e, "asb", 2)
	part := partitionName(t)

	var capWorkers []string
	t.Run("six pending one-GPU tasks get exactly --max-workers 2 workers, capped", func(t *testing.T) {
		since := time.Now()
		p := c.startPy(t, "tasks.py", c.head, "6", "3")
		p.line(t, "SUBMITTING", 2*time.Minute)
		sawCapped := ""
		var result string
		for result == "" {
			select {
			case l := <-p.lines:
				if strings.HasPrefix(l, "[") {
					result = l
				}
			case <-p.done:
				for len(p.lines) > 0 {
					if l := <-p.lines; strings.HasPrefix(l, "[") {
						result = l
					}
				}
				if result == "" {
					t.Fatalf("tasks driver ended without a result (%v):\n%s", p.err, p.errs.String())
				}
			case <-time.After(250 * time.Millisecond):
				if a, ok, _ := c.dir.Autoscaler(); ok && sawCapped == "" && strings.Contains(a.Reason, "capped") {
					sawCapped = a.Reason
				}
				if time.Since(since) > 4*time.Minute {
					t.Fatalf("6 tasks not done within 4 minutes:\n%s", p.errs.String())
				}
			}
		}
		t.Logf("MEASURED 6 one-GPU tasks of 3 s on a --max-workers 2 cluster: %.1f s", time.Since(since).Seconds())
		var ran []struct {
			I    int    `json:"i"`
			Node string `json:"node"`
		}
		if err := json.Unmarshal([]byte(result), &ran); err != nil || len(ran) != 6 {
			t.Fatalf("tasks result %q: %v, want 6 results", result, err)
		}
		st := c.e.status(t, c.name)
		headJob, _ := jobByID(st, c.head)
		nodes := map[string]bool{}
		for _, r := range ran {
			if r.Node == headJob.RayNodeID {
				t.Errorf("task %d ran on the head, whose GPU the blocker holds", r.I)
			}
			nodes[r.Node] = true
		}
		if len(nodes) != 2 {
			t.Errorf("the tasks ran on %d nodes, want the 2 workers", len(nodes))
		}
		subs := c.workerSubs(t)
		for _, s := range subs {
			capWorkers = append(capWorkers, s.JobKeys()...)
			if !s.Autoscaled {
				t.Errorf("worker submission %s not marked autoscaled", s.JobID)
			}
		}
		if len(subs) != 1 || len(capWorkers) != 2 {
			t.Errorf("want one sbatch of 2 workers, got %d submissions, workers %v", len(subs), capWorkers)
		}
		var reasons []string
		for _, ev := range c.events(t, since) {
			reasons = append(reasons, ev.Reason)
			if sawCapped == "" && strings.Contains(ev.Reason, "capped") {
				sawCapped = ev.Reason
			}
		}
		if sawCapped == "" || !strings.Contains(sawCapped, "--max-workers 2") {
			t.Errorf("the autoscaler never said it was capped at --max-workers 2: reasons %q", reasons)
		}
		t.Logf("capped reason: %s", sawCapped)
	})
	if len(capWorkers) != 2 {
		t.FailNow()
	}

	t.Run("after the work the idle workers are drained and COMPLETED", func(t *testing.T) {
		// The tasks driver has exited: its blocker and tasks are gone.
		idleSince := time.Now()
		waitFor(t, "idle workers after the tasks until their jobs ended", asIdle+2*asInterval+asDrainSlack, func() bool {
			return !slurmJobActive(capWorkers[0]) && !slurmJobActive(capWorkers[1])
		})
		c.checkDrained(t, capWorkers...)
		c.drainDecidedWithin(t, "tasks done", idleSince, capWorkers...)
		if act := activeWorkers(c.quietStatus(t)); len(act) != 0 {
			t.Errorf("workers %v still active: not back at --min-workers 0", act)
		}
		gone := time.Now()
		waitFor(t, "workers gone until the autoscaler counts none pending", 3*asInterval+2*time.Second, func() bool {
			a := c.autoscaler(t)
			return a.Updated.After(gone) && a.PendingWorkers == 0 && len(a.Demand) == 0
		})
	})

	t.Run("a partition MaxTime under the worker's time caps its --time, and it starts", func(t *testing.T) {
		// The head runs with --time 20:00, submitted before the partition's MaxTime drops to 10 minutes.
		restore := setPartition(t, part, "MaxTime", "10")
		before := len(c.workerSubs(t))
		c.floor(t, `[{"GPU": 1}, {"GPU": 1}]`)
		sub := c.newWorkerSub(t, "floor of 2 GPUs under MaxTime=10 until a worker submission", before, 30*time.Second)
		b, err := os.ReadFile(sub.Script)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "#SBATCH --time=0-00:10:00\n") {
			t.Errorf("worker script %s does not cap --time at the partition's 10 minutes:\n%s", sub.Script, b)
		}
		key := sub.JobKeys()[0]
		waitFor(t, "capped worker until RUNNING and joined", 60*time.Second, func() bool {
			j, _ := jobByID(c.quietStatus(t), key)
			return j.SlurmState == "RUNNING" && j.Ray == cluster.MembershipJoined
		})
		out, _ := exec.Command("squeue", "-h", "-j", key, "-o", "%l").Output()
		if got := strings.TrimSpace(string(out)); got != "10:00" {
			t.Errorf("worker %s time limit in SLURM: %q, want 10:00", key, got)
		}
		restore()
	})

	t.Run("a drained partition: backoff with SLURM's words, a bounded number of sbatch calls", func(t *testing.T) {
		restore := setPartition(t, part, "State", "DRAIN")
		since := time.Now()
		c.floor(t, `[{"GPU": 1}, {"GPU": 1}, {"GPU": 1}]`) // one more worker than there is
		refused := func() []asEvent {
			var out []asEvent
			for _, ev := range c.events(t, since) {
				if strings.HasPrefix(ev.Reason, "sbatch refused") {
					out = append(out, ev)
				}
				if len(ev.Submitted) > 0 {
					t.Fatalf("a worker was submitted to a drained partition: %+v", ev)
				}
			}
			return out
		}
		waitFor(t, "demand on a drained partition until the first refused sbatch", 30*time.Second, func() bool { return len(refused()) > 0 })
		first := refused()[0].at()
		line := c.autoscaleLineOf(t)
		const slurmWords = "Required partition not available"
		if !strings.Contains(line, "backing off") || !strings.Contains(line, slurmWords) || strings.Contains(line, "\n") {
			t.Errorf("status autoscale line %q: want one line saying it backs off, with SLURM's %q", line, slurmWords)
		}
		if a := c.autoscaler(t); a.BackoffUntil == nil {
			t.Errorf("autoscaler.json has no backoff_until while backing off: %+v", a)
		}
		// Backoff 5 s, 10 s, 20 s, 40 s: refusals at about 0, 5, 15 and 35 s.
		window := 32 * time.Second
		time.Sleep(time.Until(first.Add(window)))
		restore()
		var at []time.Time
		for _, ev := range refused() {
			if ev.at().Before(first.Add(window)) {
				at = append(at, ev.at())
			}
		}
		var gaps []string
		for i := 1; i < len(at); i++ {
			gaps = append(gaps, at[i].Sub(at[i-1]).Round(100*time.Millisecond).String())
		}
		t.Logf("MEASURED sbatch attempts on a drained partition in %s: %d, gaps %v", window, len(at), gaps)
		if len(at) != 3 {
			t.Errorf("%d sbatch refusals in %s (gaps %v), want 3 (backoff 5 s, 10 s, 20 s)", len(at), window, gaps)
		}
		for i := 1; i < len(at); i++ {
			gap, want := at[i].Sub(at[i-1]), backoffAfter(i)
			if gap < want-500*time.Millisecond || gap > want+3*time.Second {
				t.Errorf("refusal %d came %s after the previous one, want about %s", i+1, gap, want)
			}
		}
	})
}

// backoffAfter is the autoscaler's wait after the i-th refused sbatch.
func backoffAfter(i int) time.Duration { return 5 * time.Second << (i - 1) }

// TestE2EAutoscaleLifecycle walks one autoscaling cluster through infeasible
// demand, the upscale delay, request_resources, a worker's environment,
// idle drains, Ray Train's elastic trainer, live setting changes and its
// head's end.
func TestE2EAutoscaleLifecycle(t *testing.T) {
	// Alone, not e2eShare: it holds every free GPU.
	e := needE2E(t)
	c := upAutoscaled(t, e, "asa", 3)

	t.Run("infeasible shapes submit nothing and are shown", func(t *testing.T) {
		c.floor(t, `[{"GPU": 3}, {"GPU": 1, "my_thing": 1}]`)
		want := map[string]string{"GPU:3": "needs 3 GPUs", "GPU:1 my_thing:1": `needs resource "my_thing"`}
		waitFor(t, "infeasible floors until the autoscaler shows them", 15*time.Second, func() bool {
			return len(c.autoscaler(t).Infeasible) == 2
		})
		// Past the upscale delay and two more polls: still nothing.
		c.noSbatchFor(t, "infeasible demand", 2*time.Second+3*asInterval)
		st := c.e.status(t, c.name)
		if st.Autoscaler == nil {
			t.Fatal("status JSON has no autoscaler")
		}
		got := map[string]string{}
		for _, x := range st.Autoscaler.Infeasible {
			got[x.Shape] = x.Why
		}
		line := c.autoscaleLineOf(t)
		for shape, why := range want {
			if !strings.Contains(got[shape], why) {
				t.Errorf("status JSON infeasible %q: %q, want %q (all: %+v)", shape, got[shape], why, st.Autoscaler.Infeasible)
			}
			if !strings.Contains(line, "infeasible {"+shape+"}: "+why) {
				t.Errorf("status autoscale line lacks infeasible {%s}: %s", shape, line)
			}
		}
		c.floor(t, `[]`)
		waitFor(t, "cleared floor until the autoscaler sees no demand", 10*time.Second, func() bool {
			a := c.autoscaler(t)
			return len(a.Demand) == 0 && len(a.Infeasible) == 0
		})
	})

	t.Run("demand shorter than --upscale-delay submits nothing", func(t *testing.T) {
		c.e.mustSray(t, "autoscale", "--cluster", c.name, "--upscale-delay", "10s")
		p := c.startPy(t, "floor.py", `[{"GPU": 1}, {"GPU": 1}, {"GPU": 1}]`, "6")
		p.line(t, "SET", time.Minute)
		set := time.Now()
		subs, scripts := len(c.workerSubs(t)), c.workerScripts(t)
		sawDelay := false
		for time.Since(set) < 13*time.Second { // past when a 10 s delay would have ripened
			if a := c.autoscaler(t); strings.Contains(a.Reason, "waits out the upscale delay (10s)") {
				sawDelay = true
			}
			if len(c.workerSubs(t)) != subs || c.workerScripts(t) != scripts {
				t.Fatalf("6 s of demand with a 10 s upscale delay made an sbatch: %+v", c.autoscaler(t))
			}
			time.Sleep(250 * time.Millisecond)
		}
		p.line(t, "CLEARED", 10*time.Second)
		if !sawDelay {
			t.Errorf("the autoscaler never said the demand waits out the upscale delay")
		}
		c.e.mustSray(t, "autoscale", "--cluster", c.name, "--upscale-delay", "2s")
	})

	var workers []string
	var joined time.Time
	t.Run("request_resources of 3 GPUs: one sbatch of 2 workers, 3 GPUs, status says why", func(t *testing.T) {
		before := len(c.workerSubs(t))
		since := time.Now()
		c.floor(t, `[{"GPU": 1}, {"GPU": 1}, {"GPU": 1}]`)
		sub := c.newWorkerSub(t, "request_resources of 3 GPUs until a worker submission", before, 20*time.Second)
		workers = sub.JobKeys()
		if sub.Tasks != 2 || !sub.Autoscaled {
			t.Errorf("worker submission %+v: want an autoscaled array of 2", sub)
		}
		waitFor(t, "request_resources of 3 GPUs until 3 GPUs joined", 90*time.Second, func() bool {
			return joinedGPUs(c.quietStatus(t)) == 3
		})
		joined = time.Now()
		if n := len(c.workerSubs(t)); n != before+1 {
			t.Errorf("%d worker submissions, want exactly one more than %d", n, before)
		}
		var submitted []asEvent
		for _, ev := range c.events(t, since) {
			if len(ev.Submitted) > 0 {
				submitted = append(submitted, ev)
			}
		}
		if len(submitted) != 1 || len(submitted[0].Submitted) != 2 || !strings.Contains(submitted[0].Reason, "request_resources") {
			t.Errorf("submit events %+v: want one naming request_resources with 2 keys", submitted)
		}
		st := c.e.status(t, c.name)
		if a := st.Autoscaler; a == nil || a.LastDecision == nil || !strings.Contains(a.LastDecision.Why, "request_resources") ||
			len(a.LastDecision.Submitted) != 2 || a.Demand["GPU:1"] != 3 {
			t.Errorf("status JSON autoscaler %+v: want demand 3×GPU:1 and the last decision naming request_resources", a)
		}
		if line := c.autoscaleLineOf(t); !strings.Contains(line, "+2 workers") || !strings.Contains(line, "request_resources") {
			t.Errorf("status autoscale line %q: want +2 workers for request_resources", line)
		}
	})
	if len(workers) != 2 {
		t.FailNow()
	}

	t.Run("an autoscaled worker's environment is a grown worker's", func(t *testing.T) {
		grown := strings.TrimSpace(c.e.mustSray(t, "grow", "--cluster", c.name, "-n", "1").stdout)
		var auto, grew, head map[string]string
		waitFor(t, "grow -n 1 until its supervisor runs", 60*time.Second, func() bool {
			envs := supervisorEnvs(t, c.dir.Path)
			auto, grew, head = envs[workers[0]], envs[grown], envs[c.head]
			return auto != nil && grew != nil && head != nil
		})
		exec.Command("scancel", grown).Run() // it would only blur what the floor keeps
		compareWorkerEnvs(t, auto, grew, head)
	})

	t.Run("a standing request_resources keeps its idle workers", func(t *testing.T) {
		// Past the idle timeout and two polls since they joined: both stay.
		until := joined.Add(asIdle + 2*asInterval + 2*time.Second)
		for time.Now().Before(until) {
			for _, w := range workers {
				if s := slurmState(w); s != "RUNNING" {
					t.Fatalf("worker %s is %s while the floor of 3 GPUs stands", w, s)
				}
			}
			time.Sleep(250 * time.Millisecond)
		}
		for _, ev := range c.events(t, joined) {
			if len(ev.Drained) > 0 {
				t.Errorf("drained under a standing floor: %+v", ev)
			}
		}
		if n := joinedGPUs(c.quietStatus(t)); n != 3 {
			t.Errorf("%d GPUs joined under the floor, want 3", n)
		}
	})

	t.Run("idle workers drain; a worker with a live actor stays until it is gone", func(t *testing.T) {
		busy, idle := workers[0], workers[1]
		holder := c.startPy(t, "holder.py", busy)
		if node := strings.TrimPrefix(holder.line(t, "READY", 2*time.Minute), "READY "); node != c.rayNode(t, busy) {
			t.Fatalf("the actor runs on Ray node %s, not on worker %s's", node, busy)
		}
		lifted := time.Now()
		c.floor(t, `[]`)
		keepUntil := lifted.Add(asIdle + 2*asInterval + 2*time.Second)
		idleGone := time.Duration(0)
		for time.Now().Before(keepUntil) || idleGone == 0 {
			if s := slurmState(busy); s != "RUNNING" {
				t.Fatalf("worker %s with a live actor is %s %.1f s after the floor was lifted", busy, s, time.Since(lifted).Seconds())
			}
			if idleGone == 0 && !slurmJobActive(idle) {
				idleGone = time.Since(lifted)
			}
			if idleGone == 0 && time.Since(lifted) > asIdle+2*asInterval+asDrainSlack {
				t.Fatalf("idle worker %s not gone %s after the floor was lifted", idle, time.Since(lifted))
			}
			time.Sleep(250 * time.Millisecond)
		}
		t.Logf("MEASURED floor lifted until the idle worker's job ended: %.1f s", idleGone.Seconds())
		holder.stop(t)
		freed := time.Now()
		waitFor(t, "actor gone until its worker's job ended", asIdle+2*asInterval+asDrainSlack, func() bool { return !slurmJobActive(busy) })
		if d := time.Since(freed); d < asIdle-time.Second {
			t.Errorf("worker %s was drained %s after its actor ended: before --idle-timeout %s", busy, d, asIdle)
		}
		c.checkDrained(t, busy, idle)
		c.drainDecidedWithin(t, "floor lifted", lifted, idle)
		c.drainDecidedWithin(t, "actor ended", freed, busy)
		st := c.quietStatus(t)
		if act := activeWorkers(st); len(act) != 0 {
			t.Errorf("workers %v still active: not back at --min-workers 0", act)
		}
		if n := joinedGPUs(st); n != 1 {
			t.Errorf("%d GPUs joined after the drains, want the head's 1", n)
		}
	})

	var pending []string
	t.Run("autoscale --max-workers 1 and --off take effect within a poll; pending jobs over the cap are cancelled", func(t *testing.T) {
		holdFreeGPUs(t)
		before := len(c.workerSubs(t))
		c.floor(t, `[{"GPU": 1}, {"GPU": 1}, {"GPU": 1}, {"GPU": 1}]`)
		sub := c.newWorkerSub(t, "floor of 4 GPUs on a full SLURM until a worker submission", before, 20*time.Second)
		pending = sub.JobKeys()
		if len(pending) != 3 {
			t.Fatalf("floor of 4 GPUs submitted %v, want 3 workers", pending)
		}
		waitFor(t, "3 workers on a full SLURM until all PENDING", 20*time.Second, func() bool {
			for _, k := range pending {
				if slurmState(k) != "PENDING" {
					return false
				}
			}
			return true
		})

		changed := time.Now()
		c.e.mustSray(t, "autoscale", "--cluster", c.name, "--max-workers", "1")
		if st := c.e.status(t, c.name); st.Autoscaler == nil || st.Autoscaler.MaxWorkers != 1 {
			t.Errorf("status JSON after autoscale --max-workers 1: %+v", st.Autoscaler)
		}
		took := waitFor(t, "autoscale --max-workers 1 until the head's autoscaler has it", asInterval+3*time.Second, func() bool {
			a := c.autoscaler(t)
			return a.MaxWorkers == 1 && a.Updated.After(changed)
		})
		t.Logf("MEASURED autoscale --max-workers 1 until the head polled with it: %.1f s", took.Seconds())
		// squeue forgets array tasks cancelled while pending at once.
		var left []string
		waitFor(t, "autoscale --max-workers 1 until 2 of 3 pending workers are cancelled", asInterval+3*time.Second, func() bool {
			left = nil
			cancelled := 0
			for _, k := range pending {
				switch slurmState(k) {
				case "CANCELLED", "":
					cancelled++
				case "PENDING":
					left = append(left, k)
				}
			}
			return cancelled == 2 && len(left) == 1
		})
		var cancelEv []string
		for _, ev := range c.events(t, changed) {
			cancelEv = append(cancelEv, ev.Cancelled...)
		}
		if len(cancelEv) != 2 || hasString(cancelEv, left[0]) {
			t.Errorf("cancel events name %v, want the 2 pending workers other than %s", cancelEv, left[0])
		}

		changed = time.Now()
		c.e.mustSray(t, "autoscale", "--cluster", c.name, "--off")
		if st := c.e.status(t, c.name); st.Autoscaler == nil || st.Autoscaler.Enabled {
			t.Errorf("status JSON after autoscale --off: %+v", st.Autoscaler)
		}
		took = waitFor(t, "autoscale --off until the head's autoscaler is off", asInterval+3*time.Second, func() bool {
			a := c.autoscaler(t)
			return !a.Enabled && a.Updated.After(changed) && a.Reason == "autoscaling is off"
		})
		t.Logf("MEASURED autoscale --off until the head polled with it: %.1f s", took.Seconds())
		if line := c.autoscaleLineOf(t); line != "autoscale off" {
			t.Errorf("status autoscale line after --off: %q", line)
		}
		// Off: the worker left pending stays; nothing is submitted.
		c.noSbatchFor(t, "autoscaling off", 3*asInterval)
		if s := slurmState(left[0]); s != "PENDING" {
			t.Errorf("worker %s is %s after autoscale --off, want it left PENDING", left[0], s)
		}
		pending = left
	})

	t.Run("after its head is cancelled, no sbatch is made", func(t *testing.T) {
		c.e.mustSray(t, "autoscale", "--cluster", c.name, "--on", "--max-workers", "3", "--upscale-delay", "6s")
		on := time.Now()
		waitFor(t, "autoscale --on until the demand waits out the upscale delay", asInterval+5*time.Second, func() bool {
			a := c.autoscaler(t)
			return a.Enabled && a.Updated.After(on) && strings.Contains(a.Reason, "waits out the upscale delay (6s)")
		})
		if err := exec.Command("scancel", c.head).Run(); err != nil {
			t.Fatal(err)
		}
		cancelled := time.Now()
		// The 6 s delay ripens in this window: a loop still running would submit.
		c.noSbatchFor(t, "head cancelled while demand waits", 10*time.Second)
		for _, ev := range c.events(t, cancelled) {
			if len(ev.Submitted) > 0 {
				t.Errorf("submitted after the head was cancelled: %+v", ev)
			}
		}
		if a := c.autoscaler(t); a.Updated.After(cancelled.Add(3 * asInterval)) {
			t.Errorf("the autoscaler still polled at %s, %s after its head was cancelled", a.Updated, a.Updated.Sub(cancelled))
		}
		out, _ := exec.Command("squeue", "-h", "-n", cluster.JobName(c.name, cluster.RoleWorker), "-o", "%i %T").Output()
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if f := strings.Fields(l); len(f) > 0 && !hasString(pending, f[0]) {
				t.Errorf("worker job %q in the queue after the head was cancelled", l)
			}
		}
	})
}

// TestE2EAutoscaleRayTrain: Ray Train's elastic trainer on a head-only
// cluster grows it by itself (its request_resources), and its workers are
// drained once it is done. A cluster of its own: the coordinator actor Ray
// Train leaves behind re-sends its (by then empty) request_resources every
// 20 s, replacing any floor another driver sets.
func TestE2EAutoscaleRayTrain(t *testing.T) {
	e2eShare(t, 4)
	e := needE2E(t)
	c := upAutoscaled(t, e, "asc", 3)

	t.Run("it starts on the head's GPU, grows to world size 3 by itself and resumes from its checkpoint", func(t *testing.T) {
		before := len(c.workerSubs(t))
		script := e.userFile(t, "../../trainloop/python/examples/ray_train_elastic.py")
		// It must end by itself: Ray Train asks for its workers through a
		// detached coordinator actor that renews the request for 180 s after
		// a cancelled trainer, and only a finished trainer withdraws it.
		const epochs = 25
		driver := strings.TrimSpace(c.e.mustSray(t, "train", "--cluster", c.name, "--", "python3", script,
			"--max-workers", "3", "--epochs", strconv.Itoa(epochs), "--resize-interval-s", "2").stdout)
		t.Cleanup(func() { exec.Command("scancel", driver).Run() })
		log := cluster.JobLog(filepath.Join(c.dir.Path, "logs"), c.name, cluster.RoleDriver, driver)
		epochLine := regexp.MustCompile(`epoch (\d+): world size (\d+)`)
		resumed := regexp.MustCompile(`'world_size': 3, 'loss': [^,]+, 'resumed_from': (\d+)`)
		infeasible := map[string]string{}
		waitFor(t, "Ray Train elastic driver until world size 3", 4*time.Minute, func() bool {
			if a, ok, _ := c.dir.Autoscaler(); ok {
				for _, x := range a.Infeasible {
					infeasible[x.Shape] = x.Why
				}
			}
			ended := !slurmJobActive(driver) // before the read: its last lines are in
			b, _ := os.ReadFile(log)
			if !resumed.Match(b) && ended {
				t.Fatalf("the driver job %s ended before world size 3:\n%s", driver, logTail(log, 20))
			}
			return resumed.Match(b)
		})
		if len(infeasible) > 0 {
			t.Logf("demand the autoscaler found infeasible while the trainer grew: %v", infeasible)
		}
		b, _ := os.ReadFile(log)
		first, firstAt3 := -1, -1
		for _, m := range epochLine.FindAllStringSubmatch(string(b), -1) {
			ep, _ := strconv.Atoi(m[1])
			if first == -1 {
				first = atoiOr(m[2], -1)
			}
			if m[2] == "3" && firstAt3 == -1 {
				firstAt3 = ep
			}
		}
		from := atoiOr(resumed.FindStringSubmatch(string(b))[1], -1)
		t.Logf("trainer: first world size %d, first epoch at world size 3: %d, resumed from %d", first, firstAt3, from)
		if first != 1 {
			t.Errorf("the trainer's first epoch ran on world size %d, want 1 (the head's GPU)", first)
		}
		if from < 1 || (firstAt3 != -1 && firstAt3 < from) {
			t.Errorf("world size 3 resumed from %d (first epoch there: %d): want it to continue from a checkpoint", from, firstAt3)
		}
		subs := c.workerSubs(t)[before:]
		keys := 0
		for _, s := range subs {
			keys += len(s.JobKeys())
			if !s.Autoscaled {
				t.Errorf("worker submission %s during training was not the autoscaler's", s.JobID)
			}
		}
		if keys != 2 {
			t.Errorf("training added %d workers, want 2", keys)
		}
		checkTracebacks(t, log)
		var why []string
		for _, ev := range c.events(t, time.Time{}) {
			if len(ev.Submitted) > 0 {
				why = append(why, ev.Reason)
			}
		}
		if len(why) != 1 || !strings.Contains(why[0], "request_resources") {
			t.Errorf("submissions while training: %q, want one, for request_resources", why)
		}
		waitFor(t, fmt.Sprintf("world size 3 until the trainer's %d epochs are done", epochs), 3*time.Minute, func() bool { return !slurmJobActive(driver) })
		ended := time.Now()
		d, _ := jobByID(c.e.status(t, c.name), driver)
		if d.ExitCode == nil || *d.ExitCode != 0 || d.Outcome != cluster.OutcomeCompleted {
			t.Errorf("trainer job %s: exit %v outcome %q, want 0 and completed", driver, d.ExitCode, d.Outcome)
		}
		if b, _ := os.ReadFile(log); !strings.Contains(string(b), fmt.Sprintf("'epoch': %d, 'world_size': 3", epochs-1)) {
			t.Errorf("the trainer's last epoch %d did not run on world size 3:\n%s", epochs-1, logTail(log, 20))
		}
		var trained []string
		for _, s := range subs {
			trained = append(trained, s.JobKeys()...)
		}
		waitFor(t, "training over until its idle workers' jobs ended", asIdle+2*asInterval+asDrainSlack, func() bool {
			for _, k := range trained {
				if slurmJobActive(k) {
					return false
				}
			}
			return true
		})
		c.checkDrained(t, trained...)
		c.drainDecidedWithin(t, "trainer done", ended, trained...)
		if act := activeWorkers(c.quietStatus(t)); len(act) != 0 {
			t.Errorf("workers %v still active after training: not back at --min-workers 0", act)
		}
	})
}

// checkTracebacks fails on any traceback in a driver log. (Ray Train's
// PlacementGroupCleaner once failed here when another cluster's head shared
// the host: Ray's processes on sraybatch nodes had no RAY_ADDRESS, so its
// ray.util.state call scanned the host and found two GCSes. Every node now
// starts Ray with its cluster's RAY_ADDRESS.)
func checkTracebacks(t *testing.T, log string) {
	t.Helper()
	b, _ := os.ReadFile(log)
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.Contains(l, "Traceback") {
			continue
		}
		t.Errorf("driver log has a traceback:\n%s", logTail(log, 40))
		return
	}
}

func atoiOr(s string, def int) int {
	if n, err := strconv.Atoi(s); err == nil {
		return n
	}
	return def
}

func hasString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// holdFreeGPUs occupies every GPU SLURM has free, so worker jobs pend.
func holdFreeGPUs(t *testing.T) {
	t.Helper()
	out, err := exec.Command("sinfo", "-N", "-h", "-O", "NodeList:40,Gres:40,GresUsed:60").Output()
	if err != nil {
		t.Fatalf("sinfo: %v", err)
	}
	gpus := regexp.MustCompile(`gpu(?::[^:\s(]+)?:(\d+)`)
	var ids []string
	seen := map[string]bool{} // a node in several partitions (scav, owner) is listed once each
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 3 || seen[f[0]] {
			continue
		}
		seen[f[0]] = true
		total, used := gpus.FindStringSubmatch(f[1]), gpus.FindStringSubmatch(f[2])
		if total == nil {
			continue
		}
		free := atoiOr(total[1], 0)
		if used != nil {
			free -= atoiOr(used[1], 0)
		}
		if free <= 0 {
			continue
		}
		o, err := exec.Command("sbatch", "--parsable", "--job-name=e2e-holder", "--gres=gpu:"+strconv.Itoa(free),
			"-w", f[0], "--wrap", "sleep 600", "-o", "/dev/null").CombinedOutput()
		if err != nil {
			t.Fatalf("sbatch holder on %s: %v: %s", f[0], err, o)
		}
		id := strings.TrimSpace(string(o))
		ids = append(ids, id)
		t.Cleanup(func() { exec.Command("scancel", id).Run() })
	}
	waitFor(t, fmt.Sprintf("holders %v of every free GPU until RUNNING", ids), 60*time.Second, func() bool {
		for _, id := range ids {
			if slurmState(id) != "RUNNING" {
				return false
			}
		}
		return true
	})
}

// supervisorEnvs maps each job key of the cluster's running supervisors to
// that process's environment, as /proc has it.
func supervisorEnvs(t *testing.T, clusterDir string) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	for _, pid := range supervisors(clusterDir) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			continue // ended meanwhile
		}
		env := map[string]string{}
		for _, kv := range strings.Split(string(b), "\x00") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				env[k] = v
			}
		}
		key := env["SLURM_JOB_ID"]
		if a := env["SLURM_ARRAY_JOB_ID"]; a != "" {
			key = a + "_" + env["SLURM_ARRAY_TASK_ID"]
		}
		if key != "" {
			out[key] = env
		}
	}
	return out
}

// compareWorkerEnvs checks an autoscaled worker's environment against a
// grown worker's of the same cluster: what the head job had must not leak in.
func compareWorkerEnvs(t *testing.T, auto, grew, head map[string]string) {
	t.Helper()
	// GPUs: the worker's own, as SLURM set them, in the grown worker's form.
	for name, env := range map[string]map[string]string{"autoscaled": auto, "grown": grew} {
		if env["CUDA_VISIBLE_DEVICES"] == "" || env["CUDA_VISIBLE_DEVICES"] != env["SLURM_JOB_GPUS"] {
			t.Errorf("%s worker: CUDA_VISIBLE_DEVICES %q, SLURM_JOB_GPUS %q: want SLURM's own", name, env["CUDA_VISIBLE_DEVICES"], env["SLURM_JOB_GPUS"])
		}
	}
	if auto["SLURMD_NODENAME"] == head["SLURMD_NODENAME"] && auto["CUDA_VISIBLE_DEVICES"] == head["CUDA_VISIBLE_DEVICES"] {
		t.Errorf("autoscaled worker on the head's node %s has the head's GPUs %q", head["SLURMD_NODENAME"], head["CUDA_VISIBLE_DEVICES"])
	}
	gpuForm := regexp.MustCompile(`^\d+(,\d+)*$`)
	if !gpuForm.MatchString(auto["CUDA_VISIBLE_DEVICES"]) || !gpuForm.MatchString(grew["CUDA_VISIBLE_DEVICES"]) {
		t.Errorf("CUDA_VISIBLE_DEVICES autoscaled %q, grown %q: not both GPU indices", auto["CUDA_VISIBLE_DEVICES"], grew["CUDA_VISIBLE_DEVICES"])
	}
	if auto["SLURM_JOB_ID"] == head["SLURM_JOB_ID"] {
		t.Errorf("autoscaled worker has the head's SLURM_JOB_ID %s", head["SLURM_JOB_ID"])
	}
	if auto["TMPDIR"] != grew["TMPDIR"] {
		t.Errorf("TMPDIR: autoscaled %q, grown %q", auto["TMPDIR"], grew["TMPDIR"])
	}
	// Ray: only what the batch script itself exports.
	batchRay := map[string]bool{"RAY_AUTH_MODE": true, "RAY_AUTH_TOKEN_PATH": true, "RAY_USAGE_STATS_ENABLED": true}
	for k, v := range auto {
		if strings.HasPrefix(k, "RAY_") && (!batchRay[k] || grew[k] != v) {
			t.Errorf("autoscaled worker has %s=%q (grown worker: %q)", k, v, grew[k])
		}
		if strings.HasPrefix(k, "SRAYBATCH_") && grew[k] != v {
			t.Errorf("autoscaled worker has %s=%q from its head (grown worker: %q)", k, v, grew[k])
		}
	}
	// Names: the same set, up to SLURM's per-job ones (an array's SLURM_ARRAY_*).
	perJob := func(k string) bool { return strings.HasPrefix(k, "SLURM_ARRAY_") }
	var onlyAuto, onlyGrown []string
	for k := range auto {
		if _, ok := grew[k]; !ok && !perJob(k) {
			onlyAuto = append(onlyAuto, k)
		}
	}
	for k := range grew {
		if _, ok := auto[k]; !ok && !perJob(k) {
			onlyGrown = append(onlyGrown, k)
		}
	}
	sort.Strings(onlyAuto)
	sort.Strings(onlyGrown)
	// The user's own variables (SRAYBATCH_HOME, RAY_* tuning) reach both: an
	// autoscaled worker starts from the environment a login shell's `grow`
	// would pass.
	if len(onlyAuto) > 0 || len(onlyGrown) > 0 {
		t.Errorf("environment names differ beyond SLURM's per-job ones: only autoscaled %v, only grown %v", onlyAuto, onlyGrown)
	}
	// Values the two jobs share: equal (but for SLURM's, the GPUs' and the
	// node's name, which SLURM sets per node).
	for k, v := range grew {
		if strings.HasPrefix(k, "SLURM") || k == "CUDA_VISIBLE_DEVICES" || k == "GPU_DEVICE_ORDINAL" || k == "HOSTNAME" {
			continue
		}
		if av, ok := auto[k]; ok && av != v {
			t.Errorf("%s: autoscaled %q, grown %q", k, av, v)
		}
	}
}
