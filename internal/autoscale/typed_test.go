package autoscale

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/raygcs"
)

// twoTypes: a 1-GPU type and a CPU type of 4 CPUs with its own bounds
// (max 2, idle 30 s) under the cluster's (max 3, idle 60 s).
func twoTypes() []TypeInput {
	s := Settings{Enabled: true, MaxWorkers: 3, IdleTimeout: time.Minute}
	g, c := NodeShape{GPUs: 1, CPUs: 4}, NodeShape{CPUs: 4, Custom: Shape{"decode": 2}}
	return []TypeInput{
		{Shape: TypeShape{Name: "gpu", Node: g, Cost: DefaultCost(g)}, Settings: typeSettings(s, 0, 0, 0)},
		{Shape: TypeShape{Name: "cpu", Node: c, Cost: DefaultCost(c)}, Settings: typeSettings(s, 0, 2, 30*time.Second)},
	}
}

func typedWorker(job, typ string, idle time.Duration) (Worker, Node) {
	w, n := joined(job, "n"+job, idle)
	w.Type, n.Type = typ, typ
	return w, n
}

func TestDecideTypes(t *testing.T) {
	t.Parallel()
	cpu := func(n float64) Shape { return Shape{"CPU": n} }
	cases := []struct {
		name   string
		edit   func(*Input, []TypeInput)
		submit [2]int // gpu, cpu
		drain  []string
		reason string
	}{
		{"CPU work packs onto the CPU type", func(in *Input, _ []TypeInput) {
			in.Demand.Tasks = []Count{{Shape: cpu(1), N: 3}}
		}, [2]int{0, 1}, nil, "cpu: +1 workers"},
		{"GPU work to the GPU type", func(in *Input, _ []TypeInput) {
			in.Demand.Tasks = []Count{{Shape: gpu(1), N: 2}}
		}, [2]int{2, 0}, nil, "gpu: +2 workers"},
		{"both at once, one submission per type", func(in *Input, _ []TypeInput) {
			in.Demand.Tasks = []Count{{Shape: gpu(1), N: 1}, {Shape: cpu(2), N: 4}}
		}, [2]int{1, 2}, nil, "gpu: +1 workers"},
		{"a type's max caps it alone", func(in *Input, _ []TypeInput) {
			in.Demand.Tasks = []Count{{Shape: cpu(4), N: 5}}
		}, [2]int{0, 2}, nil, "--max-workers 2"},
		{"a type's min is kept", func(_ *Input, types []TypeInput) {
			types[1].Settings.MinWorkers = 1
		}, [2]int{0, 1}, nil, "keep --min-workers 1"},
		{"idle drains by each type's timeout", func(in *Input, _ []TypeInput) {
			wg, ng := typedWorker("7", "gpu", 40*time.Second)
			wc, nc := typedWorker("8", "cpu", 40*time.Second)
			in.Workers, in.Nodes = append(in.Workers, wg, wc), append(in.Nodes, ng, nc)
		}, [2]int{0, 0}, []string{"8"}, "cpu: drain 1 idle workers"},
		{"a custom resource's floor counts the type's nodes", func(in *Input, _ []TypeInput) {
			w, n := typedWorker("8", "cpu", 0)
			n.Total = Shape{"CPU": 4, "decode": 2}
			in.Workers, in.Nodes = append(in.Workers, w), append(in.Nodes, n)
			in.Demand.Floors = []Count{{Shape: Shape{"decode": 2}, N: 2}}
		}, [2]int{0, 1}, nil, "cpu: +1 workers for request_resources"},
		{"a floor the head holds starts no worker", func(in *Input, _ []TypeInput) {
			in.Demand.Floors = []Count{{Shape: cpu(1), N: 2}, {Shape: gpu(1), N: 1}}
		}, [2]int{0, 0}, nil, ""},
		{"a floor beyond the head's capped CPUs goes to the CPU type", func(in *Input, _ []TypeInput) {
			in.Demand.Floors = []Count{{Shape: cpu(1), N: 5}}
		}, [2]int{0, 1}, nil, "cpu: +1 workers for request_resources"},
		{"a draining head holds no floor", func(in *Input, _ []TypeInput) {
			in.Nodes[0].Draining = true
			in.Demand.Floors = []Count{{Shape: gpu(1), N: 1}}
		}, [2]int{1, 0}, nil, "gpu: +1 workers for request_resources"},
		{"a shape no type holds", func(in *Input, _ []TypeInput) {
			in.Demand.Tasks = []Count{{Shape: gpu(4), N: 1}}
		}, [2]int{0, 0}, nil, "1 shape no type holds"},
		{"workers of one type are no supply for another", func(in *Input, _ []TypeInput) {
			in.Workers = append(in.Workers, Worker{Job: "9", State: Queued, Reason: "Priority", Type: "gpu", Autoscaled: true, Submitted: t0})
			in.Demand.Tasks = []Count{{Shape: cpu(1), N: 1}}
		}, [2]int{0, 1}, nil, "gpu: cancel 1 pending workers"},
		{"CPU work stays on a full CPU type without --cpu-only-demand", func(in *Input, _ []TypeInput) {
			busyCPUType(in)
			in.Demand.Tasks = []Count{{Shape: cpu(4), N: 1}}
		}, [2]int{0, 0}, nil, "cpu: capped"},
		{"CPU work spills from a full CPU type with --cpu-only-demand", func(in *Input, _ []TypeInput) {
			busyCPUType(in)
			in.Settings.CPUOnly = true
			in.Demand.Tasks = []Count{{Shape: cpu(4), N: 1}}
		}, [2]int{1, 0}, nil, "gpu: +1 workers"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in, types := headOnly(), twoTypes()
			tc.edit(&in, types)
			td, mems := DecideTypes(in, types, nil)
			got := [2]int{td.PerType[0].Submit, td.PerType[1].Submit}
			var drained []string
			for _, d := range td.All.Drain {
				drained = append(drained, d.Job)
			}
			if got != tc.submit || strings.Join(drained, ",") != strings.Join(tc.drain, ",") || !strings.Contains(td.All.Reason, tc.reason) {
				t.Errorf("submit %v drain %v reason %q; want %v %v %q", got, drained, td.All.Reason, tc.submit, tc.drain, tc.reason)
			}
			if len(mems) != 2 {
				t.Errorf("memories = %d, want one per type", len(mems))
			}
		})
	}
}

// A floor is met by the head's node first (its advertised total, the CPUs
// already capped), largest bundles first; only the rest is routed to types.
func TestFloorsBeyondHead(t *testing.T) {
	t.Parallel()
	head := Node{ID: "h", Job: "6", Total: Shape{"GPU": 1, "CPU": 1, "memory": 4 << 30}}
	worker := Node{ID: "w", Job: "7", Worker: true, Type: "cpu", Total: Shape{"CPU": 4}}
	sel := []raygcs.LabelSelector{{}}
	cases := []struct {
		name   string
		nodes  []Node
		floors []Count
		want   []Count
	}{
		{"no floors", []Node{head}, nil, nil},
		{"no head in Ray: all routed", nil, []Count{{Shape: Shape{"CPU": 1}, N: 1}}, []Count{{Shape: Shape{"CPU": 1}, N: 1}}},
		{"the head holds a GPU and its CPU", []Node{head}, []Count{{Shape: Shape{"GPU": 1, "CPU": 1}, N: 1}}, nil},
		{"the capped CPU: one of two CPU bundles", []Node{head}, []Count{{Shape: Shape{"CPU": 1}, N: 2}}, []Count{{Shape: Shape{"CPU": 1}, N: 1}}},
		{"largest first: the GPU bundle takes the head, the CPU one is routed", []Node{head},
			[]Count{{Shape: Shape{"CPU": 1}, N: 1}, {Shape: Shape{"GPU": 1, "CPU": 1}, N: 1}}, []Count{{Shape: Shape{"CPU": 1}, N: 1}}},
		{"a worker's node is its type's to count, not the head's", []Node{worker}, []Count{{Shape: Shape{"CPU": 2}, N: 1}}, []Count{{Shape: Shape{"CPU": 2}, N: 1}}},
		{"a custom resource the head lacks", []Node{head}, []Count{{Shape: Shape{"decode": 1}, N: 1}}, []Count{{Shape: Shape{"decode": 1}, N: 1}}},
		{"memory is not what a floor is counted in", []Node{head}, []Count{{Shape: Shape{"CPU": 1, "memory": 8 << 30}, N: 1}}, nil},
		{"a floor with a label selector is left to the types", []Node{head},
			[]Count{{Shape: Shape{"CPU": 1}, N: 1, Selectors: sel}}, []Count{{Shape: Shape{"CPU": 1}, N: 1, Selectors: sel}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := floorsBeyondHead(tc.nodes, tc.floors)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("left %v, want %v", got, tc.want)
			}
		})
	}
}

// busyCPUType gives in the CPU type's max (2) of busy workers.
func busyCPUType(in *Input) {
	for _, job := range []string{"8", "9"} {
		w, n := typedWorker(job, "cpu", 0)
		n.Total = Shape{"CPU": 4, "decode": 2}
		in.Workers, in.Nodes = append(in.Workers, w), append(in.Nodes, n)
	}
}

// The head's loop on a cluster with types: CPU demand submits the CPU
// type's job (its script names the type and holds no GPU), recorded with
// its type; GPU demand the GPU type's, in a call of its own.
func TestLoopSubmitsByType(t *testing.T) {
	t.Parallel()
	f := newLoopFixture(t, func(s *cluster.Spec) {
		s.Workers = []cluster.WorkerType{
			{Name: "gpu", Node: cluster.NodeSpec{GPUs: 1, CPUs: 2, Partition: "debug"}},
			{Name: "cpu", Node: cluster.NodeSpec{CPUs: 2, Partition: "cpu"}, Max: 2},
		}
	})
	f.ray.state.Pending = []raygcs.RequestCount{
		{Request: raygcs.Request{Resources: map[string]float64{"CPU": 1}}, Count: 4},
		{Request: raygcs.Request{Resources: map[string]float64{"GPU": 1}}, Count: 1},
	}
	st := f.poll(t)
	if len(f.sched.submitted) != 2 {
		t.Fatalf("%d sbatch calls, want one per type", len(f.sched.submitted))
	}
	gpuScript, _ := os.ReadFile(f.sched.submitted[0])
	cpuScript, _ := os.ReadFile(f.sched.submitted[1])
	if !strings.Contains(string(cpuScript), "--type cpu") || strings.Contains(string(cpuScript), "--gres") ||
		!strings.Contains(string(cpuScript), "#SBATCH --array=0-1") || !strings.Contains(string(cpuScript), "--partition=cpu") {
		t.Errorf("cpu script:\n%s", cpuScript)
	}
	if !strings.Contains(string(gpuScript), "--type gpu") || !strings.Contains(string(gpuScript), "--gres=gpu:1") {
		t.Errorf("gpu script:\n%s", gpuScript)
	}
	subs, _ := f.dir.Submissions()
	types := map[string]int{}
	for _, s := range subs {
		if s.Role == cluster.RoleWorker {
			types[s.Type] += max(s.Tasks, 1)
		}
	}
	if types["cpu"] != 2 || types["gpu"] != 1 {
		t.Errorf("submitted by type = %v", types)
	}
	if st.DemandByType["cpu"] != 4 || st.DemandByType["gpu"] != 1 {
		t.Errorf("demand by type = %v, want cpu 4, gpu 1", st.DemandByType)
	}
	if st.PendingWorkers != 3 || len(f.sched.maxTimeOf) != 2 || f.sched.maxTimeOf[1] != "cpu" {
		t.Errorf("status %+v, MaxTime asked of %v", st, f.sched.maxTimeOf)
	}
}

func TestMemBytes(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{"6000": 6000 << 20, "4000M": 4000 << 20, "256G": 256 << 30, "1T": 1 << 40, "": 0, "x": 0, "0": 0} {
		if got, _ := memBytes(in); got != want {
			t.Errorf("memBytes(%q) = %d, want %d", in, got, want)
		}
	}
}

// Routing plans GPU types with the CPUs their nodes advertise to Ray (one
// per GPU beside a CPU type), and labels each type with its node group.
func TestTypesOf(t *testing.T) {
	t.Parallel()
	spec := cluster.Spec{Workers: []cluster.WorkerType{
		{Name: "gpu", Node: cluster.NodeSpec{GPUs: 2, CPUs: 16}, Labels: map[string]string{"gpu-model": "a100"}},
		{Name: "cpu", Node: cluster.NodeSpec{CPUs: 8}},
	}}
	types := TypesOf(spec, Settings{})
	if got := types[0].Shape; got.Node.CPUs != 2 || got.Labels[NodeGroupLabel] != "gpu" || got.Labels["gpu-model"] != "a100" {
		t.Errorf("gpu type = %+v, want 2 CPUs and labels ray.io/node-group=gpu, gpu-model=a100", got)
	}
	if got := types[1].Shape; got.Node.CPUs != 8 || got.Labels[NodeGroupLabel] != "cpu" {
		t.Errorf("cpu type = %+v, want 8 CPUs and ray.io/node-group=cpu", got)
	}
}

// Owned and preemptible GPUs as two types, the preemptible one cheaper
// (cost 1 against 10): GPU work goes to the preemptible partition first; a
// preempted worker there awaiting SLURM's requeue is that type's supply, so
// no second job is submitted for its capacity; once the preemptible type is
// full of such workers, new demand spills to the owned GPUs at once rather
// than waiting out the requeue, and the requeued job nobody needs any more
// is cancelled.
func TestDecideTypesOwnedAndPreemptible(t *testing.T) {
	t.Parallel()
	s := Settings{Enabled: true, MaxWorkers: 4, IdleTimeout: time.Minute}
	g := NodeShape{GPUs: 1, CPUs: 1}
	types := func(scavMax int) []TypeInput {
		return []TypeInput{
			{Shape: TypeShape{Name: "owned", Node: g, Cost: 10}, Settings: typeSettings(s, 0, 0, 0)},
			{Shape: TypeShape{Name: "scav", Node: g, Cost: 1}, Settings: typeSettings(s, 0, scavMax, 0)},
		}
	}
	preempted := Worker{Job: "9", State: Queued, Reason: reasonRequeueAwaited, Type: "scav", Autoscaled: true, Submitted: t0.Add(-time.Hour)}
	cases := []struct {
		name    string
		scavMax int
		workers []Worker
		submit  [2]int // owned, scav
		cancel  []string
	}{
		{"GPU work goes to the cheaper preemptible type", 2, nil, [2]int{0, 1}, nil},
		{"a preempted worker awaiting its requeue is its type's supply", 2, []Worker{preempted}, [2]int{0, 0}, nil},
		{"a preemptible type full of preempted workers spills to owned GPUs", 1, []Worker{preempted}, [2]int{1, 0}, []string{"9"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := headOnly()
			in.Demand.Tasks = []Count{{Shape: gpu(1), N: 1}} // waiting: the head's GPU is taken
			in.Workers = tc.workers
			td, _ := DecideTypes(in, types(tc.scavMax), nil)
			got := [2]int{td.PerType[0].Submit, td.PerType[1].Submit}
			if got != tc.submit || fmt.Sprint(td.All.Cancel) != fmt.Sprint(tc.cancel) {
				t.Errorf("submit %v cancel %v (%s); want %v %v", got, td.All.Cancel, td.All.Reason, tc.submit, tc.cancel)
			}
		})
	}
}
