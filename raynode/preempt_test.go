package raynode

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/raygcs"
	"github.com/sraybatch/sraybatch/internal/scheduler"
)

// fakePreemption answers Preemption with a fixed answer and counts calls.
type fakePreemption struct {
	p     scheduler.Preemption
	err   error
	calls int
}

func (f *fakePreemption) Preemption(ctx context.Context, job string) (scheduler.Preemption, error) {
	f.calls++
	return f.p, f.err
}

// A SIGTERM is a preemption only for a worker, or a rollover cluster's
// head or driver job, whose job SLURM marked (requeued, PreemptTime); `down` answers first, without asking SLURM, and a
// scheduler that does not answer makes it a cancel.
func TestPreemptedBy(t *testing.T) {
	t.Parallel()
	term := time.Date(2026, 12, 6, 19, 0, 40, 0, time.UTC)
	marked := scheduler.Preemption{State: scheduler.Completing, Restarts: 1, KillWait: 10 * time.Second}
	// A head job is --no-requeue: SLURM 22.05 kills it instead ("had to be
	// killed"), in state COMPLETING with a PreemptTime, Restarts 0 (measured
	// on the dev SLURM).
	preemptedHead := scheduler.Preemption{State: scheduler.Completing, At: term, End: term, KillWait: 10 * time.Second}
	for _, tt := range []struct {
		name      string
		role      cluster.Role
		rollsOver bool
		down      bool
		src       *fakePreemption
		want      bool
		calls     int
	}{
		{"a worker SLURM preempts", cluster.RoleWorker, false, false, &fakePreemption{p: marked}, true, 1},
		{"scancel: no requeue, no PreemptTime", cluster.RoleWorker, false, false, &fakePreemption{p: scheduler.Preemption{State: scheduler.Running}}, false, 1},
		{"`down`: SLURM is not asked", cluster.RoleWorker, false, true, &fakePreemption{p: marked}, false, 0},
		{"SLURM does not answer", cluster.RoleWorker, false, false, &fakePreemption{err: errors.New("timed out")}, false, 1},
		{"a head without --rollover: a cancel, its end is the cluster's", cluster.RoleHead, false, false, &fakePreemption{p: marked}, false, 0},
		{"a rollover head SLURM preempts: it hands over", cluster.RoleHead, true, false, &fakePreemption{p: preemptedHead}, true, 1},
		{"a rollover head cancelled: a cancel", cluster.RoleHead, true, false, &fakePreemption{p: scheduler.Preemption{State: scheduler.Running}}, false, 1},
		{"a driver without --rollover: always a cancel", cluster.RoleDriver, false, false, &fakePreemption{p: marked}, false, 0},
		{"a rollover cluster's driver job SLURM preempts: it hands over", cluster.RoleDriver, true, false, &fakePreemption{p: marked}, true, 1},
	} {
		f := newRunFixture(t)
		if tt.rollsOver {
			f.spec.Rollover = &cluster.RolloverSpec{BeforeS: 240}
		}
		if tt.down {
			if err := f.dir.MarkDown(term); err != nil {
				t.Fatal(err)
			}
		}
		cfg := f.config(tt.role, map[string]string{"SLURM_JOB_ID": "8"})
		cfg.Preemption = tt.src
		s := newSupervisor(cfg, "8")
		deadline, ok := s.preemptedBy(context.Background(), term)
		if ok != tt.want || tt.src.calls != tt.calls || (ok && !deadline.Equal(term.Add(10*time.Second))) {
			t.Errorf("%s: preemptedBy = %s, %v after %d calls; want %v after %d", tt.name, deadline, ok, tt.src.calls, tt.want, tt.calls)
		}
	}
}

// A preempted worker turns draining at once (the training loop gives it no
// new step), asks Ray to drain it with reason PREEMPTION and SLURM's kill
// as the deadline, leaves once the head sees its node gone, and records
// the outcome preempted; its job ends well.
func TestRunWorkerPreempted(t *testing.T) {
	t.Parallel()
	f := newRunFixture(t)
	f.heartbeat(t, "8")
	s := newSupervisor(f.config(cluster.RoleWorker, map[string]string{"SLURM_JOB_ID": "8", "CUDA_VISIBLE_DEVICES": "0"}), "8")
	n := notices{timeLimit: make(chan struct{}, 1), preempted: make(chan time.Time, 1)}
	errc := make(chan error, 1)
	go func() { errc <- s.run(context.Background(), n) }()
	calls := f.untilRunning(t, "8")

	kill := f.clock.Now().Add(10 * time.Second)
	n.preempted <- kill
	for rec, _, _ := f.dir.Node("8"); rec.Phase != cluster.PhaseDraining; rec, _, _ = f.dir.Node("8") {
		f.clock.Advance(100 * time.Millisecond)
		calls = f.clock.WaitAfterCalls(calls)
	}
	rec, _, _ := f.dir.Node("8")
	if rec.Reason != cluster.ReasonPreempted {
		t.Errorf("draining reason = %q, want %q", rec.Reason, cluster.ReasonPreempted)
	}
	// The head's snapshot shows the node gone: the drain is over.
	now := f.clock.Now()
	if err := f.dir.WriteMembership(cluster.MembershipSnapshot{Updated: now, Heartbeat: now, Nodes: map[string]*cluster.MemberNode{
		"8": {NodeID: "n-8", Alive: false, FirstSeen: now, LastSeen: now},
	}}); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(membershipInterval)
	err := <-errc
	if s.finish(err) != true {
		t.Errorf("a preempted worker's job ends well; finish said no (%v)", err)
	}
	rec, _, _ = f.dir.Node("8")
	if rec.Phase != cluster.PhaseEnded || rec.Outcome != cluster.OutcomePreempted || rec.Reason != cluster.ReasonPreempted {
		t.Errorf("record = phase %s, outcome %s, reason %q; want ended, preempted", rec.Phase, rec.Outcome, rec.Reason)
	}
	f.gcs.mu.Lock()
	defer f.gcs.mu.Unlock()
	if len(f.gcs.drains) != 1 || f.gcs.drains[0].reason != raygcs.DrainPreemption || f.gcs.drains[0].node != "n-8" || !f.gcs.drains[0].deadline.Equal(kill) {
		t.Errorf("drains = %+v, want one of n-8 with reason PREEMPTION and deadline %s", f.gcs.drains, kill)
	}
	if !f.procs.started[0].stopped {
		t.Error("ray start was not stopped")
	}
}

// A head job that SLURM runs again after a requeue refuses to be a second
// head: it starts nothing and records why.
func TestRunRequeuedHeadExits(t *testing.T) {
	t.Parallel()
	f := newRunFixture(t)
	err := Run(context.Background(), f.config(cluster.RoleHead, map[string]string{"SLURM_JOB_ID": "7", "SLURM_RESTART_COUNT": "1"}))
	if err != nil {
		t.Errorf("Run = %v, want nil: the job ends without another requeue", err)
	}
	rec, _, _ := f.dir.Node("7")
	if rec.Outcome != cluster.OutcomeRequeuedHead || rec.Phase != cluster.PhaseFailed || len(f.procs.started) != 0 {
		t.Errorf("record %+v, %d processes started; want requeued_head and nothing started", rec, len(f.procs.started))
	}
}

// Ray's exit or the head's loss after a worker's SIGTERM waits for SLURM's
// word on that SIGTERM: under linuxproc the preemption's SIGTERM ends Ray
// too, and its load can hold up the head's heartbeat.
func TestAwaitPreemption(t *testing.T) {
	t.Parallel()
	f := newRunFixture(t)
	kill := f.clock.Now().Add(10 * time.Second)
	for _, tt := range []struct {
		name      string
		h         happening
		term      bool
		notice    bool
		cancelled bool
		want      bool
	}{
		{"a cancel is a cancel", cancelled, true, true, false, false},
		{"Ray exits, no SIGTERM, no notice", rayExited, false, false, false, false},
		{"Ray exits after the preemption's notice", rayExited, false, true, false, true},
		{"Ray exits while SLURM is asked, then the notice", rayExited, true, true, false, true},
		{"head lost while SLURM is asked, then the notice", headGone, true, true, false, true},
		{"the SIGTERM was a cancel", rayExited, true, false, true, false},
	} {
		s := newSupervisor(f.config(cluster.RoleWorker, map[string]string{"SLURM_JOB_ID": "8"}), "8")
		s.termArrived.Store(tt.term)
		ch := make(chan time.Time, 1)
		ctx, cancel := context.WithCancel(context.Background())
		if tt.notice {
			ch <- kill
		}
		if tt.cancelled {
			cancel()
		}
		at, ok := s.awaitPreemption(ctx, tt.h, ch)
		cancel()
		if ok != tt.want || (ok && !at.Equal(kill)) {
			t.Errorf("%s: awaitPreemption = %s, %v; want %v", tt.name, at, ok, tt.want)
		}
	}
}
