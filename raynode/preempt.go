package raynode

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/scheduler"
)

// PreemptionSource is the scheduler's word on a job being preempted (the
// SLURM scheduler's Preemption; the local backend preempts nothing).
type PreemptionSource interface {
	Preemption(ctx context.Context, job string) (scheduler.Preemption, error)
}

// preemptionCheckTimeout bounds the scheduler's answer at a SIGTERM: SLURM
// kills a preempted job KillWait (often 10-30 s) after it, so the drain
// must start at once.
const preemptionCheckTimeout = 2 * time.Second

// preemptionHandled decides whether a job's SIGTERM may be a preemption to
// handle rather than a cancel: a worker's (it drains through Ray), and a
// rollover cluster's head's or driver job's (each hands over to its
// successor, as before its time limit). Any other head's end is its
// cluster's end, and any other driver job is ended by its SIGTERM whatever
// sent it.
func preemptionHandled(role cluster.Role, rollsOver bool) bool {
	return role == cluster.RoleWorker || rollsOver
}

// preemptedBy returns the deadline of a preemption when the SIGTERM
// received at termAt is one, and ok false when it is a cancel (scancel,
// `down`, SLURM's time limit). The cluster's down marker answers first,
// without asking SLURM; then SLURM's word on the job decides
// (isPreemption). A scheduler that does not answer in time makes it a
// cancel: what a SIGTERM meant before preemption was handled.
func (s *supervisor) preemptedBy(ctx context.Context, termAt time.Time) (deadline time.Time, ok bool) {
	if !preemptionHandled(s.cfg.Role, s.spec.RollsOver()) || s.cfg.Preemption == nil {
		return time.Time{}, false
	}
	if _, down, _ := s.cfg.Dir.Down(); down {
		return time.Time{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, preemptionCheckTimeout)
	defer cancel()
	p, err := s.cfg.Preemption.Preemption(ctx, s.rec.Job)
	if err != nil {
		s.logf("warning: SIGTERM: cannot ask SLURM whether it preempts this job (%v): taken as a cancel", err)
		return time.Time{}, false
	}
	restarts, _ := strconv.Atoi(s.cfg.Getenv("SLURM_RESTART_COUNT"))
	if !isPreemption(p, restarts) {
		return time.Time{}, false
	}
	return preemptionDeadline(p, termAt), true
}

// drainForPreemption takes a preempted worker out of Ray before SLURM's
// kill: the same drain as before a time limit (drainBeforeEnd), with
// SLURM's kill as the deadline.
func (s *supervisor) drainForPreemption(ctx context.Context, node Process, deadline time.Time) {
	now := s.clock.Now()
	at := now.UTC()
	s.rec.PreemptedAt = &at // saved as the drain starts
	s.logf("preempted by SLURM: draining; SLURM kills this job in about %s", deadline.Sub(now).Round(time.Second))
	s.drainBeforeEnd(ctx, node, departure{
		reason:  cluster.ReasonPreempted,
		message: fmt.Sprintf("sraybatch: SLURM preempts job %s", s.rec.Job),
		end:     deadline,
		wait:    func(accepted bool) time.Duration { return preemptionWait(deadline, s.clock.Now()) },
	})
}
