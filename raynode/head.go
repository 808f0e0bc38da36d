package raynode

import (
	"context"
	"fmt"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/scheduler"
)

const (
	headWaitLimit     = 10 * time.Minute
	headCheckInterval = 2 * time.Second
)

// waitForHead waits until the head has published its address. A worker's
// `--dependency=after:` is satisfied by a cancelled head too, so it checks the
// head job itself and gives up as soon as the head can no longer publish.
func (s *supervisor) waitForHead(ctx context.Context) (cluster.HeadInfo, error) {
	deadline := s.clock.Now().Add(headWaitLimit)
	for {
		h, ok, err := s.cfg.Dir.Head()
		if err != nil {
			return h, err
		}
		if ok {
			return h, nil
		}
		if reason := s.headGone(ctx); reason != "" {
			return h, endWith(cluster.OutcomeJoinFailed, fmt.Errorf("head job %s %s before publishing its address", s.cfg.HeadJob, reason))
		}
		if s.clock.Now().After(deadline) {
			return h, endWith(cluster.OutcomeJoinFailed, fmt.Errorf("head job %s published no address within %s", s.cfg.HeadJob, headWaitLimit))
		}
		select {
		case <-ctx.Done():
			return h, context.Cause(ctx)
		case <-s.clock.After(headCheckInterval):
		}
	}
}

// headGone returns why the head cannot serve this cluster any more, or "":
// it gathers what the cluster directory (and, at most every
// slurmCheckInterval, the scheduler) says, and headVerdict decides.
func (s *supervisor) headGone(ctx context.Context) string {
	var sig headSignals
	if rec, ok, err := s.cfg.Dir.Node(s.cfg.HeadJob); err == nil && ok {
		sig.Record = &rec
	}
	_, sig.Down, _ = s.cfg.Dir.Down()
	if h, ok, err := s.cfg.Dir.HeadEnding(); err == nil && ok {
		sig.Ending = h.Reason
	}
	if m, err := s.cfg.Dir.Membership(); err == nil {
		sig.Heartbeat = m.Heartbeat
	}
	now := s.clock.Now()
	if !sig.Heartbeat.IsZero() && now.Sub(sig.Heartbeat) > headSilentAfter {
		sig.GCSAnswers = s.probeGCS(ctx)
	}
	if reason := headVerdict(sig, now); reason != "" || s.cfg.Scheduler == nil || !askScheduler(s.lastSchedulerCheck, now) {
		return reason
	}
	s.lastSchedulerCheck = now
	sig.Scheduler = s.askHeadJob(ctx)
	return headVerdict(sig, now)
}

// askHeadJob asks the scheduler for the head job; nil when it did not answer.
func (s *supervisor) askHeadJob(ctx context.Context) *headJob { return s.askJob(ctx, s.cfg.HeadJob) }

// askJob asks the scheduler for a job of the cluster (the head, or a
// successor driver's predecessor); nil when it did not answer.
func (s *supervisor) askJob(ctx context.Context, job string) *headJob {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	jobs, err := s.cfg.Scheduler.Jobs(ctx, scheduler.Query{JobIDs: []string{job}})
	if err != nil {
		return nil
	}
	for _, j := range jobs {
		if j.ID == job {
			return &headJob{Known: true, State: j.State}
		}
	}
	return &headJob{Known: false}
}

// probeGCS asks the head's GCS for an application-level answer; nil when it
// cannot be asked at all (no address, no client).
func (s *supervisor) probeGCS(ctx context.Context) *bool {
	gcs, err := s.gcs()
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, gcsProbeTimeout)
	defer cancel()
	answers := gcs.Ping(ctx) == nil
	return &answers
}
