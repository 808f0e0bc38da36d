package autoscale

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

// TypeInput is one worker type for DecideTypes: how routing sees it, and
// its own bounds (min, max, idle timeout) as Decide's settings.
type TypeInput struct {
	Shape    TypeShape
	Settings Settings
}

// TypedDecision is DecideTypes' answer: a Decision per type (in the types'
// order, each submitting its own type in one sbatch call) and their sum,
// for what is shown and done as a whole.
type TypedDecision struct {
	PerType []Decision
	All     Decision
	// Routed[i] is the demand routed to the i-th type, for status.
	Routed []Demand
}

// DecideTypes plans one poll of a cluster with worker types: Route splits
// the demand across the types, then each type is decided on its own
// (Decide: its workers, its nodes, its min, max and idle timeout, its
// memory of unmet demand and backoff). It is pure.
func DecideTypes(in Input, types []TypeInput, mems []Memory) (TypedDecision, []Memory) {
	shapes := make([]TypeShape, len(types))
	for i, t := range types {
		shapes[i] = t.Shape
		shapes[i].Full = full(in.Workers, t)
	}
	routed := in.Demand
	routed.Floors = floorsBeyondHead(in.Nodes, in.Demand.Floors)
	r := Route(shapes, routed, in.Settings.CPUOnly)
	td := TypedDecision{PerType: make([]Decision, len(types)), Routed: r.PerType}
	out := make([]Memory, len(types))
	all := &td.All
	all.Infeasible = r.Infeasible
	var reasons []string
	for i, t := range types {
		var mem Memory
		if i < len(mems) {
			mem = mems[i]
		}
		d, m := Decide(in.ofType(t, r.PerType[i]), mem)
		td.PerType[i], out[i] = d, m
		all.Submit += d.Submit
		all.Wanted += d.Wanted
		all.Capped = all.Capped || d.Capped
		all.Cancel = append(all.Cancel, d.Cancel...)
		all.Drain = append(all.Drain, d.Drain...)
		all.Infeasible = append(all.Infeasible, d.Infeasible...)
		if d.Reason != "" && d.Reason != "autoscaling is off" {
			reasons = append(reasons, t.Shape.Name+": "+d.Reason)
		}
	}
	all.DemandGPUs = demandGPUs(in.Demand)
	if len(r.Infeasible) > 0 {
		reasons = append(reasons, plural(len(r.Infeasible), "shape")+" no type holds")
	}
	all.Reason = strings.Join(reasons, "; ")
	if !in.Settings.Enabled {
		all.Reason = "autoscaling is off"
	}
	return td, out
}

// floorsBeyondHead are the request_resources floor bundles that the alive
// nodes of no worker type (the head's) do not hold. Ray meets a floor with
// every node's advertised resources, the head's included: its CPUs after
// the CPU-trap cap (cluster.Spec.RayCPUs gave its --num-cpus, so Ray's
// total for it is already capped). Without this a floor the head holds
// would start a worker, since each type's Decide counts only its own
// nodes. Bundles are placed first-fit decreasing, as placeFloors does; a
// floor with label selectors is left to the types, as routing knows none of
// the head's labels. What is left keeps the floors' order. It is pure.
func floorsBeyondHead(nodes []Node, floors []Count) []Count {
	var head []Shape
	for _, n := range nodes {
		if n.Worker || n.Type != "" || n.Draining {
			continue
		}
		free := Shape{resCPU: 0, resGPU: 0}
		for k, v := range n.Total {
			free[k] = v
		}
		head = append(head, free)
	}
	if len(head) == 0 || len(floors) == 0 {
		return floors
	}
	order := make([]int, len(floors))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return size(floors[order[a]].Shape) > size(floors[order[b]].Shape) })
	held := make([]int, len(floors))
	for _, i := range order {
		if len(floors[i].Selectors) > 0 {
			continue
		}
		for held[i] < floors[i].N && takeFirstFit(head, floors[i].Shape) {
			held[i]++
		}
	}
	var out []Count
	for i, c := range floors {
		if c.N -= held[i]; c.N > 0 {
			out = append(out, c)
		}
	}
	return out
}

// takeFirstFit takes s from the first of bins it fits, and says whether one held it.
func takeFirstFit(bins []Shape, s Shape) bool {
	for _, free := range bins {
		if fits(s, free) {
			take(free, s)
			return true
		}
	}
	return false
}

// ofType is in as one type sees it: the demand routed to it, its workers
// and its nodes, its shape and bounds. Routing already kept CPU-only
// bundles off GPU types unless allowed, so Decide does not refuse them again.
func (in Input) ofType(t TypeInput, demand Demand) Input {
	out := in
	out.Shape, out.Demand, out.Settings = t.Shape.Node, demand, t.Settings
	out.Settings.CPUOnly = true
	out.Workers, out.Nodes = nil, nil
	for _, w := range in.Workers {
		if w.Type == t.Shape.Name {
			out.Workers = append(out.Workers, w)
		}
	}
	for _, n := range in.Nodes {
		if n.Type == t.Shape.Name {
			out.Nodes = append(out.Nodes, n)
		}
	}
	return out
}

// full reports whether type t has its max worker jobs (joined, starting or
// queued, as Decide counts them against --max-workers): new demand then
// spills to the next-cheapest type. Jobs still queued count too: on SLURM
// they may wait long, and a spilled node left idle once they start is
// drained after its idle timeout.
func full(ws []Worker, t TypeInput) bool {
	var mine []Worker
	for _, w := range ws {
		if w.Type == t.Shape.Name {
			mine = append(mine, w)
		}
	}
	return t.Settings.MaxWorkers > 0 && countQueue(mine).active >= t.Settings.MaxWorkers
}

// bundles counts the bundles of d: tasks, group bundles and floors.
func (d Demand) bundles() int {
	n := 0
	for _, c := range d.Tasks {
		n += c.N
	}
	for _, g := range d.Groups {
		n += len(g.Bundles)
	}
	for _, c := range d.Floors {
		n += c.N
	}
	return n
}

// demandGPUs sums the GPUs of everything Ray waits for.
func demandGPUs(d Demand) float64 {
	var sum float64
	for _, c := range append(append([]Count(nil), d.Tasks...), d.Floors...) {
		sum += c.Shape[resGPU] * float64(c.N)
	}
	for _, g := range d.Groups {
		for _, b := range g.Bundles {
			sum += b[resGPU]
		}
	}
	return sum
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// typeSettings are a type's settings: its own bounds, else the cluster's.
func typeSettings(s Settings, min, max int, idle time.Duration) Settings {
	s.MinWorkers = min
	if max > 0 {
		s.MaxWorkers = max
	}
	if idle > 0 {
		s.IdleTimeout = idle
	}
	return s
}

// TypesOf are a cluster's worker types as DecideTypes takes them.
func TypesOf(spec cluster.Spec, s Settings) []TypeInput {
	out := make([]TypeInput, len(spec.Workers))
	for i, t := range spec.Workers {
		n := NodeShape{GPUs: float64(t.Node.GPUs), Custom: Shape(t.Resources)}
		if t.Node.CPUs > 0 { // else learnt from Ray, which sees the cap
			n.CPUs = float64(spec.RayCPUs(t.Node.GPUs, t.Node.CPUs))
		}
		labels := map[string]string{NodeGroupLabel: t.Name}
		for k, v := range t.Labels {
			labels[k] = v
		}
		shape := TypeShape{Name: t.Name, Node: n, Cost: DefaultCost(n), Labels: labels}
		if t.Cost != nil {
			shape.Cost = *t.Cost
		}
		if mem, ok := memBytes(t.Node.Mem); ok {
			shape.MemoryBytes = float64(mem) * 6 / 10 // what the node gives Ray (raynode/sizing.go)
		}
		out[i] = TypeInput{Shape: shape, Settings: typeSettings(s, t.Min, t.Max, t.IdleTimeout())}
	}
	return out
}

// memBytes reads sbatch's --mem ("6000" in MB, "4000M", "256G", "1T").
func memBytes(mem string) (int64, bool) {
	if mem == "" {
		return 0, false
	}
	unit := int64(1 << 20)
	switch mem[len(mem)-1] {
	case 'K', 'k':
		unit, mem = 1<<10, mem[:len(mem)-1]
	case 'M', 'm':
		mem = mem[:len(mem)-1]
	case 'G', 'g':
		unit, mem = 1<<30, mem[:len(mem)-1]
	case 'T', 't':
		unit, mem = 1<<40, mem[:len(mem)-1]
	}
	n, err := strconv.ParseInt(mem, 10, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	return n * unit, true
}
