package autoscale

import (
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 29, 14, 0, 0, 0, time.UTC)

func gpu(n float64) Shape { return Shape{"GPU": n} }

func settings() Settings {
	return Settings{Enabled: true, MaxWorkers: 3, IdleTimeout: 15 * time.Second}
}

// headOnly is a head with one GPU, busy, and nothing else.
func headOnly() Input {
	return Input{
		Now: t0, Settings: settings(), Shape: NodeShape{GPUs: 1, CPUs: 2}, HeadLeft: -1,
		Nodes: []Node{{ID: "h", Job: "6", Total: Shape{"GPU": 1, "CPU": 2}}},
	}
}

func joined(job, node string, idle time.Duration) (Worker, Node) {
	return Worker{Job: job, State: Joined, NodeID: node, JoinedAt: t0.Add(-time.Hour), Autoscaled: true},
		Node{ID: node, Job: job, Worker: true, Total: Shape{"GPU": 1, "CPU": 2}, Idle: idle}
}

func TestDecide(t *testing.T) {
	t.Parallel()
	type want struct {
		submit     int
		cancel     []string
		drain      []string
		infeasible int
		capped     bool
		reason     string // substring
	}
	tests := []struct {
		name string
		in   func() Input
		mem  Memory
		want want
	}{
		{"off: nothing at all", func() Input {
			in := headOnly()
			in.Settings.Enabled = false
			in.Demand.Tasks = []Count{{Shape: gpu(1), N: 5}}
			return in
		}, Memory{}, want{reason: "off"}},
		{"request_resources 3 x GPU:1 is met against the head's GPU too", func() Input {
			in := headOnly()
			in.Demand.Floors = []Count{{Shape: gpu(1), N: 3}}
			return in
		}, Memory{}, want{submit: 2, reason: "+2 workers for request_resources"}},
		{"a floor already met submits nothing", func() Input {
			in := headOnly()
			w1, n1 := joined("7_0", "a", 0)
			w2, n2 := joined("7_1", "b", 0)
			in.Workers, in.Nodes = []Worker{w1, w2}, append(in.Nodes, n1, n2)
			in.Demand.Floors = []Count{{Shape: gpu(1), N: 3}}
			return in
		}, Memory{}, want{}},
		{"6 pending one-GPU tasks under --max-workers 2: 2 workers, capped", func() Input {
			in := headOnly()
			in.Settings.MaxWorkers = 2
			in.Demand.Tasks = []Count{{Shape: Shape{"GPU": 1, "CPU": 1}, N: 6}}
			return in
		}, Memory{}, want{submit: 2, capped: true, reason: "capped"}},
		{"workers in flight count: nothing twice for the same demand", func() Input {
			in := headOnly()
			in.Demand.Tasks = []Count{{Shape: gpu(1), N: 2}}
			in.Workers = []Worker{{Job: "7_0", State: Queued, Reason: "Resources", Autoscaled: true}, {Job: "7_1", State: Starting, Autoscaled: true}}
			return in
		}, Memory{}, want{}},
		{"a preempted worker requeued (BeginTime) is supply: nothing submitted for its demand", func() Input {
			in := headOnly()
			in.Demand.Floors = []Count{{Shape: gpu(1), N: 2}}
			in.Workers = []Worker{{Job: "7", State: Queued, Reason: "BeginTime", Autoscaled: true, Submitted: t0.Add(-time.Hour)}}
			return in
		}, Memory{}, want{}},
		{"a requeued worker no demand uses is cancelled, and nothing submitted", func() Input {
			in := headOnly()
			in.Workers = []Worker{{Job: "7", State: Queued, Reason: "BeginTime", Autoscaled: true, Submitted: t0.Add(-time.Hour)}}
			return in
		}, Memory{}, want{cancel: []string{"7"}, reason: "cancel 1 pending"}},
		{"demand beyond a requeued worker: only the rest is submitted", func() Input {
			in := headOnly()
			in.Demand.Floors = []Count{{Shape: gpu(1), N: 3}}
			in.Workers = []Worker{{Job: "7", State: Queued, Reason: "BeginTime", Autoscaled: true, Submitted: t0.Add(-time.Hour)}}
			return in
		}, Memory{}, want{submit: 1, reason: "+1 workers"}},
		{"a job stuck in the queue is no supply", func() Input {
			in := headOnly()
			in.Demand.Tasks = []Count{{Shape: gpu(1), N: 1}}
			in.Workers = []Worker{{Job: "7_0", State: Queued, Reason: "ReqNodeNotAvail, UnavailableNodes:node2", Autoscaled: true}}
			return in
		}, Memory{}, want{submit: 1}},
		{"a STRICT_SPREAD group needs one job per bundle", func() Input {
			in := headOnly()
			in.Demand.Groups = []Group{{Bundles: []Shape{Shape{"GPU": 0.5}, Shape{"GPU": 0.5}, Shape{"GPU": 0.5}}, Spread: true, Strict: true}}
			return in
		}, Memory{}, want{submit: 3}},
		{"a PACK group packs", func() Input {
			in := headOnly()
			in.Shape.GPUs = 4
			in.Demand.Groups = []Group{{Bundles: []Shape{gpu(1), gpu(1), gpu(1)}}}
			return in
		}, Memory{}, want{submit: 1}},
		{"STRICT_PACK larger than a node is infeasible", func() Input {
			in := headOnly()
			in.Demand.Groups = []Group{{Bundles: []Shape{gpu(1), gpu(1)}, Strict: true}}
			return in
		}, Memory{}, want{infeasible: 1, reason: "infeasible"}},
		{"GPU:3 on 2-GPU nodes and a custom resource are infeasible", func() Input {
			in := headOnly()
			in.Shape.GPUs = 2
			in.Demand.Tasks = []Count{{Shape: gpu(3), N: 1}, {Shape: Shape{"GPU": 1, "sraybatch_job_9": 0.01}, N: 2}}
			return in
		}, Memory{}, want{infeasible: 2}},
		{"CPU-only demand starts no GPU job", func() Input {
			in := headOnly()
			in.Demand.Tasks = []Count{{Shape: Shape{"CPU": 1}, N: 4}}
			return in
		}, Memory{}, want{infeasible: 1, reason: "infeasible"}},
		{"CPU-only demand with --cpu-only-demand", func() Input {
			in := headOnly()
			in.Settings.CPUOnly = true
			in.Demand.Tasks = []Count{{Shape: Shape{"CPU": 2}, N: 2}}
			return in
		}, Memory{}, want{submit: 2}},
		{"demand younger than the upscale delay waits", func() Input {
			in := headOnly()
			in.Settings.UpscaleDelay = 10 * time.Second
			in.Demand.Tasks = []Count{{Shape: gpu(1), N: 1}}
			return in
		}, Memory{UnmetSince: t0.Add(-6 * time.Second)}, want{reason: "upscale delay"}},
		{"demand older than the upscale delay submits", func() Input {
			in := headOnly()
			in.Settings.UpscaleDelay = 10 * time.Second
			in.Demand.Tasks = []Count{{Shape: gpu(1), N: 1}}
			return in
		}, Memory{UnmetSince: t0.Add(-10 * time.Second)}, want{submit: 1}},
		{"backoff after SLURM refused", func() Input {
			in := headOnly()
			in.Demand.Tasks = []Count{{Shape: gpu(1), N: 1}}
			return in
		}, Memory{BackoffUntil: t0.Add(time.Minute), SubmitError: "Batch job submission failed: Required partition not available (inactive or drain)"},
			want{reason: "backing off until 14:01:00: Batch job submission failed"}},
		{"a QOS limit holds further submissions", func() Input {
			in := headOnly()
			in.Demand.Tasks = []Count{{Shape: gpu(1), N: 3}}
			in.Workers = []Worker{{Job: "7_0", State: Queued, Reason: "QOSMaxGRESPerUser", Autoscaled: true}}
			return in
		}, Memory{}, want{reason: "SLURM limit QOSMaxGRESPerUser"}},
		{"no scale-up near the head's end", func() Input {
			in := headOnly()
			in.HeadLeft, in.MinHeadLeft = 90*time.Second, 3*time.Minute
			in.Demand.Tasks = []Count{{Shape: gpu(1), N: 1}}
			return in
		}, Memory{}, want{reason: "the head ends in 1m30s"}},
		{"--min-workers keeps workers without demand", func() Input {
			in := headOnly()
			in.Settings.MinWorkers = 2
			return in
		}, Memory{}, want{submit: 2, reason: "min-workers"}},
		{"pending jobs whose demand is gone are cancelled, newest first", func() Input {
			in := headOnly()
			in.Demand.Tasks = []Count{{Shape: gpu(1), N: 1}}
			in.Workers = []Worker{
				{Job: "7_0", State: Queued, Reason: "Resources", Submitted: t0.Add(-time.Minute), Autoscaled: true},
				{Job: "8_0", State: Queued, Reason: "Resources", Submitted: t0.Add(-time.Second), Autoscaled: true},
			}
			return in
		}, Memory{}, want{cancel: []string{"8_0"}}},
		{"a user's own pending grow is never cancelled", func() Input {
			in := headOnly()
			in.Workers = []Worker{{Job: "9", State: Queued, Reason: "Resources"}}
			return in
		}, Memory{}, want{}},
		{"a lowered cap cancels pending jobs over it", func() Input {
			in := headOnly()
			in.Settings.MaxWorkers = 1
			in.Demand.Tasks = []Count{{Shape: gpu(1), N: 3}}
			w1, n1 := joined("7_0", "a", 0)
			in.Workers = []Worker{w1,
				{Job: "8_0", State: Queued, Reason: "Resources", Submitted: t0.Add(-time.Minute), Autoscaled: true},
				{Job: "8_1", State: Queued, Reason: "Resources", Submitted: t0.Add(-time.Minute), Autoscaled: true}}
			in.Nodes = append(in.Nodes, n1)
			return in
		}, Memory{}, want{cancel: []string{"8_0", "8_1"}, capped: true}},
		{"idle workers are drained, longest idle first", func() Input {
			in := headOnly()
			w1, n1 := joined("7_0", "a", 20*time.Second)
			w2, n2 := joined("7_1", "b", 40*time.Second)
			w3, n3 := joined("7_2", "c", 5*time.Second)
			in.Workers, in.Nodes = []Worker{w1, w2, w3}, append(in.Nodes, n1, n2, n3)
			return in
		}, Memory{}, want{drain: []string{"7_1", "7_0"}, reason: "drain 2 idle workers"}},
		{"never below --min-workers", func() Input {
			in := headOnly()
			in.Settings.MinWorkers = 1
			w1, n1 := joined("7_0", "a", time.Minute)
			w2, n2 := joined("7_1", "b", 2*time.Minute)
			in.Workers, in.Nodes = []Worker{w1, w2}, append(in.Nodes, n1, n2)
			return in
		}, Memory{}, want{drain: []string{"7_1"}}},
		{"a worker that joined less than --idle-timeout ago is not idle", func() Input {
			in := headOnly()
			w1, n1 := joined("7_0", "a", time.Minute)
			w1.JoinedAt = t0.Add(-5 * time.Second)
			in.Workers, in.Nodes = []Worker{w1}, append(in.Nodes, n1)
			return in
		}, Memory{}, want{}},
		{"a standing request_resources floor keeps its nodes", func() Input {
			in := headOnly()
			w1, n1 := joined("7_0", "a", time.Minute)
			w2, n2 := joined("7_1", "b", time.Minute)
			in.Workers, in.Nodes = []Worker{w1, w2}, append(in.Nodes, n1, n2)
			in.Demand.Floors = []Count{{Shape: gpu(1), N: 2}}
			return in
		}, Memory{}, want{drain: []string{"7_1"}}},
		{"a floor counts the head's GPU however long the head has been idle", func() Input {
			in := headOnly()
			in.Nodes[0].Idle = time.Hour
			w1, n1 := joined("7_0", "a", time.Minute)
			w2, n2 := joined("7_1", "b", time.Minute)
			w3, n3 := joined("7_2", "c", 2*time.Minute)
			in.Workers, in.Nodes = []Worker{w1, w2, w3}, append(in.Nodes, n1, n2, n3)
			in.Demand.Floors = []Count{{Shape: gpu(1), N: 3}}
			return in
		}, Memory{}, want{drain: []string{"7_2"}}},
		{"the head and drivers are never drained", func() Input {
			in := headOnly()
			in.Nodes[0].Idle = time.Hour
			in.Nodes = append(in.Nodes, Node{ID: "d", Job: "9", Total: Shape{}, Idle: time.Hour})
			return in
		}, Memory{}, want{}},
	}
	for _, tt := range tests {
		d, _ := Decide(tt.in(), tt.mem)
		var drained []string
		for _, x := range d.Drain {
			drained = append(drained, x.Job)
		}
		if d.Submit != tt.want.submit || !slices.Equal(d.Cancel, tt.want.cancel) || !slices.Equal(drained, tt.want.drain) ||
			len(d.Infeasible) != tt.want.infeasible || d.Capped != tt.want.capped || !strings.Contains(d.Reason, tt.want.reason) {
			t.Errorf("%s:\n got submit %d cancel %v drain %v infeasible %v capped %v reason %q\nwant %+v",
				tt.name, d.Submit, d.Cancel, drained, d.Infeasible, d.Capped, d.Reason, tt.want)
		}
	}
}

func TestDecideRemembersWhenDemandStarted(t *testing.T) {
	t.Parallel()
	in := headOnly()
	in.Settings.UpscaleDelay = 10 * time.Second
	in.Demand.Tasks = []Count{{Shape: gpu(1), N: 1}}
	var mem Memory
	submitted := -1
	for s := 0; s <= 12; s += 2 { // a poll every 2 s
		in.Now = t0.Add(time.Duration(s) * time.Second)
		var d Decision
		d, mem = Decide(in, mem)
		if d.Submit > 0 && submitted < 0 {
			submitted = s
		}
	}
	if submitted != 10 {
		t.Errorf("submitted at %d s, want 10 s (the upscale delay)", submitted)
	}
	// Demand that goes away resets the clock: 6 s of demand, a gap, 6 s more
	// never submits.
	mem = Memory{}
	for s := 0; s <= 14; s += 2 {
		in.Now = t0.Add(time.Duration(s) * time.Second)
		in.Demand.Tasks = nil
		if s < 7 || s > 8 {
			in.Demand.Tasks = []Count{{Shape: gpu(1), N: 1}}
		}
		if s > 8 {
			in.Now = in.Now.Add(-2 * time.Second)
		}
		var d Decision
		d, mem = Decide(in, mem)
		if d.Submit > 0 {
			t.Fatalf("submitted at %d s for demand that never lasted 10 s", s)
		}
	}
}

func TestReasonClasses(t *testing.T) {
	t.Parallel()
	for r, want := range map[string][2]bool{
		"Resources":                            {false, false},
		"Priority":                             {false, false},
		"Dependency":                           {false, false},
		"ReqNodeNotAvail, UnavailableNodes:n1": {true, false},
		"(ReqNodeNotAvail)":                    {true, false},
		"PartitionTimeLimit":                   {true, false},
		"JobHeldAdmin":                         {true, false},
		"DependencyNeverSatisfied":             {true, false},
		"QOSMaxGRESPerUser":                    {false, true},
		"AssocGrpGRES":                         {false, true},
		"QOSGrpCpuLimit":                       {false, true},
		"":                                     {false, false},
	} {
		if got := [2]bool{stuck(r), limit(r)}; got != want {
			t.Errorf("%q: stuck, limit = %v, want %v", r, got, want)
		}
	}
}

func TestShapeString(t *testing.T) {
	t.Parallel()
	if got := (Shape{"CPU": 1, "GPU": 0.5, "zeta": 2, "memory": 0}).String(); got != "GPU:0.5 CPU:1 zeta:2" {
		t.Errorf("String = %q", got)
	}
}
