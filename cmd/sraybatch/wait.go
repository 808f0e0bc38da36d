package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

// pollInterval is how often --wait looks at the cluster's files and squeue.
const pollInterval = 500 * time.Millisecond

// waitForHead returns once the head has published its address and its Ray is
// up, and fails fast when the head job fails.
func waitForHead(ctx context.Context, io IOStreams, a *app, dir cluster.Dir, spec cluster.Spec, timeout time.Duration) error {
	progress := progressPrinter{}
	return poll(ctx, timeout, func(last bool) (bool, error) {
		st, err := a.observe(ctx, dir, spec)
		if err != nil {
			return false, err
		}
		head := findRole(st, cluster.RoleHead)
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
		if head.Ray == cluster.Failed || head.Ray == cluster.Lost || head.Ray == cluster.Ended {
			return false, jobFailure(spec, *head)
		}
		if last {
			return false, timeoutError{fmt.Errorf("head job %s not up within %s: %s %s", head.JobID, timeout, head.SlurmState, head.Reason)}
		}
		return false, nil
	})
}

// waitForJobs returns once every job key has joined Ray, and fails fast when one fails.
func waitForJobs(ctx context.Context, io IOStreams, a *app, dir cluster.Dir, spec cluster.Spec, keys []string, timeout time.Duration) error {
	want := map[string]bool{}
	for _, k := range keys {
		want[k] = true
	}
	progress := progressPrinter{}
	return poll(ctx, timeout, func(last bool) (bool, error) {
		st, err := a.observe(ctx, dir, spec)
		if err != nil {
			return false, err
		}
		joined := 0
		var waiting []string
		for _, js := range st.Jobs {
			if !want[js.JobID] {
				continue
			}
			progress.print(io, js)
			switch js.Ray {
			case cluster.Joined, cluster.Draining:
				joined++
			case cluster.Waiting:
				waiting = append(waiting, strings.TrimSpace(js.JobID+" "+js.SlurmState+" "+js.Reason))
			default:
				return false, jobFailure(spec, js)
			}
		}
		if joined == len(keys) {
			fmt.Fprintf(io.ErrOut, "all %d new workers joined cluster %s\n", joined, spec.Name)
			return true, nil
		}
		if last {
			return false, timeoutError{fmt.Errorf("%d of %d workers joined within %s; still waiting: %s", joined, len(keys), timeout, strings.Join(waiting, "; "))}
		}
		return false, nil
	})
}

// poll calls check until it is done, fails, or timeout passes (the last call
// is told so it can say why it is still waiting).
func poll(ctx context.Context, timeout time.Duration, check func(last bool) (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		last := !time.Now().Before(deadline)
		done, err := check(last)
		if done || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollInterval):
		}
	}
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

func findRole(st cluster.Status, role cluster.Role) *cluster.JobStatus {
	for i := range st.Jobs {
		if st.Jobs[i].Role == role {
			return &st.Jobs[i]
		}
	}
	return nil
}
