package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/scheduler"
	"github.com/sraybatch/sraybatch/internal/submit"
	"github.com/sraybatch/sraybatch/raynode"
	"github.com/sraybatch/sraybatch/templates"
	"github.com/sraybatch/sraybatch/trainloop"
)

const trainUsage = `Usage: sraybatch train [--cluster NAME] [flags] [-- COMMAND ARGS...]

Submit the training driver as its own SLURM job (CPU only). The job first
starts a 0-GPU Ray node of the cluster on its host, then runs the driver with
RAY_ADDRESS and the cluster's auth settings, so a bare ray.init() connects.
Without a command it runs the built-in elastic demo loop: one actor per GPU
of every joined node, scaling as the cluster grows and surviving nodes leaving.
Your own driver can import sraybatch_trainloop (on its PYTHONPATH) for the same
elastic pool and events.

On a cluster started with up --rollover, the driver gets SIGINT when the
head hands over (Ray Train aborts its run at a safe point), and its command
runs again on the next head with SRAYBATCH_RESUMED=1: resume from your
checkpoint (Ray Train: a fixed RunConfig name and storage_path).

With --follow it exits 0 only when the driver completed (its command exited
0), and 1 when it failed, was cancelled, hit its time limit or lost its head.
A rollover cluster's driver job hands the run over to a successor driver job
before its own time limit or preemption; --follow follows the successor.
Ctrl+C stops following, not the driver (exit 130).

Examples:
  sraybatch train --cluster exp1
  sraybatch train --cluster exp1 --steps 100 --follow
  sraybatch train --cluster exp1 -- python my_driver.py --lr 3e-4`

type trainOptions struct {
	Cluster     string
	Steps       int
	StepSeconds float64
	// CheckpointEvery makes the demo also checkpoint every N steps.
	CheckpointEvery int
	// MaxRestarts bounds the driver's re-runs after head handovers.
	MaxRestarts int
	// GPUsPerActor is the demo's GPUs per actor; nil: 1, or 0 on a CPU-only cluster.
	GPUsPerActor *float64
	CPUs         int
	// Partition is the driver job's; "": the head's (up --partition).
	Partition string
	Follow    bool
	Command   []string
}

func runTrainCmd(ctx context.Context, io IOStreams, args []string) error {
	var o trainOptions
	fs := newFlagSet("train", trainUsage, io)
	addClusterFlag(fs, &o.Cluster)
	fs.IntVar(&o.Steps, "steps", 0, "demo: steps to run (0: until the cluster goes down)")
	fs.Float64Var(&o.StepSeconds, "step-seconds", 1, "demo: seconds of work per step")
	fs.IntVar(&o.CheckpointEvery, "checkpoint-every", 0, "demo: also checkpoint every N steps (0: only on warnings and stops)")
	fs.IntVar(&o.MaxRestarts, "max-restarts", raynode.DefaultMaxRestarts, "with up --rollover: run the command again after at most this many head handovers")
	fs.Var(optionalFloat{&o.GPUsPerActor}, "gpus-per-actor", "demo: GPUs per actor (default 1, or 0 on a CPU-only cluster)")
	fs.IntVar(&o.CPUs, "cpus", 1, "CPUs of the driver job")
	fs.StringVar(&o.Partition, "partition", "", "SLURM partition of the driver job (default: the head's); e.g. not the preemptible one a head of up --rollover may sit on")
	fs.BoolVarP(&o.Follow, "follow", "f", false, "stream the driver's output until it ends (exit 1 unless it completed)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.ArgsLenAtDash() >= 0 {
		o.Command = fs.Args()[fs.ArgsLenAtDash():]
	}
	if fs.NArg() > len(o.Command) {
		return usagef("unexpected argument %q: put the driver command after -- (see --help)", fs.Arg(0))
	}
	a, err := newApp()
	if err != nil {
		return err
	}
	return runTrain(ctx, io, a, o)
}

func runTrain(ctx context.Context, io IOStreams, a *app, o trainOptions) error {
	for flag, v := range map[string]string{"--cluster": o.Cluster, "--partition": o.Partition} {
		if err := templates.SingleLine(flag, v); err != nil {
			return usageError{err}
		}
	}
	if o.Steps < 0 || o.CheckpointEvery < 0 || o.MaxRestarts < 0 || o.StepSeconds <= 0 || o.CPUs < 1 || (o.GPUsPerActor != nil && *o.GPUsPerActor < 0) {
		return usagef("--steps, --checkpoint-every and --max-restarts must be >= 0, --step-seconds > 0, --gpus-per-actor >= 0 and --cpus >= 1")
	}
	dir, spec, head, err := a.liveCluster(o.Cluster)
	if err != nil {
		return err
	}
	command := o.Command
	if len(command) == 0 {
		gpus := min(1, float64(spec.Node.GPUs))
		if o.GPUsPerActor != nil {
			gpus = *o.GPUsPerActor
		}
		command = []string{"python3", "-m", trainloop.PythonPackage + ".demo",
			"--steps", strconv.Itoa(o.Steps), "--step-seconds", strconv.FormatFloat(o.StepSeconds, 'g', -1, 64),
			"--gpus-per-actor", strconv.FormatFloat(gpus, 'g', -1, 64)}
		if o.CheckpointEvery > 0 {
			command = append(command, "--checkpoint-every", strconv.Itoa(o.CheckpointEvery))
		}
	}
	if err := trainloop.InstallPython(dir.PythonPath()); err != nil {
		return fmt.Errorf("install the trainloop package: %w", err)
	}
	limit, err := a.workerTimeLimit(ctx, spec, head)
	if err != nil {
		return err
	}
	s := submit.DriverScript(dir, spec, submit.Driver{HeadJob: head, Time: limit, Argv: command, CPUs: o.CPUs, Partition: o.Partition, MaxRestarts: o.MaxRestarts})
	jobID, err := asUsage(submit.Script(ctx, a.sched(spec), dir, s, false))
	if err != nil {
		return err
	}
	fmt.Fprintf(io.ErrOut, "cluster %s: driver job %s submitted; its log: %s\n", spec.Name, jobID, cluster.JobLog(spec.LogDir, spec.Name, cluster.RoleDriver, jobID))
	fmt.Fprintln(io.Out, jobID)
	if !o.Follow {
		return nil
	}
	return followDriver(ctx, io, a, dir, spec, jobID)
}

// settleFor is how long followDriver waits, after the driver's supervisor
// recorded its end, for SLURM to end the job too: SLURM's final state is more
// specific (a time limit reaches the supervisor as a plain SIGTERM).
const settleFor = 10 * time.Second

// followDriver streams the driver job's log until the job has ended, and
// fails unless the driver completed. It decides from the job's status, the
// supervisor's record merged with one bounded squeue per poll.
func followDriver(ctx context.Context, io IOStreams, a *app, dir cluster.Dir, spec cluster.Spec, job string) error {
	path := cluster.JobLog(spec.LogDir, spec.Name, cluster.RoleDriver, job)
	var offset int64
	var endSeen time.Time
	for {
		offset = copyFrom(path, offset, io.Out)
		st, err := a.clusterStatus(ctx, dir, spec)
		if err != nil {
			return err
		}
		js := findJob(st, job)
		if js == nil {
			return fmt.Errorf("cluster %s has no driver job %s recorded", spec.Name, job)
		}
		if js.Outcome != "" && endSeen.IsZero() {
			endSeen = a.clock.Now()
		}
		if driverOver(*js, !endSeen.IsZero() && a.clock.Now().Sub(endSeen) >= settleFor) {
			// Let the last lines reach the shared filesystem.
			select {
			case <-ctx.Done():
			case <-a.clock.After(pollInterval):
			}
			copyFrom(path, offset, io.Out)
			if js.Outcome == cluster.OutcomeHandedOver && js.Successor != "" {
				// A rollover cluster's driver job handed the run over before its
				// own end: the run goes on in its successor.
				fmt.Fprintf(io.ErrOut, "cluster %s: driver job %s handed the run over to driver job %s; following it\n", spec.Name, job, js.Successor)
				job, path, offset, endSeen = js.Successor, cluster.JobLog(spec.LogDir, spec.Name, cluster.RoleDriver, js.Successor), 0, time.Time{}
				continue
			}
			return driverResult(*js, path)
		}
		select {
		case <-ctx.Done():
			return interruptedError{fmt.Errorf("interrupted: driver job %s keeps running (its log: %s); see `sraybatch status -c %s`, or `sraybatch down -c %s`",
				job, path, spec.Name, spec.Name)}
		case <-a.clock.After(pollInterval):
		}
	}
}

// driverOver reports whether following may stop: SLURM has ended the job
// (or forgotten it), or its supervisor recorded an outcome and SLURM cannot
// tell more: it does not answer, or settled says the record is old enough.
// Ray membership alone never ends it: with the head gone, a running driver
// shows as lost until its supervisor notices.
func driverOver(js cluster.JobStatus, settled bool) bool {
	slurmEnded := js.SlurmState != "" && !scheduler.JobState(js.SlurmState).Active()
	if js.Outcome == "" {
		return slurmEnded
	}
	return slurmEnded || js.SlurmState == "" || settled
}

// driverResult is nil when the driver of an ended job completed, else one
// line naming how it ended.
func driverResult(js cluster.JobStatus, log string) error {
	failed := js.Outcome == cluster.OutcomeFailed || js.Outcome == ""
	switch {
	case js.Outcome == cluster.OutcomeCompleted:
		return nil
	case failed && js.ExitCode != nil && *js.ExitCode != 0:
		// A cancelled driver's command may exit non-zero too; the outcome says more.
		return fmt.Errorf("driver job %s: its command exited with code %d (log %s)", js.JobID, *js.ExitCode, log)
	case js.Outcome == "":
		return fmt.Errorf("driver job %s ended without recording how (SLURM: %s): see its log %s", js.JobID, dash(js.SlurmState), log)
	}
	return fmt.Errorf("driver job %s %s: %s (log %s)", js.JobID, outcomeWords(js.Outcome), orNone(js.Reason), log)
}

// outcomeWords says how a job ended, after "driver job 161".
func outcomeWords(o cluster.Outcome) string {
	switch o {
	case cluster.OutcomeTimeLimit:
		return "hit its time limit"
	case cluster.OutcomeNodeFail:
		return "lost its node"
	case cluster.OutcomePreempted:
		return "was preempted"
	case cluster.OutcomeOutOfMemory:
		return "ran out of memory"
	case cluster.OutcomeHeadLost:
		return "lost its head"
	case cluster.OutcomeSetupFailed:
		return "failed in --setup"
	case cluster.OutcomeJoinFailed:
		return "could not join the cluster"
	case cluster.OutcomeRayExited:
		return "lost its Ray node"
	case cluster.OutcomeDrainedIdle, cluster.OutcomeDrainedTimeLimit:
		return "was drained"
	case cluster.OutcomeHandedOver:
		return "handed the run over"
	}
	return string(o) // completed, failed, cancelled
}

// copyFrom copies what path holds beyond offset and returns the new offset.
func copyFrom(path string, offset int64, w io.Writer) int64 {
	f, err := os.Open(path)
	if err != nil { // not written yet
		return offset
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return offset
	}
	n, _ := io.Copy(w, f)
	return offset + n
}
