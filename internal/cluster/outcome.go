package cluster

import "github.com/sraybatch/sraybatch/internal/scheduler"

// Outcome is how a job ended, recorded by its supervisor (NodeRecord.Outcome)
// or read from the scheduler's final state. Status decides from it, never
// from the human reason text next to it.
type Outcome string

const (
	// OutcomeCompleted: the job did its work (a driver command exited 0).
	OutcomeCompleted Outcome = "completed"
	// OutcomeFailed: the driver command exited non-zero, or the node failed
	// in a way no other outcome names (Ray did not start, GPUs missing).
	OutcomeFailed Outcome = "failed"
	// OutcomeCancelled: scancel, `down`, or a signal from outside.
	OutcomeCancelled Outcome = "cancelled"
	// OutcomeTimeLimit: the scheduler ended the job at its time limit.
	OutcomeTimeLimit Outcome = "time_limit"
	// OutcomeNodeFail: the job's node failed (or did not boot).
	OutcomeNodeFail Outcome = "node_fail"
	// OutcomePreempted: the scheduler preempted the job.
	OutcomePreempted Outcome = "preempted"
	// OutcomeOutOfMemory: the job exceeded its memory.
	OutcomeOutOfMemory Outcome = "out_of_memory"
	// OutcomeHeadLost: the cluster's head ended or stopped answering while
	// this node was in it.
	OutcomeHeadLost Outcome = "head_lost"
	// OutcomeSetupFailed: the user's --setup lines failed.
	OutcomeSetupFailed Outcome = "setup_failed"
	// OutcomeJoinFailed: the node never joined (its head was gone, or Ray
	// did not let it in in time).
	OutcomeJoinFailed Outcome = "join_failed"
	// OutcomeRayExited: the node's Ray exited by itself, not asked to.
	OutcomeRayExited Outcome = "ray_exited"
	// OutcomeDrainedIdle: Ray drained the node for idleness and it left.
	OutcomeDrainedIdle Outcome = "drained_idle"
	// OutcomeDrainedTimeLimit: the node left Ray before its time limit.
	OutcomeDrainedTimeLimit Outcome = "drained_time_limit"
	// OutcomeRequeuedHead: SLURM ran the head job's script again after a
	// requeue (preemption, node failure, `scontrol requeue`); that run exits
	// at once rather than become a second head of the cluster.
	OutcomeRequeuedHead Outcome = "requeued_head"
	// OutcomeHandedOver: a head of a rollover cluster handed the cluster
	// to the next generation's head and stopped (generation.go).
	OutcomeHandedOver Outcome = "handed_over"
)

// Orderly reports whether a job that ended this way left in an orderly way
// (status shows `ended`), rather than being lost.
func (o Outcome) Orderly() bool {
	switch o {
	case OutcomeCompleted, OutcomeDrainedIdle, OutcomeDrainedTimeLimit, OutcomeHandedOver:
		return true
	}
	return false
}

// OutcomeOfState maps a scheduler's final job state to an outcome; "" for a
// state that is not final or says nothing more than the record does.
func OutcomeOfState(s scheduler.JobState) Outcome {
	switch s {
	case scheduler.Completed:
		return OutcomeCompleted
	case scheduler.Cancelled:
		return OutcomeCancelled
	case scheduler.Timeout, scheduler.Deadline:
		return OutcomeTimeLimit
	case scheduler.NodeFail, scheduler.BootFail:
		return OutcomeNodeFail
	case scheduler.Preempted:
		return OutcomePreempted
	case scheduler.OutOfMemory:
		return OutcomeOutOfMemory
	case scheduler.Failed:
		return OutcomeFailed
	}
	return ""
}

// JobOutcome decides how a job ended from its supervisor's final record
// (recorded; "" when it wrote none, e.g. it was SIGKILLed) and the
// scheduler's final state (state; "" when unknown or still active). The
// supervisor knows most (drained, head lost, setup failed...), but a SLURM
// time limit, preemption or node failure reaches it as a plain SIGTERM, which
// it records as a cancel: then the scheduler's more specific word wins.
func JobOutcome(recorded Outcome, state scheduler.JobState) Outcome {
	fromState := OutcomeOfState(state)
	switch {
	case recorded == "":
		return fromState
	case recorded == OutcomeCancelled:
		switch fromState {
		case OutcomeTimeLimit, OutcomePreempted, OutcomeNodeFail, OutcomeOutOfMemory:
			return fromState
		}
	}
	return recorded
}
