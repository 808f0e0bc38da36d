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
