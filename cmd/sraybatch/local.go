package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/local"
	"github.com/sraybatch/sraybatch/internal/scheduler"
)

// defaultBackend is slurm where sbatch is on PATH, else local.
func defaultBackend() cluster.Backend {
	if _, err := exec.LookPath("sbatch"); err == nil {
		return cluster.BackendSlurm
	}
	return cluster.BackendLocal
}

const localJobUsage = `Usage: sraybatch local-job

Run one job of the local backend: read its go-ahead on stdin, run its batch
script with bash, and record how it ended. The local backend starts this; it
is not meant to be run by hand.`

// runLocalJobCmd is a local job's process; the local backend starts it, with
// the job's go-ahead on stdin.
func runLocalJobCmd(ctx context.Context, io IOStreams, args []string) error {
	fs := newFlagSet("local-job", localJobUsage, io)
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	if code := local.RunJob(os.Stdin); code != 0 {
		return fmt.Errorf("the job's script exited with code %d", code)
	}
	return nil
}

// validateBackend checks --backend and the flags that only one backend knows.
func (o upOptions) validateBackend() error {
	switch o.Backend {
	case "", cluster.BackendSlurm:
		if o.Foreground {
			return usagef("--foreground is for --backend local: SLURM jobs outlive the up that submitted them")
		}
	case cluster.BackendLocal:
		for _, f := range []struct {
			flag string
			set  bool
		}{
			{"--partition", o.Node.Partition != ""}, {"--worker-partition", o.WorkerPartition != ""}, {"--account", o.Node.Account != ""}, {"--qos", o.Node.QOS != ""},
			{"--time", o.Node.Time != ""}, {"--constraint", o.Node.Constraint != ""}, {"--sbatch-arg", len(o.Node.SbatchArgs) > 0},
			{"--rollover", o.Rollover.Enabled},
		} {
			if f.set {
				return usagef("%s is a SLURM option, and the local backend runs every node on this host: drop it, or use --backend slurm", f.flag)
			}
		}
	default:
		return usagef("invalid --backend %q: use slurm or local", o.Backend)
	}
	return nil
}

// localSpec adapts a spec to the local backend: nodes on one host advertise
// the loopback address unless --node-ip or --interface says otherwise, and
// without a time limit no drain warning ever comes.
func localSpec(spec *cluster.Spec) {
	spec.Backend = cluster.BackendLocal
	if spec.NodeIP == "" && spec.Interface == "" {
		spec.NodeIP = "127.0.0.1"
	}
	spec.DrainBeforeS = 0
}

// foreground keeps a local cluster until Ctrl+C or SIGTERM (or until its head
// ends), then takes it down: start_ray_cluster.sh's behaviour.
func (a *app) foreground(ctx context.Context, io IOStreams, dir cluster.Dir, spec cluster.Spec, head string, timeout time.Duration) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	if err := waitForHead(ctx, io, a, dir, spec, a.newBudget(timeout)); err != nil {
		if ctx.Err() != nil {
			err = nil // interrupted: taking the cluster down is what was asked
		}
		return a.takeDown(ctx, io, spec, err)
	}
	if h, ok, _ := dir.Head(); ok {
		fmt.Fprintf(io.ErrOut, "dashboard: %s\nRay address: %s (eval \"$(sraybatch env --cluster %s)\" points Ray's tools at it)\nCtrl+C takes the cluster down\n", h.Dashboard, h.Address, spec.Name)
	}
	for {
		select {
		case <-ctx.Done():
			return a.takeDown(ctx, io, spec, nil)
		case <-a.clock.After(2 * time.Second):
		}
		jobs, err := a.sched(spec).Jobs(ctx, scheduler.Query{JobIDs: []string{head}})
		if err == nil && (len(jobs) == 0 || !jobs[0].State.Active()) {
			state := "ended"
			if len(jobs) > 0 {
				state = strings.ToLower(string(jobs[0].State))
			}
			return a.takeDown(ctx, io, spec, fmt.Errorf("head job %s %s: see %s", head, state, cluster.JobLog(spec.LogDir, spec.Name, cluster.RoleHead, head)))
		}
	}
}

// takeDown runs `down` on a cluster that up started in the foreground, even
// when ctx is already cancelled, and returns cause, else down's error.
func (a *app) takeDown(ctx context.Context, io IOStreams, spec cluster.Spec, cause error) error {
	err := runDown(context.WithoutCancel(ctx), io, a, downOptions{Cluster: spec.Name, Timeout: 2 * time.Minute})
	if cause != nil {
		return cause
	}
	return err
}
