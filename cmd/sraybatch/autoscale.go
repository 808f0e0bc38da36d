package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/templates"
)

const autoscaleUsage = `Usage: sraybatch autoscale [--cluster NAME] [--on | --off] [flags]

Show or change a live cluster's autoscaler. It runs inside the head job and
follows Ray's own demand: pending tasks and actors, pending placement groups
and request_resources (Ray Train's elastic trainer asks for its max workers
that way). It submits worker jobs of the cluster's node shape in one sbatch
call per decision, cancels pending ones whose demand has gone, and drains
workers idle for --idle-timeout through Ray's own drain. The head picks up a
change within one poll. Without flags it prints the settings.

Examples:
  sraybatch autoscale --max-workers 4
  sraybatch autoscale --min-workers 1 --idle-timeout 5m
  sraybatch autoscale --off`

// autoscaleOptions are the autoscaler's flags, shared by `up --autoscale`
// and `autoscale`.
type autoscaleOptions struct {
	MinWorkers, MaxWorkers, MaxPending  int
	IdleTimeout, UpscaleDelay, Interval time.Duration
	CPUOnlyDemand                       bool
}

func (o *autoscaleOptions) addFlags(fs *pflag.FlagSet) {
	fs.IntVar(&o.MinWorkers, "min-workers", 0, "autoscaling keeps at least this many workers")
	fs.IntVar(&o.MaxWorkers, "max-workers", 4, "autoscaling never has more worker jobs than this")
	fs.IntVar(&o.MaxPending, "max-pending", 0, "at most this many worker jobs waiting in the queue (default: --max-workers)")
	fs.DurationVar(&o.IdleTimeout, "idle-timeout", 10*time.Minute, "a worker Ray sees idle this long is drained (0: never)")
	fs.DurationVar(&o.UpscaleDelay, "upscale-delay", 5*time.Second, "demand must last this long before workers are submitted for it")
	fs.DurationVar(&o.Interval, "autoscale-interval", 2*time.Second, "how often the head reads Ray's demand")
	fs.BoolVar(&o.CPUOnlyDemand, "cpu-only-demand", false, "let demand that asks for no GPU start GPU worker jobs (with worker types: only when no type without GPUs holds it or has room; it also lifts the cap of one Ray CPU per GPU on GPU nodes)")
}

// apply sets the settings whose flag set says to (every one for `up`; for
// `autoscale` those given on the command line).
func (o autoscaleOptions) apply(a *cluster.AutoscaleSpec, set func(flag string) bool) error {
	if set("min-workers") {
		a.MinWorkers = o.MinWorkers
	}
	if set("max-workers") {
		a.MaxWorkers = o.MaxWorkers
	}
	if set("max-pending") {
		a.MaxPending = o.MaxPending
	}
	if set("idle-timeout") {
		a.IdleTimeoutS = int(o.IdleTimeout / time.Second)
	}
	if set("upscale-delay") {
		a.UpscaleDelayS = o.UpscaleDelay.Seconds()
	}
	if set("autoscale-interval") {
		a.PollIntervalS = o.Interval.Seconds()
	}
	if set("cpu-only-demand") {
		a.CPUOnlyDemand = o.CPUOnlyDemand
	}
	return validateAutoscale(*a)
}

func validateAutoscale(a cluster.AutoscaleSpec) error {
	switch {
	case a.MinWorkers < 0 || a.MaxWorkers < 0 || a.MaxPending < 0 || a.IdleTimeoutS < 0 || a.UpscaleDelayS < 0:
		return usagef("--min-workers, --max-workers, --max-pending, --idle-timeout and --upscale-delay must not be negative")
	case a.MinWorkers > a.MaxWorkers:
		return usagef("--min-workers %d is above --max-workers %d: raise --max-workers", a.MinWorkers, a.MaxWorkers)
	case a.Enabled && a.MaxWorkers == 0:
		return usagef("--max-workers 0 leaves autoscaling nothing to do: give at least 1, or --off")
	case a.PollIntervalS < 0.5:
		return usagef("--autoscale-interval %gs is too short: give at least 500ms", a.PollIntervalS)
	}
	return nil
}

type autoscaleCmdOptions struct {
	Cluster string
	On, Off bool
	autoscaleOptions
	// Given are the flags given on the command line: only their settings
	// change; none but --cluster just shows the settings.
	Given map[string]bool
}

func runAutoscaleCmd(ctx context.Context, io IOStreams, args []string) error {
	var o autoscaleCmdOptions
	fs := newFlagSet("autoscale", autoscaleUsage, io)
	addClusterFlag(fs, &o.Cluster)
	fs.BoolVar(&o.On, "on", false, "switch autoscaling on")
	fs.BoolVar(&o.Off, "off", false, "switch autoscaling off: nothing is submitted, cancelled or drained any more")
	o.addFlags(fs)
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	o.Given = map[string]bool{}
	fs.Visit(func(f *pflag.Flag) { o.Given[f.Name] = true })
	a, err := newApp()
	if err != nil {
		return err
	}
	return runAutoscale(io, a, o)
}

func runAutoscale(io IOStreams, a *app, o autoscaleCmdOptions) error {
	if err := templates.SingleLine("--cluster", o.Cluster); err != nil {
		return usageError{err}
	}
	if o.On && o.Off {
		return usagef("--on and --off contradict each other: give one")
	}
	dir, spec, err := a.resolveCluster(o.Cluster)
	if err != nil {
		return err
	}
	as := spec.Autoscale
	// Any flag but --cluster changes the settings; none just shows them.
	changed := false
	for name := range o.Given {
		changed = changed || name != "cluster"
	}
	if o.On {
		as.Enabled = true
	}
	if o.Off {
		as.Enabled = false
	}
	if changed {
		if err := o.apply(&as, func(flag string) bool { return o.Given[flag] }); err != nil {
			return err
		}
		if _, down, err := dir.Down(); err != nil {
			return err
		} else if down {
			return usagef("cluster %s was taken down: its autoscaler is gone", spec.Name)
		}
		if err := dir.WriteAutoscaleSettings(as); err != nil {
			return fmt.Errorf("write cluster %s's spec: %w", spec.Name, err)
		}
	}
	fmt.Fprintln(io.Out, autoscaleSettings(spec.Name, as))
	return nil
}

// autoscaleSettings is the settings in one line.
func autoscaleSettings(name string, a cluster.AutoscaleSpec) string {
	state := "off"
	if a.Enabled {
		state = "on"
	}
	pending := "max-workers"
	if a.MaxPending > 0 {
		pending = fmt.Sprint(a.MaxPending)
	}
	return fmt.Sprintf("cluster %s: autoscaling %s, workers %d–%d, max pending %s, idle timeout %s, upscale delay %s, every %s, cpu-only demand %v",
		name, state, a.MinWorkers, a.MaxWorkers, pending, a.IdleTimeout(),
		a.UpscaleDelay(), a.PollInterval(), a.CPUOnlyDemand)
}
