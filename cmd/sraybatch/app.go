package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jedib0t/go-pretty/v6/table"

	"github.com/sraybatch/sraybatch/internal/backend"
	"github.com/sraybatch/sraybatch/internal/clock"
	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/observe"
	"github.com/sraybatch/sraybatch/internal/oneline"
	"github.com/sraybatch/sraybatch/internal/scheduler"
)

// squeueTimeout bounds one squeue: with the controller down squeue hangs for
// ~9 s, and status must still answer with the last known state.
const squeueTimeout = 2 * time.Second

// app is what every command works with; tests point it at their own store,
// SLURM and clock.
type app struct {
	store cluster.Store
	// clock is the one source of time of every command: its timestamps,
	// deadlines and waits. Tests that drive a wait give it a clocktest.Fake.
	clock clock.Clock
	// backends run the jobs; which one a cluster uses is its spec's choice.
	backends backend.Schedulers
	// reader keeps the drivers' event files folded between observations,
	// so `status --watch` reads only what they appended.
	reader *observe.Reader
}

func newApp() (*app, error) {
	store, err := cluster.DefaultStore()
	if err != nil {
		return nil, err
	}
	return &app{store: store, backends: backend.System(store.Home(), nil), clock: clock.System{}}, nil
}

// sched is the scheduler that runs the jobs of the cluster whose spec this is.
func (a *app) sched(spec cluster.Spec) scheduler.Scheduler { return a.backends.For(spec) }

// resolveCluster opens the named cluster, or the only live one when name is
// empty, and returns its spec: every command needs it, and it names the
// cluster's backend (a.sched).
func (a *app) resolveCluster(name string) (cluster.Dir, cluster.Spec, error) {
	dir, err := a.findCluster(name)
	if err != nil {
		return dir, cluster.Spec{}, err
	}
	spec, err := dir.Spec()
	return dir, spec, err
}

func (a *app) findCluster(name string) (cluster.Dir, error) {
	if name != "" {
		return a.store.Open(name)
	}
	names, err := a.store.Names()
	if err != nil {
		return cluster.Dir{}, err
	}
	var live []string
	for _, n := range names {
		if _, down, err := a.store.Cluster(n).Down(); err == nil && !down {
			live = append(live, n)
		}
	}
	switch len(live) {
	case 1:
		return a.store.Cluster(live[0]), nil
	case 0:
		return cluster.Dir{}, usagef("no live cluster in %s: start one with `sraybatch up --name NAME`", a.store.Root)
	default:
		return cluster.Dir{}, usagef("%d live clusters (%s): choose one with --cluster", len(live), strings.Join(live, ", "))
	}
}

// clusterStatus is the cluster's status now: its state files and one squeue
// (an clusterStatus.Reader, as the head job's observer has).
func (a *app) clusterStatus(ctx context.Context, dir cluster.Dir, spec cluster.Spec) (cluster.Status, error) {
	if a.reader == nil {
		a.reader = observe.NewReader()
	}
	done := step(ctx, "read state ∥ squeue")
	o, err := a.reader.Read(ctx, dir, spec, a.clock.Now(), func(ctx context.Context) (map[string]scheduler.Job, error) {
		defer step(ctx, "read state ∥ squeue/squeue")()
		return a.clusterJobs(ctx, spec)
	})
	done()
	if err != nil {
		return cluster.Status{}, err
	}
	defer step(ctx, "merge")()
	return cluster.StatusOf(o), nil
}

// clusterJobs is status's one squeue call (observe.JobsQuery), bounded.
func (a *app) clusterJobs(ctx context.Context, spec cluster.Spec) (map[string]scheduler.Job, error) {
	jobs, err := a.jobs(ctx, a.sched(spec), observe.JobsQuery(spec))
	if err != nil {
		return nil, fmt.Errorf("%w: showing the last state the jobs recorded", err)
	}
	return observe.ByKey(jobs), nil
}

// pingAfter is how long squeue may take before the controller is pinged:
// with the controller down squeue hangs ~9 s, while scontrol ping answers at once.
const pingAfter = 150 * time.Millisecond

// jobs runs one squeue bounded by squeueTimeout, and fails at once when
// squeue is slow and the controller does not answer a ping. Both bounds are
// on a real process, so they are real time, not a.clock: a test's fake
// clock must not fire them, nor count their waits as the command's.
func (a *app) jobs(ctx context.Context, sched scheduler.Scheduler, q scheduler.Query) ([]scheduler.Job, error) {
	bounded, cancel := context.WithTimeout(ctx, squeueTimeout)
	defer cancel()
	type answer struct {
		jobs []scheduler.Job
		err  error
	}
	done := make(chan answer, 1)
	go func() {
		jobs, err := sched.Jobs(bounded, q)
		done <- answer{jobs, err}
	}()
	select {
	case got := <-done:
		return got.jobs, slurmError(ctx, bounded, got.err)
	case <-time.After(pingAfter):
	}
	if err := sched.Ping(bounded); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("the SLURM controller does not answer (%v)", err)
	}
	got := <-done
	return got.jobs, slurmError(ctx, bounded, got.err)
}

// slurmError names why a bounded SLURM call failed: the caller's context
// ended (Ctrl+C: its own error, not SLURM's fault), or the bound ran out.
func slurmError(ctx, bounded context.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case bounded.Err() != nil:
		return fmt.Errorf("SLURM did not answer within %s (controller down?)", squeueTimeout)
	}
	return err
}

// liveCluster opens a cluster that more jobs can join: not taken down, with
// a head job recorded (returned).
func (a *app) liveCluster(name string) (cluster.Dir, cluster.Spec, string, error) {
	dir, spec, err := a.resolveCluster(name)
	if err != nil {
		return dir, spec, "", err
	}
	if _, down, err := dir.Down(); err != nil {
		return dir, spec, "", err
	} else if down {
		return dir, spec, "", usagef("cluster %s was taken down: start a new one with `sraybatch up`", spec.Name)
	}
	subs, err := dir.Submissions()
	if err != nil {
		return dir, spec, "", err
	}
	head, ok := cluster.HeadJobID(subs)
	if !ok {
		return dir, spec, "", fmt.Errorf("cluster %s has no head job recorded", spec.Name)
	}
	// A rollover cluster's head is its latest generation's, maybe a worker
	// job promoted since.
	if h, ok, err := dir.Head(); err == nil && ok && h.Generation > 1 {
		head = h.Job
	}
	return dir, spec, head, nil
}

// renderTable writes a go-pretty table styled for a terminal, or as TSV.
func renderTable(t table.Writer, styled bool) {
	if !styled {
		t.RenderTSV()
		return
	}
	t.SetStyle(table.StyleLight)
	t.Render()
}

// logTail returns the last lines of a job's output, for error messages.
func logTail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// jobFailure is a job that failed while a command waited for it; its message
// carries the reason and the tail of the job's log.
func jobFailure(spec cluster.Spec, js cluster.JobStatus) error {
	msg := fmt.Sprintf("%s job %s %s: %s", js.Role, js.JobID, js.Ray, orNone(js.Reason))
	path := cluster.JobLog(spec.LogDir, spec.Name, js.Role, js.JobID)
	if tail := logTail(path, 5); tail != "" {
		msg += "; log " + path + " ends: " + oneline.Of(tail)
	}
	return errors.New(msg)
}

func orNone(s string) string {
	if s == "" {
		return "no reason recorded"
	}
	return s
}
