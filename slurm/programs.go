package slurm

import "os"

// Programs names the executables; configurable so sites with wrappers (and
// tests) can point elsewhere. Each is one program name or path, never a
// command line: it becomes argv[0].
type Programs struct {
	Sbatch, Squeue, Scancel, Scontrol, Sinfo string
}

// DefaultPrograms returns the plain names, looked up in PATH, each replaced
// by a non-empty SRAYBATCH_SBATCH, SRAYBATCH_SQUEUE, SRAYBATCH_SCANCEL,
// SRAYBATCH_SCONTROL or SRAYBATCH_SINFO.
func DefaultPrograms() Programs {
	return Programs{
		Sbatch:   envOr("SRAYBATCH_SBATCH", "sbatch"),
		Squeue:   envOr("SRAYBATCH_SQUEUE", "squeue"),
		Scancel:  envOr("SRAYBATCH_SCANCEL", "scancel"),
		Scontrol: envOr("SRAYBATCH_SCONTROL", "scontrol"),
		Sinfo:    envOr("SRAYBATCH_SINFO", "sinfo"),
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
