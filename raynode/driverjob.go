package raynode

import (
	"context"
	"fmt"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

// The driver job is a job too (`up --rollover`): its own time limit, or
// its preemption, ends the driver, not the run. Its supervisor watches its
// job's end as the head watches its own (rolloverNow: SLURM's current time
// left under --rollover-before, SIGUSR1, a preemption's SIGTERM), submits a
// successor driver job early by the queue wait seen so far, and at its end
// stops the driver at its safe point (SIGINT, as at a head handover) and
// ends handed_over. The successor's node joins the current generation and
// runs the command with SRAYBATCH_RESUMED=1 once its predecessor has gone
// (resumeAfter), so two drivers never write one checkpoint.
//
// --max-restarts bounds head handovers and driver-job successions
// together: it counts the command's re-runs, whatever brought each on.

// DriverSubmitter submits a successor driver job of the cluster and
// records it; it returns the job id.
type DriverSubmitter interface {
	SubmitDriver(ctx context.Context, next DriverSuccession) (string, error)
}

// DriverSuccession is what a successor driver job carries over.
type DriverSuccession struct {
	// HeadJob is the current generation's head job (its dependency).
	HeadJob string
	// Follows is the driver job it takes over from, which it waits for.
	Follows string
	// Restarts is the command's re-runs, this one included.
	Restarts int
}

// driverSuccession is this driver job's successor's part.
func (s *supervisor) driverSuccession() DriverSuccession {
	return DriverSuccession{HeadJob: s.cfg.HeadJob, Follows: s.rec.Job, Restarts: s.rollover.restarts + 1}
}

// successionDue decides whether a rollover cluster's driver job hands its
// run over to a successor driver job now (rolloverDue on its own job's
// end); a why without a start says it never will: its command has run
// again restarts times of at most maxRestarts.
func successionDue(s rolloverSignals, restarts, maxRestarts int) (start bool, why string) {
	start, why = rolloverDue(s)
	if start && restarts >= maxRestarts {
		return false, fmt.Sprintf("%s, but --max-restarts %d is reached: the training ends with this driver job", why, maxRestarts)
	}
	return start, why
}

// handDriverOver ends this driver job in favour of its successor: the
// driver then gets SIGINT, its safe point, and handoverStopGrace to
// checkpoint (runGeneration's stop). nil when there is no successor: the
// driver runs on until SLURM ends the job.
func (s *supervisor) handDriverOver(ctx context.Context, why string) error {
	s.rollover.done = true
	if s.rollover.restarts >= s.cfg.MaxRestarts {
		s.logf("%s, but --max-restarts %d is reached: the training ends with this driver job", why, s.cfg.MaxRestarts)
		return nil
	}
	id := s.submitSuccessor(ctx, why)
	if id == "" {
		s.logf("cannot hand over (%s): no successor driver job; the training ends with this job", why)
		return nil
	}
	s.ending, s.rec.Successor = cluster.OutcomeHandedOver, id
	s.logf("handing the run over to driver job %s (%s): stopping the driver at its safe point", id, why)
	return endWith(cluster.OutcomeHandedOver, fmt.Errorf("handed over to driver job %s (%s)", id, why))
}

// resumeAfter decides whether a successor driver job runs its command,
// from its predecessor's record (nil when it wrote none) and headVerdict's
// word on it (gone; "" while it runs): wait while it runs; then resume
// unless it ended for good (completed, failed, cancelled: nothing to
// resume). A predecessor that ended without its record (SIGKILL, a node
// failure) is resumed from its last checkpoint.
func resumeAfter(pred *cluster.NodeRecord, gone string) (wait, run bool, why string) {
	switch {
	case gone == "":
		return true, false, "its predecessor still runs"
	case pred == nil || !pred.Final():
		return false, true, "its predecessor is " + gone + ": resuming from its last checkpoint"
	case pred.Outcome == cluster.OutcomeHandedOver, pred.Outcome == cluster.OutcomePreempted:
		return false, true, fmt.Sprintf("driver job %s %s", pred.Job, pred.Outcome)
	}
	return false, false, fmt.Sprintf("driver job %s ended %s: nothing to resume", pred.Job, pred.Outcome)
}

// awaitPredecessor waits until a successor driver job may run its command
// (resumeAfter); its error ends the job when it may not.
func (s *supervisor) awaitPredecessor(ctx context.Context) error {
	pred := s.cfg.Follows
	if pred == "" {
		return nil
	}
	var lastAsked time.Time
	for logged := false; ; logged = true {
		var sig headSignals
		if rec, ok, err := s.cfg.Dir.Node(pred); err == nil && ok {
			sig.Record = &rec
		}
		now := s.clock.Now()
		gone := headVerdict(sig, now)
		if gone == "" && s.cfg.Scheduler != nil && askScheduler(lastAsked, now) {
			lastAsked, sig.Scheduler = now, s.askJob(ctx, pred)
			gone = headVerdict(sig, now)
		}
		if next, ok := s.handoverNotice(); ok { // the head hands over meanwhile: follow it
			s.ending = cluster.OutcomeHandedOver
			return next
		}
		wait, run, why := resumeAfter(sig.Record, gone)
		switch {
		case run:
			s.cfg.Follows = "" // once: a later generation's re-run waits for nobody
			s.logf("running the driver: %s", why)
			return nil
		case !wait:
			return endWith(cluster.OutcomeCancelled, fmt.Errorf("driver not run: %s", why))
		case !logged:
			s.logf("waiting for driver job %s to hand over", pred)
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-s.clock.After(headCheckInterval / 4):
		}
	}
}
