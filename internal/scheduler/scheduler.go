// Package scheduler is the seam between sraybatch and whatever runs its node
// jobs: SLURM (package slurm) or the processes of one host (package local).
// Everything above it (the model, the CLI, the in-job supervisor) talks to a
// Scheduler and reads Jobs; only the implementations know argv layouts,
// output formats or process tables.
//
// Job states use SLURM's words (PENDING, RUNNING, CANCELLED, ...), the
// vocabulary users of either backend read in `status`.
package scheduler

import (
	"context"
	"errors"
	"strings"
	"time"
)

// Query selects jobs; empty fields select everything. Names, JobIDs and User
// are filters applied by squeue itself. Without a User or JobIDs the answer
// holds every user's jobs, so callers that poll pass at least one of them.
type Query struct {
	User   string
	Names  []string
	JobIDs []string // "7" selects every task of array 7; "7_2" one task
}

// CancelOptions selects what scancel sends.
type CancelOptions struct {
	// Signal is sent instead of cancelling ("TERM", "USR1", ...). Empty
	// cancels the job.
	Signal string
	// Batch signals only the batch shell, not the job's steps.
	Batch bool
	// Full signals the batch shell and every step; with cgroup process
	// tracking a plain signal reaches only the batch shell.
	Full bool
}

// Scheduler is what sraybatch needs from SLURM. Each method runs a fixed
// number of client commands (one, except where noted) whatever the size of
// the cluster's queue, so a status poll stays cheap on a busy site.
type Scheduler interface {
	// Submit runs `sbatch --parsable scriptPath`, so every option lives in
	// the script's #SBATCH lines, and returns the job id ("7"; for an array,
	// the array job id). A ";cluster" suffix (federations) is dropped.
	Submit(ctx context.Context, scriptPath string) (string, error)

	// Jobs runs one `squeue -h -r --states=all` with -u/-n/-j from q and
	// returns every record, one per array task, finished jobs still in
	// SLURM's memory (MinJobAge) included. Ids SLURM has already purged are
	// simply absent: if every requested id is unknown the list is empty, not
	// an error.
	Jobs(ctx context.Context, q Query) ([]Job, error)

	// Cancel runs one `scancel` over ids (an array job id covers all its
	// tasks); with no ids it does nothing. Cancelling a job that has already
	// ended is not an error (scancel exits 0).
	Cancel(ctx context.Context, ids []string, opts CancelOptions) error

	// Ping runs `scontrol ping` and returns nil when a controller answers UP.
	// It is the cheap readiness check: it answers in milliseconds when the
	// controller is down, where squeue and sbatch hang for ~9 s first.
	Ping(ctx context.Context) error

	// NodeAddr returns the address SLURM knows for a node (NodeAddr= of
	// `scontrol show node -o node`). Jobs need it because nodes sharing a
	// host differ only by address, and no job environment variable holds it.
	NodeAddr(ctx context.Context, node string) (string, error)

	// FreeGPUs runs one `sinfo -h -N -O ...` (restricted to partition unless
	// it is empty) and returns each node's configured and allocated GPUs;
	// NodeGPUs.Free says how many a new job could get. An unknown partition
	// gives an empty list, as sinfo does.
	FreeGPUs(ctx context.Context, partition string) ([]NodeGPUs, error)

	// MaxTime returns the longest --time a job of partition (the default
	// partition when empty) may ask for, unlimited when there is none. SLURM
	// accepts a longer --time by default and the job then never starts
	// (PartitionTimeLimit), so submitters cap their --time at it.
	MaxTime(ctx context.Context, partition string) (max time.Duration, unlimited bool, err error)

	// MaxArrayTasks returns how many tasks one job array may have (SLURM's
	// MaxArraySize, lowered by SchedulerParameters=max_array_tasks); 0: no
	// limit. Submitters ask only after an array was refused, so the usual
	// submission stays one call.
	MaxArrayTasks(ctx context.Context) (int, error)
}

// ErrArrayTooLarge is a submission refused because its array has more tasks
// than the scheduler allows (MaxArrayTasks says how many it does).
var ErrArrayTooLarge = errors.New("job array too large")

// Job is one squeue record: a plain job or one task of a job array.
type Job struct {
	ID          string // "8", or "7_0" for an array task (squeue -r %i form)
	ArrayJobID  string // "7" for array tasks; "" for plain jobs
	ArrayTaskID string // "0"; "" for plain jobs
	Name, User  string
	State       JobState
	Reason      string        // why it pends: "Resources", "Dependency", ...; "" when squeue says "None"
	Node        string        // node list as squeue prints it ("node1", "node[1-2]"); "" while pending
	GPUs        int           // GPUs per node requested
	Elapsed     time.Duration // time used so far
	TimeLeft    time.Duration // 0 when Unlimited, and once the job has overrun its limit
	TimeLimit   time.Duration // 0 when Unlimited
	Unlimited   bool          // no finite time limit is known: UNLIMITED, NOT_SET or INVALID
}

// NodeGPUs is one node of one partition as sinfo -N sees it: a node in two
// partitions appears twice.
type NodeGPUs struct {
	Node, Partition string
	State           string // sinfo's long state: "idle", "mixed", "drained", "down*", "idle~"...
	Total, Used     int    // GPUs configured and allocated
}

// Free returns the GPUs a new job could be given on the node now. A node
// that is down, drained or draining, not responding, failing, in maintenance
// or about to power down or reboot offers none, whatever its GRES say.
func (n NodeGPUs) Free() int {
	if !schedulable(n.State) || n.Used >= n.Total {
		return 0
	}
	return n.Total - n.Used
}

// schedulable reports whether sinfo's long node state lets new jobs start.
// The state is a base word with optional suffix symbols ("*" no response,
// "~" powered off, "#" powering up, "%" powering down, "!" power down
// pending, "@" reboot pending, "^" rebooting, "$" maintenance reservation,
// "-" planned by the backfill scheduler) and, in some releases, "+FLAG"s.
// A powered-off node still counts: SLURM boots it for the job.
func schedulable(state string) bool {
	words := strings.Split(strings.ToLower(state), "+")
	base := strings.TrimRight(words[0], "*~#%!@^$-")
	if strings.ContainsAny(words[0][len(base):], "*%!@^$") {
		return false
	}
	switch base {
	case "idle", "mixed", "allocated", "completing", "planned":
	default:
		return false
	}
	for _, flag := range words[1:] {
		switch flag {
		case "cloud", "completing", "planned", "powered_down", "powering_up":
		default:
			return false
		}
	}
	return true
}

// Preemption is the scheduler's word on a job being preempted: SLURM marks
// the job (PreemptTime) when it picks it, sends SIGCONT and SIGTERM, and
// kills it KillWait after that SIGTERM, or at End, whichever comes first.
type Preemption struct {
	// At is when the scheduler chose to preempt the job; zero: it did not.
	At time.Time
	// End is when the job's time now ends (SLURM sets it to At+GraceTime);
	// zero when unknown or unlimited.
	End time.Time
	// KillWait is the scheduler's wait between SIGTERM and SIGKILL; 0 when unknown.
	KillWait time.Duration
}

// Preempted reports whether the scheduler is preempting the job.
func (p Preemption) Preempted() bool { return !p.At.IsZero() }
