// Package backend picks the scheduler that runs a cluster's jobs. The choice
// is a pure function of the cluster's stored spec (Spec.Backend, written once
// by `up`), so the CLI, the in-job supervisor and the head's autoscaler all
// reach the same backend the same way, and nothing is guessed or switched
// while a command runs.
package backend

import (
	"os"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/local"
	"github.com/sraybatch/sraybatch/internal/scheduler"
	"github.com/sraybatch/sraybatch/slurm"
)

// Schedulers holds one scheduler per backend; tests fill in their own.
type Schedulers struct {
	Slurm scheduler.Scheduler
	Local scheduler.Scheduler
}

// For returns the scheduler of the cluster whose spec this is.
func (s Schedulers) For(spec cluster.Spec) scheduler.Scheduler { return s.Of(spec.Backend) }

// Of returns the scheduler of backend b; an empty b (specs written before the
// local backend existed) is SLURM.
func (s Schedulers) Of(b cluster.Backend) scheduler.Scheduler {
	if b == cluster.BackendLocal {
		return s.Local
	}
	return s.Slurm
}

// sbatchOverrides are the SBATCH_* input variables that would override the
// directives sraybatch's own bookkeeping relies on (job name, array, head
// dependency); every other SBATCH_* variable keeps working.
var sbatchOverrides = []string{"SBATCH_JOB_NAME", "SBATCH_ARRAY_INX", "SBATCH_DEPENDENCY"}

// System returns the real backends of the sraybatch home directory home
// (the directory above the store's clusters/): SLURM's clients on PATH, and
// the local backend whose job registry lives in home and whose jobs run this
// binary's hidden local-job command. The jobs they submit start from env
// (nil: this process's environment); inside a job, pass
// slurm.LoginEnv(os.Environ()).
func System(home string, env []string) Schedulers {
	self, err := os.Executable()
	if err != nil {
		self = "sraybatch" // found on PATH, as the user ran it
	}
	return Schedulers{
		Slurm: slurm.New(slurm.ExecRunner{Unset: sbatchOverrides, Env: env}, slurm.DefaultPrograms()),
		Local: local.New(local.Config{
			Registry: local.RegistryDir(home),
			Claims:   local.SystemClaims(),
			Launcher: []string{self, "local-job"},
			Env:      env,
		}),
	}
}
