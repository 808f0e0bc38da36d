package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/scheduler"
	"github.com/sraybatch/sraybatch/internal/submit"
	"github.com/sraybatch/sraybatch/slurm"
	"github.com/sraybatch/sraybatch/templates"
)

const growUsage = `Usage: sraybatch grow [--cluster NAME] [-n K] [flags]

Add K worker jobs to a cluster with one sbatch call (a job array when K > 1).
Each worker is one Ray node advertising all GPUs of its job. A worker's time
limit is capped at the head's time left. Ctrl+C during --wait stops the
waiting, not the workers (exit 130).

Examples:
  sraybatch grow --cluster exp1 -n 2 --wait
  sraybatch grow -n 1            # the only live cluster
  sraybatch grow -c exp1 --fill --max 8   # one worker per free GPU slot now
  sraybatch grow -c exp1 -n 2 --partition scav   # these workers on a preemptible partition
  sraybatch grow -c long --type cpu -n 4   # a worker type of the cluster file

Workers are of the cluster's default worker type (the first of the cluster
file's workers:, else the shape up's flags gave) unless --type names
another; they go to that type's partition (up --worker-partition, else up's
--partition, unless the type names its own); --partition picks another for
this call only.`

type growOptions struct {
	Cluster string
	Count   int
	// Time is this grow's --time (still capped at the head's time left).
	Time string
	// Fill asks for as many workers as free GPUs allow now, at most Max (0: no cap).
	Fill bool
	Max  int
	// Partition is these workers' partition; "": their type's.
	Partition string
	// Type is the workers' type; "": the cluster's default type.
	Type string
	Wait waitOptions
}

func runGrowCmd(ctx context.Context, io IOStreams, args []string) error {
	var o growOptions
	fs := newFlagSet("grow", growUsage, io)
	addClusterFlag(fs, &o.Cluster)
	fs.IntVarP(&o.Count, "count", "n", 1, "number of worker jobs to add")
	fs.BoolVar(&o.Fill, "fill", false, "add as many workers as there are free GPUs now (instead of -n)")
	fs.IntVar(&o.Max, "max", 0, "with --fill: at most this many workers")
	fs.StringVar(&o.Type, "type", "", "worker type of the cluster (default: the first one of up -f's workers:)")
	fs.StringVar(&o.Partition, "partition", "", "SLURM partition of these workers (default: their type's)")
	fs.StringVar(&o.Time, "time", "", "time limit of these workers (default: up's --time; always capped at the head's time left)")
	o.Wait.addFlags(fs, "every new worker has joined Ray")
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	a, err := newApp()
	if err != nil {
		return err
	}
	return runGrow(ctx, io, a, o)
}

func runGrow(ctx context.Context, io IOStreams, a *app, o growOptions) error {
	if o.Count < 1 || o.Max < 0 {
		return usagef("-n must be at least 1 and --max not negative")
	}
	for flag, v := range map[string]string{"--cluster": o.Cluster, "--partition": o.Partition, "--type": o.Type} {
		if err := templates.SingleLine(flag, v); err != nil {
			return usageError{err}
		}
	}
	if o.Time != "" {
		if _, _, err := slurm.ParseTimeLimit(o.Time); err != nil {
			return usageError{err}
		}
	}
	done := step(ctx, "read state")
	dir, spec, head, err := a.liveCluster(o.Cluster)
	done()
	if err != nil {
		return err
	}
	if o.Time != "" {
		spec.Node.Time = o.Time
	}
	typ, err := spec.Type(o.Type)
	if err != nil {
		return usageError{err}
	}
	if o.Partition != "" {
		typ.Node.Partition = o.Partition // this call's workers only: the spec on disk stays
	}
	if o.Fill {
		if o.Count, err = a.fillCount(ctx, spec, typ.Node, o.Max); err != nil {
			return err
		}
	}
	done = step(ctx, "squeue")
	limit, err := a.workerTimeLimit(ctx, spec, head)
	done()
	if err != nil {
		return err
	}
	done = step(ctx, "script+sbatch+record")
	keys, err := a.submitWorkers(ctx, dir, spec, submit.Request{Type: typ, Head: head, Count: o.Count, TimeLimit: limit})
	done()
	if err != nil {
		return err
	}
	done = step(ctx, "print")
	fmt.Fprintf(io.ErrOut, "cluster %s: worker jobs %v submitted\n", spec.Name, keys)
	for _, k := range keys {
		fmt.Fprintln(io.Out, k)
	}
	done()
	if !o.Wait.Wait {
		return nil
	}
	return waitForJobs(ctx, io, a, dir, spec, keys, a.newBudget(o.Wait.Timeout))
}

// fillCount is how many one-node workers of shape node fit on the GPUs
// free right now (one sinfo call), capped at max when max > 0.
func (a *app) fillCount(ctx context.Context, spec cluster.Spec, node cluster.NodeSpec, max int) (int, error) {
	if node.GPUs == 0 {
		return 0, usagef("--fill counts free GPUs, and these workers have none: use -n")
	}
	partition := node.Partition
	nodes, err := a.sched(spec).FreeGPUs(ctx, partition)
	if err != nil {
		return 0, fmt.Errorf("list free GPUs: %w", err)
	}
	n := 0
	for _, free := range scheduler.EachNodeOnce(nodes) {
		n += free.Free() / node.GPUs
	}
	if max > 0 {
		n = min(n, max)
	}
	if n == 0 {
		where := "any partition"
		if partition != "" {
			where = "partition " + partition
		}
		return 0, fmt.Errorf("no node of %s has %d free GPUs now: see `sraybatch free`", where, node.GPUs)
	}
	return n, nil
}

// workerTimeLimit caps a worker's --time at the head's time left: a worker
// outliving its head holds GPUs for nothing.
func (a *app) workerTimeLimit(ctx context.Context, spec cluster.Spec, head string) (string, error) {
	jobs, err := a.jobs(ctx, a.sched(spec), scheduler.Query{JobIDs: []string{head}})
	if err != nil {
		return "", fmt.Errorf("look up head job %s: %w: try again when `scontrol ping` says UP", head, err)
	}
	for _, j := range jobs {
		if j.ID == head {
			return submit.WorkerTimeLimit(spec, j)
		}
	}
	return "", fmt.Errorf("head job %s is no longer known to SLURM: start a new cluster with `sraybatch up`", head)
}

// submitWorkers submits r.Count workers in one sbatch call and returns their job keys.
func (a *app) submitWorkers(ctx context.Context, dir cluster.Dir, spec cluster.Spec, r submit.Request) ([]string, error) {
	return asUsage(submit.Workers(ctx, timedSubmit(ctx, a.sched(spec)), dir, spec, r))
}

// asUsage reports a script that does not render as bad input (exit 2).
func asUsage[T any](v T, err error) (T, error) {
	var invalid *submit.InvalidError
	if errors.As(err, &invalid) {
		return v, usageError{invalid.Err}
	}
	return v, err
}
