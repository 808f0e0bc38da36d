package autoscale

import (
	"fmt"
	"strings"

	"github.com/sraybatch/sraybatch/internal/raygcs"
)

// TypeShape is one worker type as routing sees it: what one of its jobs
// brings, and what it costs.
type TypeShape struct {
	Name string
	Node NodeShape
	// MemoryBytes is the Ray memory of one node; 0: unknown, not limiting.
	MemoryBytes float64
	Cost        float64
	// Labels are the labels its nodes advertise that routing can count on:
	// the type's own and ray.io/node-group. Ray adds others (node id,
	// accelerator type from NVML) that a bundle's label selector may name;
	// a type is never routed to on those, since its GRES may not pin them.
	Labels map[string]string
	// Full: the type has its max worker jobs. Demand it would get spills to
	// the next-cheapest type that holds it, by the same rules (CPU work to
	// a GPU type only with --cpu-only-demand); it stays here when none does.
	Full bool
}

// NodeGroupLabel is the label Ray gives each node of a worker type
// (raynode.StartParams.NodeGroup): a label selector on it picks a type.
const NodeGroupLabel = "ray.io/node-group"

// DefaultCost ranks a type by its allocation when the file gives no cost:
// GPUs first (the scarce, accounted resource), then CPUs.
func DefaultCost(n NodeShape) float64 { return n.GPUs*1e6 + n.CPUs }

// Routed is the demand split across the types: PerType[i] is what types[i]
// is asked to serve.
type Routed struct {
	PerType    []Demand
	Infeasible []Infeasible
}

// Route sends each demanded bundle to the cheapest type that holds it (the
// first listed on a tie): a bundle asking for no GPU goes to a type without
// GPUs when one holds it, and to a GPU type only with cpuOnly
// (--cpu-only-demand); a custom resource only to a type advertising it; a
// bundle with label selectors only to a type whose labels satisfy one; a
// STRICT_PACK group whole to one type that holds all of it; other groups
// bundle by bundle. A bundle no type holds is infeasible, once per shape.
// It is pure.
func Route(types []TypeShape, d Demand, cpuOnly bool) Routed {
	r := Routed{PerType: make([]Demand, len(types))}
	seen := map[string]bool{}
	pick := func(s Shape, sels ...[]raygcs.LabelSelector) int {
		i, why := choose(types, s, sels, cpuOnly)
		if key := bundleKey(s, sels); i < 0 && !seen[key] {
			seen[key] = true
			r.Infeasible = append(r.Infeasible, Infeasible{Shape: s, Why: why})
		}
		return i
	}
	for _, c := range d.Tasks {
		if i := pick(c.Shape, c.Selectors); i >= 0 {
			r.PerType[i].Tasks = append(r.PerType[i].Tasks, c)
		}
	}
	for _, c := range d.Floors {
		if i := pick(c.Shape, c.Selectors); i >= 0 {
			r.PerType[i].Floors = append(r.PerType[i].Floors, c)
		}
	}
	for _, g := range d.Groups {
		r.routeGroup(g, pick)
	}
	return r
}

// routeGroup routes a placement group: whole, for STRICT_PACK; else each
// bundle to its own type, the group split into one per type with the same
// strategy. A group with a bundle no type holds is not routed at all.
func (r *Routed) routeGroup(g Group, pick func(Shape, ...[]raygcs.LabelSelector) int) {
	if g.Strict && !g.Spread {
		sum := Shape{}
		var sels [][]raygcs.LabelSelector
		for i, b := range g.Bundles {
			for k, v := range b {
				sum[k] += v
			}
			sels = append(sels, g.selectors(i)) // one node: it must satisfy every bundle's
		}
		if i := pick(sum, sels...); i >= 0 {
			r.PerType[i].Groups = append(r.PerType[i].Groups, g)
		}
		return
	}
	parts := map[int]*Group{}
	var order []int
	for j, b := range g.Bundles {
		i := pick(b, g.selectors(j))
		if i < 0 {
			return
		}
		if _, ok := parts[i]; !ok {
			order = append(order, i)
			parts[i] = &Group{Spread: g.Spread, Strict: g.Strict}
		}
		parts[i].Bundles = append(parts[i].Bundles, b)
		parts[i].Selectors = append(parts[i].Selectors, g.selectors(j))
	}
	for _, i := range order {
		r.PerType[i].Groups = append(r.PerType[i].Groups, *parts[i])
	}
}

// selectors are bundle i's label selectors.
func (g Group) selectors(i int) []raygcs.LabelSelector {
	if i < len(g.Selectors) {
		return g.Selectors[i]
	}
	return nil
}

// bundleKey tells bundles apart for reporting each infeasible one once.
func bundleKey(s Shape, sels [][]raygcs.LabelSelector) string {
	return fmt.Sprint(s.String(), sels)
}

// choose is the index of the cheapest type that holds s, or -1 and why
// none does: among the types not full first, then among all.
func choose(types []TypeShape, s Shape, sels [][]raygcs.LabelSelector, cpuOnly bool) (int, string) {
	if i, _ := chooseAmong(types, s, sels, cpuOnly, false); i >= 0 {
		return i, ""
	}
	return chooseAmong(types, s, sels, cpuOnly, true)
}

// chooseAmong is choose over the types not full, or over all with full.
func chooseAmong(types []TypeShape, s Shape, sels [][]raygcs.LabelSelector, cpuOnly, full bool) (int, string) {
	best, bestCPU := -1, -1
	var whys []string
	for i, t := range types {
		if t.Full && !full {
			continue
		}
		if why := t.refuses(s, sels); why != "" {
			whys = append(whys, t.Name+": "+why)
			continue
		}
		if best < 0 || t.Cost < types[best].Cost {
			best = i
		}
		if t.Node.GPUs == 0 && (bestCPU < 0 || t.Cost < types[bestCPU].Cost) {
			bestCPU = i
		}
	}
	switch {
	case best < 0:
		return -1, "no worker type holds it (" + strings.Join(whys, "; ") + ")"
	case !s.gpuFree(), picksType(sels):
		return best, "" // a label selector naming a type is the user's own choice
	case bestCPU >= 0:
		return bestCPU, "" // CPU work stays off GPU types while a CPU type holds it
	case cpuOnly:
		return best, ""
	}
	return -1, "asks for no GPU and only GPU types hold it (allow them with --cpu-only-demand, or add a type with gpus: 0)"
}

// picksType reports whether a label selector asks for a label value (an
// IN constraint): a choice of node the user made, GPU type or not.
func picksType(sels [][]raygcs.LabelSelector) bool {
	for _, list := range sels {
		for _, sel := range list {
			for _, c := range sel.Constraints {
				if c.Op == raygcs.LabelIn {
					return true
				}
			}
		}
	}
	return false
}

// refuses says why one job of type t can never hold s with label
// selectors sels (each list satisfied), or "".
func (t TypeShape) refuses(s Shape, sels [][]raygcs.LabelSelector) string {
	for _, sel := range sels {
		if !raygcs.Satisfied(sel, t.Labels) {
			return fmt.Sprintf("its labels satisfy no label selector of %v", sel)
		}
	}
	for k, v := range s {
		if v <= 0 || k == "object_store_memory" {
			continue
		}
		if k == "memory" {
			if t.MemoryBytes > 0 && v > t.MemoryBytes {
				return fmt.Sprintf("needs %s GiB of memory, a worker job has %s", trimFloat(v/(1<<30)), trimFloat(t.MemoryBytes/(1<<30)))
			}
			continue
		}
		if why := t.Node.infeasibility(Shape{k: v}); why != "" {
			return why // GPUs, CPUs, or a resource the type does not advertise
		}
	}
	return ""
}
