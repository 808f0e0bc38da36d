package scheduler

// JobState is SLURM's long state name as squeue %T prints it. squeue prints
// one word: a state flag (COMPLETING, CONFIGURING, ...) wins over the base
// state it qualifies. Words this package does not know are kept as they are.
type JobState string

// Base states.
const (
	Pending     JobState = "PENDING"
	Running     JobState = "RUNNING"
	Suspended   JobState = "SUSPENDED"
	Completed   JobState = "COMPLETED"
	Cancelled   JobState = "CANCELLED"
	Failed      JobState = "FAILED"
	Timeout     JobState = "TIMEOUT"
	NodeFail    JobState = "NODE_FAIL"
	Preempted   JobState = "PREEMPTED"
	BootFail    JobState = "BOOT_FAIL"
	Deadline    JobState = "DEADLINE"
	OutOfMemory JobState = "OUT_OF_MEMORY"
)

// State flags, printed instead of the base state while they are set.
const (
	Completing  JobState = "COMPLETING"
	StageOut    JobState = "STAGE_OUT"
	Configuring JobState = "CONFIGURING"
	Resizing    JobState = "RESIZING"
	Requeued    JobState = "REQUEUED"
	RequeueFed  JobState = "REQUEUE_FED"
	RequeueHold JobState = "REQUEUE_HOLD"
	SpecialExit JobState = "SPECIAL_EXIT"
	Stopped     JobState = "STOPPED"
	Revoked     JobState = "REVOKED"
	ResvDelHold JobState = "RESV_DEL_HOLD"
	Signaling   JobState = "SIGNALING"
	// Expediting (SLURM 25.11) marks a job requeued to run again at once.
	Expediting JobState = "EXPEDITING"
)

// Active reports whether the job holds resources or still waits for them,
// i.e. whether it counts against the cluster's size. Held and requeued jobs
// are active: they run again once released. Unknown states are not active.
func (s JobState) Active() bool {
	switch s {
	case Pending, Configuring, Running, Completing, Suspended, Stopped,
		Resizing, Signaling, StageOut,
		Requeued, RequeueFed, RequeueHold, SpecialExit, ResvDelHold, Expediting:
		return true
	}
	return false
}

// Started reports whether the job has been given a node and not yet left it,
// so its Node is meaningful. CONFIGURING counts: the node is allocated while
// it boots. STAGE_OUT does not: the job's processes are gone.
func (s JobState) Started() bool {
	switch s {
	case Running, Configuring, Completing, Suspended, Stopped, Resizing, Signaling:
		return true
	}
	return false
}
