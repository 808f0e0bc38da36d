//go:build e2e

package slurm_test

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/scheduler"
	"github.com/sraybatch/sraybatch/internal/testci"
	"github.com/sraybatch/sraybatch/slurm"
)

// realScheduler returns a Scheduler over the real SLURM clients, or skips
// when there is no cluster (SLURM_CONF unset). In CI (CI=true) a missing
// cluster is a failure: these tests are what proves the argv and formats
// against SLURM itself. Bring one up with scripts/dev-slurm up, then
// eval "$(scripts/dev-slurm env)".
func realScheduler(t *testing.T) scheduler.Scheduler {
	t.Helper()
	if testing.Short() {
		testci.SkipOutsideCI(t, "test against the real SLURM: skipped with -short")
	}
	if os.Getenv("SLURM_CONF") == "" {
		testci.SkipOutsideCI(t, "no SLURM: SLURM_CONF is unset (run scripts/dev-slurm up and eval its env)")
	}
	s := slurm.New(slurm.ExecRunner{Unset: []string{"SBATCH_JOB_NAME", "SBATCH_ARRAY_INX", "SBATCH_DEPENDENCY"}},
		slurm.DefaultPrograms())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("SLURM_CONF is set but the controller does not answer: %v", err)
	}
	return s
}

// submit writes script into a temporary directory, submits it and cancels
// the job when the test ends.
func submit(t *testing.T, s scheduler.Scheduler, script string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "job.sbatch")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	id, err := s.Submit(context.Background(), path)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Cancel(context.Background(), []string{id}, scheduler.CancelOptions{}); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return id
}

// waitJobs polls Jobs until done accepts the answer or 20 s pass.
func waitJobs(t *testing.T, s scheduler.Scheduler, q scheduler.Query, what string, done func([]scheduler.Job) bool) []scheduler.Job {
	t.Helper()
	var jobs []scheduler.Job
	testci.EventuallyErr(t, fmt.Sprintf("Jobs(%+v) %s", q, what), 20*time.Second, 200*time.Millisecond, func() error {
		var err error
		if jobs, err = s.Jobs(context.Background(), q); err != nil {
			t.Fatalf("Jobs(%+v): %v", q, err)
		}
		if !done(jobs) {
			return fmt.Errorf("still not %s: %+v", what, jobs)
		}
		return nil
	})
	return jobs
}

// jobName makes names unique per test run so that concurrent runs on a
// shared dev cluster do not see each other's jobs.
func jobName(kind string) string {
	return fmt.Sprintf("slurmtest-%s-%d-%d", kind, os.Getpid(), time.Now().UnixNano()%1e6)
}

func TestRealSubmitJobsCancel(t *testing.T) {
	s := realScheduler(t)
	ctx := context.Background()
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	name := jobName("plain")
	id := submit(t, s, "#!/bin/bash\n#SBATCH --job-name="+name+"\n#SBATCH --output=/dev/null\n"+
		"#SBATCH --gres=gpu:1\n#SBATCH --time=5:00\nsleep 30\n")

	jobs, err := s.Jobs(ctx, scheduler.Query{User: me.Username, Names: []string{name}})
	if err != nil {
		t.Fatalf("Jobs: %v", err)
	}
	if len(jobs) != 1 {
		t.Fatalf("Jobs by user and name = %+v, want just job %s", jobs, id)
	}
	j := jobs[0]
	if j.ID != id || j.ArrayJobID != "" || j.Name != name || j.User != me.Username || j.GPUs != 1 ||
		j.TimeLimit != 5*time.Minute || j.Unlimited || !j.State.Active() {
		t.Errorf("job = %+v, want id %s, name %s, 1 GPU, 5m limit, active", j, id, name)
	}
	// A job the scheduler has not looked at yet pends with reason "None",
	// which Jobs reports as "".
	if j.State != scheduler.Pending && j.State != scheduler.Running {
		t.Errorf("fresh job state %s, want PENDING or RUNNING", j.State)
	}

	if err := s.Cancel(ctx, []string{id}, scheduler.CancelOptions{}); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	waitJobs(t, s, scheduler.Query{JobIDs: []string{id}}, "cancelled", func(js []scheduler.Job) bool {
		return len(js) == 1 && js[0].State == scheduler.Cancelled
	})
	// Cancelling again is harmless.
	if err := s.Cancel(ctx, []string{id}, scheduler.CancelOptions{}); err != nil {
		t.Errorf("second Cancel: %v", err)
	}
}

func TestRealArray(t *testing.T) {
	s := realScheduler(t)
	id := submit(t, s, "#!/bin/bash\n#SBATCH --job-name="+jobName("array")+"\n#SBATCH --output=/dev/null\n"+
		"#SBATCH --array=0-2\n#SBATCH --gres=gpu:1\n#SBATCH --time=5:00\nsleep 30\n")

	jobs, err := s.Jobs(context.Background(), scheduler.Query{JobIDs: []string{id}})
	if err != nil {
		t.Fatalf("Jobs: %v", err)
	}
	var ids []string
	for _, j := range jobs {
		if j.ArrayJobID != id || j.ID != id+"_"+j.ArrayTaskID || j.GPUs != 1 {
			t.Errorf("array task = %+v, want task of %s with 1 GPU", j, id)
		}
		ids = append(ids, j.ID)
	}
	slices.Sort(ids)
	if want := []string{id + "_0", id + "_1", id + "_2"}; !slices.Equal(ids, want) {
		t.Errorf("array tasks %v, want %v", ids, want)
	}

	// The array job id cancels every task.
	if err := s.Cancel(context.Background(), []string{id}, scheduler.CancelOptions{}); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	waitJobs(t, s, scheduler.Query{JobIDs: []string{id}}, "all cancelled", func(js []scheduler.Job) bool {
		for _, j := range js {
			if j.State.Active() {
				return false
			}
		}
		return len(js) == 3
	})
}

func TestRealSignal(t *testing.T) {
	s := realScheduler(t)
	mark := filepath.Join(t.TempDir(), "got-usr1")
	// No GPU: the job should start at once even on a busy dev cluster.
	id := submit(t, s, "#!/bin/bash\n#SBATCH --job-name="+jobName("signal")+"\n#SBATCH --output=/dev/null\n"+
		"#SBATCH --time=5:00\ntrap 'echo usr1 > "+mark+"; exit 0' USR1\nwhile :; do sleep 0.2; done\n")
	waitJobs(t, s, scheduler.Query{JobIDs: []string{id}}, "running", func(js []scheduler.Job) bool {
		return len(js) == 1 && js[0].State.Started()
	})
	// Give bash a moment to install its trap.
	time.Sleep(500 * time.Millisecond)
	if err := s.Cancel(context.Background(), []string{id}, scheduler.CancelOptions{Signal: "USR1", Batch: true}); err != nil {
		t.Fatalf("Cancel(signal): %v", err)
	}
	waitJobs(t, s, scheduler.Query{JobIDs: []string{id}}, "completed by its trap", func(js []scheduler.Job) bool {
		return len(js) == 1 && js[0].State == scheduler.Completed
	})
	if _, err := os.Stat(mark); err != nil {
		t.Errorf("trap did not run: %v", err)
	}
}

func TestRealQueries(t *testing.T) {
	s := realScheduler(t)
	ctx := context.Background()

	jobs, err := s.Jobs(ctx, scheduler.Query{JobIDs: []string{"999999999"}})
	if err != nil || len(jobs) != 0 {
		t.Errorf("Jobs(unknown id) = %+v, %v; want empty, nil", jobs, err)
	}

	if addr, err := s.NodeAddr(ctx, "node2"); err != nil || addr != "127.0.0.12" {
		t.Errorf("NodeAddr(node2) = %q, %v; want 127.0.0.12 (the dev cluster's layout)", addr, err)
	}
	if _, err := s.NodeAddr(ctx, "no-such-node"); err == nil {
		t.Error("NodeAddr(no-such-node) succeeded")
	}

	nodes, err := s.FreeGPUs(ctx, "")
	if err != nil {
		t.Fatalf("FreeGPUs: %v", err)
	}
	// The dev layout: node1-3 in debug (two GPUs each, of GRES types a100
	// and h100), node3 also in scav and owner (the preemption partitions),
	// node4 alone in cpu, without GPUs; each row of a node with the same GPUs.
	byPartition := map[string][]string{}
	for _, n := range nodes {
		byPartition[n.Partition] = append(byPartition[n.Partition], n.Node)
		gpus := 2
		if n.Node == "node4" {
			gpus = 0
		}
		if n.Total != gpus || n.Used < 0 || n.Used > n.Total || n.Free() > n.Total-n.Used {
			t.Errorf("node = %+v, want %d GPUs", n, gpus)
		}
	}
	want := map[string][]string{"debug": {"node1", "node2", "node3"}, "scav": {"node3"}, "owner": {"node3"}, "cpu": {"node4"}}
	if !reflect.DeepEqual(byPartition, want) {
		t.Errorf("FreeGPUs nodes by partition %v, want %v", byPartition, want)
	}
	if once := scheduler.EachNodeOnce(nodes); len(once) != 4 {
		t.Errorf("EachNodeOnce(FreeGPUs) = %+v, want node1-4 once each", once)
	}
	if nodes, err := s.FreeGPUs(ctx, "debug"); err != nil || len(nodes) != 3 {
		t.Errorf("FreeGPUs(debug) = %+v, %v; want 3 nodes", nodes, err)
	}
}
