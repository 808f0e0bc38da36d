package raynode

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/scheduler"
)

func TestReact(t *testing.T) {
	t.Parallel()
	worker := nodeState{Role: cluster.RoleWorker, Joined: true}
	tests := []struct {
		name string
		h    happening
		st   nodeState
		want reaction
	}{
		{"cancel ends any node", cancelled, worker, reaction{Outcome: cluster.OutcomeCancelled}},
		{"a worker drains before its time limit", timeLimitWarning, worker, reaction{Drain: true, Outcome: cluster.OutcomeDrainedTimeLimit}},
		{"the head only warns: the cluster ends with it", timeLimitWarning, nodeState{Role: cluster.RoleHead, Joined: true}, reaction{Continue: true}},
		{"a driver only warns: the training ends with it", timeLimitWarning, nodeState{Role: cluster.RoleDriver, Joined: true}, reaction{Continue: true}},
		{"ray exiting by itself is a failure", rayExited, worker, reaction{Outcome: cluster.OutcomeRayExited}},
		{"ray exiting after Ray accepted an idle drain is that drain", rayExited,
			nodeState{Role: cluster.RoleWorker, Joined: true, DrainAccepted: cluster.OutcomeDrainedIdle}, reaction{Outcome: cluster.OutcomeDrainedIdle}},
		{"ray exiting because the job was cancelled", rayExited, nodeState{Role: cluster.RoleWorker, Joined: true, Interrupted: true}, reaction{Outcome: cluster.OutcomeCancelled}},
		{"driver exit 0", driverExited, nodeState{Role: cluster.RoleDriver, Joined: true}, reaction{Outcome: cluster.OutcomeCompleted}},
		{"driver exit 1", driverExited, nodeState{Role: cluster.RoleDriver, Joined: true, DriverExitCode: 1}, reaction{Outcome: cluster.OutcomeFailed}},
		{"driver stopped by the job's cancel (143)", driverExited,
			nodeState{Role: cluster.RoleDriver, Joined: true, DriverExitCode: 143, Interrupted: true}, reaction{Outcome: cluster.OutcomeCancelled}},
		{"head gone after joining", headGone, worker, reaction{Outcome: cluster.OutcomeHeadLost}},
		{"Ray accepted the autoscaler's idle drain", drainAccepted,
			nodeState{Role: cluster.RoleWorker, Joined: true, DrainAccepted: cluster.OutcomeDrainedIdle}, reaction{Outcome: cluster.OutcomeDrainedIdle}},
		{"head gone while joining", headGone, nodeState{Role: cluster.RoleWorker}, reaction{Outcome: cluster.OutcomeJoinFailed}},
		{"a preempted worker drains through Ray", preempted, worker, reaction{Drain: true, Outcome: cluster.OutcomePreempted}},
		{"a preempted worker not yet in Ray just ends", preempted, nodeState{Role: cluster.RoleWorker}, reaction{Outcome: cluster.OutcomePreempted}},
		{"a preempted head ends: no handover yet", preempted, nodeState{Role: cluster.RoleHead, Joined: true}, reaction{Outcome: cluster.OutcomePreempted}},
		{"a rollover head hands over at SLURM's warning", timeLimitWarning, nodeState{Role: cluster.RoleHead, Joined: true, RollsOver: true},
			reaction{HandOver: true, Outcome: cluster.OutcomeHandedOver}},
		{"a rollover cluster's driver job hands over at its warning", timeLimitWarning, nodeState{Role: cluster.RoleDriver, Joined: true, RollsOver: true},
			reaction{HandOver: true, Outcome: cluster.OutcomeHandedOver}},
		{"a rollover cluster's preempted driver job hands over", preempted, nodeState{Role: cluster.RoleDriver, Joined: true, RollsOver: true},
			reaction{HandOver: true, Outcome: cluster.OutcomeHandedOver}},
		{"a rollover cluster's preempted worker still drains", preempted, nodeState{Role: cluster.RoleWorker, Joined: true, RollsOver: true},
			reaction{Drain: true, Outcome: cluster.OutcomePreempted}},
	}
	for _, tt := range tests {
		if got := react(tt.h, tt.st); got != tt.want {
			t.Errorf("%s: react = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestHeadVerdict(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	ended := &cluster.NodeRecord{Phase: cluster.PhaseEnded, Reason: "cancelled (terminated)"}
	yes, no := true, false
	running := &cluster.NodeRecord{Phase: cluster.PhaseRunning}
	tests := []struct {
		name string
		sig  headSignals
		want string // substring; "" means alive
	}{
		{"nothing known yet", headSignals{}, ""},
		{"running, fresh heartbeat", headSignals{Record: running, Heartbeat: now.Add(-2 * time.Second)}, ""},
		{"heartbeat just inside the bound", headSignals{Record: running, Heartbeat: now.Add(-headSilentAfter), GCSAnswers: &no}, ""},
		{"frozen: heartbeat stale and the GCS silent", headSignals{Record: running, Heartbeat: now.Add(-headSilentAfter - time.Second), GCSAnswers: &no},
			"unresponsive (no heartbeat for 6s, and its GCS does not answer)"},
		{"a stalled filesystem: heartbeat stale, the GCS answers", headSignals{Record: running, Heartbeat: now.Add(-30 * time.Second), GCSAnswers: &yes}, ""},
		{"no probe possible: stale within the long bound", headSignals{Record: running, Heartbeat: now.Add(-30 * time.Second)}, ""},
		{"no probe possible: stale past the long bound", headSignals{Record: running, Heartbeat: now.Add(-headSilentNoProbe - time.Second)}, "unresponsive (no heartbeat for 1m1s)"},
		{"the head said it is stopping", headSignals{Record: running, Heartbeat: now, Ending: "cancelled (terminated)"}, "ending (cancelled (terminated))"},
		{"the head recorded its end", headSignals{Record: ended, Heartbeat: now}, "ended (cancelled (terminated))"},
		{"down was asked", headSignals{Record: running, Down: true, Heartbeat: now}, "ended (cluster down)"},
		{"SLURM: still running", headSignals{Scheduler: &headJob{Known: true, State: scheduler.Running}}, ""},
		{"SLURM: pending counts as alive", headSignals{Scheduler: &headJob{Known: true, State: scheduler.Pending}}, ""},
		{"SLURM: ended", headSignals{Scheduler: &headJob{Known: true, State: scheduler.Cancelled}}, "ended (CANCELLED)"},
		{"SLURM: forgotten", headSignals{Scheduler: &headJob{}}, "ended (no longer known to SLURM)"},
		{"SLURM unreachable is no evidence", headSignals{Record: running, Heartbeat: now}, ""},
	}
	for _, tt := range tests {
		got := headVerdict(tt.sig, now)
		if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("%s: headVerdict = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestAskScheduler(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		last time.Time
		want bool
	}{
		{time.Time{}, true},
		{now.Add(-slurmCheckInterval), true},
		{now.Add(-slurmCheckInterval + time.Second), false},
	} {
		if got := askScheduler(tt.last, now); got != tt.want {
			t.Errorf("askScheduler(%v ago) = %v, want %v", now.Sub(tt.last), got, tt.want)
		}
	}
}

func TestRetryStart(t *testing.T) {
	t.Parallel()
	early := fmt.Errorf("%w (exit status 1): port taken", errExitedEarly)
	tests := []struct {
		name        string
		err         error
		attempt     int
		interrupted bool
		want        bool
	}{
		{"a lost port race is retried", early, 1, false, true},
		{"up to the last attempt", early, startAttempts - 1, false, true},
		{"not after the last", early, startAttempts, false, false},
		{"not after a cancel", early, 1, true, false},
		{"a timeout is no port race", errors.New("ray node not up within 3m0s"), 1, false, false},
	}
	for _, tt := range tests {
		if got := retryStart(tt.err, tt.attempt, tt.interrupted); got != tt.want {
			t.Errorf("%s: retryStart = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestFinal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		o      cluster.Outcome
		joined bool
		phase  cluster.Phase
		ok     bool
	}{
		{cluster.OutcomeCompleted, true, cluster.PhaseEnded, true},
		{cluster.OutcomeDrainedTimeLimit, true, cluster.PhaseEnded, true},
		{cluster.OutcomeDrainedIdle, true, cluster.PhaseEnded, true},
		{cluster.OutcomeCancelled, true, cluster.PhaseEnded, true},
		{cluster.OutcomeCancelled, false, cluster.PhaseFailed, true},
		{cluster.OutcomePreempted, true, cluster.PhaseEnded, true},
		{cluster.OutcomeHeadLost, true, cluster.PhaseEnded, false},
		{cluster.OutcomeRayExited, true, cluster.PhaseEnded, false},
		{cluster.OutcomeFailed, true, cluster.PhaseEnded, false},
		{cluster.OutcomeSetupFailed, false, cluster.PhaseFailed, false},
		{cluster.OutcomeJoinFailed, false, cluster.PhaseFailed, false},
	}
	for _, tt := range tests {
		phase, ok := final(tt.o, tt.joined)
		if phase != tt.phase || ok != tt.ok {
			t.Errorf("final(%s, joined %v) = %s, %v; want %s, %v", tt.o, tt.joined, phase, ok, tt.phase, tt.ok)
		}
	}
}

func TestStopGraces(t *testing.T) {
	t.Parallel()
	if p, l := stopGraces(cluster.OutcomeCancelled); p != stopGrace || l != leftoverGrace {
		t.Errorf("cancelled: %s, %s", p, l)
	}
	if p, l := stopGraces(cluster.OutcomeHeadLost); p > 2*time.Second || l > 2*time.Second {
		t.Errorf("head lost: %s, %s; want short: nothing waits for a lost GCS", p, l)
	}
	// A preempted node stops within SLURM's KillWait (10 s on the dev SLURM)
	// after draining, with a margin.
	if p, l := stopGraces(cluster.OutcomePreempted); p+l+preemptMargin > 5*time.Second {
		t.Errorf("preempted: %s, %s; want the stop well inside KillWait", p, l)
	}
}

// A driver stops at a safe point at a handover: SIGINT, which Ray Train v2
// turns into an abort between its controller's steps (decide.go's
// driverStopSignal); everything else is SLURM's own SIGTERM.
func TestDriverStopSignal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		o    cluster.Outcome
		want syscall.Signal
	}{
		{cluster.OutcomeHandedOver, syscall.SIGINT},
		{cluster.OutcomeCancelled, syscall.SIGTERM},
		{cluster.OutcomeHeadLost, syscall.SIGTERM},
		{cluster.OutcomePreempted, syscall.SIGTERM},
		{cluster.OutcomeCompleted, syscall.SIGTERM},
		{"", syscall.SIGTERM},
	}
	for _, tt := range tests {
		if got := driverStopSignal(tt.o); got != tt.want {
			t.Errorf("driverStopSignal(%q) = %v, want %v", tt.o, got, tt.want)
		}
	}
}

func TestPreemptionDeadline(t *testing.T) {
	t.Parallel()
	term := time.Date(2026, 12, 6, 19, 0, 40, 300e6, time.UTC)
	at := term.Truncate(time.Second)
	tests := []struct {
		name string
		p    scheduler.Preemption
		want time.Time
	}{
		{"KillWait before the grace time ends (the dev SLURM)", scheduler.Preemption{At: at, End: at.Add(15 * time.Second), KillWait: 10 * time.Second}, at.Add(10 * time.Second)},
		{"a grace time shorter than KillWait", scheduler.Preemption{At: at, End: at.Add(5 * time.Second), KillWait: 30 * time.Second}, at.Add(5 * time.Second)},
		{"PreemptTime after the signal: the signal starts the clock", scheduler.Preemption{At: term.Add(time.Second), KillWait: 10 * time.Second}, term.Add(10 * time.Second)},
		{"nothing known: SLURM's default KillWait", scheduler.Preemption{At: at}, at.Add(defaultKillWait)},
		{"a --no-requeue job killed: its end is its PreemptTime, the kill KillWait later", scheduler.Preemption{At: at, End: at, KillWait: 10 * time.Second}, at.Add(10 * time.Second)},
	}
	for _, tt := range tests {
		if got := preemptionDeadline(tt.p, term); !got.Equal(tt.want) {
			t.Errorf("%s: preemptionDeadline = %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestPreemptionWait(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 6, 19, 0, 0, 0, time.UTC)
	process, leftovers := stopGraces(cluster.OutcomePreempted)
	for _, tt := range []struct {
		left, want time.Duration
	}{
		{10 * time.Second, 10*time.Second - process - leftovers - preemptMargin},
		{30 * time.Second, 30*time.Second - process - leftovers - preemptMargin},
		{2 * time.Second, 0}, // no time to drain: stop at once
	} {
		if got := preemptionWait(now.Add(tt.left), now); got != tt.want {
			t.Errorf("preemptionWait(%s left) = %s, want %s", tt.left, got, tt.want)
		}
	}
}

func TestRequeuedHead(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		role     cluster.Role
		restarts string
		refuse   bool
	}{
		{cluster.RoleHead, "", false},
		{cluster.RoleHead, "0", false},
		{cluster.RoleHead, "1", true},
		{cluster.RoleHead, "3", true},
		{cluster.RoleWorker, "1", false}, // a requeued worker rejoins its head
		{cluster.RoleDriver, "1", false},
	} {
		why, refuse := requeuedHead(tt.role, tt.restarts)
		if refuse != tt.refuse || (refuse && !strings.Contains(why, "SLURM_RESTART_COUNT="+tt.restarts)) {
			t.Errorf("requeuedHead(%s, %q) = %q, %v; want refuse %v", tt.role, tt.restarts, why, refuse, tt.refuse)
		}
	}
}

func TestTempBase(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, tmpdir, home, job, want string
	}{
		{"no TMPDIR", "", "/home/ana", "7", "/tmp"},
		{"a short node-local TMPDIR", "/scratch", "/home/ana", "7_0", "/scratch"},
		{"TMPDIR under the shared home", "/home/ana/tmp", "/home/ana", "7", "/tmp"},
		{"TMPDIR too long for Ray's socket paths", "/local/scratch/slurm-job-1234567", "/home/ana", "1234567_12", "/tmp"},
	}
	for _, tt := range tests {
		if got := tempBase(tt.tmpdir, tt.home, tt.job); got != tt.want {
			t.Errorf("%s: tempBase = %q, want %q", tt.name, got, tt.want)
		}
	}
	// The longest path Ray makes under a chosen base fits sun_path.
	for _, job := range []string{"7", "1234567_1000"} {
		base := strings.Repeat("x", maxSocketPath-privateTail-len(job)-raySocketTail)
		if got := tempBase(base, "", job); got != base {
			t.Errorf("a base of %d bytes for job %s was refused", len(base), job)
		}
		if got := tempBase(base+"y", "", job); got != "/tmp" {
			t.Errorf("a base of %d bytes for job %s was accepted", len(base)+1, job)
		}
	}
}

func TestIsPreemption(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 6, 19, 0, 40, 0, time.UTC)
	for _, tt := range []struct {
		name     string
		p        scheduler.Preemption
		restarts int
		want     bool
	}{
		{"scancel of a first run", scheduler.Preemption{State: scheduler.Running}, 0, false},
		{"scancel of a rerun", scheduler.Preemption{State: scheduler.Running, Restarts: 1}, 1, false},
		{"requeued under this run (22.05, PreemptMode=REQUEUE)", scheduler.Preemption{State: scheduler.Completing, Restarts: 1}, 0, true},
		{"a rerun requeued again", scheduler.Preemption{State: scheduler.Completing, Restarts: 2}, 1, true},
		{"a grace time (PreemptTime)", scheduler.Preemption{State: scheduler.Running, At: at}, 0, true},
		{"PreemptMode=CANCEL", scheduler.Preemption{State: scheduler.Preempted}, 0, true},
	} {
		if got := isPreemption(tt.p, tt.restarts); got != tt.want {
			t.Errorf("%s: isPreemption = %v, want %v", tt.name, got, tt.want)
		}
	}
}
