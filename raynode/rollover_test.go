package raynode

import (
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/clock/clocktest"
	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/scheduler"
)

func TestRolloverDue(t *testing.T) {
	t.Parallel()
	before := 4 * time.Minute
	base := rolloverSignals{Generation: 1, Before: before, Known: true, TimeLeft: time.Hour}
	with := func(f func(*rolloverSignals)) rolloverSignals { s := base; f(&s); return s }
	tests := []struct {
		name  string
		sig   rolloverSignals
		start bool
		why   string // substring; "" means none
	}{
		{"plenty of time left", base, false, ""},
		{"time left below rollover-before", with(func(s *rolloverSignals) { s.TimeLeft = before - time.Second }), true, "3m59s left"},
		{"exactly rollover-before left is not yet", with(func(s *rolloverSignals) { s.TimeLeft = before }), false, ""},
		{"an unknown time left never triggers", with(func(s *rolloverSignals) { s.Known, s.TimeLeft = false, 0 }), false, ""},
		{"SLURM's warning triggers at once", with(func(s *rolloverSignals) { s.Warned = true }), true, "warning"},
		{"preemption triggers at once", with(func(s *rolloverSignals) { s.Preempted = true }), true, "preempted"},
		{"one handover at a time", with(func(s *rolloverSignals) { s.Started, s.Preempted = true, true }), false, ""},
		{"the last generation never hands over", with(func(s *rolloverSignals) { s.Generation, s.MaxGenerations, s.TimeLeft = 3, 3, 0 }), false, "is the last"},
		{"below the bound it still does", with(func(s *rolloverSignals) { s.Generation, s.MaxGenerations, s.TimeLeft = 2, 3, 0 }), true, "left"},
	}
	for _, tt := range tests {
		start, why := rolloverDue(tt.sig)
		if start != tt.start || (tt.why == "") != (why == "") || !strings.Contains(why, tt.why) {
			t.Errorf("%s: rolloverDue = %v, %q; want %v, %q", tt.name, start, why, tt.start, tt.why)
		}
	}
}

// The head asks SLURM for its time left every rolloverCheckInterval of the
// fake clock, and not in between.
func TestCheckTimeLeftPace(t *testing.T) {
	t.Parallel()
	c := clocktest.New(time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC))
	var last time.Time
	asked := 0
	for range 60 {
		if checkTimeLeft(last, c.Now()) {
			asked++
			last = c.Now()
		}
		c.Advance(time.Second)
	}
	if want := 3; asked != want {
		t.Errorf("asked %d times in 60 s, want %d (every %s)", asked, want, rolloverCheckInterval)
	}
}

func TestPickSuccessor(t *testing.T) {
	t.Parallel()
	before := 4 * time.Minute
	good := func(job string, left time.Duration) candidate {
		return candidate{Job: job, TimeLeft: left, Joined: true, MemMB: 32 * 1024, ObjectStoreMB: 8 * 1024}
	}
	tests := []struct {
		name  string
		cands []candidate
		how   cluster.GenerationHow
		job   string
		why   string
	}{
		{"no workers: submit", nil, cluster.GenerationSubmitted, "", "no worker to promote"},
		{"the most time left wins", []candidate{good("8", time.Hour), good("9", 2*time.Hour)}, cluster.GenerationPromoted, "9", "most time"},
		{"no limit beats any limit", []candidate{good("8", 9*time.Hour), {Job: "10", Unlimited: true, Joined: true}}, cluster.GenerationPromoted, "10", ""},
		{"ties go to the smallest key", []candidate{good("9", time.Hour), good("10", time.Hour), good("8", time.Hour)}, cluster.GenerationPromoted, "10", ""},
		{"too little time left: submit", []candidate{good("8", before+promoteMargin-time.Second)}, cluster.GenerationSubmitted, "", "8: 13m59s left"},
		{"not in Ray", []candidate{{Job: "8", TimeLeft: time.Hour}}, cluster.GenerationSubmitted, "", "not in Ray"},
		{"leaving", []candidate{{Job: "8", TimeLeft: time.Hour, Joined: true, Leaving: true}}, cluster.GenerationSubmitted, "", "leaving"},
		{"no room for the GCS beside the object store", []candidate{{Job: "8", TimeLeft: time.Hour, Joined: true, MemMB: 10 * 1024, ObjectStoreMB: 8 * 1024}},
			cluster.GenerationSubmitted, "", "a head needs"},
		{"less than the head's memory, no room beside the object store", []candidate{{Job: "8", TimeLeft: time.Hour, Joined: true, MemMB: 4 * 1024, ObjectStoreMB: 1228}},
			cluster.GenerationSubmitted, "", "less than the head job's 12288 MB"},
		{"the head's own memory is enough, whatever the estimate", []candidate{{Job: "8", TimeLeft: time.Hour, Joined: true, MemMB: 12 * 1024, ObjectStoreMB: 10 * 1024}},
			cluster.GenerationPromoted, "8", ""},
		{"unknown memory does not rule out", []candidate{{Job: "8", TimeLeft: time.Hour, Joined: true}}, cluster.GenerationPromoted, "8", ""},
		{"the unfit are passed over", []candidate{{Job: "7", TimeLeft: 9 * time.Hour}, good("8", time.Hour)}, cluster.GenerationPromoted, "8", ""},
	}
	for _, tt := range tests {
		got := pickSuccessor(tt.cands, before, 12*1024)
		if got.How != tt.how || got.Job != tt.job || !strings.Contains(got.Why, tt.why) {
			t.Errorf("%s: pickSuccessor = %+v; want %s %q (why ~ %q)", tt.name, got, tt.how, tt.job, tt.why)
		}
	}
}

func TestSubmitSuccessorDue(t *testing.T) {
	t.Parallel()
	before := 4 * time.Minute
	tests := []struct {
		name      string
		left      time.Duration
		known     bool
		queueWait time.Duration
		want      bool
	}{
		{"no queue wait: at rollover-before", before - time.Second, true, 0, true},
		{"no queue wait: not earlier", before + time.Second, true, 0, false},
		{"a queue wait moves it earlier", 20 * time.Minute, true, 10 * time.Minute, true},
		{"by two queue waits", 25 * time.Minute, true, 10 * time.Minute, false},
		{"unknown time left: never", 0, false, time.Hour, false},
	}
	for _, tt := range tests {
		if got := submitSuccessorDue(tt.left, tt.known, before, tt.queueWait); got != tt.want {
			t.Errorf("%s: submitSuccessorDue = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestRejoin(t *testing.T) {
	t.Parallel()
	before := 4 * time.Minute
	tests := []struct {
		name   string
		sig    rejoinSignals
		follow bool
		why    string
	}{
		{"time left: keeps its GPUs", rejoinSignals{TimeLeft: time.Hour, Before: before}, true, "time left"},
		{"no limit: keeps its GPUs", rejoinSignals{Unlimited: true, Before: before}, true, ""},
		{"too little left: ends", rejoinSignals{TimeLeft: time.Minute, Before: before}, false, "1m0s left"},
		{"already draining: ends", rejoinSignals{TimeLeft: time.Hour, Before: before, Leaving: true}, false, "leaving"},
	}
	for _, tt := range tests {
		follow, why := rejoin(tt.sig)
		if follow != tt.follow || !strings.Contains(why, tt.why) {
			t.Errorf("%s: rejoin = %v, %q; want %v, ~%q", tt.name, follow, why, tt.follow, tt.why)
		}
	}
}

func TestMayPublish(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	started := &cluster.Handover{Generation: 1, HeadJob: "7", Started: at}
	sealed := &cluster.Handover{Generation: 1, HeadJob: "7", Started: at, Sealed: &at}
	tests := []struct {
		name string
		sig  sealSignals
		ok   bool
		why  string
	}{
		{"no record, old head serving: wait", sealSignals{}, false, "waiting"},
		{"handover started, not sealed: wait", sealSignals{Handover: started}, false, "waiting"},
		{"sealed: publish", sealSignals{Handover: sealed}, true, "generation 1 sealed"},
		{"old head lost: publish", sealSignals{Handover: started, OldHeadGone: "ended (TIMEOUT)"}, true, "TIMEOUT"},
	}
	for _, tt := range tests {
		ok, why := mayPublish(tt.sig)
		if ok != tt.ok || !strings.Contains(why, tt.why) {
			t.Errorf("%s: mayPublish = %v, %q; want %v, ~%q", tt.name, ok, why, tt.ok, tt.why)
		}
	}
}

func TestHeadWaitOver(t *testing.T) {
	t.Parallel()
	c := clocktest.New(time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC))
	gone := c.Now()
	if headWaitOver(time.Time{}, c.Now(), time.Minute) {
		t.Error("over without a head gone")
	}
	c.Advance(time.Minute - time.Second)
	if headWaitOver(gone, c.Now(), time.Minute) {
		t.Error("over before --head-wait")
	}
	c.Advance(time.Second)
	if !headWaitOver(gone, c.Now(), time.Minute) {
		t.Error("not over at --head-wait")
	}
}

func TestHandoverDeadline(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	asked := now.Add(-10 * time.Second)
	tests := []struct {
		name       string
		timeLeftAt time.Time
		timeLeft   time.Duration
		killAt     time.Time
		want       time.Time
	}{
		{"the time limit, by SLURM's last word", asked, 3 * time.Minute, time.Time{}, asked.Add(3 * time.Minute)},
		{"no word on the limit: rollover-before from now", time.Time{}, 0, time.Time{}, now.Add(4 * time.Minute)},
		{"preempted: SLURM's kill, seconds away", asked, 3 * time.Minute, now.Add(9 * time.Second), now.Add(9 * time.Second)},
		{"preempted without a word on the limit", time.Time{}, 0, now.Add(9 * time.Second), now.Add(9 * time.Second)},
		{"a kill after the limit: the limit", asked, time.Minute, now.Add(2 * time.Minute), asked.Add(time.Minute)},
	}
	for _, tt := range tests {
		if got := handoverDeadline(now, tt.timeLeftAt, tt.timeLeft, 4*time.Minute, tt.killAt); !got.Equal(tt.want) {
			t.Errorf("%s: handoverDeadline = %s, want %s", tt.name, got, tt.want)
		}
	}
}

// A preempted head that SLURM kills before it seals: the next head
// publishes only once the old one is known gone (headVerdict on what it
// sees), never while the old head's job still runs or is being killed.
func TestMayPublishAfterAKilledHead(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	started := &cluster.Handover{Generation: 1, HeadJob: "7", Started: now.Add(-3 * time.Second), How: cluster.GenerationPromoted, Successor: "8"}
	fresh, stale := now.Add(-time.Second), now.Add(-20*time.Second)
	no, yes := false, true
	tests := []struct {
		name string
		head headSignals
		ok   bool
		why  string
	}{
		{"being killed (COMPLETING), heartbeat fresh: wait", headSignals{Heartbeat: fresh, Scheduler: &headJob{Known: true, State: scheduler.Completing}}, false, "waiting"},
		{"killed: SLURM says PREEMPTED", headSignals{Heartbeat: stale, Scheduler: &headJob{Known: true, State: scheduler.Preempted}}, true, "PREEMPTED"},
		{"killed and purged: SLURM no longer knows it", headSignals{Heartbeat: fresh, Scheduler: &headJob{Known: false}}, true, "no longer known"},
		{"silent, and its GCS does not answer", headSignals{Heartbeat: stale, GCSAnswers: &no}, true, "does not answer"},
		{"silent, but its GCS answers: wait", headSignals{Heartbeat: stale, GCSAnswers: &yes, Scheduler: &headJob{Known: true, State: scheduler.Completing}}, false, "waiting"},
		{"its record says it ended", headSignals{Heartbeat: fresh, Record: &cluster.NodeRecord{Phase: cluster.PhaseEnded, Reason: "preempted"}}, true, "ended (preempted)"},
	}
	for _, tt := range tests {
		ok, why := mayPublish(sealSignals{Handover: started, OldHeadGone: headVerdict(tt.head, now)})
		if ok != tt.ok || !strings.Contains(why, tt.why) {
			t.Errorf("%s: mayPublish = %v, %q; want %v, ~%q", tt.name, ok, why, tt.ok, tt.why)
		}
	}
}
