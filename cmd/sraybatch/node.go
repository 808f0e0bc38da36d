package main

import (
	"context"
	"fmt"
	"os"
	"strconv"

	"github.com/sraybatch/sraybatch/internal/autoscale"
	"github.com/sraybatch/sraybatch/internal/backend"
	"github.com/sraybatch/sraybatch/internal/clock"
	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/gpu"
	"github.com/sraybatch/sraybatch/internal/scheduler"
	"github.com/sraybatch/sraybatch/internal/submit"
	"github.com/sraybatch/sraybatch/raynode"
	"github.com/sraybatch/sraybatch/slurm"
	"github.com/sraybatch/sraybatch/templates"
)

const nodeUsage = `Usage: sraybatch node head|worker|driver --cluster-dir DIR [--head-job ID] [--type T] [-- DRIVER COMMAND...]

Run one Ray node inside a SLURM job. The batch scripts sraybatch renders exec
this; it is not meant to be run by hand.`

type nodeOptions struct {
	Role       cluster.Role
	ClusterDir string
	HeadJob    string
	// Type is a worker's type; "": the cluster's default type.
	Type       string
	DriverArgv []string
	// MaxRestarts bounds a driver's re-runs after head handovers.
	MaxRestarts int
	// Follows and Restarts are a successor driver job's: the driver job
	// it takes over from, and the command's re-runs so far.
	Follows  string
	Restarts int
}

func runNodeCmd(ctx context.Context, io IOStreams, args []string) error {
	var o nodeOptions
	fs := newFlagSet("node", nodeUsage, io)
	fs.StringVar(&o.ClusterDir, "cluster-dir", "", "the cluster's state directory")
	fs.StringVar(&o.HeadJob, "head-job", "", "the head's job id (workers)")
	fs.StringVar(&o.Type, "type", "", "the worker's type (workers; default: the cluster's first)")
	fs.IntVar(&o.MaxRestarts, "max-restarts", raynode.DefaultMaxRestarts, "a driver's re-runs after head handovers, at most")
	fs.StringVar(&o.Follows, "follows", "", "the driver job this successor driver job takes over from (drivers)")
	fs.IntVar(&o.Restarts, "restarts", 0, "the driver command's re-runs before this job (drivers)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 1 {
		return usagef("give the role: head, worker or driver")
	}
	o.Role, o.DriverArgv = cluster.Role(fs.Arg(0)), fs.Args()[1:]
	if err := o.validate(); err != nil {
		return err
	}
	dir := cluster.Dir{Path: o.ClusterDir}
	// Jobs submitted from inside this job start from the environment a login
	// shell would have: not this job's GPUs, temp dir or Ray settings. The
	// node works in its cluster's directory, not a store: no store is needed.
	a := &app{backends: backend.System(dir.Home(), slurm.LoginEnv(os.Environ(), templates.ScriptExports...)), clock: clock.System{}}
	return runNode(ctx, io, a, o)
}

func (o nodeOptions) validate() error {
	switch {
	case o.Role != cluster.RoleHead && o.Role != cluster.RoleWorker && o.Role != cluster.RoleDriver:
		return usagef("unknown role %q: use head, worker or driver", o.Role)
	case (o.Role == cluster.RoleDriver) != (len(o.DriverArgv) > 0):
		return usagef("a driver, and only a driver, takes a command after --")
	case o.ClusterDir == "":
		return usagef("--cluster-dir is required")
	case o.Role != cluster.RoleHead && o.HeadJob == "":
		return usagef("--head-job is required for a %s", o.Role)
	case o.Type != "" && o.Role != cluster.RoleWorker:
		return usagef("only a worker has a --type")
	case (o.Follows != "" || o.Restarts != 0) && o.Role != cluster.RoleDriver, o.Restarts < 0:
		return usagef("only a driver has --follows and --restarts (>= 0)")
	}
	return nil
}

// runNode runs the supervisor of one Ray node of the cluster in
// o.ClusterDir, and on the head its autoscaler, until the job ends.
func runNode(ctx context.Context, io IOStreams, a *app, o nodeOptions) error {
	dir := cluster.Dir{Path: o.ClusterDir}
	spec, err := dir.Spec()
	if err != nil {
		return fmt.Errorf("read cluster spec: %w", err)
	}
	sched := a.sched(spec)
	var typ cluster.WorkerType
	if o.Role == cluster.RoleWorker {
		if typ, err = spec.Type(o.Type); err != nil {
			return err
		}
	}
	cfg := raynode.Config{
		WorkerType:  typ,
		Role:        o.Role,
		Dir:         dir,
		Spec:        spec,
		HeadJob:     o.HeadJob,
		DriverArgv:  o.DriverArgv,
		MaxRestarts: o.MaxRestarts,
		Follows:     o.Follows,
		Restarts:    o.Restarts,
		Getenv:      os.Getenv,
		Environ:     os.Environ(),
		Scheduler:   sched,
		GPUs:        gpu.System(os.Getenv, io.Out),
		Log:         io.Out,
		Clock:       a.clock,
	}
	if spec.RollsOver() && o.Role != cluster.RoleDriver {
		cfg.Successor = headSubmitter{dir: dir, spec: spec, sched: sched}
	}
	if spec.RollsOver() && o.Role == cluster.RoleDriver {
		cfg.DriverSuccessor = driverSubmitter{a: a, dir: dir, spec: spec, o: o, getenv: os.Getenv}
	}
	if p, ok := sched.(raynode.PreemptionSource); ok {
		cfg.Preemption = p // SLURM's: a worker's (or a rollover head's) SIGTERM may be a preemption
	}
	// A worker of a rollover cluster may be promoted to head: it carries
	// the autoscaler too, which runs only once it is the head.
	if o.Role == cluster.RoleHead || (o.Role == cluster.RoleWorker && spec.RollsOver()) {
		// The head's observer and autoscaler ask about the same jobs: while
		// the autoscaler polls, its squeue serves the observer too.
		shared := scheduler.NewSharedJobs(a.clock.Now)
		cfg.Scheduler = shared.View(sched, raynode.ObservationStaleness)
		cfg.Autoscaler = autoscale.NewLoop(autoscale.LoopConfig{
			Dir: dir, HeadJob: raynode.JobKey(os.Getenv), Sched: shared.View(sched, 0), Clock: a.clock,
			Logf: func(format string, args ...any) {
				fmt.Fprintf(io.Out, "sraybatch node head [%s]: %s\n", a.clock.Now().Format(raynode.LogTimeLayout), fmt.Sprintf(format, args...))
			},
		})
	}
	return raynode.Run(ctx, cfg)
}

// headSubmitter submits a successor head job of a rollover cluster, as `up`
// submits the first: the spec's allocation and time limit.
type headSubmitter struct {
	dir   cluster.Dir
	spec  cluster.Spec
	sched submit.Scheduler
}

func (h headSubmitter) SubmitHead(ctx context.Context) (string, error) {
	s := submit.NodeScript(h.dir, h.spec, cluster.RoleHead)
	s.Time = h.spec.Node.Time
	id, err := submit.Script(ctx, h.sched, h.dir, s, false)
	if err != nil {
		return "", fmt.Errorf("submit a successor head job: %w", err)
	}
	return id, nil
}

// driverSubmitter submits a rollover cluster's successor driver job: what
// `train` submitted, rendered again through the same template and checks.
// The job's CPUs and partition are SLURM's word on this job; its --time is
// capped as train caps it (workerTimeLimit, by the current head).
type driverSubmitter struct {
	a      *app
	dir    cluster.Dir
	spec   cluster.Spec
	o      nodeOptions
	getenv func(string) string
}

func (d driverSubmitter) SubmitDriver(ctx context.Context, next raynode.DriverSuccession) (string, error) {
	limit, err := d.a.workerTimeLimit(ctx, d.spec, next.HeadJob)
	if err != nil {
		return "", fmt.Errorf("submit a successor driver job: %w", err)
	}
	cpus, err := strconv.Atoi(d.getenv("SLURM_CPUS_PER_TASK"))
	if err != nil || cpus < 1 {
		cpus = 1
	}
	s := submit.DriverScript(d.dir, d.spec, submit.Driver{HeadJob: next.HeadJob, Time: limit, Argv: d.o.DriverArgv, CPUs: cpus,
		Partition: d.getenv("SLURM_JOB_PARTITION"), MaxRestarts: d.o.MaxRestarts, Follows: next.Follows, Restarts: next.Restarts})
	id, err := submit.Script(ctx, d.a.sched(d.spec), d.dir, s, false)
	if err != nil {
		return "", fmt.Errorf("submit a successor driver job: %w", err)
	}
	return id, nil
}
