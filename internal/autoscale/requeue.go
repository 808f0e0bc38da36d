package autoscale

import (
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/scheduler"
)

// A worker job whose node left Ray is usually ending, and no supply
// however long SLURM still lists it. A preempted one is different: SLURM
// requeues it (PreemptMode=REQUEUE) under the same job id, it pends
// (Reason=BeginTime at first), runs its batch script again, and its node
// joins Ray under a new node id. Counted as supply from its preemption on,
// it is counted once: Decide plans demand onto it like any pending worker,
// or cancels it (an autoscaled one) when no demand uses it, never both.

// afterLeaving is where a worker job whose node left Ray is now.
type afterLeaving int

const (
	// leftForGood: ended, or ending for good; no supply.
	leftForGood afterLeaving = iota
	// requeueAwaited: its run was preempted and SLURM still lists the job:
	// SLURM requeues it (a PreemptMode=CANCEL site ends it instead, and the
	// next poll sees it ended). Supply, as a queued worker.
	requeueAwaited
	// requeued: pending again. Supply, as a queued worker.
	requeued
	// rerunStarting: its batch script runs again (a newer node record).
	rerunStarting
	// rerunJoined: a node of the job is in Ray under a new node id.
	rerunJoined
)

// reasonRequeueAwaited is the pending reason Decide sees for a preempted
// worker job that SLURM has not requeued yet.
const reasonRequeueAwaited = "RequeueAwaited"

// leftNode is a worker's node that left Ray, and when that was seen.
type leftNode struct {
	node string
	at   time.Time
}

// placeAfterLeaving decides where a worker job whose node left Ray (left)
// is now, from SLURM's word on the job (inQueue, j), its Ray node now
// (rayNode; "" when none) and its node record (rec, when hasRec).
func placeAfterLeaving(left leftNode, j scheduler.Job, inQueue bool, rayNode string, rec cluster.NodeRecord, hasRec bool) afterLeaving {
	rerunRecord := hasRec && rec.Started.After(left.at)
	switch {
	case rayNode != "" && rayNode != left.node:
		return rerunJoined
	case !inQueue || !j.State.Active():
		return leftForGood
	case j.State == scheduler.Pending:
		return requeued
	case rerunRecord && !rec.Final():
		return rerunStarting
	case hasRec && !rerunRecord && rec.PreemptedAt != nil:
		return requeueAwaited
	}
	return leftForGood
}
