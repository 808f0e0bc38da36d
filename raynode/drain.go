package raynode

import (
	"context"
	"fmt"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/raygcs"
	"github.com/sraybatch/sraybatch/internal/scheduler"
)

// drainNoticeWait bounds how long a node whose Ray exited looks for the
// head's drain notice: the head writes it right after Ray accepts the
// drain, and the raylet may be quicker to exit than a shared filesystem is
// to show the file.
const drainNoticeWait = 3 * time.Second

// drainNotice returns the head's notice that Ray accepted draining this node.
func (s *supervisor) drainNotice(ctx context.Context) (cluster.DrainNotice, bool) {
	deadline := s.clock.Now().Add(drainNoticeWait)
	for {
		if n, ok, err := s.cfg.Dir.DrainNotice(s.rec.Job); err == nil && ok {
			return n, true
		}
		if s.cfg.Role != cluster.RoleWorker || !s.clock.Now().Before(deadline) {
			return cluster.DrainNotice{}, false
		}
		select {
		case <-ctx.Done():
			return cluster.DrainNotice{}, false
		case <-s.clock.After(500 * time.Millisecond):
		}
	}
}

// departure is why and by when a worker leaves Ray before SLURM ends its job.
type departure struct {
	// reason is the record's reason while it drains; message Ray's.
	reason, message string
	// end is when SLURM ends the job: Ray's drain deadline.
	end time.Time
	// wait is how long to stay in Ray for the drain, given whether Ray accepted it.
	wait func(accepted bool) time.Duration
}

// drainForTimeLimit takes a worker out of Ray before its job's time limit
// (drainBeforeEnd, with the job's end as the deadline).
func (s *supervisor) drainForTimeLimit(ctx context.Context, node Process) {
	now := s.clock.Now()
	end := s.jobEnd(ctx, now)
	s.drainBeforeEnd(ctx, node, departure{
		reason:  "time limit near",
		message: fmt.Sprintf("sraybatch: SLURM job %s reaches its time limit", s.rec.Job),
		end:     end,
		wait:    func(accepted bool) time.Duration { return drainWait(accepted, end, now) },
	})
}

// drainBeforeEnd takes a worker out of Ray before SLURM ends its job: the
// record turns draining first (ElasticPool reads it and gives the node no
// new step), Ray is asked to drain the node with reason PREEMPTION and the
// job's end as the deadline, so every Ray library sees the node leave, and
// the node waits for its raylet to exit once idle. Ray does not stop the
// node at the deadline by itself; the wait is bounded (d.wait) and the
// caller then stops it.
func (s *supervisor) drainBeforeEnd(ctx context.Context, node Process, d departure) {
	s.rec.Phase, s.rec.Reason = cluster.PhaseDraining, d.reason
	s.save()
	now := s.clock.Now()
	accepted := s.askRayToDrain(ctx, d.message, d.end)
	wait := d.wait(accepted)
	s.logf("draining: leaving Ray within %s (Ray's drain accepted: %v)", wait.Round(time.Second), accepted)
	// The raylet exits by itself once the drained node is idle, but `ray
	// start --block` keeps waiting: the head's snapshot tells when it left.
	until := now.Add(wait)
	for s.clock.Now().Before(until) {
		select {
		case <-node.Done():
			s.logf("drained: Ray left by itself")
			return
		case <-s.clock.After(min(membershipInterval, until.Sub(s.clock.Now()))):
		case <-ctx.Done():
			return
		}
		if accepted && s.leftRay() {
			s.logf("drained: the node left Ray")
			return
		}
	}
}

// leftRay reports whether the head's membership snapshot, fresh, shows this
// node's Ray gone.
func (s *supervisor) leftRay() bool {
	m, err := s.cfg.Dir.Membership()
	if err != nil || s.clock.Now().Sub(m.Updated) > 2*membershipInterval {
		return false
	}
	me := m.Nodes[s.rec.Job]
	return me != nil && !me.Alive
}

// jobEnd is when the scheduler ends this job: its time left, else the
// warning's own --drain-before from now.
func (s *supervisor) jobEnd(ctx context.Context, now time.Time) time.Time {
	end := now.Add(s.spec.DrainBefore())
	if s.cfg.Scheduler == nil {
		return end
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	jobs, err := s.cfg.Scheduler.Jobs(ctx, scheduler.Query{JobIDs: []string{s.rec.Job}})
	if err != nil {
		return end
	}
	for _, j := range jobs {
		if j.ID == s.rec.Job && !j.Unlimited && j.TimeLeft > 0 {
			return now.Add(j.TimeLeft)
		}
	}
	return end
}

// askRayToDrain asks the GCS to drain this node; false when it could not
// be asked or refused.
func (s *supervisor) askRayToDrain(ctx context.Context, message string, deadline time.Time) bool {
	m, err := s.cfg.Dir.Membership()
	me := m.Nodes[s.rec.Job]
	if err != nil || me == nil || me.NodeID == "" {
		s.logf("warning: cannot ask Ray to drain this node: its node id is unknown")
		return false
	}
	gcs, err := s.gcs()
	if err != nil {
		s.logf("warning: cannot reach Ray to drain this node: %v", err)
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	accepted, rejection, err := gcs.Drain(ctx, me.NodeID, raygcs.DrainPreemption, message, deadline)
	switch {
	case err != nil:
		s.logf("warning: Ray's drain failed: %v", err)
	case !accepted:
		s.logf("warning: Ray refused to drain this node: %s", rejection)
	}
	return err == nil && accepted
}

// gcs is this node's client of the cluster's GCS, dialled on first use (it
// connects lazily) and closed when the supervisor ends.
func (s *supervisor) gcs() (RayClient, error) {
	if s.gcsClient != nil {
		return s.gcsClient, nil
	}
	head, ok, err := s.cfg.Dir.Head()
	if err != nil || !ok {
		return nil, fmt.Errorf("the head's address is not published")
	}
	// The token of the head dialled, not of this node's generation: a
	// promoted head probes its old head with the old one (awaitSeal), and
	// a GCS that only refuses the new token is not a GCS that is gone.
	token, err := s.tokenOf(head)
	if err != nil {
		return nil, err
	}
	c, err := s.cfg.DialRay(head.Address, token)
	if err != nil {
		return nil, err
	}
	s.gcsClient = c
	return c, nil
}

// tokenOf is the Ray token of head's generation ("" when insecure).
func (s *supervisor) tokenOf(head cluster.HeadInfo) (string, error) {
	if s.spec.Insecure {
		return "", nil
	}
	return cluster.ReadToken(s.cfg.Dir.TokenPathOf(head))
}

// dialGCS opens a new client of this node's generation's GCS at address,
// with its token unless the cluster is insecure.
func (s *supervisor) dialGCS(address string) (RayClient, error) {
	token, err := s.rayToken()
	if err != nil {
		return nil, err
	}
	return s.cfg.DialRay(address, token)
}
