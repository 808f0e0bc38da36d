// Package submit renders a cluster's batch scripts, writes them into the
// cluster directory, submits them and records each submission. `up`,
// `grow`, `train` and the head job's autoscaler all submit through it, so a
// worker the autoscaler adds is the same job as one `grow` adds.
package submit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/scheduler"
	"github.com/sraybatch/sraybatch/slurm"
	"github.com/sraybatch/sraybatch/templates"
)

// InvalidError is a script that does not render: bad input, nothing submitted.
type InvalidError struct{ Err error }

func (e *InvalidError) Error() string { return e.Err.Error() }
func (e *InvalidError) Unwrap() error { return e.Err }

// NodeScript fills the parts of a batch script every role shares.
func NodeScript(dir cluster.Dir, spec cluster.Spec, role cluster.Role) templates.Script {
	return templates.Script{
		Role: role, Cluster: spec.Name, ClusterID: spec.ID, ClusterDir: dir.Path,
		Binary: dir.BinaryPath(), TokenPath: dir.TokenPath(), LogDir: spec.LogDir,
		Insecure: spec.Insecure, Node: spec.Node, DrainBefore: spec.DrainBeforeS,
	}
}

// Driver is a driver job as `train` asks for it; a rollover cluster's
// successor driver job is the same job again (raynode's DriverSubmitter).
type Driver struct {
	// HeadJob is the head's job id; Time the job's --time.
	HeadJob, Time string
	Argv          []string
	CPUs          int
	// Partition is the driver job's; "": the head's.
	Partition   string
	MaxRestarts int
	// Follows and Restarts are a successor's: the driver job it takes over
	// from, and the command's re-runs so far.
	Follows  string
	Restarts int
}

// DriverScript is the script of driver job d: no GPUs, d's CPUs, and on a
// rollover cluster its restart bound.
func DriverScript(dir cluster.Dir, spec cluster.Spec, d Driver) templates.Script {
	s := NodeScript(dir, spec, cluster.RoleDriver)
	s.Node.GPUs, s.Node.CPUs, s.Node.Mem = 0, d.CPUs, ""
	if d.Partition != "" {
		s.Node.Partition = d.Partition
	}
	s.HeadJob, s.Time, s.DriverArgv = d.HeadJob, d.Time, d.Argv
	s.Follows, s.Restarts = d.Follows, d.Restarts
	if spec.RollsOver() {
		s.MaxRestarts = &d.MaxRestarts
	}
	return s
}

// Scheduler is what submitting asks of the scheduler (a
// scheduler.Scheduler): sbatch, the cancel of a job it could not record,
// and the array limit after a refused array.
type Scheduler interface {
	Submit(ctx context.Context, scriptPath string) (string, error)
	Cancel(ctx context.Context, ids []string, opts scheduler.CancelOptions) error
	MaxArrayTasks(ctx context.Context) (int, error)
}

var _ Scheduler = scheduler.Scheduler(nil)

// ArrayTasks is the array size for n jobs: 0 (a plain job) for one.
func ArrayTasks(n int) int {
	if n == 1 {
		return 0
	}
	return n
}

// Script renders, writes and submits one script and records the submission;
// it returns the job id (the array job id for an array). A job submitted but
// not recorded is cancelled rather than leaked.
func Script(ctx context.Context, sched Scheduler, dir cluster.Dir, s templates.Script, autoscaled bool) (string, error) {
	script, err := templates.Render(s)
	if err != nil {
		return "", &InvalidError{err}
	}
	path := dir.ScriptPath(fmt.Sprintf("%s-%s.sbatch", s.Role, uuid.NewString()[:8]))
	sync, err := cluster.WriteFileSyncLater(path, script, 0o600)
	if err != nil {
		return "", err
	}
	// The script's fsync (~3 ms on a disk) runs while sbatch does: sbatch
	// reads the page cache, and the script is on disk before the record
	// that names it is written.
	synced := make(chan error, 1)
	go func() { synced <- sync() }()
	jobID, err := sched.Submit(ctx, path)
	serr := <-synced
	if err != nil {
		return "", fmt.Errorf("submit %s job: %w", s.Role, err)
	}
	if serr != nil {
		sched.Cancel(context.WithoutCancel(ctx), []string{jobID}, scheduler.CancelOptions{})
		return "", fmt.Errorf("%w (cancelled job %s)", serr, jobID)
	}
	sub := cluster.Submission{Role: s.Role, JobID: jobID, Tasks: s.Tasks, Submitted: time.Now().UTC(), Script: path, Autoscaled: autoscaled, Type: s.WorkerType}
	if err := dir.AddSubmission(sub); err != nil {
		sched.Cancel(context.WithoutCancel(ctx), []string{jobID}, scheduler.CancelOptions{})
		return "", fmt.Errorf("record %s job %s (cancelled it): %w", s.Role, jobID, err)
	}
	return jobID, nil
}

// Request is the workers of one type that one Workers call submits.
type Request struct {
	// Type is the workers' type: its allocation and setup (spec.Type).
	Type cluster.WorkerType
	// Head is the head's job id; TimeLimit each worker's --time.
	Head      string
	Count     int
	TimeLimit string
	// Autoscaled marks the autoscaler's own submissions.
	Autoscaled bool
}

// Workers submits r.Count workers of one type in one sbatch call (an array
// when more than one) and returns their job keys. When the scheduler
// refuses an array that large (MaxArraySize, max_array_tasks), it asks for
// the limit and submits arrays of at most that many, one call each.
func Workers(ctx context.Context, sched Scheduler, dir cluster.Dir, spec cluster.Spec, r Request) ([]string, error) {
	keys, err := workers(ctx, sched, dir, spec, r)
	if !errors.Is(err, scheduler.ErrArrayTooLarge) {
		return keys, err
	}
	limit, lerr := sched.MaxArrayTasks(ctx)
	if lerr != nil || limit <= 0 || limit >= r.Count {
		return nil, err
	}
	n := r.Count
	for _, size := range ArrayChunks(n, limit) {
		r.Count = size
		more, err := workers(ctx, sched, dir, spec, r)
		if err != nil {
			return keys, fmt.Errorf("%d of %d workers submitted (arrays of at most %d tasks, SLURM's limit): %w", len(keys), n, limit, err)
		}
		keys = append(keys, more...)
	}
	return keys, nil
}

func workers(ctx context.Context, sched Scheduler, dir cluster.Dir, spec cluster.Spec, r Request) ([]string, error) {
	s := WorkerScript(dir, spec, r.Type)
	s.HeadJob, s.Tasks, s.Time = r.Head, ArrayTasks(r.Count), r.TimeLimit
	id, err := Script(ctx, sched, dir, s, r.Autoscaled)
	if err != nil {
		return nil, err
	}
	return cluster.Submission{JobID: id, Tasks: s.Tasks}.JobKeys(), nil
}

// WorkerScript is the script of a worker of type t. Only a cluster with
// explicit types names the type in it, so a cluster without keeps the
// scripts it always had.
func WorkerScript(dir cluster.Dir, spec cluster.Spec, t cluster.WorkerType) templates.Script {
	s := NodeScript(dir, spec, cluster.RoleWorker)
	s.Node = t.Node
	if len(spec.Workers) > 0 {
		s.WorkerType = t.Name
	}
	return s
}

// ArrayChunks splits n tasks into arrays of at most limit tasks.
func ArrayChunks(n, limit int) []int {
	var sizes []int
	for n > 0 {
		size := min(n, limit)
		sizes = append(sizes, size)
		n -= size
	}
	return sizes
}

// WorkerTimeLimit is a new worker's --time: the cluster's, capped at the
// head job's time left, since a worker outliving its head holds GPUs for
// nothing, unless the cluster rolls over to the next head (then the
// partition's MaxTime, SLURM's own cap, is the bound). head is the head
// job as the scheduler reports it.
func WorkerTimeLimit(spec cluster.Spec, head scheduler.Job) (string, error) {
	if !head.State.Active() {
		return "", fmt.Errorf("head job %s has ended (%s): start a new cluster with `sraybatch up`", head.ID, head.State)
	}
	if !spec.RollsOver() && head.State == scheduler.Running && !head.Unlimited && head.TimeLeft > 0 {
		if want, unlimited, err := slurm.ParseTimeLimit(spec.Node.Time); spec.Node.Time == "" || unlimited || err != nil || head.TimeLeft < want {
			return slurm.FormatTimeLimit(head.TimeLeft), nil
		}
	}
	return spec.Node.Time, nil
}
