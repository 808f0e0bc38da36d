package raynode

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/clock/clocktest"
	"github.com/sraybatch/sraybatch/internal/cluster"
)

func TestSuccessionDue(t *testing.T) {
	t.Parallel()
	before := 4 * time.Minute
	base := rolloverSignals{Job: "driver", Before: before, Known: true, TimeLeft: time.Hour}
	with := func(f func(*rolloverSignals)) rolloverSignals { s := base; f(&s); return s }
	tests := []struct {
		name               string
		sig                rolloverSignals
		restarts, maxRests int
		start              bool
		why                string // substring; "" means none
	}{
		{"plenty of time left", base, 0, 10, false, ""},
		{"its own time left below rollover-before", with(func(s *rolloverSignals) { s.TimeLeft = time.Minute }), 0, 10, true, "the driver job has 1m0s left"},
		{"SLURM's warning", with(func(s *rolloverSignals) { s.Warned = true }), 3, 10, true, "reached the driver"},
		{"its preemption", with(func(s *rolloverSignals) { s.Preempted = true }), 0, 10, true, "the driver job is preempted"},
		{"restarts used up: never", with(func(s *rolloverSignals) { s.Preempted = true }), 10, 10, false, "--max-restarts 10 is reached"},
		{"no restarts allowed", with(func(s *rolloverSignals) { s.TimeLeft = 0 }), 0, 0, false, "--max-restarts 0"},
		{"one succession at a time", with(func(s *rolloverSignals) { s.Started, s.Warned = true, true }), 0, 10, false, ""},
	}
	for _, tt := range tests {
		start, why := successionDue(tt.sig, tt.restarts, tt.maxRests)
		if start != tt.start || (tt.why == "") != (why == "") || !strings.Contains(why, tt.why) {
			t.Errorf("%s: successionDue = %v, %q; want %v, %q", tt.name, start, why, tt.start, tt.why)
		}
	}
}

func TestResumeAfter(t *testing.T) {
	t.Parallel()
	rec := func(o cluster.Outcome) *cluster.NodeRecord {
		return &cluster.NodeRecord{Job: "41", Role: cluster.RoleDriver, Phase: cluster.PhaseEnded, Outcome: o}
	}
	running := &cluster.NodeRecord{Job: "41", Role: cluster.RoleDriver, Phase: cluster.PhaseRunning}
	tests := []struct {
		name      string
		pred      *cluster.NodeRecord
		gone      string
		wait, run bool
		why       string
	}{
		{"predecessor still runs", running, "", true, false, "still runs"},
		{"predecessor handed over", rec(cluster.OutcomeHandedOver), "ended (handed over)", false, true, "handed_over"},
		{"predecessor preempted", rec(cluster.OutcomePreempted), "ended (preempted)", false, true, "preempted"},
		{"predecessor killed without its record", running, "ended (TIMEOUT)", false, true, "last checkpoint"},
		{"no record at all", nil, "ended (no longer known to SLURM)", false, true, "last checkpoint"},
		{"predecessor completed the run", rec(cluster.OutcomeCompleted), "ended (driver finished)", false, false, "nothing to resume"},
		{"predecessor failed", rec(cluster.OutcomeFailed), "ended (exit 1)", false, false, "ended failed"},
		{"predecessor cancelled (down)", rec(cluster.OutcomeCancelled), "ended", false, false, "ended cancelled"},
	}
	for _, tt := range tests {
		wait, run, why := resumeAfter(tt.pred, tt.gone)
		if wait != tt.wait || run != tt.run || !strings.Contains(why, tt.why) {
			t.Errorf("%s: resumeAfter = %v, %v, %q; want %v, %v, %q", tt.name, wait, run, why, tt.wait, tt.run, tt.why)
		}
	}
}

func TestPreemptionHandled(t *testing.T) {
	t.Parallel()
	tests := []struct {
		role      cluster.Role
		rollsOver bool
		want      bool
	}{
		{cluster.RoleWorker, false, true},
		{cluster.RoleHead, false, false},
		{cluster.RoleDriver, false, false},
		{cluster.RoleHead, true, true},
		{cluster.RoleDriver, true, true},
	}
	for _, tt := range tests {
		if got := preemptionHandled(tt.role, tt.rollsOver); got != tt.want {
			t.Errorf("preemptionHandled(%s, rollover %v) = %v, want %v", tt.role, tt.rollsOver, got, tt.want)
		}
	}
}

type fakeDriverSubmitter struct {
	got []DriverSuccession
	err error
}

func (f *fakeDriverSubmitter) SubmitDriver(_ context.Context, next DriverSuccession) (string, error) {
	f.got = append(f.got, next)
	return "77", f.err
}

// A driver job hands over to the successor it submits, carrying the
// restart count on; once, and not past --max-restarts or without one.
func TestHandDriverOver(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                  string
		restarts, maxRestarts int
		submitErr             error
		want                  cluster.Outcome // "": goes on
		submitted             bool
	}{
		{"submits and hands over", 2, 10, nil, cluster.OutcomeHandedOver, true},
		{"restarts used up", 10, 10, nil, "", false},
		{"sbatch refuses", 0, 10, errors.New("sbatch: error"), "", true},
	}
	for _, tt := range tests {
		sub := &fakeDriverSubmitter{err: tt.submitErr}
		s := newSupervisor(Config{Role: cluster.RoleDriver, HeadJob: "9", Getenv: func(string) string { return "" }, MaxRestarts: tt.maxRestarts, Restarts: tt.restarts,
			DriverSuccessor: sub, Log: &strings.Builder{}, Clock: clocktest.New(time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC))}, "41")
		err := s.handDriverOver(context.Background(), "the driver job has 1m0s left")
		if got := cluster.Outcome(""); err != nil {
			got = outcomeOf(err)
			if got != tt.want || !strings.Contains(err.Error(), "driver job 77") {
				t.Errorf("%s: %v (%s), want %q naming job 77", tt.name, err, got, tt.want)
			}
		} else if tt.want != "" {
			t.Errorf("%s: goes on, want %s", tt.name, tt.want)
		}
		if (len(sub.got) > 0) != tt.submitted {
			t.Errorf("%s: submitted %v, want %v", tt.name, sub.got, tt.submitted)
		}
		if len(sub.got) > 0 && sub.got[0] != (DriverSuccession{HeadJob: "9", Follows: "41", Restarts: tt.restarts + 1}) {
			t.Errorf("%s: successor %+v, want head 9, follows 41, restarts %d", tt.name, sub.got[0], tt.restarts+1)
		}
		if handed := tt.want == cluster.OutcomeHandedOver; handed != (s.rec.Successor == "77") {
			t.Errorf("%s: record's successor %q", tt.name, s.rec.Successor)
		}
		if !s.rollover.done {
			t.Errorf("%s: may hand over again", tt.name)
		}
	}
}
