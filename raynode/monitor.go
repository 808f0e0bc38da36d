package raynode

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/gpu"
	"github.com/sraybatch/sraybatch/internal/metrics"
)

const (
	membershipInterval = 2 * time.Second
	// drainNotice is how long a draining node stays in Ray after saying so,
	// for drivers to stop giving it work.
	drainNotice = 5 * time.Second
)

// monitor waits for the end: Ray exiting, a cancel, a drain, the driver
// exiting, or (workers and drivers) the head going away; react decides what
// each means. The head also keeps the membership snapshot fresh.
// members is the head's membership tracker (nil elsewhere), refreshed
// once already.
func (s *supervisor) monitor(ctx context.Context, node, driver Process, members *membershipTracker, n notices) error {
	var driverDone <-chan struct{}
	if driver != nil {
		driverDone = driver.Done()
	}
	s.sampleGPUs()
	lastSample := s.clock.Now()
	rayLogs := s.liveRayLogs()
	for {
		var h happening
		var why error
		var drained cluster.Outcome
		var killAt time.Time // a preemption's: when SLURM kills the job
		select {
		case <-ctx.Done():
			h, why = cancelled, context.Cause(ctx)
		case <-node.Done():
			h, why = rayExited, fmt.Errorf("ray exited (%v): %s", node.Err(), s.tail.String())
			if n, ok := s.drainNotice(ctx); ok {
				drained, why = n.Outcome, fmt.Errorf("%s", n.Reason)
			}
		case <-driverDone:
			h, why = driverExited, s.driverResult(driver)
		case <-n.timeLimit:
			h = timeLimitWarning
		case killAt = <-n.preempted:
			h, why = preempted, fmt.Errorf("%s", cluster.ReasonPreempted)
		case <-s.clock.After(membershipInterval):
			var ok bool
			if h, why, drained, ok = s.checkIn(ctx, members, rayLogs, &lastSample); !ok {
				continue
			}
		}
		if at, ok := s.awaitPreemption(ctx, h, n.preempted); ok {
			h, why, killAt = preempted, fmt.Errorf("%s", cluster.ReasonPreempted), at
		}
		if h == rayExited {
			h, why = s.orHandover(h, why) // its GCS may have gone at a handover
		}
		st := s.state()
		st.Interrupted = ctx.Err() != nil
		st.DrainAccepted = drained
		r := react(h, st)
		if h == timeLimitWarning {
			s.timeLimitWarned(r)
		}
		if done, err := s.carryOut(ctx, r, h, why, node, members, killAt); done {
			return err
		}
	}
}

// carryOut does what react decided; done is false when the node goes on.
func (s *supervisor) carryOut(ctx context.Context, r reaction, h happening, why error, node Process, members *membershipTracker, killAt time.Time) (done bool, err error) {
	switch {
	case r.Continue:
		return false, nil
	case r.Next:
		s.ending = cluster.OutcomeHandedOver // the stop's graces; the job goes on
		return true, why                     // a *nextGeneration
	case r.HandOver:
		if err := s.rollOver(ctx, node, members, h, why, killAt); err != nil {
			return true, err
		}
		return false, nil // no successor: this head serves to its end
	case r.Drain && h == preempted:
		s.ending = r.Outcome
		s.drainForPreemption(ctx, node, killAt)
		return true, endWith(r.Outcome, why)
	case r.Drain:
		s.drainForTimeLimit(ctx, node)
		return true, endWith(r.Outcome, fmt.Errorf("%s", cluster.ReasonDrained))
	}
	return true, s.end(ctx, r.Outcome, why)
}

// awaitPreemption turns Ray's exit or the head's loss into the preemption
// they follow from, when a SIGTERM under check says so: under
// proctrack/linuxproc SLURM's SIGTERM reaches Ray's own processes too, and
// the load of a preemption can hold up the head's heartbeat, both before
// SLURM has answered whether the SIGTERM was a preemption (preemptedBy).
func (s *supervisor) awaitPreemption(ctx context.Context, h happening, preemptedAt <-chan time.Time) (time.Time, bool) {
	if h != rayExited && h != headGone {
		return time.Time{}, false
	}
	if !s.termArrived.Load() {
		select {
		case at := <-preemptedAt:
			return at, true
		default:
			return time.Time{}, false
		}
	}
	select {
	case at := <-preemptedAt:
		return at, true
	case <-ctx.Done(): // the SIGTERM was a cancel
		return time.Time{}, false
	case <-s.clock.After(preemptionCheckTimeout + time.Second):
		return time.Time{}, false
	}
}

// end ends the node's run with outcome o, for why (a cancel's own cause
// when the job was cancelled; the outcome's name when nothing says more).
func (s *supervisor) end(ctx context.Context, o cluster.Outcome, why error) error {
	s.ending = o
	if o == cluster.OutcomeCancelled && ctx.Err() != nil {
		why = context.Cause(ctx)
	}
	if why == nil {
		why = fmt.Errorf("%s", o)
	}
	return endWith(o, why)
}

// checkIn is the monitor's periodic work: the GPU sample, the head's
// membership snapshot, Ray's logs, and on a worker or driver the drain
// notice and the head's health; ok is false when nothing happened.
func (s *supervisor) checkIn(ctx context.Context, members *membershipTracker, rayLogs *liveRayLogs, lastSample *time.Time) (h happening, why error, drained cluster.Outcome, ok bool) {
	if s.clock.Now().Sub(*lastSample) >= cluster.GPUSampleInterval {
		s.sampleGPUs()
		*lastSample = s.clock.Now()
	}
	if members != nil {
		// The heartbeat first: workers judge the head by it, and
		// copying logs after a stall must not delay it.
		members.refresh(ctx)
		rayLogs.copyIfDue(s.clock.Now(), s.logf)
		if start, why := s.rolloverNow(ctx, members, false, false); start {
			return rolloverDueNow, errors.New(why), "", true
		}
		return 0, nil, "", false
	}
	rayLogs.copyIfDue(s.clock.Now(), s.logf)
	if next, ok := s.handoverNotice(); ok {
		return handoverSeen, next, "", true
	}
	if start, why := s.rolloverNow(ctx, nil, false, false); start { // a driver job's own end (driverjob.go)
		return rolloverDueNow, errors.New(why), "", true
	}
	if n, ok, err := s.cfg.Dir.DrainNotice(s.rec.Job); err == nil && ok && s.cfg.Role == cluster.RoleWorker {
		return drainAccepted, fmt.Errorf("%s", n.Reason), n.Outcome, true
	}
	reason := s.headGone(ctx)
	if reason == "" {
		return 0, nil, "", false
	}
	s.clearStaleTargets()
	return headGone, fmt.Errorf("head job %s %s", s.cfg.HeadJob, reason), "", true
}

// state is what react needs to know of this node now.
func (s *supervisor) state() nodeState {
	st := nodeState{Role: s.cfg.Role, Joined: s.rec.Phase == cluster.PhaseRunning || s.rec.Phase == cluster.PhaseDraining,
		RollsOver: s.spec.RollsOver() && !s.rollover.done}
	if s.rec.ExitCode != nil {
		st.DriverExitCode = *s.rec.ExitCode
	}
	return st
}

// timeLimitWarned records when SLURM's time-limit warning says the limit
// falls, so status can warn and a driver can checkpoint.
func (s *supervisor) timeLimitWarned(r reaction) {
	limitAt := s.clock.Now().Add(s.spec.DrainBefore()).UTC()
	s.rec.TimeLimitAt = &limitAt
	if r.Continue {
		s.logf("time limit at about %s: checkpoint now", limitAt.Local().Format(time.TimeOnly))
		s.save()
	}
}

// sampleGPUs records the node's GPU use in its record, for `status --gpus`.
func (s *supervisor) sampleGPUs() {
	src, ok := s.cfg.GPUs.(gpu.InventorySource)
	if !ok || s.rec.GPUs == 0 || s.noGPUUse {
		return
	}
	inv, err := src.Inventory()
	if err != nil {
		s.logf("warning: GPU inventory: %v", err)
		return
	}
	s.noGPUUse = inv.Source != "NVML" // the environment names GPUs but knows nothing of their use
	samples := make([]cluster.GPUSample, 0, len(inv.GPUs))
	for _, g := range inv.GPUs {
		sample := cluster.GPUSample{ID: g.ID, Name: g.Name, Processes: len(g.Processes), UtilizationPct: g.UtilizationPct}
		if g.MemoryTotal > 0 {
			used, total := int64(g.MemoryUsed>>20), int64(g.MemoryTotal>>20)
			sample.MemoryUsedMiB, sample.MemoryTotalMiB = &used, &total
		}
		samples = append(samples, sample)
	}
	now := s.clock.Now().UTC()
	s.rec.GPUSamples, s.rec.GPUsSampled = samples, &now
	s.save()
}

// clearStaleTargets empties the scrape targets of a head that is gone
// without its own last word (SIGKILL, a dead node, a frozen head): the
// first node to see it stops Prometheus sending the scrape token to a port
// another user may take next.
func (s *supervisor) clearStaleTargets() {
	if err := metrics.ClearTargets(s.cfg.Dir, s.spec); err != nil {
		s.logf("warning: scrape targets of the lost head: %v", err)
	}
}

// rollOver runs the head's handover that h brought on; nil when there is
// no successor and the head serves on. A preempted head hands over by
// SLURM's kill (killAt), and without a successor ends as preempted.
func (s *supervisor) rollOver(ctx context.Context, node Process, members *membershipTracker, h happening, why error, killAt time.Time) error {
	handOver := func() error { return s.handOver(ctx, node, members, rolloverWhy(h, why, s.cfg.Role), killAt) }
	if s.cfg.Role == cluster.RoleDriver {
		handOver = func() error { return s.handDriverOver(ctx, rolloverWhy(h, why, s.cfg.Role)) }
	}
	if err := handOver(); err != nil {
		return err
	}
	if h == preempted {
		s.ending = cluster.OutcomePreempted
		return endWith(cluster.OutcomePreempted, why)
	}
	return nil
}

// rolloverWhy says why the head (or a driver job, role) hands over: its
// own check's words, or the signal that brought the handover on.
func rolloverWhy(h happening, why error, role cluster.Role) string {
	switch {
	case why != nil && h == rolloverDueNow:
		return why.Error()
	case why != nil:
		return fmt.Sprintf("SLURM's preemption reached the %s", role)
	}
	return fmt.Sprintf("SLURM's time-limit warning reached the %s", role)
}

// orHandover is h, unless this node's generation hands over: then that.
func (s *supervisor) orHandover(h happening, why error) (happening, error) {
	if next, ok := s.handoverNotice(); ok {
		return handoverSeen, next
	}
	return h, why
}
