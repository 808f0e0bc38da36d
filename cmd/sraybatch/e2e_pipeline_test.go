//go:build e2e

package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

// pipeName is TestE2ETypedPipeline's cluster.
const pipeName = "e2epipe"

// pipeIdle is the cpu type's idle timeout.
const pipeIdle = 10 * time.Second

// TestE2ETypedPipeline runs a Ray Data–style pipeline on an autoscaled
// cluster with worker types: CPU tasks make blocks, GPU actors consume them.
// The two actors fill the GPU nodes' one Ray CPU each (the head's and a
// gpu-type worker's, started for the second actor), so the CPU tasks, which
// carry no label selector, can only wait: their demand shows, a cpu-type job
// is submitted for it, and every task runs there (the CPU-trap cap, not the
// user, keeps them off the GPU nodes). Once the blocks are consumed the
// cpu-type workers are drained for idleness while the gpu-type worker stays
// busy; meanwhile a task asking for the h100 type starts one h100-type job,
// on node3's h100 GRES, and nothing else.
func TestE2ETypedPipeline(t *testing.T) {
	e2eShare(t, 3) // the head's GPU, the gpu type's and the h100 type's
	e := needE2E(t)
	start := time.Now()
	files := e.userDir(t, "cfg-"+pipeName)
	// gpu's max is 2, not 1, so that the h100 task's job is the routing's
	// choice over a cheaper type that is not full, not a spill.
	file := writeFile(t, files, "pipeline.yaml", fmt.Sprintf(`name: %s
head: {gpus: 1, cpus: 2, time: "10:00"}
setup: %q
object_store_mb: 80
autoscale: {enabled: true, upscale_delay: 1s, interval: 1s}
workers:
  gpu: {gres: "gpu:a100:1", gpus: 1, max: 2}
  h100: {gres: "gpu:h100:1", gpus: 1, max: 1, resources: {h100: 1}}
  cpu: {partition: cpu, gpus: 0, cpus: 2, max: 2, idle_timeout: %s}
`, pipeName, e.setup, pipeIdle))
	e.user.give(t, files)
	e.mustSray(t, "up", "-f", file, "--wait", "--timeout", "3m")
	t.Cleanup(func() { e.sray(t, "down", "--cluster", pipeName) })
	c := typesCluster(t, e, pipeName, map[string]string{"pipeline.py": pipelinePy, "h100.py": h100Py})
	c.idle = pipeIdle

	p := c.startPy(t, "pipeline.py", "4", "2")
	gpuJob, cpuJobs, done := c.runPipeline(t, p)
	// The h100 task's demand goes to its own type only, and the cpu type's
	// idle drain is its own: the one may start while the other waits.
	before := len(c.workerSubs(t))
	h100 := c.startPy(t, "h100.py")
	c.cpuWorkersDrained(t, gpuJob, cpuJobs, done)
	c.h100Only(t, h100, before)
	p.stop(t)

	e.downLeavingNothing(t, c.dir, pipeName)
	t.Logf("MEASURED typed pipeline e2e: %.1f s", time.Since(start).Seconds())
}

// pipeResult is what pipelinePy ran where: Ray node ids.
type pipeResult struct {
	Actors   []string  `json:"actors"`
	Tasks    []string  `json:"tasks"`
	Consumed []string  `json:"consumed"`
	Values   []float64 `json:"values"`
}

// runPipeline follows pipelinePy through its stages and checks each
// submission against the demand that caused it and each call's node. It
// returns the gpu-type job, the cpu-type jobs and when the blocks were
// released (the CPU workers' idleness starts there).
func (c *asCluster) runPipeline(t *testing.T, p *pyProc) (gpuJob string, cpuJobs []string, done time.Time) {
	t.Helper()
	gpu := c.newWorkerSub(t, "a job for the second GPU actor", 0, time.Minute)
	if gpu.Type != "gpu" || !gpu.Autoscaled || gpu.Tasks != 0 {
		t.Errorf("submission for the second GPU actor = %+v, want one autoscaled gpu-type job", gpu)
	}
	p.line(t, "ACTORS", 3*time.Minute)
	p.line(t, "SUBMITTED", time.Minute)
	// Seen, not just absent: "no GPU job for CPU work" also holds when the
	// CPU tasks hide in free GPU-node CPUs and never show as demand.
	waitFor(t, "the waiting CPU tasks seen as demand", time.Minute, func() bool {
		return c.autoscaler(t).Demand["CPU:1"] > 0
	})
	c.newWorkerSub(t, "a cpu-type job for the CPU tasks", 1, time.Minute)
	line := p.line(t, "RESULT", 3*time.Minute)
	done = time.Now()
	var r pipeResult
	if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "RESULT ")), &r); err != nil {
		t.Fatalf("pipeline result %q: %v", line, err)
	}
	for _, s := range c.workerSubs(t)[1:] {
		if s.Type != "cpu" || !s.Autoscaled {
			t.Errorf("submission during the CPU stage = %+v, want only autoscaled cpu-type jobs", s)
		}
		cpuJobs = append(cpuJobs, s.JobKeys()...)
	}
	c.checkPlacement(t, r, gpu.JobID)
	return gpu.JobID, cpuJobs, done
}

// checkPlacement checks where the pipeline ran, by the types of the jobs
// whose Ray nodes status names: every CPU task on a cpu-type node, the
// actors on the head's and the gpu-type worker's, each block consumed by an
// actor. Status, not ray_nodes.py: its probe task asks a GPU node's GPU,
// which the actors hold.
func (c *asCluster) checkPlacement(t *testing.T, r pipeResult, gpuJob string) {
	t.Helper()
	var kind map[string]string // Ray node id: "head" or the worker's type
	waitFor(t, "status names every node the pipeline ran on", 30*time.Second, func() bool {
		kind = map[string]string{}
		for _, j := range c.quietStatus(t).Jobs {
			if j.RayNodeID != "" && j.Role == cluster.RoleHead {
				kind[j.RayNodeID] = "head"
			} else if j.RayNodeID != "" {
				kind[j.RayNodeID] = j.Type
			}
		}
		for _, id := range append(append(append([]string(nil), r.Actors...), r.Tasks...), r.Consumed...) {
			if _, ok := kind[id]; !ok {
				return false
			}
		}
		return true
	})
	if len(r.Actors) != 2 || kind[r.Actors[0]] == kind[r.Actors[1]] || !gpuSide(kind[r.Actors[0]]) || !gpuSide(kind[r.Actors[1]]) {
		t.Errorf("GPU actors ran on %v (%s, %s), want one on the head and one on the gpu-type worker %s", r.Actors, kind[r.Actors[0]], kind[r.Actors[1]], gpuJob)
	}
	if len(r.Tasks) != 4 || len(r.Consumed) != 4 || len(r.Values) != 4 {
		t.Fatalf("pipeline result %+v, want 4 tasks and 4 blocks consumed", r)
	}
	for i, id := range r.Tasks {
		if kind[id] != "cpu" {
			t.Errorf("CPU task %d ran on a %q node (%s), want a cpu-type node", i, kind[id], id)
		}
		if k := kind[r.Consumed[i]]; !gpuSide(k) || r.Values[i] != float64(i) {
			t.Errorf("block %d consumed on a %q node with value %v, want a GPU actor's and %d", i, k, r.Values[i], i)
		}
	}
}

// gpuSide reports whether a node kind is one where GPU actors belong.
func gpuSide(kind string) bool { return kind == "head" || kind == "gpu" }

// cpuWorkersDrained waits for the cpu-type jobs to end while the gpu-type
// worker stays joined (its actor keeps working), then checks that each
// cpu-type worker that joined was drained for idleness in time, from when
// its blocks were released, and went from joined to ended in status
// (draining between, maybe), never lost.
func (c *asCluster) cpuWorkersDrained(t *testing.T, gpuJob string, cpuJobs []string, idleSince time.Time) {
	t.Helper()
	seen := map[string][]cluster.Membership{} // each cpu-type job's memberships, once joined
	// A job that joins after the blocks are released is idle from its
	// join, and not drained before its idle timeout from there.
	idleFrom := map[string]time.Time{}
	joinedBy := idleSince // the first poll's: joined before it
	waitFor(t, "the idle cpu-type workers ended", 2*time.Minute, func() bool {
		st := c.quietStatus(t)
		defer func() { joinedBy = time.Now() }()
		if j, _ := jobByID(st, gpuJob); j.Ray != cluster.MembershipJoined {
			t.Fatalf("the busy gpu-type worker %s is %q while the cpu-type ones drain, want joined", gpuJob, j.Ray)
		}
		ended := true
		for _, k := range cpuJobs {
			j, _ := jobByID(st, k)
			if m := seen[k]; (len(m) > 0 || j.RayNodeID != "") && (len(m) == 0 || m[len(m)-1] != j.Ray) {
				seen[k] = append(m, j.Ray)
			}
			if _, ok := idleFrom[k]; !ok && j.RayNodeID != "" {
				idleFrom[k] = joinedBy
			}
			ended = ended && !slurmJobActive(k)
		}
		return ended
	})
	var joined []string
	for _, k := range cpuJobs {
		if m, ok := seen[k]; ok {
			joined = append(joined, k)
			t.Logf("cpu-type job %s in status: %v", k, m)
			if slices.Contains(m, cluster.MembershipLost) {
				t.Errorf("drained cpu-type job %s showed lost in status (%v): it was asked to leave", k, m)
			}
		} else {
			t.Logf("cpu-type job %s never joined", k)
		}
	}
	if len(joined) == 0 {
		t.Fatalf("no cpu-type job joined: %v", cpuJobs)
	}
	c.checkDrained(t, joined...)
	for _, k := range joined {
		c.drainDecidedWithin(t, "blocks released (or a later join)", idleFrom[k], k)
	}
	for _, ev := range c.events(t, idleSince) {
		if hasString(ev.Drained, gpuJob) {
			t.Errorf("the busy gpu-type worker %s was drained: %+v", gpuJob, ev)
		}
	}
}

// h100Only waits for h100Py's task and checks it started exactly one job
// since before, of the h100 type, on node3's h100 GRES, and ran there.
func (c *asCluster) h100Only(t *testing.T, h *pyProc, before int) {
	t.Helper()
	node := strings.TrimPrefix(h.line(t, "NODE ", 3*time.Minute), "NODE ")
	subs := c.workerSubs(t)[before:]
	if len(subs) != 1 || subs[0].Type != "h100" || !subs[0].Autoscaled || subs[0].Tasks != 0 {
		t.Fatalf("submissions for the h100 task = %+v, want one autoscaled h100-type job", subs)
	}
	job := subs[0].JobID
	got := squeueOf(t, job, "%b|%N")
	t.Logf("h100 job %s's gres|node: %s", job, got)
	if !strings.Contains(got, "gpu:h100") || !strings.HasSuffix(got, "|node3") {
		t.Errorf("h100 job %s's gres|node = %q, want gpu:h100 on node3", job, got)
	}
	if id := c.rayNode(t, job); id != node {
		t.Errorf("the h100 task ran on Ray node %s, want h100 job %s's %s", node, job, id)
	}
}

// pipelinePy is a Ray Data–style pipeline of plain tasks and actors: two
// GPU actors (argv-independent), then argv[1] CPU tasks of argv[2] seconds,
// each making a 1 MiB block in the object store, which the actors consume
// by reference. It prints where each ran, then keeps the actors working
// until its stdin closes.
const pipelinePy = `import json, os, sys, threading, time
import numpy as np
import ray
ray.init(_node_ip_address=os.environ["E2E_DRIVER_IP"], log_to_driver=False)

def here():
    return ray.get_runtime_context().get_node_id()

# No label selector, no resource beyond a CPU: only the CPU-trap cap keeps
# these off the GPU nodes.
@ray.remote(num_cpus=1, num_returns=2)
def decode(i, secs):
    time.sleep(secs)
    return here(), np.full(1 << 17, i, dtype=np.float64)

@ray.remote(num_gpus=1, num_cpus=1)
class Train:
    def node(self):
        return here()
    def consume(self, block):
        return here(), float(block[0])
    def step(self):
        time.sleep(0.2)

actors = [Train.remote() for _ in range(2)]
print("ACTORS", json.dumps(ray.get([a.node.remote() for a in actors], timeout=240)), flush=True)
n, secs = int(sys.argv[1]), float(sys.argv[2])
out = [decode.remote(i, secs) for i in range(n)]
print("SUBMITTED", flush=True)
tasks = ray.get([o[0] for o in out], timeout=240)
consumed = ray.get([actors[i % 2].consume.remote(o[1]) for i, o in enumerate(out)], timeout=120)
# The driver owns the blocks: while it holds them, their nodes are not idle to Ray.
del out
print("RESULT", json.dumps({"actors": ray.get([a.node.remote() for a in actors]), "tasks": tasks,
      "consumed": [c[0] for c in consumed], "values": [c[1] for c in consumed]}), flush=True)
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
while not stop.is_set():
    ray.get([a.step.remote() for a in actors])
`

// h100Py runs one task on the h100 type and prints its node. It asks for
// the type's custom resource rather than selecting its node group: with a
// GPU, the bundle is one the cheaper gpu type (first listed, not full)
// would take, so only the resource can route it to h100, which is what the
// GRES guarantees (the label-selector path has its own test in
// TestE2EWorkerTypes).
const h100Py = `import os
import ray
ray.init(_node_ip_address=os.environ["E2E_DRIVER_IP"], log_to_driver=False)

@ray.remote(num_gpus=1, resources={"h100": 1})
def where():
    return ray.get_runtime_context().get_node_id()

print("NODE", ray.get(where.remote(), timeout=240), flush=True)
`
