package cluster

import (
	"encoding/json"
	"strings"
	"testing"
)

// A spec written before worker types has one implicit type of the shape
// up's flags gave, so grow, the autoscaler and status read it as before.
func TestTypesOfASpecWithoutTypes(t *testing.T) {
	t.Parallel()
	var spec Spec
	old := `{"name":"exp1","node":{"gpus_per_node":2,"partition":"gpu","mem":"8G"},"worker_partition":"scav",
		"autoscale":{"enabled":true,"min_workers":1,"max_workers":3,"idle_timeout_s":60}}`
	if err := json.Unmarshal([]byte(old), &spec); err != nil {
		t.Fatal(err)
	}
	types := spec.Types()
	if len(types) != 1 {
		t.Fatalf("types = %+v, want one", types)
	}
	d := types[0]
	if d.Name != DefaultTypeName || d.Node.GPUs != 2 || d.Node.Partition != "scav" || d.Node.Mem != "8G" ||
		d.Min != 1 || d.Max != 3 || d.IdleTimeoutS != 60 {
		t.Errorf("implicit type = %+v", d)
	}
	if got := spec.WorkerNode(); got.Partition != "scav" {
		t.Errorf("WorkerNode = %+v", got)
	}
}

func TestTypeLookup(t *testing.T) {
	t.Parallel()
	spec := Spec{Name: "long", Node: NodeSpec{GPUs: 1}, Workers: []WorkerType{
		{Name: "gpu", Node: NodeSpec{GPUs: 4}}, {Name: "cpu", Node: NodeSpec{CPUs: 64}},
	}}
	for _, tc := range []struct{ name, want string }{{"", "gpu"}, {"gpu", "gpu"}, {"cpu", "cpu"}} {
		if got, err := spec.Type(tc.name); err != nil || got.Name != tc.want {
			t.Errorf("Type(%q) = %q, %v; want %q", tc.name, got.Name, err, tc.want)
		}
	}
	if spec.WorkerNode().GPUs != 4 {
		t.Errorf("WorkerNode = %+v, want the first type's", spec.WorkerNode())
	}
	_, err := spec.Type("h100")
	if err == nil || !strings.Contains(err.Error(), `no worker type "h100"`) || !strings.Contains(err.Error(), "[gpu cpu]") {
		t.Errorf("unknown type: %v", err)
	}
}

// status groups the worker rows by type, in the file's order, and counts
// each type's pending and joined workers and the demand routed to it; a cluster without types has no
// type lines and its rows keep their order.
func TestStatusGroupsWorkersByType(t *testing.T) {
	t.Parallel()
	o := baseObservation()
	withHeadUp(&o)
	withWorkerJoined(&o) // job 7: the default type (its submission names none)
	o.Spec.Autoscale.MaxWorkers = 5
	o.Spec.Workers = []WorkerType{{Name: "gpu", Max: 8}, {Name: "cpu", Min: 1}}
	o.Submissions = append(o.Submissions,
		Submission{Role: RoleWorker, JobID: "8", Tasks: 2, Type: "cpu"},
		Submission{Role: RoleDriver, JobID: "9"},
		Submission{Role: RoleWorker, JobID: "10", Type: "gpu"})
	o.Slurm["8_0"], o.Slurm["8_1"], o.Slurm["10"] = pendingJob("8_0", "Priority"), pendingJob("8_1", "Priority"), pendingJob("10", "Priority")
	o.Autoscaler = &AutoscalerStatus{DemandByType: map[string]int{"cpu": 3}}
	st := StatusOf(o)
	var order []string
	for _, j := range st.Jobs {
		order = append(order, j.JobID+":"+j.Type)
	}
	if got := strings.Join(order, " "); got != "6: 9: 7:gpu 10:gpu 8_0:cpu 8_1:cpu" {
		t.Errorf("rows = %s", got)
	}
	want := []TypeStatus{{Name: "gpu", Max: 8, Pending: 1, Joined: 1}, {Name: "cpu", Min: 1, Max: 5, Demand: 3, Pending: 2}}
	if len(st.Types) != 2 || st.Types[0] != want[0] || st.Types[1] != want[1] {
		t.Errorf("types = %+v, want %+v", st.Types, want)
	}

	legacy := baseObservation()
	if st := StatusOf(legacy); st.Types != nil || st.Jobs[1].Type != "" {
		t.Errorf("a cluster without types: types %+v, worker type %q", st.Types, st.Jobs[1].Type)
	}
}

// GPU nodes advertise one CPU per GPU on a cluster with a CPU type, so CPU
// work cannot squat on them; nowhere else.
func TestRayCPUs(t *testing.T) {
	t.Parallel()
	gpu := WorkerType{Name: "gpu", Node: NodeSpec{GPUs: 4, CPUs: 32}}
	cpu := WorkerType{Name: "cpu", Node: NodeSpec{CPUs: 64}}
	withCPU := Spec{Workers: []WorkerType{gpu, cpu}}
	cpuOnly := withCPU
	cpuOnly.Autoscale.CPUOnlyDemand = true
	for _, c := range []struct {
		name             string
		spec             Spec
		gpus, cpus, want int
	}{
		{"a GPU node beside a CPU type", withCPU, 4, 32, 4},
		{"fewer CPUs than GPUs", withCPU, 4, 2, 2},
		{"a CPU node", withCPU, 0, 64, 64},
		{"no CPU type", Spec{Workers: []WorkerType{gpu}}, 4, 32, 32},
		{"no types", Spec{}, 4, 32, 32},
		{"--cpu-only-demand lets CPU work on GPU nodes", cpuOnly, 4, 32, 32},
	} {
		if got := c.spec.RayCPUs(c.gpus, c.cpus); got != c.want {
			t.Errorf("%s: RayCPUs(%d, %d) = %d, want %d", c.name, c.gpus, c.cpus, got, c.want)
		}
	}
}

func TestMinWorkers(t *testing.T) {
	t.Parallel()
	legacy := Spec{Autoscale: AutoscaleSpec{MinWorkers: 2}}
	typed := Spec{Autoscale: AutoscaleSpec{MinWorkers: 2}, Workers: []WorkerType{{Name: "gpu", Min: 1}, {Name: "cpu", Min: 3}}}
	if got := legacy.MinWorkers(); got != 2 {
		t.Errorf("without types: %d, want --min-workers 2", got)
	}
	if got := typed.MinWorkers(); got != 4 {
		t.Errorf("with types: %d, want the types' min summed, 4", got)
	}
}
