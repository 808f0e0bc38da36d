package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/metrics"
	"github.com/sraybatch/sraybatch/internal/scheduler"
	"github.com/sraybatch/sraybatch/templates"
)

const downUsage = `Usage: sraybatch down [--cluster NAME] [--forget]

Take a cluster down: cancel its workers and driver, then its head, and wait
until SLURM has ended every job (each job's supervisor stops its own Ray
processes and removes its temp dir on the way out). The cluster directory and
logs stay, marked ended, unless --forget.

Examples:
  sraybatch down --cluster exp1
  sraybatch down -c exp1 --forget`

type downOptions struct {
	Cluster string
	Forget  bool
	Timeout time.Duration
}

func runDownCmd(ctx context.Context, io IOStreams, args []string) error {
	var o downOptions
	fs := newFlagSet("down", downUsage, io)
	addClusterFlag(fs, &o.Cluster)
	fs.BoolVar(&o.Forget, "forget", false, "also remove the cluster directory and its logs")
	fs.DurationVar(&o.Timeout, "timeout", 2*time.Minute, "give up waiting for the jobs to end after this long (exit 3)")
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	a, err := newApp()
	if err != nil {
		return err
	}
	return runDown(ctx, io, a, o)
}

func runDown(ctx context.Context, io IOStreams, a *app, o downOptions) error {
	if err := templates.SingleLine("--cluster", o.Cluster); err != nil {
		return usageError{err}
	}
	dir, spec, err := a.resolveCluster(o.Cluster)
	if err != nil {
		return err
	}
	// What status shows before the cluster is marked down (which turns every
	// job into `ended`): the jobs this down ends are its rows still live.
	before, err := a.clusterStatus(ctx, dir, spec)
	if err != nil {
		return err
	}
	subs, err := dir.Submissions()
	if err != nil {
		return err
	}
	if err := dir.MarkDown(a.clock.Now()); err != nil {
		return err
	}
	// No Prometheus may scrape the cluster's ports any more: another user's
	// process may have them next, and would receive the scrape token.
	if err := metrics.ClearTargets(dir, spec); err != nil {
		fmt.Fprintf(io.ErrOut, "warning: %v: empty it, or remove it from Prometheus's file_sd\n", err)
	}
	ids := cancelOrder(subs)
	if err := a.sched(spec).Cancel(ctx, ids, scheduler.CancelOptions{}); err != nil && !strings.Contains(err.Error(), "Invalid job id") {
		return fmt.Errorf("cancel jobs %v: %w", ids, err)
	}
	fmt.Fprintf(io.ErrOut, "cluster %s: cancelled %d jobs; waiting for them to end\n", spec.Name, liveCount(before))
	err = a.waitJobsEnded(ctx, spec, o.Timeout)
	if errors.Is(err, context.Canceled) {
		return interruptedError{fmt.Errorf("interrupted: the jobs of cluster %s are cancelled and may still be ending; see `sraybatch status -c %s`", spec.Name, spec.Name)}
	}
	if err != nil {
		return err
	}
	if err := metrics.ClearTargets(dir, spec); err != nil { // the head may have rewritten it on its way out
		fmt.Fprintf(io.ErrOut, "warning: %v\n", err)
	}
	fmt.Fprintf(io.ErrOut, "cluster %s is down\n", spec.Name)
	if o.Forget {
		if err := os.RemoveAll(dir.Path); err != nil {
			return fmt.Errorf("remove cluster directory: %w", err)
		}
		fmt.Fprintf(io.ErrOut, "removed %s\n", dir.Path)
	}
	return nil
}

// liveCount is how many jobs of a status have not ended (live).
func liveCount(st cluster.Status) int {
	n := 0
	for _, js := range st.Jobs {
		if live(js) {
			n++
		}
	}
	return n
}

// cancelOrder is one scancel's ids for every submission, ended ones too
// (scancel ignores those): with SLURM unreachable, status's view may be
// stale. The down mark, written first, makes every job's end orderly
// whichever order SLURM signals them in; workers are listed first all the
// same.
func cancelOrder(subs []cluster.Submission) []string {
	var heads, others []string
	for _, s := range subs {
		if s.Role == cluster.RoleHead {
			heads = append(heads, s.JobID)
		} else {
			others = append(others, s.JobID)
		}
	}
	return append(others, heads...)
}

// waitJobsEnded polls the cluster's jobs until SLURM runs or queues none of
// them, or timeout (a timeoutError naming those still active).
func (a *app) waitJobsEnded(ctx context.Context, spec cluster.Spec, timeout time.Duration) error {
	return a.poll(ctx, a.clock.Now().Add(timeout), func(last bool) (bool, error) {
		jobs, err := a.clusterJobs(ctx, spec)
		if err != nil {
			return false, err
		}
		var active []string
		for _, j := range jobs {
			if j.State.Active() {
				active = append(active, j.ID+" "+string(j.State))
			}
		}
		if len(active) == 0 {
			return true, nil
		}
		if last {
			return false, timeoutError{fmt.Errorf("jobs still active after %s: %s", timeout, strings.Join(active, ", "))}
		}
		return false, nil
	})
}
