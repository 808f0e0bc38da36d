package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

// pollInterval is how often --wait looks at the cluster's files and squeue.
const pollInterval = 500 * time.Millisecond

// budget is one --timeout shared by every stage of a wait (up --wait: the
// head, then its workers), so the whole wait never exceeds what was asked.
type budget struct {
	timeout  time.Duration // as given, for messages
	deadline time.Time
}

func (a *app) newBudget(timeout time.Duration) budget {
	return budget{timeout: timeout, deadline: a.clock.Now().Add(timeout)}
}

// waitForHead returns once the head has published its address and its Ray is
// up, and fails fast when the head job fails.
func waitForHead(ctx context.Context, io IOStreams, a *app, dir cluster.Dir, spec cluster.Spec, b budget) error {
	progress := progressPrinter{}
	return waitOnStatus(ctx, a, dir, spec, b, func(st cluster.Status, last bool) (bool, error) {
		head := st.Head()
		if head == nil {
			return false, fmt.Errorf("cluster %s has no head job", spec.Name)
		}
		progress.print(io, *head)
		// The head publishes its address only once its GCS answers healthy.
		if st.Cluster.State == cluster.StateRunning {
			where := ""
			if st.Cluster.HeadNode != "" {
				where = " on " + st.Cluster.HeadNode
			}
			fmt.Fprintf(io.ErrOut, "cluster %s is up: head %s%s\n", spec.Name, st.Cluster.HeadAddress, where)
			return true, nil
		}
		if head.Ray == cluster.MembershipFailed || head.Ray == cluster.MembershipLost || head.Ray == cluster.MembershipEnded {
			return false, jobFailure(spec, *head)
		}
		if last {
			return false, timeoutError{fmt.Errorf("head job %s not up within %s: %s %s", head.JobID, b.timeout, head.SlurmState, head.Reason)}
		}
		return false, nil
	})
}

// waitOnStatus observes the cluster every pollInterval until check says it
// is done or fails, or the budget ends (check's last call); Ctrl+C ends it
// with what keeps running, as last seen.
func waitOnStatus(ctx context.Context, a *app, dir cluster.Dir, spec cluster.Spec, b budget, check func(st cluster.Status, last bool) (bool, error)) error {
	var seen cluster.Status
	err := a.poll(ctx, b.deadline, func(last bool) (bool, error) {
		st, err := a.clusterStatus(ctx, dir, spec)
		if err != nil {
			return false, err
		}
		seen = st
		return check(st, last)
	})
	return interruptedWait(err, spec, seen)
}

// waitForJobs returns once every job key has joined Ray, and fails fast when one fails.
func waitForJobs(ctx context.Context, io IOStreams, a *app, dir cluster.Dir, spec cluster.Spec, keys []string, b budget) error {
	want := map[string]bool{}
	for _, k := range keys {
		want[k] = true
	}
	return waitForWorkers(ctx, io, a, dir, spec, b, workerWait{
		count: len(keys), failFast: true,
		counts: func(js cluster.JobStatus) bool { return want[js.JobID] },
		done:   fmt.Sprintf("all %d new workers joined cluster %s", len(keys), spec.Name),
	})
}

// waitForWorkerCount returns once n workers of the cluster have joined Ray
// (the autoscaler submits them to keep --min-workers); a failed worker is
// the autoscaler's to replace. On timeout it names the jobs still pending
// and why.
func waitForWorkerCount(ctx context.Context, io IOStreams, a *app, dir cluster.Dir, spec cluster.Spec, n int, b budget) error {
	fmt.Fprintf(io.ErrOut, "waiting for the autoscaler's %d workers (--min-workers, or the types' min summed)\n", n)
	return waitForWorkers(ctx, io, a, dir, spec, b, workerWait{
		count:  n,
		counts: func(js cluster.JobStatus) bool { return js.Role == cluster.RoleWorker },
		done:   fmt.Sprintf("%d workers joined cluster %s", n, spec.Name),
	})
}

// workerWait is what waitForWorkers waits for: count of the jobs counts
// selects joined; failFast fails as soon as one of them fails.
type workerWait struct {
	count    int
	failFast bool
	counts   func(cluster.JobStatus) bool
	done     string
}

func waitForWorkers(ctx context.Context, io IOStreams, a *app, dir cluster.Dir, spec cluster.Spec, b budget, w workerWait) error {
	progress := progressPrinter{}
	return waitOnStatus(ctx, a, dir, spec, b, func(st cluster.Status, last bool) (bool, error) {
		joined := 0
		var waiting []string
		for _, js := range st.Jobs {
			if !w.counts(js) {
				continue
			}
			progress.print(io, js)
			switch js.Ray {
			case cluster.MembershipJoined, cluster.MembershipDraining:
				joined++
			case cluster.MembershipWaiting:
				waiting = append(waiting, strings.TrimSpace(js.JobID+" "+js.SlurmState+" "+js.Reason))
			default:
				if w.failFast {
					return false, jobFailure(spec, js)
				}
			}
		}
		if joined >= w.count {
			fmt.Fprintln(io.ErrOut, w.done)
			return true, nil
		}
		if last {
			pending := "still waiting: " + strings.Join(waiting, "; ")
			if len(waiting) == 0 {
				pending = "none is pending"
			}
			if st.Autoscaler != nil && st.Autoscaler.Reason != "" {
				pending += "; autoscaler: " + st.Autoscaler.Reason
			}
			return false, timeoutError{fmt.Errorf("%d of %d workers joined within %s; %s", joined, w.count, b.timeout, pending)}
		}
		return false, nil
	})
}

// interruptedWait turns a wait that Ctrl+C ended into an interruptedError
// that says what keeps running, as last seen: the jobs are not cancelled.
func interruptedWait(err error, spec cluster.Spec, seen cluster.Status) error {
	if !errors.Is(err, context.Canceled) {
		return err
	}
	running := ""
	if live := liveJobs(seen); live != "" {
		running = " (" + live + ")"
	}
	return interruptedError{fmt.Errorf("interrupted: cluster %s keeps running%s; see `sraybatch status -c %s`, or `sraybatch down -c %s`",
		spec.Name, running, spec.Name, spec.Name)}
}

// liveJobs describes the jobs of a status that have not ended: the head by
// its job id, other roles counted by Ray membership, e.g.
// "head job 160, 1 worker joined, 2 workers waiting".
func liveJobs(st cluster.Status) string {
	var parts []string
	for _, role := range []cluster.Role{cluster.RoleHead, cluster.RoleWorker, cluster.RoleDriver} {
		count := map[cluster.Membership]int{}
		var ids []string
		for _, js := range st.Jobs {
			if js.Role == role && live(js) {
				count[js.Ray]++
				ids = append(ids, js.JobID)
			}
		}
		if role == cluster.RoleHead {
			if len(ids) > 0 {
				parts = append(parts, "head job "+strings.Join(ids, ", "))
			}
			continue
		}
		for _, m := range []cluster.Membership{cluster.MembershipJoined, cluster.MembershipDraining, cluster.MembershipWaiting} {
			if n := count[m]; n > 0 {
				noun := string(role)
				if n > 1 {
					noun += "s"
				}
				parts = append(parts, strconv.Itoa(n)+" "+noun+" "+string(m))
			}
		}
	}
	return strings.Join(parts, ", ")
}

// live reports whether a job has not ended as far as status knows: waiting
// for SLURM or Ray, or in Ray.
func live(js cluster.JobStatus) bool {
	switch js.Ray {
	case cluster.MembershipWaiting, cluster.MembershipJoined, cluster.MembershipDraining:
		return true
	}
	return false
}

// poll calls check every pollInterval until it is done, fails, or the
// deadline passes (the last call is told so it can say why it is still
// waiting).
func (a *app) poll(ctx context.Context, deadline time.Time, check func(last bool) (bool, error)) error {
	return a.followEvery(ctx, pollInterval, func() (bool, error) {
		return check(!a.clock.Now().Before(deadline))
	})
}

// progressPrinter prints a job's state on stderr when it changes.
type progressPrinter map[string]string

func (last progressPrinter) print(io IOStreams, js cluster.JobStatus) {
	line := fmt.Sprintf("%s %s: %s", js.Role, js.JobID, js.SlurmState)
	if js.Reason != "" {
		line += " (" + js.Reason + ")"
	}
	line += ", ray " + string(js.Ray)
	if last[js.JobID] != line {
		last[js.JobID] = line
		fmt.Fprintln(io.ErrOut, line)
	}
}

// findJob returns the status of one job key, nil when the cluster has no such job.
func findJob(st cluster.Status, key string) *cluster.JobStatus {
	for i := range st.Jobs {
		if st.Jobs[i].JobID == key {
			return &st.Jobs[i]
		}
	}
	return nil
}
