package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/sraybatch/sraybatch/cluster"
	"github.com/sraybatch/sraybatch/local"
	"github.com/sraybatch/sraybatch/slurm"
)

// newLocalScheduler is the local backend of a store: its job registry lives
// beside the store's clusters/, and its jobs run this binary's local-job.
func newLocalScheduler(store cluster.Store) slurm.Scheduler {
	self, err := os.Executable()
	if err != nil {
		self = "sraybatch" // found on PATH, as the user ran it
	}
	return local.New(local.Config{
		Registry: local.RegistryDir(filepath.Dir(store.Root)),
		Claims:   local.SystemClaims(),
		Launcher: []string{self, "local-job"},
	})
}

// localScheduler returns the app's local backend, made on first use.
func (a *app) localScheduler() slurm.Scheduler {
	if a.local == nil {
		a.local = newLocalScheduler(a.store)
	}
	return a.local
}

// useBackend points the app's scheduler at a cluster's backend: commands
// work on one cluster at a time, and a local cluster's jobs are processes of
// this host, never SLURM jobs.
func (a *app) useBackend(spec cluster.Spec) {
	if a.slurm == nil {
		a.slurm = a.sched
	}
	if spec.Backend == cluster.BackendLocal {
		a.sched = a.localScheduler()
	} else {
		a.sched = a.slurm
	}
}

// nodeScheduler answers a supervisor's head checks: the local job registry
// when the cluster's spec says local, sched (SLURM) otherwise.
func nodeScheduler(clusterDir string, sched slurm.Scheduler) slurm.Scheduler {
	spec, err := cluster.Dir{Path: clusterDir}.Spec()
	if err != nil || spec.Backend != cluster.BackendLocal {
		return sched
	}
	// The cluster directory is $SRAYBATCH_HOME/clusters/NAME.
	return local.New(local.Config{Registry: local.RegistryDir(filepath.Dir(filepath.Dir(clusterDir)))})
}

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
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q (see --help)", fs.Arg(0))
	}
	if code := local.RunJob(os.Stdin); code != 0 {
		return fmt.Errorf("the job's script exited with code %d", code)
	}
	return nil
}
