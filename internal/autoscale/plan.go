package autoscale

import "sort"

// bin is the free capacity of one node while bundles are planned onto it:
// a worker job in flight, a node alive in Ray, or a new job.
type bin struct {
	free Shape
	job  string
	node string
	used bool
}

// plan places bundles first-fit decreasing on worker jobs in flight, then on
// new jobs of the node shape.
type plan struct {
	shape   NodeShape
	alive   []*bin
	flight  []*bin
	newBins []*bin
}

func newPlan(shape NodeShape, inFlight []Worker) *plan {
	p := &plan{shape: shape}
	for _, w := range inFlight {
		p.flight = append(p.flight, &bin{free: shape.capacity(), job: w.Job})
	}
	return p
}

func (p *plan) bins() []*bin {
	all := make([]*bin, 0, len(p.alive)+len(p.flight)+len(p.newBins))
	all = append(all, p.alive...)
	all = append(all, p.flight...)
	return append(all, p.newBins...)
}

// put places s on the first bin it fits, skipping those in avoid, opening a
// new job when none does.
func (p *plan) put(s Shape, avoid map[*bin]bool) *bin {
	for _, b := range p.bins() {
		if !avoid[b] && fits(s, b.free) {
			take(b.free, s)
			b.used = true
			return b
		}
	}
	b := &bin{free: p.shape.capacity(), used: true}
	take(b.free, s)
	p.newBins = append(p.newBins, b)
	return b
}

func (p *plan) place(s Shape) { p.put(s, nil) }

// placeGroup places a placement group: SPREAD and STRICT_SPREAD one bundle
// per node, STRICT_PACK all on one node, PACK as tight as it goes.
func (p *plan) placeGroup(g Group) {
	bundles := sortedBySize(g.Bundles)
	switch {
	case g.Spread:
		avoid := map[*bin]bool{}
		for _, s := range bundles {
			avoid[p.put(s, avoid)] = true
		}
	case g.Strict:
		sum := Shape{}
		for _, s := range bundles {
			for k, v := range s {
				sum[k] += v
			}
		}
		p.put(sum, nil)
	default:
		for _, s := range bundles {
			p.put(s, nil)
		}
	}
}

// placeFloors places request_resources bundles against the total capacity
// of the nodes alive in Ray (head included) and of the jobs in flight, and
// returns the alive nodes the floor needs. Nodes that are never drained
// (the head, drivers) come first, then busy workers and idle ones
// shortest-idle first, so the floor keeps the nodes least worth draining.
func (p *plan) placeFloors(nodes []Node, floors []Shape) map[string]bool {
	ordered := append([]Node(nil), nodes...)
	sort.SliceStable(ordered, func(i, j int) bool {
		if ordered[i].Worker != ordered[j].Worker {
			return !ordered[i].Worker
		}
		return ordered[i].Idle < ordered[j].Idle
	})
	for _, n := range ordered {
		if n.Draining {
			continue // leaving: it serves no floor
		}
		free := Shape{}
		for k, v := range n.Total {
			free[k] = v
		}
		if _, ok := free[resCPU]; !ok {
			free[resCPU] = 0
		}
		if _, ok := free[resGPU]; !ok {
			free[resGPU] = 0
		}
		p.alive = append(p.alive, &bin{free: free, node: n.ID})
	}
	for _, s := range sortedBySize(floors) {
		p.put(s, nil)
	}
	protected := map[string]bool{}
	for _, b := range p.alive {
		if b.used {
			protected[b.node] = true
		}
	}
	return protected
}

func sortedBySize(shapes []Shape) []Shape {
	out := append([]Shape(nil), shapes...)
	sort.SliceStable(out, func(i, j int) bool { return size(out[i]) > size(out[j]) })
	return out
}
