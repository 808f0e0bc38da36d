package raynode

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/scheduler"
)

// The head's side of a handover: when to start one (rolloverDue on
// SLURM's current time left, its warning or its preemption), and the
// handover itself.

// rolloverSignals gathers what rolloverDue decides from, asking SLURM for
// the head job's time left at most every rolloverCheckInterval.
func (s *supervisor) rolloverSignals(ctx context.Context, warned, preempted bool) rolloverSignals {
	now := s.clock.Now()
	if checkTimeLeft(s.rollover.lastCheck, now) {
		s.rollover.lastCheck = now
		if j, ok := s.ownJob(ctx); ok && !j.Unlimited && j.TimeLeft > 0 {
			s.rollover.timeLeft, s.rollover.timeLeftAt = j.TimeLeft, now
		}
	}
	r := s.spec.Rollover
	sig := rolloverSignals{Generation: s.rollover.gen, MaxGenerations: r.MaxGenerations, Before: r.Before(), Warned: warned, Preempted: preempted}
	if s.cfg.Role == cluster.RoleDriver {
		sig.Job, sig.MaxGenerations = string(cluster.RoleDriver), 0 // its end is no generation's
	}
	if !s.rollover.timeLeftAt.IsZero() {
		sig.Known, sig.TimeLeft = true, s.rollover.timeLeft-now.Sub(s.rollover.timeLeftAt)
	}
	return sig
}

// rolloverNow reports whether the head starts handing over (a driver job:
// to its successor driver job, driverjob.go), and why; one that never will
// (the last generation, --max-restarts) says so once.
func (s *supervisor) rolloverNow(ctx context.Context, members *membershipTracker, warned, preempted bool) (bool, string) {
	if !s.spec.RollsOver() || (s.cfg.Role != cluster.RoleHead && s.cfg.Role != cluster.RoleDriver) || s.rollover.done {
		return false, ""
	}
	checked := s.rollover.lastCheck
	sig := s.rolloverSignals(ctx, warned, preempted)
	start, why := rolloverDue(sig)
	if s.cfg.Role == cluster.RoleDriver {
		start, why = successionDue(sig, s.rollover.restarts, s.cfg.MaxRestarts)
	}
	if !start && why == "" && s.rollover.lastCheck != checked {
		s.submitEarly(ctx, members, sig)
	}
	if !start && why != "" {
		s.rollover.done = true
		s.logf("%s", why)
	}
	return start, why
}

// handOver hands the cluster to the next generation's head: it records
// the handover, stops the autoscaler first, waits for every other node to
// leave its GCS (drivers checkpoint and exit first), stops its observer
// and its Ray, and seals the generation. Without a worker to promote it
// goes on as the last head (a submitted successor is not made yet).
// killAt is when SLURM kills a preempted head (zero: no preemption).
func (s *supervisor) handOver(ctx context.Context, node Process, members *membershipTracker, why string, killAt time.Time) error {
	s.rollover.done = true
	r := s.spec.Rollover
	if last := lastGeneration(s.rollover.gen, r.MaxGenerations); last != "" {
		s.logf("%s", last)
		return nil
	}
	plan := pickSuccessor(s.candidates(ctx, members), r.Before(), s.rec.MemMB)
	if plan.How != cluster.GenerationPromoted {
		if plan.Job = s.submitSuccessor(ctx, plan.Why); plan.Job == "" {
			s.logf("cannot hand over (%s): %s, and no successor head job; the cluster ends with this head", why, plan.Why)
			return nil
		}
	}
	now := s.clock.Now()
	deadline := handoverDeadline(now, s.rollover.timeLeftAt, s.rollover.timeLeft, s.spec.Rollover.Before(), killAt)
	h := cluster.Handover{Generation: s.rollover.gen, HeadJob: s.rec.Job, Started: now.UTC(), Why: why,
		How: plan.How, Successor: plan.Job, Deadline: deadline.UTC(), LastStep: -1}
	if err := s.cfg.Dir.WriteHandover(h); err != nil {
		return fmt.Errorf("start the handover: %w", err)
	}
	s.logf("handing over generation %d to %s job %s (%s; %s)", h.Generation, plan.How, plan.Job, why, plan.Why)
	s.headStops.autoscaler() // first: no submission once the successor may start its own
	s.waitOthersLeft(ctx, members, deadline)
	h.Nodes = nodeStarts(members.snap)
	s.headStops.observer()
	s.ending = cluster.OutcomeHandedOver
	if !killAt.IsZero() {
		s.ending = cluster.OutcomePreempted // Ray's stop within SLURM's kill, so the seal comes first
	}
	s.stopRay(node)
	sealed := s.clock.Now().UTC()
	h.Sealed = &sealed
	if err := s.cfg.Dir.WriteHandover(h); err != nil {
		return fmt.Errorf("seal the handover: %w", err)
	}
	s.logf("generation %d sealed after %s", h.Generation, sealed.Sub(h.Started).Round(time.Millisecond))
	return endWith(cluster.OutcomeHandedOver, fmt.Errorf("handed over to %s (%s)", plan.Job, why))
}

// submitSuccessor returns the successor job of this head (or driver job),
// submitting it unless this job did already (early: submitEarly); "" when
// it cannot.
func (s *supervisor) submitSuccessor(ctx context.Context, why string) string {
	if s.rollover.successor != "" {
		return s.rollover.successor
	}
	var id string
	var err error
	switch {
	case s.cfg.Role == cluster.RoleDriver && s.cfg.DriverSuccessor != nil:
		id, err = s.cfg.DriverSuccessor.SubmitDriver(ctx, s.driverSuccession())
	case s.cfg.Role == cluster.RoleHead && s.cfg.Successor != nil:
		id, err = s.cfg.Successor.SubmitHead(ctx)
	default:
		return ""
	}
	if err != nil {
		s.logf("warning: submit a successor %s job: %v", s.cfg.Role, err)
		return ""
	}
	s.rollover.successor = id
	s.logf("successor %s job %s submitted (%s)", s.cfg.Role, id, why)
	return id
}

// submitEarly submits the successor job ahead of the handover when the
// queue wait seen so far says it is time (submitSuccessorDue), so that it
// runs before this job must go: a head's when no worker could take the
// head, a driver job's always (nothing else can take over its driver).
func (s *supervisor) submitEarly(ctx context.Context, members *membershipTracker, sig rolloverSignals) {
	if s.rollover.successor != "" || !submitSuccessorDue(sig.TimeLeft, sig.Known, sig.Before, s.queueWait()) {
		return
	}
	if s.cfg.Role == cluster.RoleDriver {
		s.submitSuccessor(ctx, fmt.Sprintf("early, by the queue wait seen so far: %s left", sig.TimeLeft.Round(time.Second)))
		return
	}
	if plan := pickSuccessor(s.candidates(ctx, members), sig.Before, s.rec.MemMB); plan.How != cluster.GenerationPromoted {
		s.submitSuccessor(ctx, plan.Why)
	}
}

// queueWait is how long this head's own job waited in the queue: the
// estimate of its successor's.
func (s *supervisor) queueWait() time.Duration {
	subs, _ := s.cfg.Dir.Submissions()
	for _, sub := range subs {
		if sub.JobID == s.rec.Job || slices.Contains(sub.JobKeys(), s.rec.Job) {
			return max(s.rec.Started.Sub(sub.Submitted), 0)
		}
	}
	return 0
}

// candidates are the head's worker jobs as pickSuccessor weighs them: in
// Ray now (the membership), with SLURM's time left.
func (s *supervisor) candidates(ctx context.Context, members *membershipTracker) []candidate {
	members.refresh(ctx)
	var cands []candidate
	for job, n := range members.snap.Nodes {
		rec, ok, err := s.cfg.Dir.Node(job)
		if job == s.rec.Job || err != nil || !ok || rec.Role != cluster.RoleWorker {
			continue
		}
		c := candidate{Job: job, Joined: n.Alive, Unlimited: true,
			Leaving: rec.Phase == cluster.PhaseDraining || rec.PreemptedAt != nil,
			MemMB:   rec.MemMB, ObjectStoreMB: rec.ObjectStoreMB}
		cands = append(cands, c)
	}
	s.workerTimesLeft(ctx, cands)
	return cands
}

// workerTimesLeft fills in the candidates' time left from one squeue call.
func (s *supervisor) workerTimesLeft(ctx context.Context, cands []candidate) {
	if s.cfg.Scheduler == nil || len(cands) == 0 {
		return
	}
	ids := make([]string, len(cands))
	for i, c := range cands {
		ids[i] = c.Job
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	jobs, err := s.cfg.Scheduler.Jobs(ctx, scheduler.Query{JobIDs: ids})
	if err != nil {
		return
	}
	for i := range cands {
		for _, j := range jobs {
			if j.ID == cands[i].Job && !j.Unlimited {
				cands[i].Unlimited, cands[i].TimeLeft = false, j.TimeLeft
			}
		}
	}
}

// waitOthersLeft waits until no node but the head's is alive in its GCS:
// the drivers have checkpointed and exited, and every node has left, so
// none is cut off mid-work. Bounded by driverCheckpointWait, and by the
// head's end less the stop's graces.
func (s *supervisor) waitOthersLeft(ctx context.Context, members *membershipTracker, deadline time.Time) {
	process, leftovers := stopGraces(cluster.OutcomeHandedOver)
	limit := s.clock.Now().Add(driverCheckpointWait)
	if end := deadline.Add(-process - leftovers - drainMargin); end.Before(limit) {
		limit = end
	}
	for {
		// The tracker's own view, not membership.json: the successor's
		// head writes that file too once its Ray is up.
		members.refresh(ctx)
		others := 0
		for job, n := range members.snap.Nodes {
			if n.Alive && job != s.rec.Job {
				others++
			}
		}
		if others == 0 {
			return
		}
		if !s.clock.Now().Before(limit) {
			s.logf("warning: %d nodes still in Ray at the handover's bound: stopping anyway", others)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-s.clock.After(500 * time.Millisecond):
		}
	}
}

// nodeStarts are the nodes of the head's last membership snapshot, with
// when each registered with its GCS.
func nodeStarts(m cluster.MembershipSnapshot) []cluster.NodeStart {
	var nodes []cluster.NodeStart
	for job, n := range m.Nodes {
		nodes = append(nodes, cluster.NodeStart{Job: job, Registered: n.Registered})
	}
	return nodes
}
