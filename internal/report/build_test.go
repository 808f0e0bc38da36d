package report

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/events"
	"github.com/sraybatch/sraybatch/internal/timeline"
)

// ev is a timeline event at s seconds after t0, its fields p's.
func ev(s float64, job string, role cluster.Role, p events.Payload) timeline.Event {
	e := timeline.Event{Time: at(s), Name: p.Name(), Job: job, Role: role}
	b, _ := json.Marshal(p)
	json.Unmarshal(b, &e.Fields)
	delete(e.Fields, "ts")
	delete(e.Fields, "job")
	delete(e.Fields, "role")
	return e
}

// Each fold adds its event's evidence, and only its own.
func TestFolds(t *testing.T) {
	t.Parallel()
	w, d, h := cluster.RoleWorker, cluster.RoleDriver, cluster.RoleHead
	state := func(s float64, slurm string, m cluster.Membership) timeline.Event {
		return ev(s, "8", w, events.JobState{SlurmState: slurm, Membership: m, GPUs: 2})
	}
	type want struct {
		life                   Life
		startedSeen, endedSeen time.Time
		gpus                   int
		outcome, slurmOutcome  cluster.Outcome
		reason                 string
	}
	tests := []struct {
		name     string
		evs      []timeline.Event
		job      string
		want     want
		rayKnown bool
	}{
		{"submitted, started, ended", []timeline.Event{
			ev(1, "8", w, events.Submitted{JobID: "8"}), ev(2, "8", w, events.JobStarted{Node: "n1"}),
			ev(3, "8", w, events.JobEnded{Phase: cluster.PhaseEnded, Outcome: cluster.OutcomeCancelled, Reason: "scancel"}),
		}, "8", want{life: Life{Submitted: at(1), Started: at(2), Ended: at(3)}, gpus: 1, outcome: cluster.OutcomeCancelled, reason: "scancel"}, false},
		{"the head's view: SLURM's start and end, the first join, a loss after it", []timeline.Event{
			state(1, "PENDING", cluster.MembershipWaiting), state(2, "RUNNING", cluster.MembershipJoined), state(3, "RUNNING", cluster.MembershipJoined),
			state(4, "CANCELLED", cluster.MembershipLost),
		}, "8", want{life: Life{Joined: at(2), Left: at(4)}, startedSeen: at(2), endedSeen: at(4), gpus: 2, slurmOutcome: cluster.OutcomeCancelled}, true},
		{"lost before it joined: it never left", []timeline.Event{state(1, "FAILED", cluster.MembershipLost)},
			"8", want{endedSeen: at(1), gpus: 2, slurmOutcome: cluster.OutcomeOfState("FAILED")}, true},
		{"a driver's view of the node", []timeline.Event{
			ev(1, "8", w, events.NodeJoined{}), ev(2, "8", w, events.NodeDraining{}), ev(3, "8", w, events.NodeLeft{}), ev(4, "", "", events.NodeJoined{}),
		}, "8", want{life: Life{Joined: at(1), Draining: at(2), Left: at(3)}, gpus: 1}, true},
		{"a worker drains at SLURM's warning", []timeline.Event{ev(5, "8", w, events.TimeLimitWarning{})}, "8", want{life: Life{Draining: at(5)}, gpus: 1}, false},
		{"a driver is only told", []timeline.Event{ev(5, "9", d, events.TimeLimitWarning{})}, "9", want{}, false},
		{"the head joined when it published its address", []timeline.Event{ev(5, "7", h, events.HeadUp{})}, "7", want{life: Life{Joined: at(5)}, gpus: 1}, true},
		{"a node event of no job tells nothing", []timeline.Event{ev(5, "", "", events.NodeLeft{})}, "", want{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := gather(cluster.Spec{Node: cluster.NodeSpec{GPUs: 1}}, tt.evs)
			var got want
			if f, ok := e.jobs[tt.job]; ok {
				got = want{f.life, f.startedSeen, f.endedSeen, f.gpus, f.outcome, f.slurmOutcome, f.reason}
			}
			if got != tt.want || e.rayKnown != tt.rayKnown {
				t.Errorf("facts %+v, ray known %v\nwant  %+v, %v", got, e.rayKnown, tt.want, tt.rayKnown)
			}
		})
	}
}

// Samples, steps and down are the cluster's, in the order they came.
func TestFoldsOfTheCluster(t *testing.T) {
	t.Parallel()
	e := gather(cluster.Spec{}, []timeline.Event{
		ev(1, "", "", events.ClusterSample{GPUsJoined: 1, GPUsAllocated: 0.5}),
		ev(2, "9", cluster.RoleDriver, events.StepDone{Step: 0}),
		ev(3, "", "", events.StepDone{Step: 1}),
		ev(4, "10", cluster.RoleDriver, events.StepDone{Step: 0}),
		ev(5, "9", cluster.RoleDriver, events.StepDone{Step: 1}),
		ev(6, "", "", events.DownRequested{}),
		{Time: at(7), Name: "future_event"},
	})
	if len(e.joinedSamples) != 1 || e.joinedSamples[0] != (Sample{at(1), 1}) || len(e.allocSamples) != 1 || e.allocSamples[0] != (Sample{at(1), 0.5}) {
		t.Errorf("samples %v, %v", e.joinedSamples, e.allocSamples)
	}
	if len(e.stepJobs) != 2 || e.stepJobs[0] != "9" || len(e.steps["9"]) != 2 || len(e.steps["10"]) != 1 {
		t.Errorf("steps %v of %v; want 9's two and 10's one, a step of no driver left out", e.steps, e.stepJobs)
	}
	if e.down == nil || !e.down.Equal(at(6)) || !e.last.Equal(at(7)) {
		t.Errorf("down %v, last %v", e.down, e.last)
	}
}
