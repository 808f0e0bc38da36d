package raynode

import (
	"context"
	"fmt"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/scheduler"
)

// A rollover cluster's handover, as its jobs carry it out (the decisions
// are rollover.go's). The head of generation g, near its end, records the
// handover (handovers/<g>.json), stops its autoscaler, waits for every other
// node to leave its GCS (drivers checkpoint and exit first), stops its Ray
// and marks the handover sealed. Every other job sees the record: its node
// leaves g; the successor restarts its Ray as g+1's head and publishes g+1
// once g is sealed; the others join g+1 in their own jobs.

// rolloverState is a node's place in the generations; zero without --rollover.
type rolloverState struct {
	// gen is the generation this node is in; token the path of its Ray
	// token ("" for a cluster without generations).
	gen   int
	token string
	// prevHead is the head job this node took over from, and how (a head
	// of a later generation).
	prevHead string
	how      cluster.GenerationHow
	// successor is the successor head job this head submitted ("": none).
	successor string
	// timeLeft is SLURM's last word on the head job's time left, given at
	// timeLeftAt; zero timeLeftAt: none yet, or no limit.
	timeLeft   time.Duration
	timeLeftAt time.Time
	lastCheck  time.Time
	// done: this head will not hand over (no successor, or the last generation).
	done bool
	// restarts counts a driver's re-runs in later generations.
	restarts int
	// driverRan: the driver's command started in this job's current
	// generation. Only then is its run in the next one a re-run: a successor
	// driver job caught by a head handover while it still waits for its
	// predecessor has its one run counted already (Restarts), and a driver
	// job whose command never started has nothing to resume.
	driverRan bool
}

// nextGeneration is how a node's run in one generation ends when its head
// hands over: the node's Ray has left, and the job goes on.
type nextGeneration struct{ handover cluster.Handover }

func (n *nextGeneration) Error() string {
	return fmt.Sprintf("generation %d handed over to %s", n.handover.Generation, n.handover.Successor)
}

// joinGeneration makes head's generation this node's: a first head starts
// generation 1 of a rollover cluster.
func (s *supervisor) joinGeneration(head cluster.HeadInfo) {
	switch {
	case s.cfg.Role == cluster.RoleHead && s.spec.RollsOver():
		s.rollover.gen, s.rollover.token, s.rollover.how = 1, s.cfg.Dir.TokenPath(), cluster.GenerationFirst
		if g, ok, err := s.cfg.Dir.LatestGeneration(); err == nil && ok && g.Job != s.rec.Job {
			// A successor head job submitted by generation g's head.
			s.rollover = rolloverState{gen: g.Generation + 1, prevHead: g.Job, how: cluster.GenerationSubmitted}
			s.cfg.HeadJob = g.Job // the head awaitSeal watches
			s.rollover.token, _ = s.cfg.Dir.NewGenerationToken(s.rollover.gen)
		}
	case head.Generation > 0:
		s.rollover.gen, s.rollover.token = head.Generation, s.cfg.Dir.TokenPathOf(head)
	}
}

// rayToken is the token of this node's generation ("" when insecure).
func (s *supervisor) rayToken() (string, error) {
	if s.spec.Insecure {
		return "", nil
	}
	if s.rollover.token != "" {
		return cluster.ReadToken(s.rollover.token)
	}
	return s.cfg.Dir.RayToken(false)
}

// publishHead publishes the head: head.json as it always was, or with
// --rollover its generation, a later one only once the previous is sealed.
func (s *supervisor) publishHead(ctx context.Context, h cluster.HeadInfo) error {
	if !s.spec.RollsOver() {
		if err := s.cfg.Dir.WriteHead(h); err != nil {
			return fmt.Errorf("publish head address: %w", err)
		}
		return nil
	}
	h.Generation = s.rollover.gen
	g := cluster.Generation{HeadInfo: h, How: cluster.GenerationFirst}
	if h.Generation > 1 {
		if err := s.awaitSeal(ctx); err != nil {
			return err
		}
		g.How, g.PreviousHeadJob, g.Published = s.rollover.how, s.rollover.prevHead, s.clock.Now().UTC()
	}
	if err := s.cfg.Dir.PublishGeneration(g); err != nil {
		return fmt.Errorf("publish head address: %w", err)
	}
	s.logf("published generation %d (%s)", h.Generation, g.How)
	return nil
}

// awaitSeal waits until the previous generation is sealed or its head is
// gone (mayPublish): at most --head-wait once the handover started, and as
// long as the old head serves before (a successor head job submitted early
// may run before its head hands over).
func (s *supervisor) awaitSeal(ctx context.Context) error {
	prev, deadline := s.rollover.gen-1, time.Time{}
	for {
		var sig sealSignals
		if h, ok, err := s.cfg.Dir.Handover(prev); err == nil && ok {
			sig.Handover = &h
			if deadline.IsZero() {
				deadline = s.clock.Now().Add(s.spec.Rollover.HeadWait())
			}
		}
		if sig.Handover == nil || sig.Handover.Sealed == nil {
			sig.OldHeadGone = s.headGone(ctx)
		}
		ok, why := mayPublish(sig)
		if ok {
			s.logf("publishing generation %d: %s", s.rollover.gen, why)
			return nil
		}
		if !deadline.IsZero() && s.clock.Now().After(deadline) {
			return endWith(cluster.OutcomeJoinFailed, fmt.Errorf("generation %d: %s, for longer than --head-wait", s.rollover.gen, why))
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-s.clock.After(headCheckInterval / 4):
		}
	}
}

// enterNext takes this job into the generation after h's: as its head when
// it is h's successor (the head to start has a zero HeadInfo), else as a
// node of it once published, or not at all (rejoin).
func (s *supervisor) enterNext(ctx context.Context, h cluster.Handover) (cluster.HeadInfo, error) {
	s.closeGCS()
	s.ending = ""
	// Out of Ray until the next generation lets it in: status shows it
	// waiting, and its end is still that of a node that was in.
	s.rec.Phase, s.wasJoined = cluster.PhaseStarting, true
	s.save()
	next := h.Generation + 1
	if h.How == cluster.GenerationPromoted && h.Successor == s.rec.Job {
		tok, err := s.cfg.Dir.NewGenerationToken(next)
		if err != nil {
			return cluster.HeadInfo{}, err
		}
		s.cfg.Role, s.rec.Role = cluster.RoleHead, cluster.RoleHead
		s.rollover = rolloverState{gen: next, token: tok, prevHead: h.HeadJob, how: cluster.GenerationPromoted}
		s.rayVersion = s.inheritedRayVersion(h.Generation)
		s.logf("promoted: this job becomes the head of generation %d", next)
		return cluster.HeadInfo{}, nil
	}
	rerun := s.cfg.Role == cluster.RoleDriver && s.rollover.driverRan
	if rerun && s.rollover.restarts >= s.cfg.MaxRestarts {
		return cluster.HeadInfo{}, endWith(cluster.OutcomeFailed, fmt.Errorf("driver not run again after the handover of generation %d: --max-restarts %d reached", h.Generation, s.cfg.MaxRestarts))
	}
	if s.cfg.Role == cluster.RoleWorker {
		if follow, why := rejoin(s.rejoinSignals(ctx)); !follow {
			return cluster.HeadInfo{}, endWith(cluster.OutcomeDrainedTimeLimit, fmt.Errorf("ends with generation %d: %s", h.Generation, why))
		}
	}
	head, err := s.waitGeneration(ctx, next)
	if err != nil {
		return head, err
	}
	s.cfg.HeadJob, s.lastSchedulerCheck = head.Job, time.Time{}
	s.joinGeneration(head)
	if rerun {
		s.rollover.restarts, s.rollover.driverRan = s.rollover.restarts+1, false
	}
	s.logf("joining generation %d (head job %s)", head.Generation, head.Job)
	return head, nil
}

// inheritedRayVersion is the Ray version of generation g's head, which a
// promoted head publishes as its own without running `ray --version` (a
// second in the handover's gap): Ray lets a worker join only a GCS of its own
// version (ray/_private/node.py, Node.__init__'s check_version_info), so the
// two are the same. "" when g's record is unreadable: the field is optional.
func (s *supervisor) inheritedRayVersion(g int) string {
	prev, ok, err := s.cfg.Dir.Generation(g)
	if err != nil || !ok {
		return ""
	}
	return prev.RayVersion
}

// rejoinSignals is what rejoin needs of this worker: its job's time left
// (SLURM's word; unknown counts as enough) and whether it is leaving.
func (s *supervisor) rejoinSignals(ctx context.Context) rejoinSignals {
	sig := rejoinSignals{Unlimited: true, Before: s.spec.Rollover.Before(),
		Leaving: s.rec.Phase == cluster.PhaseDraining || s.rec.PreemptedAt != nil}
	if j, ok := s.ownJob(ctx); ok && !j.Unlimited {
		sig.Unlimited, sig.TimeLeft = false, j.TimeLeft
	}
	return sig
}

// waitGeneration waits until generation g (or a later one) is published,
// at most --head-wait: the worker keeps its GPUs that long.
func (s *supervisor) waitGeneration(ctx context.Context, g int) (cluster.HeadInfo, error) {
	since := s.clock.Now()
	for {
		if h, ok, err := s.cfg.Dir.Head(); err == nil && ok && h.Generation >= g {
			return h, nil
		}
		if headWaitOver(since, s.clock.Now(), s.spec.Rollover.HeadWait()) {
			return cluster.HeadInfo{}, endWith(cluster.OutcomeHeadLost, fmt.Errorf("waiting for head: generation %d was not published within --head-wait %s", g, s.spec.Rollover.HeadWait()))
		}
		select {
		case <-ctx.Done():
			return cluster.HeadInfo{}, context.Cause(ctx)
		case <-s.clock.After(headCheckInterval / 4):
		}
	}
}

// ownJob is this job as the scheduler reports it; ok is false when it
// could not be asked or did not answer.
func (s *supervisor) ownJob(ctx context.Context) (scheduler.Job, bool) {
	if s.cfg.Scheduler == nil {
		return scheduler.Job{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	jobs, err := s.cfg.Scheduler.Jobs(ctx, scheduler.Query{JobIDs: []string{s.rec.Job}})
	if err != nil {
		return scheduler.Job{}, false
	}
	for _, j := range jobs {
		if j.ID == s.rec.Job {
			return j, true
		}
	}
	return scheduler.Job{}, false
}

// closeGCS forgets this node's client of its generation's GCS.
func (s *supervisor) closeGCS() {
	if s.gcsClient != nil {
		s.gcsClient.Close()
		s.gcsClient = nil
	}
}

// handoverNotice returns the handover of this node's generation, once its
// head recorded one; a worker or driver then leaves.
func (s *supervisor) handoverNotice() (*nextGeneration, bool) {
	if s.rollover.gen == 0 || s.cfg.Role == cluster.RoleHead {
		return nil, false
	}
	h, ok, err := s.cfg.Dir.Handover(s.rollover.gen)
	if err != nil || !ok {
		return nil, false
	}
	return &nextGeneration{handover: h}, true
}
