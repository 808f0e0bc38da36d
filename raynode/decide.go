package raynode

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/scheduler"
)

// The supervisor's decisions live in this file, each a pure function of what
// it observed and of the time: how a running node reacts to what happens to
// it, when its head counts as gone, whether a failed `ray start` is retried,
// and how the node's record and job end. Changes to drain and head-loss
// behaviour belong here, next to their table tests.

// Timing of the decisions. Workers must give up GPUs soon after losing their
// head, so every check that detects that runs well inside that bound.
const (
	// headSilentAfter: a head whose supervisor has not written its
	// heartbeat (every 2 s) for this long is suspect; it counts as frozen or
	// cut off (SIGSTOP, a dead node) only when its GCS does not answer a
	// probe either, because a shared filesystem may stall writes for 10-60 s.
	headSilentAfter = 5 * time.Second
	// headSilentNoProbe: without a probe's answer, silence this long decides.
	headSilentNoProbe = 60 * time.Second
	// gcsProbeTimeout bounds the probe: a live GCS answers in milliseconds.
	gcsProbeTimeout = 2 * time.Second
	// slurmCheckInterval spaces squeue calls per job: a hundred workers
	// asking every 2 s would load the controller.
	slurmCheckInterval = 10 * time.Second
	// startAttempts bounds `ray start` retries after a lost port race.
	startAttempts = 3
)

// happening is something a running node's supervisor reacts to.
type happening int

const (
	// cancelled: SIGTERM, SIGINT or SIGHUP (scancel, `down`, SLURM's kill).
	cancelled happening = iota
	// timeLimitWarning: SIGUSR1, SLURM's --signal=B:USR1@<drain-before>.
	timeLimitWarning
	// rayExited: `ray start --block` returned.
	rayExited
	// driverExited: the driver command returned.
	driverExited
	// headGone: headVerdict found the head ended or frozen.
	headGone
	// drainAccepted: the head's autoscaler had Ray drain this node
	// (DrainAccepted says why). Its raylet exits by itself, but `ray start
	// --block` takes a raylet's clean exit for a graceful one and keeps
	// waiting, so the supervisor ends the node.
	drainAccepted
	// preempted: a SIGTERM that SLURM's preemption sent (preemptedBy).
	preempted
	// rolloverDueNow: the head of a rollover cluster found its end near
	// (rolloverDue).
	rolloverDueNow
	// handoverSeen: this node's head recorded a handover of its generation.
	handoverSeen
)

// nodeState is what react needs to know of the node.
type nodeState struct {
	Role cluster.Role
	// Joined: Ray let the node in (its record's phase is running).
	Joined bool
	// DrainAccepted is the outcome of a Ray drain that Ray accepted for this
	// node ("" for none): its raylet then exits by itself, and that exit is
	// the drain's end, not a failure.
	DrainAccepted cluster.Outcome
	// DriverExitCode is the driver command's exit status (driverExited).
	DriverExitCode int
	// Interrupted: the supervisor itself was told to stop. scancel signals
	// Ray and the driver too, so their exits then follow from the cancel.
	Interrupted bool
	// RollsOver: the cluster hands over from head to head (`up --rollover`).
	RollsOver bool
}

// reaction is what the supervisor does about a happening.
type reaction struct {
	// Continue: record what happened and keep running.
	Continue bool
	// Drain: tell readers the node is leaving (phase draining), give them
	// drainNotice, then end.
	Drain bool
	// Outcome is how the node ends, when it does not continue.
	Outcome cluster.Outcome
	// HandOver: the head hands the cluster to the next generation
	// (handover_head.go); it goes on when it finds no successor.
	HandOver bool
	// Next: the node leaves its generation and follows the cluster into
	// the next (handover.go).
	Next bool
}

func react(h happening, st nodeState) reaction {
	if st.Interrupted && (h == rayExited || h == driverExited) {
		h = cancelled
	}
	if st.RollsOver && (st.Role == cluster.RoleHead || st.Role == cluster.RoleDriver) && (h == timeLimitWarning || h == preempted) {
		h = rolloverDueNow // the job's end is near: hand over at once (a driver job to its successor)
	}
	switch h {
	case cancelled:
		return reaction{Outcome: cluster.OutcomeCancelled}
	case rolloverDueNow:
		return reaction{HandOver: true, Outcome: cluster.OutcomeHandedOver}
	case handoverSeen:
		return reaction{Next: true}
	case timeLimitWarning:
		if st.Role != cluster.RoleWorker {
			// The cluster (or the training) ends with this job: warn, so a
			// driver can checkpoint; SLURM ends the job at the limit.
			return reaction{Continue: true}
		}
		return reaction{Drain: true, Outcome: cluster.OutcomeDrainedTimeLimit}
	case rayExited:
		if st.DrainAccepted != "" {
			return reaction{Outcome: st.DrainAccepted}
		}
		return reaction{Outcome: cluster.OutcomeRayExited}
	case driverExited:
		if st.DriverExitCode == 0 {
			return reaction{Outcome: cluster.OutcomeCompleted}
		}
		return reaction{Outcome: cluster.OutcomeFailed}
	case drainAccepted:
		return reaction{Outcome: st.DrainAccepted}
	case preempted:
		if st.Role != cluster.RoleWorker || !st.Joined {
			return reaction{Outcome: cluster.OutcomePreempted}
		}
		return reaction{Drain: true, Outcome: cluster.OutcomePreempted}
	case headGone:
		if !st.Joined {
			return reaction{Outcome: cluster.OutcomeJoinFailed}
		}
		return reaction{Outcome: cluster.OutcomeHeadLost}
	}
	panic(fmt.Sprintf("raynode: unknown happening %d", h))
}

// headSignals is what a worker or driver knows of its head at one moment.
type headSignals struct {
	// Record is the head's node record, when it could be read.
	Record *cluster.NodeRecord
	// Down: `down` was asked for the cluster.
	Down bool
	// Ending is the head's notice that it was told to stop ("" when none).
	Ending string
	// Heartbeat is when the head's supervisor last wrote its membership
	// snapshot; zero before its first.
	Heartbeat time.Time
	// Scheduler is the scheduler's word on the head job, when it was asked
	// this time and answered; nil otherwise (an unreachable scheduler is no
	// evidence that the head is gone).
	Scheduler *headJob
	// GCSAnswers is whether the head's GCS answered a probe, when probed
	// (only once the heartbeat is stale); nil when not probed.
	GCSAnswers *bool
}

// headJob is the head job as the scheduler reported it.
type headJob struct {
	// Known is false when the scheduler no longer knows the job.
	Known bool
	State scheduler.JobState
}

// headVerdict returns why the head can no longer serve the cluster, or ""
// while it can.
func headVerdict(s headSignals, now time.Time) string {
	if s.Record != nil && s.Record.Final() {
		return string(s.Record.Phase) + " (" + s.Record.Reason + ")"
	}
	if s.Ending != "" {
		return "ending (" + s.Ending + ")"
	}
	if s.Down {
		return "ended (cluster down)"
	}
	if silent := now.Sub(s.Heartbeat); !s.Heartbeat.IsZero() && silent > headSilentAfter {
		switch {
		case s.GCSAnswers != nil && !*s.GCSAnswers:
			return fmt.Sprintf("unresponsive (no heartbeat for %s, and its GCS does not answer)", silent.Round(time.Second))
		case s.GCSAnswers == nil && silent > headSilentNoProbe:
			return fmt.Sprintf("unresponsive (no heartbeat for %s)", silent.Round(time.Second))
		}
	}
	if j := s.Scheduler; j != nil {
		if !j.Known {
			return "ended (no longer known to SLURM)"
		}
		if !j.State.Active() {
			return "ended (" + string(j.State) + ")"
		}
	}
	return ""
}

// askScheduler reports whether a head check may ask the scheduler again,
// lastAsked being when it last did (zero: never).
func askScheduler(lastAsked, now time.Time) bool {
	return lastAsked.IsZero() || now.Sub(lastAsked) >= slurmCheckInterval
}

// requeuedHead decides whether a head job's run must refuse to start, from
// SLURM_RESTART_COUNT (restarts; "" or "0" on a first run), and says why.
// SLURM requeues a preempted (PreemptMode=REQUEUE) or failed batch job
// under the same id and runs its script again. The head's script asks for
// --no-requeue; this holds where that is not the last word (an admin's
// requeue, a site's job_submit plugin). A cluster has one head,
// the job's first run: its end was the cluster's end, whose workers and
// drivers have seen it go. A second run would be a second head that every
// reader of head.json could mistake for the first. A rollover cluster's
// preempted head hands over instead (a promoted worker or a successor job
// is the next generation's head), and SLURM kills the --no-requeue job
// rather than requeue it; where it is requeued all the same, its run exits
// here too, never a second head. Workers requeued the same way rejoin the
// current head as before.
func requeuedHead(role cluster.Role, restarts string) (why string, refuse bool) {
	if role != cluster.RoleHead || restarts == "" || restarts == "0" {
		return "", false
	}
	return fmt.Sprintf("head job requeued by SLURM (SLURM_RESTART_COUNT=%s): a cluster's head runs once, and this run would be a second head; start a new cluster with `sraybatch up`", restarts), true
}

var errExitedEarly = errors.New("ray start exited before the node was up")

// retryStart reports whether a `ray start` that failed with err on the
// given attempt (from 1) is tried again: only when Ray exited early, which is
// how a port taken between allocation and bind shows, and not after a cancel.
func retryStart(err error, attempt int, interrupted bool) bool {
	return !interrupted && errors.Is(err, errExitedEarly) && attempt < startAttempts
}

// final decides a finished node's record phase and whether its job exits
// successfully. A node that never joined shows failed whatever ended it; a
// job ends well when it did what was asked (completed, drained) or was
// cancelled (SLURM records the cancel itself).
func final(o cluster.Outcome, joined bool) (phase cluster.Phase, jobOK bool) {
	phase = cluster.PhaseEnded
	if !joined {
		phase = cluster.PhaseFailed
	}
	switch o {
	case cluster.OutcomeCompleted, cluster.OutcomeDrainedTimeLimit, cluster.OutcomeDrainedIdle, cluster.OutcomeCancelled, cluster.OutcomePreempted,
		cluster.OutcomeHandedOver:
		jobOK = true
	}
	return phase, jobOK
}

// Grace periods of the stop. stopGrace + Ray's own drain must end well
// inside SLURM's KillWait (often 30 s, 10 s on the dev cluster) after
// scancel's SIGTERM. Once the head is lost there is nothing to shut down
// gracefully: Ray's processes would only wait for a GCS that is gone, while
// the job holds its GPUs.
const (
	stopGrace     = 5 * time.Second
	leftoverGrace = 3 * time.Second
	lostHeadGrace = time.Second
)

// stopGraces returns how long `ray start` (and a driver) and then Ray's
// leftover processes get between SIGTERM and SIGKILL when a node ends with o.
func stopGraces(o cluster.Outcome) (process, leftovers time.Duration) {
	switch o {
	case cluster.OutcomeHeadLost:
		return lostHeadGrace, lostHeadGrace
	case cluster.OutcomePreempted:
		return preemptedStopGrace, lostHeadGrace
	case cluster.OutcomeHandedOver:
		return handoverStopGrace, leftoverGrace
	}
	return stopGrace, leftoverGrace
}

// driverStopSignal is the signal a driver's process group gets when its
// node ends with o. At a head handover it is SIGINT: Ray Train v2's fit()
// turns SIGINT (and only it) into an abort of its controller actor
// (data_parallel_trainer.py, _register_sigint_handler), which runs on the
// controller's event loop between two control-loop steps, never inside the
// synchronous, non-atomic write of the run's snapshot that a re-run resumes
// from (checkpoint_manager.py, _write_state_to_storage). On SIGTERM Ray's
// driver just exits (worker.py: sys.exit), and the raylet then kills the
// controller wherever it is: a snapshot cut in half fails the re-run with
// CheckpointManagerInitializationError. A plain Python driver gets
// KeyboardInterrupt, and the built-in loop checkpoints on either signal.
// Otherwise it is SIGTERM, as SLURM itself would send.
func driverStopSignal(o cluster.Outcome) syscall.Signal {
	if o == cluster.OutcomeHandedOver {
		return syscall.SIGINT
	}
	return syscall.SIGTERM
}

// handoverStopGrace is what a driver gets at a head handover to checkpoint
// and exit before it is killed (the built-in loop needs at most about 4 s:
// its checkpoint is bounded at 3 s), and a node's `ray start --block` to
// stop. The old head waits for both (driverCheckpointWait), and the job
// goes on: no SLURM kill bounds it.
const handoverStopGrace = 10 * time.Second

// preemptedStopGrace is what `ray start --block` gets to stop a preempted
// node's Ray: Ray's own drain on SIGTERM is bounded at rayDrainSeconds, and
// SLURM's kill is only KillWait (10 s on the dev SLURM) after its SIGTERM.
const preemptedStopGrace = 3 * time.Second

// preemptMargin is what a preempted node keeps in hand before SLURM's kill,
// beyond its stop's graces: the record's last write and the exit.
const preemptMargin = time.Second

// isPreemption decides whether SLURM's word on a job at its SIGTERM (p)
// says SLURM preempts this run, restarts being the run's own
// SLURM_RESTART_COUNT. Measured on the dev SLURM (22.05, partition_prio,
// PreemptMode=REQUEUE): the job is requeued before the SIGTERM (scontrol
// shows Restarts one higher than the run's, JobState=COMPLETING,
// PreemptTime absent), and no GraceTime is given. A PreemptTime (a
// GraceTime honoured) or the state PREEMPTED (PreemptMode=CANCEL) says it
// too. scancel and `down` change none of these. An admin's `scontrol
// requeue` counts as well: the job comes back the same way.
func isPreemption(p scheduler.Preemption, restarts int) bool {
	return !p.At.IsZero() || p.State == scheduler.Preempted || p.Restarts > restarts
}

// preemptionDeadline is when SLURM kills a preempted job whose SIGTERM
// arrived at termAt: KillWait after its SIGTERM, or at its end time
// (PreemptTime+GraceTime), whichever comes first. Measured on the dev SLURM
// (22.05, PreemptMode=REQUEUE, KillWait=10, GraceTime=15): the job turned
// from COMPLETING to PENDING 9.9 s after the SIGTERM, and no grace was
// given. PreemptTime is in whole seconds and may precede the signal: the
// earlier of the two starts the clock. Without a KillWait, SLURM's default
// (30 s) is assumed. A job SLURM cannot requeue (a head: --no-requeue)
// is killed the same way, its end time set to its PreemptTime.
func preemptionDeadline(p scheduler.Preemption, termAt time.Time) time.Time {
	start := termAt
	if !p.At.IsZero() && p.At.Before(start) {
		start = p.At
	}
	killWait := p.KillWait
	if killWait <= 0 {
		killWait = defaultKillWait
	}
	deadline := start.Add(killWait)
	// An end at the PreemptTime is no grace: SLURM ends a job it cannot
	// requeue (a --no-requeue head) at the preemption, and still sends
	// SIGKILL only KillWait later (measured: EndTime=PreemptTime, the
	// kill 10 s after the SIGTERM).
	grace := !p.End.IsZero() && (p.At.IsZero() || p.End.After(p.At))
	if grace && p.End.Before(deadline) {
		deadline = p.End
	}
	return deadline
}

// defaultKillWait is SLURM's default KillWait.
const defaultKillWait = 30 * time.Second

// preemptionWait is how long a preempted worker stays in Ray, draining,
// before it stops: until SLURM's kill, less its stop's graces and a margin.
// The step in flight finishes within it when it is shorter; the node
// leaves earlier once Ray finds it idle.
func preemptionWait(deadline, now time.Time) time.Duration {
	process, leftovers := stopGraces(cluster.OutcomePreempted)
	return max(deadline.Sub(now)-process-leftovers-preemptMargin, 0)
}

// drainWait is how long a worker draining before its time limit waits for
// its raylet to exit by itself. Once Ray accepted the drain, the node's work
// may finish until shortly before the deadline (the job's end), leaving
// stopGrace and a margin for the stop itself; without Ray's drain, drivers
// still get drainNotice to stop giving the node work.
func drainWait(accepted bool, deadline, now time.Time) time.Duration {
	if !accepted {
		return drainNotice
	}
	return max(deadline.Sub(now)-stopGrace-drainMargin, drainNotice)
}

// drainMargin is what a draining node keeps in hand before its job's end.
const drainMargin = 5 * time.Second
