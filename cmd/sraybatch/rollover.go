package main

import (
	"time"

	"github.com/spf13/pflag"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/raynode"
)

// rolloverOptions are up's flags for a cluster that outlives its heads:
// each head hands the cluster to the next generation before its end.
type rolloverOptions struct {
	Enabled        bool
	Before         time.Duration
	MaxGenerations int
	HeadWait       time.Duration
}

func (r *rolloverOptions) addFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&r.Enabled, "rollover", false, "hand the cluster to a new head (a promoted worker, else a submitted successor) before each head's end: the run outlives any one job's time limit")
	fs.DurationVar(&r.Before, "rollover-before", raynode.DefaultRolloverBefore, "with --rollover: start a handover once the head has less than this left (SLURM's current word)")
	fs.IntVar(&r.MaxGenerations, "max-generations", 0, "with --rollover: at most this many heads in all (0: no bound)")
	fs.DurationVar(&r.HeadWait, "head-wait", raynode.DefaultHeadWait, "with --rollover: how long workers keep their GPUs waiting for the next head")
}

// validate refuses settings that cannot work, and rollover settings
// without --rollover.
func (r rolloverOptions) validate(fs interface{ Changed(string) bool }) error {
	if !r.Enabled {
		for _, f := range []string{"rollover-before", "max-generations", "head-wait"} {
			if fs.Changed(f) {
				return usagef("--%s needs --rollover", f)
			}
		}
		return nil
	}
	if r.Before <= 0 || r.HeadWait <= 0 || r.MaxGenerations < 0 {
		return usagef("--rollover-before and --head-wait must be positive, --max-generations not negative")
	}
	return nil
}

// spec is the spec's rollover settings; nil without --rollover, so that
// spec.json stays as it was.
func (r rolloverOptions) spec() *cluster.RolloverSpec {
	if !r.Enabled {
		return nil
	}
	return &cluster.RolloverSpec{
		BeforeS: int(r.Before / time.Second), MaxGenerations: r.MaxGenerations, HeadWaitS: int(r.HeadWait / time.Second),
	}
}
