package autoscale

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/sraybatch/sraybatch/internal/raygcs"
)

// routeTypes: the cluster, scaled: a 4-GPU type, an 8-GPU type
// advertising h100, and a CPU type with 64 CPUs and 150 GiB of Ray memory.
func routeTypes() []TypeShape {
	gpu := NodeShape{GPUs: 4, CPUs: 32}
	h100 := NodeShape{GPUs: 8, CPUs: 32, Custom: Shape{"h100": 8}}
	cpu := NodeShape{CPUs: 64}
	return []TypeShape{
		{Name: "gpu", Node: gpu, Cost: DefaultCost(gpu), MemoryBytes: 100 << 30,
			Labels: map[string]string{NodeGroupLabel: "gpu", "gpu-model": "a100"}},
		{Name: "h100", Node: h100, Cost: DefaultCost(h100), Labels: map[string]string{NodeGroupLabel: "h100"}},
		{Name: "cpu", Node: cpu, Cost: DefaultCost(cpu), MemoryBytes: 150 << 30, Labels: map[string]string{NodeGroupLabel: "cpu"}},
	}
}

// summary shows a routing as "type: tasks | groups | floors" lines and the
// infeasible shapes, for comparing with a table's want.
func summary(types []TypeShape, r Routed) string {
	var lines []string
	for i, d := range r.PerType {
		var parts []string
		for _, c := range d.Tasks {
			parts = append(parts, fmt.Sprintf("%d×{%s}", c.N, c.Shape))
		}
		for _, g := range d.Groups {
			var bs []string
			for _, b := range g.Bundles {
				bs = append(bs, "{"+b.String()+"}")
			}
			parts = append(parts, "pg["+strings.Join(bs, ",")+"]")
		}
		for _, c := range d.Floors {
			parts = append(parts, fmt.Sprintf("floor %d×{%s}", c.N, c.Shape))
		}
		if len(parts) > 0 {
			lines = append(lines, types[i].Name+": "+strings.Join(parts, " "))
		}
	}
	for _, x := range r.Infeasible {
		lines = append(lines, "infeasible {"+x.Shape.String()+"}")
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func TestRoute(t *testing.T) {
	t.Parallel()
	mem := func(gib float64) float64 { return gib * (1 << 30) }
	cases := []struct {
		name    string
		types   []TypeShape
		demand  Demand
		cpuOnly bool
		want    string
	}{
		{"GPU work to the cheapest GPU type", routeTypes(),
			Demand{Tasks: []Count{{Shape: Shape{"GPU": 1, "CPU": 1}, N: 3}}}, false, "gpu: 3×{GPU:1 CPU:1}"},
		{"more GPUs than the cheap type has", routeTypes(),
			Demand{Tasks: []Count{{Shape: Shape{"GPU": 6}, N: 1}}}, false, "h100: 1×{GPU:6}"},
		{"CPU work never to a GPU type while a CPU type holds it", routeTypes(),
			Demand{Tasks: []Count{{Shape: Shape{"CPU": 2}, N: 10}}}, true, "cpu: 10×{CPU:2}"},
		{"CPU work a CPU type cannot hold, without --cpu-only-demand", routeTypes()[:2],
			Demand{Tasks: []Count{{Shape: Shape{"CPU": 2}, N: 1}}}, false, "infeasible {CPU:2}"},
		{"CPU work to a GPU type with --cpu-only-demand", routeTypes()[:2],
			Demand{Tasks: []Count{{Shape: Shape{"CPU": 2}, N: 1}}}, true, "gpu: 1×{CPU:2}"},
		{"a custom resource only to the type advertising it", routeTypes(),
			Demand{Tasks: []Count{{Shape: Shape{"GPU": 1, "h100": 1}, N: 2}}}, false, "h100: 2×{GPU:1 h100:1}"},
		{"memory is a dimension", routeTypes(),
			Demand{Tasks: []Count{{Shape: Shape{"CPU": 1, "memory": mem(120)}, N: 1}, {Shape: Shape{"CPU": 1, "memory": mem(200)}, N: 1}}}, false,
			"cpu: 1×{CPU:1 memory:128849018880}\ninfeasible {CPU:1 memory:214748364800}"},
		{"a set cost wins over the default", []TypeShape{
			{Name: "owned", Node: NodeShape{GPUs: 4}, Cost: 10}, {Name: "scav", Node: NodeShape{GPUs: 4}, Cost: 1}},
			Demand{Tasks: []Count{{Shape: Shape{"GPU": 1}, N: 1}}}, false, "scav: 1×{GPU:1}"},
		{"a tie goes to the first listed", []TypeShape{
			{Name: "a", Node: NodeShape{GPUs: 1}, Cost: 1}, {Name: "b", Node: NodeShape{GPUs: 1}, Cost: 1}},
			Demand{Tasks: []Count{{Shape: Shape{"GPU": 1}, N: 1}}}, false, "a: 1×{GPU:1}"},
		{"STRICT_PACK needs one type for the whole group", routeTypes(),
			Demand{Groups: []Group{{Bundles: []Shape{{"GPU": 4}, {"GPU": 2}}, Strict: true}}}, false, "h100: pg[{GPU:4},{GPU:2}]"},
		{"STRICT_PACK no type holds", routeTypes(),
			Demand{Groups: []Group{{Bundles: []Shape{{"GPU": 8}, {"GPU": 2}}, Strict: true}}}, false, "infeasible {GPU:10}"},
		{"a mixed PACK group splits across types", routeTypes(),
			Demand{Groups: []Group{{Bundles: []Shape{{"GPU": 1}, {"CPU": 8}, {"GPU": 1}}}}}, false, "cpu: pg[{CPU:8}]\ngpu: pg[{GPU:1},{GPU:1}]"},
		{"a group with an infeasible bundle is not routed", routeTypes(),
			Demand{Groups: []Group{{Bundles: []Shape{{"GPU": 1}, {"GPU": 16}}, Spread: true}}}, false, "infeasible {GPU:16}"},
		{"floors split across types", routeTypes(),
			Demand{Floors: []Count{{Shape: Shape{"GPU": 1}, N: 2}, {Shape: Shape{"CPU": 4}, N: 3}}}, false, "cpu: floor 3×{CPU:4}\ngpu: floor 2×{GPU:1}"},
		{"another job's resource is infeasible, once per shape", routeTypes(),
			Demand{Tasks: []Count{{Shape: Shape{"sraybatch_job_7": 0.01}, N: 1}, {Shape: Shape{"sraybatch_job_7": 0.01}, N: 2}}}, false, "infeasible {sraybatch_job_7:0.01}"},
		{"the cheapest type at its max spills to the next that holds it", atMax(routeTypes(), "gpu"),
			Demand{Tasks: []Count{{Shape: Shape{"GPU": 1}, N: 2}}}, false, "h100: 2×{GPU:1}"},
		{"every type that holds it at its max: the cheapest, capped there", atMax(routeTypes(), "gpu", "h100"),
			Demand{Tasks: []Count{{Shape: Shape{"GPU": 1}, N: 2}}}, false, "gpu: 2×{GPU:1}"},
		{"CPU work never spills to a GPU type without --cpu-only-demand", atMax(routeTypes(), "cpu"),
			Demand{Tasks: []Count{{Shape: Shape{"CPU": 2}, N: 1}}}, false, "cpu: 1×{CPU:2}"},
		{"CPU work spills to the cheapest GPU type with --cpu-only-demand", atMax(routeTypes(), "cpu"),
			Demand{Tasks: []Count{{Shape: Shape{"CPU": 2}, N: 1}}}, true, "gpu: 1×{CPU:2}"},
		{"a full type's label-selected work stays on it", atMax(routeTypes(), "h100"),
			Demand{Tasks: []Count{{Shape: Shape{"GPU": 1}, N: 1, Selectors: sel(in(NodeGroupLabel, "h100"))}}}, false, "h100: 1×{GPU:1}"},
		{"a label selector on the node group picks the type, CPU-only or not", routeTypes(),
			Demand{Tasks: []Count{{Shape: Shape{"CPU": 1}, N: 2, Selectors: sel(in(NodeGroupLabel, "h100"))}}}, false, "h100: 2×{CPU:1}"},
		{"a label selector on a type's own label", routeTypes(),
			Demand{Tasks: []Count{{Shape: Shape{"GPU": 1}, N: 1, Selectors: sel(in("gpu-model", "a100", "h100"))}}}, false, "gpu: 1×{GPU:1}"},
		{"a fallback selector when the first matches no type", routeTypes(),
			Demand{Tasks: []Count{{Shape: Shape{"GPU": 1}, N: 1, Selectors: sel(in("gpu-model", "b200"), notIn(NodeGroupLabel, "gpu"))}}}, false, "h100: 1×{GPU:1}"},
		{"the empty selector of a plain task holds anywhere", routeTypes(),
			Demand{Tasks: []Count{{Shape: Shape{"CPU": 1}, N: 1, Selectors: sel()}}}, false, "cpu: 1×{CPU:1}"},
		{"a selector on a label no type declares is infeasible", routeTypes(),
			Demand{Tasks: []Count{{Shape: Shape{"GPU": 1}, N: 1, Selectors: sel(in("ray.io/accelerator-type", "H100"))}}}, false, "infeasible {GPU:1}"},
		{"a selector and a resource no single type has", routeTypes(),
			Demand{Tasks: []Count{{Shape: Shape{"GPU": 6}, N: 1, Selectors: sel(in(NodeGroupLabel, "gpu"))}}}, false, "infeasible {GPU:6}"},
		{"STRICT_PACK: one type satisfies every bundle's selectors", routeTypes(),
			Demand{Groups: []Group{{Bundles: []Shape{{"GPU": 1}, {"CPU": 1}}, Strict: true,
				Selectors: [][]raygcs.LabelSelector{nil, sel(in(NodeGroupLabel, "h100"))}}}}, false, "h100: pg[{GPU:1},{CPU:1}]"},
		{"STRICT_PACK: bundles selecting two types", routeTypes(),
			Demand{Groups: []Group{{Bundles: []Shape{{"GPU": 1}, {"GPU": 1}}, Strict: true,
				Selectors: [][]raygcs.LabelSelector{sel(in(NodeGroupLabel, "gpu")), sel(in(NodeGroupLabel, "h100"))}}}}, false, "infeasible {GPU:2}"},
		{"a PACK group's bundles follow their selectors", routeTypes(),
			Demand{Groups: []Group{{Bundles: []Shape{{"GPU": 1}, {"GPU": 1}},
				Selectors: [][]raygcs.LabelSelector{nil, sel(in(NodeGroupLabel, "h100"))}}}}, false, "gpu: pg[{GPU:1}]\nh100: pg[{GPU:1}]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := summary(tc.types, Route(tc.types, tc.demand, tc.cpuOnly))
			if got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

// atMax marks the named types as at their max.
func atMax(types []TypeShape, names ...string) []TypeShape {
	for i := range types {
		types[i].Full = slices.Contains(names, types[i].Name)
	}
	return types
}

// sel is a list of label selectors (Ray's fallbacks), one constraint each.
func sel(cs ...raygcs.LabelConstraint) []raygcs.LabelSelector {
	out := []raygcs.LabelSelector{}
	for _, c := range cs {
		out = append(out, raygcs.LabelSelector{Constraints: []raygcs.LabelConstraint{c}})
	}
	if len(cs) == 0 {
		out = append(out, raygcs.LabelSelector{}) // what Ray 2.60 sends with a plain task
	}
	return out
}

func in(key string, values ...string) raygcs.LabelConstraint {
	return raygcs.LabelConstraint{Key: key, Op: raygcs.LabelIn, Values: values}
}

func notIn(key string, values ...string) raygcs.LabelConstraint {
	return raygcs.LabelConstraint{Key: key, Op: raygcs.LabelNotIn, Values: values}
}

// Why a shape is infeasible names each type's reason.
func TestRouteInfeasibleSaysWhy(t *testing.T) {
	t.Parallel()
	r := Route(routeTypes(), Demand{Tasks: []Count{{Shape: Shape{"GPU": 16}, N: 1}}}, false)
	if len(r.Infeasible) != 1 || !strings.Contains(r.Infeasible[0].Why, "gpu: needs 16 GPUs, a worker job has 4") ||
		!strings.Contains(r.Infeasible[0].Why, "cpu: needs 16 GPUs, a worker job has 0") {
		t.Errorf("infeasible = %+v", r.Infeasible)
	}
	r = Route(routeTypes()[:1], Demand{Tasks: []Count{{Shape: Shape{"CPU": 1}, N: 1}}}, false)
	if len(r.Infeasible) != 1 || !strings.Contains(r.Infeasible[0].Why, "--cpu-only-demand") {
		t.Errorf("CPU-only on GPU types: %+v", r.Infeasible)
	}
}
