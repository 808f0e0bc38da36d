package autoscale

import (
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/raygcs"
	"github.com/sraybatch/sraybatch/internal/scheduler"
)

// The steps of Decide, each on its own.

func queued(job, reason string, age time.Duration) Worker {
	return Worker{Job: job, State: Queued, Reason: reason, Submitted: t0.Add(-age), Autoscaled: true}
}

func TestNeedsOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                 string
		in                   func() Input
		tasks, floors        []Shape
		groups               []Group
		forDemand, forFloors int
		used, protected      []string
	}{
		{name: "nothing wanted", in: headOnly},
		{name: "tasks fill the job in flight, then new ones", in: func() Input {
			in := headOnly()
			in.Workers = []Worker{queued("7", "Resources", time.Minute)}
			return in
		}, tasks: []Shape{gpu(1), gpu(1), gpu(1)}, forDemand: 2, used: []string{"7"}},
		{name: "a floor counts the head and protects it", in: headOnly,
			floors: []Shape{gpu(1), gpu(1)}, forFloors: 1, protected: []string{"h"}},
		{name: "a spread group takes a job per bundle", in: headOnly,
			groups: []Group{{Bundles: []Shape{gpu(0.5), gpu(0.5)}, Spread: true}}, forDemand: 2},
	}
	for _, tt := range tests {
		n := tt.in().needsOf(tt.tasks, tt.groups, tt.floors)
		used := slices.Sorted(maps.Keys(n.used))
		protected := slices.Sorted(maps.Keys(n.protected))
		if n.forDemand != tt.forDemand || n.forFloors != tt.forFloors || !slices.Equal(used, tt.used) || !slices.Equal(protected, tt.protected) {
			t.Errorf("%s: demand %d floors %d used %v protected %v; want %d %d %v %v",
				tt.name, n.forDemand, n.forFloors, used, protected, tt.forDemand, tt.forFloors, tt.used, tt.protected)
		}
	}
}

func TestCountQueue(t *testing.T) {
	t.Parallel()
	w1, _ := joined("7", "a", 0)
	got := countQueue([]Worker{w1, {Job: "8", State: Starting},
		queued("9", "Resources", 0), queued("10", "QOSMaxGRESPerUser", 0), queued("11", "ReqNodeNotAvail", 0)})
	if want := (queueCount{active: 4, queued: 2, limitReason: "QOSMaxGRESPerUser"}); got != want {
		t.Errorf("countQueue = %+v, want %+v", got, want)
	}
}

func TestCancelSurplus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		ws       []Worker
		used     []string
		settings Settings
		cancel   []string
		left     queueCount
	}{
		{name: "every pending job used: none", ws: []Worker{queued("7", "Resources", time.Minute)}, used: []string{"7"},
			settings: Settings{MaxWorkers: 3}, left: queueCount{active: 1, queued: 1}},
		{name: "unused ones go, newest first, down to --min-workers",
			ws:       []Worker{queued("7", "Resources", time.Minute), queued("8", "Resources", time.Second), queued("9", "Resources", time.Hour)},
			settings: Settings{MinWorkers: 1, MaxWorkers: 3}, cancel: []string{"8", "7"}, left: queueCount{active: 1, queued: 1}},
		{name: "a user's pending grow stays", ws: []Worker{{Job: "7", State: Queued, Reason: "Resources"}},
			settings: Settings{MaxWorkers: 3}, left: queueCount{active: 1, queued: 1}},
		{name: "a stuck job goes; it never counted as queued",
			ws:       []Worker{{Job: "6", State: Starting}, queued("7", "ReqNodeNotAvail", time.Minute)},
			settings: Settings{MaxWorkers: 3}, cancel: []string{"7"}, left: queueCount{active: 0}},
		{name: "over a lowered cap, used jobs go too",
			ws: []Worker{queued("7", "Resources", time.Minute), queued("8", "Resources", time.Second)}, used: []string{"7", "8"},
			settings: Settings{MaxWorkers: 1}, cancel: []string{"8"}, left: queueCount{active: 1, queued: 1}},
	}
	for _, tt := range tests {
		used := map[string]bool{}
		for _, j := range tt.used {
			used[j] = true
		}
		cancel, left := cancelSurplus(tt.ws, used, countQueue(tt.ws), tt.settings)
		if !slices.Equal(cancel, tt.cancel) || left != tt.left {
			t.Errorf("%s: cancel %v, left %+v; want %v, %+v", tt.name, cancel, left, tt.cancel, tt.left)
		}
	}
}

func TestRipen(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		since     time.Time
		wanted    int
		ripe      bool
		sinceThen time.Time
	}{
		{"no demand forgets when it started", t0.Add(-time.Minute), 0, false, time.Time{}},
		{"new demand starts now", time.Time{}, 2, false, t0},
		{"demand younger than the delay", t0.Add(-9 * time.Second), 2, false, t0.Add(-9 * time.Second)},
		{"demand as old as the delay", t0.Add(-10 * time.Second), 2, true, t0.Add(-10 * time.Second)},
	}
	for _, tt := range tests {
		mem, ripe := ripen(Memory{UnmetSince: tt.since, Failures: 2}, tt.wanted, t0, 10*time.Second)
		if ripe != tt.ripe || !mem.UnmetSince.Equal(tt.sinceThen) || mem.Failures != 2 {
			t.Errorf("%s: ripe %v since %v (memory %+v); want %v %v", tt.name, ripe, mem.UnmetSince, mem, tt.ripe, tt.sinceThen)
		}
	}
}

func TestPlanSubmit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		in     func(*Input)
		mem    Memory
		ripe   bool
		n      needs
		c      queueCount
		submit int
		capped bool
		reason string // substring; "" wants none
	}{
		{name: "nothing wanted"},
		{name: "unripe demand waits", n: needs{forDemand: 2}, reason: "waits out the upscale delay"},
		{name: "ripe demand", ripe: true, n: needs{forDemand: 2}, submit: 2, reason: "+2 workers for pending tasks"},
		{name: "a floor's demand", ripe: true, n: needs{forDemand: 1, forFloors: 3}, submit: 3, reason: "+3 workers for request_resources"},
		{name: "--min-workers tops up without demand", in: func(in *Input) { in.Settings.MinWorkers = 2 }, c: queueCount{active: 1},
			submit: 1, reason: "to keep --min-workers 2"},
		{name: "--max-workers caps", ripe: true, n: needs{forDemand: 5}, c: queueCount{active: 1}, submit: 2, capped: true,
			reason: "capped: 5 wanted, --max-workers 3, --max-pending 3"},
		{name: "--max-pending caps", in: func(in *Input) { in.Settings.MaxPending = 1 }, ripe: true, n: needs{forDemand: 2},
			c: queueCount{active: 1, queued: 1}, capped: true, reason: "--max-pending 1"},
		{name: "backing off", ripe: true, n: needs{forDemand: 1}, mem: Memory{BackoffUntil: t0.Add(time.Second), SubmitError: "no"},
			reason: "backing off until 14:00:01: no"},
		{name: "a SLURM limit holds back", ripe: true, n: needs{forDemand: 1}, c: queueCount{active: 1, queued: 1, limitReason: "QOSMaxGRESPerUser"},
			reason: "SLURM limit QOSMaxGRESPerUser"},
		{name: "near the head's end", in: func(in *Input) { in.HeadLeft, in.MinHeadLeft = time.Minute, 2*time.Minute },
			ripe: true, n: needs{forDemand: 1}, reason: "the head ends in 1m0s"},
	}
	for _, tt := range tests {
		in := headOnly()
		if tt.in != nil {
			tt.in(&in)
		}
		submit, capped, reasons := planSubmit(in, tt.mem, tt.ripe, tt.n, tt.c)
		why := strings.Join(reasons, "; ")
		if submit != tt.submit || capped != tt.capped || (tt.reason == "") != (why == "") || !strings.Contains(why, tt.reason) {
			t.Errorf("%s: submit %d capped %v reason %q; want %d %v %q", tt.name, submit, capped, why, tt.submit, tt.capped, tt.reason)
		}
	}
}

func TestIdleDrains(t *testing.T) {
	t.Parallel()
	w1, n1 := joined("7", "a", 20*time.Second)
	w2, n2 := joined("8", "b", 40*time.Second)
	w3, n3 := joined("9", "c", 5*time.Second)
	idle := func() Input {
		in := headOnly()
		in.Workers, in.Nodes = []Worker{w1, w2, w3}, append(in.Nodes, n1, n2, n3)
		return in
	}
	tests := []struct {
		name      string
		in        func() Input
		wanted    int
		protected []string
		n         int
		drain     []string
	}{
		{name: "longest idle first", in: idle, n: 3, drain: []string{"8", "7"}},
		{name: "at most n", in: idle, n: 1, drain: []string{"8"}},
		{name: "n below zero drains none", in: idle, n: -1},
		{name: "none while demand wants workers", in: idle, wanted: 1, n: 3},
		{name: "a floor's node stays", in: idle, protected: []string{"b"}, n: 3, drain: []string{"7"}},
		{name: "no idle timeout, no drain", in: func() Input {
			in := idle()
			in.Settings.IdleTimeout = 0
			return in
		}, n: 3},
		{name: "a node already draining is left to it", in: func() Input {
			in := idle()
			in.Nodes[2].Draining = true
			return in
		}, n: 3, drain: []string{"7"}},
	}
	for _, tt := range tests {
		protected := map[string]bool{}
		for _, id := range tt.protected {
			protected[id] = true
		}
		var drained []string
		for _, d := range tt.in().idleDrains(tt.wanted, protected, tt.n) {
			drained = append(drained, d.Job)
		}
		if !slices.Equal(drained, tt.drain) {
			t.Errorf("%s: drain %v, want %v", tt.name, drained, tt.drain)
		}
	}
}

// The steps of a poll that need no Ray and no scheduler.

func TestDemandOf(t *testing.T) {
	t.Parallel()
	one := raygcs.Request{Resources: map[string]float64{"GPU": 1}}
	tests := []struct {
		name string
		ray  raygcs.ClusterState
		want Demand
	}{
		{name: "none"},
		{name: "tasks and floors by count", ray: raygcs.ClusterState{
			Pending:     []raygcs.RequestCount{{Request: one, Count: 3}},
			Constraints: []raygcs.RequestCount{{Request: one, Count: 2}}},
			want: Demand{Tasks: []Count{{Shape: gpu(1), N: 3}}, Floors: []Count{{Shape: gpu(1), N: 2}}}},
		{name: "groups by strategy", ray: raygcs.ClusterState{Gangs: []raygcs.Gang{
			{Strategy: raygcs.StrategyPack, Bundles: []raygcs.Request{one}},
			{Strategy: raygcs.StrategySpread, Bundles: []raygcs.Request{one}},
			{Strategy: raygcs.StrategyStrictPack, Bundles: []raygcs.Request{one}},
			{Strategy: raygcs.StrategyStrictSpread, Bundles: []raygcs.Request{one, one}}}},
			want: Demand{Groups: []Group{{Bundles: []Shape{gpu(1)}}, {Bundles: []Shape{gpu(1)}, Spread: true},
				{Bundles: []Shape{gpu(1)}, Strict: true}, {Bundles: []Shape{gpu(1), gpu(1)}, Spread: true, Strict: true}}}},
	}
	for _, tt := range tests {
		if got := demandOf(tt.ray); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: demandOf = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestStatusOf(t *testing.T) {
	t.Parallel()
	w, _ := joined("7", "a", 0)
	in := Input{Now: t0, Workers: []Worker{w, {Job: "8", State: Starting}, queued("9", "Resources", 0)},
		Demand: Demand{Tasks: []Count{{Shape: gpu(1), N: 2}}, Groups: []Group{{Bundles: []Shape{gpu(1), gpu(1)}}}, Floors: []Count{{Shape: gpu(2), N: 1}}}}
	d := Decision{DemandGPUs: 6, Infeasible: []Infeasible{{Shape: gpu(9), Why: "too large"}}}
	tests := []struct {
		name    string
		acted   cluster.AutoscaleDecision
		mem     Memory
		pending int
		backoff bool
	}{
		{name: "nothing done", acted: cluster.AutoscaleDecision{Why: "why"}, pending: 2},
		{name: "submitted and cancelled count", acted: cluster.AutoscaleDecision{Why: "why", Submitted: []string{"10_0", "10_1"}, Cancelled: []string{"9"}}, pending: 3},
		{name: "a backoff still running", acted: cluster.AutoscaleDecision{Why: "why"}, mem: Memory{BackoffUntil: t0.Add(time.Second)}, pending: 2, backoff: true},
		{name: "a backoff over", acted: cluster.AutoscaleDecision{Why: "why"}, mem: Memory{BackoffUntil: t0}, pending: 2},
	}
	for _, tt := range tests {
		st := statusOf(cluster.AutoscalerStatus{Demand: map[string]int{}}, in, d, &tt.acted, tt.mem)
		wantDemand := map[string]int{"GPU:1": 4, "GPU:2": 1}
		if !maps.Equal(st.Demand, wantDemand) || st.DemandGPUs != 6 || st.PendingWorkers != tt.pending || (st.BackoffUntil != nil) != tt.backoff ||
			st.Reason != "why" || len(st.Infeasible) != 1 || st.Infeasible[0] != (cluster.InfeasibleDemand{Shape: "GPU:9", Why: "too large"}) {
			t.Errorf("%s: status %+v", tt.name, st)
		}
	}
}

// A worker's place across polls: queued, starting, joined; once its node
// left Ray it is gone while SLURM still lists it, and forgotten after.
func TestLoopWorkers(t *testing.T) {
	t.Parallel()
	l := NewLoop(LoopConfig{})
	subs := map[string]cluster.Submission{"7": {Role: cluster.RoleWorker, JobID: "7", Autoscaled: true}}
	node := map[string]raygcs.Node{"7": {ID: "w7"}}
	polls := []struct {
		name  string
		queue map[string]scheduler.Job
		nodes map[string]raygcs.Node
		want  string // "" for none
	}{
		{"pending", map[string]scheduler.Job{"7": {ID: "7", State: scheduler.Pending, Reason: "Priority"}}, nil, "queued Priority"},
		{"running", map[string]scheduler.Job{"7": {ID: "7", State: scheduler.Running}}, nil, "starting"},
		{"in Ray", map[string]scheduler.Job{"7": {ID: "7", State: scheduler.Running}}, node, "joined w7"},
		{"left Ray, still running", map[string]scheduler.Job{"7": {ID: "7", State: scheduler.Running}}, nil, ""},
		{"back in Ray: still leaving", map[string]scheduler.Job{"7": {ID: "7", State: scheduler.Running}}, node, ""},
		{"gone from the queue", nil, nil, ""},
	}
	for i, p := range polls {
		var got []string
		for _, w := range l.workers(t0.Add(time.Duration(i)*time.Second), subs, p.queue, p.nodes) {
			got = append(got, strings.TrimSpace(map[WorkerState]string{Queued: "queued", Starting: "starting", Joined: "joined"}[w.State]+" "+w.Reason+w.NodeID))
		}
		if want := []string{p.want}; (p.want == "" && len(got) != 0) || (p.want != "" && !slices.Equal(got, want)) {
			t.Errorf("%s: workers %q, want %q", p.name, got, p.want)
		}
	}
	if len(l.joined)+len(l.left) != 0 {
		t.Errorf("remembered after the job went: joined %v, left %v", l.joined, l.left)
	}
}

// A preempted worker that SLURM requeues (PreemptMode=REQUEUE) is supply
// all along, counted once: draining (joined), its node gone while SLURM
// kills it (its record says preempted: requeue awaited), pending with
// Reason=BeginTime, its rerun starting (a newer record), its rerun joined
// under a new node id. A worker that left Ray any other way is no supply.
func TestLoopWorkersRequeued(t *testing.T) {
	t.Parallel()
	subs := map[string]cluster.Submission{"7": {Role: cluster.RoleWorker, JobID: "7", Autoscaled: true}}
	running := map[string]scheduler.Job{"7": {ID: "7", State: scheduler.Running}}
	completing := map[string]scheduler.Job{"7": {ID: "7", State: scheduler.Completing}}
	requeued := map[string]scheduler.Job{"7": {ID: "7", State: scheduler.Pending, Reason: "BeginTime"}}
	first, second := map[string]raygcs.Node{"7": {ID: "w7"}}, map[string]raygcs.Node{"7": {ID: "w7-rerun"}}
	preemptedAt := t0.Add(time.Second)
	firstRun := cluster.NodeRecord{Job: "7", Role: cluster.RoleWorker, Phase: cluster.PhaseDraining, Started: t0.Add(-time.Hour), PreemptedAt: &preemptedAt}
	cancelledRun := cluster.NodeRecord{Job: "7", Role: cluster.RoleWorker, Phase: cluster.PhaseEnded, Outcome: cluster.OutcomeCancelled, Started: t0.Add(-time.Hour)}
	rerunRec := cluster.NodeRecord{Job: "7", Role: cluster.RoleWorker, Phase: cluster.PhaseStarting, Started: t0.Add(time.Minute)}
	type poll struct {
		name  string
		rec   *cluster.NodeRecord
		queue map[string]scheduler.Job
		nodes map[string]raygcs.Node
		want  string // "" for none
	}
	for _, tt := range []struct {
		name  string
		polls []poll
	}{
		{"preempted and requeued", []poll{
			{"joined", &firstRun, running, first, "joined w7"},
			{"preempted: its node left Ray", &firstRun, running, nil, "queued " + reasonRequeueAwaited},
			{"SLURM kills it", &firstRun, completing, nil, "queued " + reasonRequeueAwaited},
			{"requeued: pending BeginTime", &firstRun, requeued, nil, "queued BeginTime"},
			{"rerun starting", &rerunRec, running, nil, "starting"},
			{"rerun joined", &rerunRec, running, second, "joined w7-rerun"},
		}},
		{"scancel: no supply once its node left", []poll{
			{"joined", nil, running, first, "joined w7"},
			{"cancelled: its node left Ray", &cancelledRun, running, nil, ""},
			{"SLURM completing it", &cancelledRun, completing, nil, ""},
		}},
	} {
		dir, err := cluster.Store{Root: t.TempDir()}.Create(cluster.Spec{Name: "rq", ID: "id", Backend: cluster.BackendSlurm}, "")
		if err != nil {
			t.Fatal(err)
		}
		l := NewLoop(LoopConfig{Dir: dir})
		for i, p := range tt.polls {
			if p.rec != nil {
				if err := dir.WriteNode(*p.rec); err != nil {
					t.Fatal(err)
				}
			}
			var got []string
			for _, w := range l.workers(t0.Add(time.Duration(i)*time.Second), subs, p.queue, p.nodes) {
				got = append(got, strings.TrimSpace(map[WorkerState]string{Queued: "queued", Starting: "starting", Joined: "joined"}[w.State]+" "+w.Reason+w.NodeID))
			}
			if want := []string{p.want}; (p.want == "" && len(got) != 0) || (p.want != "" && !slices.Equal(got, want)) {
				t.Errorf("%s, %s: workers %q, want %q", tt.name, p.name, got, p.want)
			}
		}
	}
}

func TestPlaceAfterLeaving(t *testing.T) {
	t.Parallel()
	left := leftNode{node: "w7", at: t0}
	at := t0.Add(-time.Second)
	preempted := cluster.NodeRecord{Phase: cluster.PhaseDraining, Started: t0.Add(-time.Hour), PreemptedAt: &at}
	ended := cluster.NodeRecord{Phase: cluster.PhaseEnded, Outcome: cluster.OutcomeDrainedIdle, Started: t0.Add(-time.Hour)}
	rerunRec := cluster.NodeRecord{Phase: cluster.PhaseStarting, Started: t0.Add(time.Minute)}
	run := scheduler.Job{ID: "7", State: scheduler.Running}
	for _, tt := range []struct {
		name    string
		j       scheduler.Job
		inQueue bool
		rayNode string
		rec     *cluster.NodeRecord
		want    afterLeaving
	}{
		{"drained for idleness, SLURM ending it", run, true, "", &ended, leftForGood},
		{"no record", run, true, "", nil, leftForGood},
		{"the same node seen again: still leaving", run, true, "w7", &ended, leftForGood},
		{"preempted, SLURM killing it", run, true, "", &preempted, requeueAwaited},
		{"preempted under PreemptMode=CANCEL: ended", scheduler.Job{ID: "7", State: scheduler.Preempted}, true, "", &preempted, leftForGood},
		{"preempted, SLURM forgot it", run, false, "", &preempted, leftForGood},
		{"pending again: requeued", scheduler.Job{ID: "7", State: scheduler.Pending, Reason: "BeginTime"}, true, "", &preempted, requeued},
		{"its script runs again", run, true, "", &rerunRec, rerunStarting},
		{"in Ray under a new node", run, true, "w8", &rerunRec, rerunJoined},
	} {
		var rec cluster.NodeRecord
		if tt.rec != nil {
			rec = *tt.rec
		}
		if got := placeAfterLeaving(left, tt.j, tt.inQueue, tt.rayNode, rec, tt.rec != nil); got != tt.want {
			t.Errorf("%s: placeAfterLeaving = %d, want %d", tt.name, got, tt.want)
		}
	}
}
