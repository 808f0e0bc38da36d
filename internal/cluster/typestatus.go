package cluster

import (
	"slices"
)

// TypeStatus is one worker type as `status` shows it: its bounds and its
// workers by membership.
type TypeStatus struct {
	Name string `json:"name"`
	Min  int    `json:"min"`
	// Max is the type's bound on worker jobs (the autoscaler's when the
	// type names none).
	Max int `json:"max"`
	// Demand is how many bundles Ray waits for the autoscaler routed to
	// the type at its last poll.
	Demand int `json:"demand"`
	// Pending are the type's worker jobs not yet in Ray (queued, or started
	// and joining); Joined those in Ray (draining ones too).
	Pending int `json:"pending"`
	Joined  int `json:"joined"`
}

// typeOf is a worker submission's type name: its own, else the default's.
func typeOf(spec Spec, sub Submission) string {
	if sub.Type != "" {
		return sub.Type
	}
	return spec.DefaultType().Name
}

// groupByType orders the worker rows by type, in the types' order (other
// rows first, as they came), and counts each type's workers and demand
// (the autoscaler's, nil when none); nil for a cluster without types.
func groupByType(spec Spec, jobs []JobStatus, a *AutoscalerStatus) []TypeStatus {
	if len(spec.Workers) == 0 {
		return nil
	}
	order := map[string]int{}
	types := make([]TypeStatus, len(spec.Workers))
	for i, t := range spec.Workers {
		order[t.Name] = i + 1
		types[i] = TypeStatus{Name: t.Name, Min: t.Min, Max: t.Max}
		if a != nil {
			types[i].Demand = a.DemandByType[t.Name]
		}
		if t.Max == 0 {
			types[i].Max = spec.Autoscale.MaxWorkers
		}
	}
	slices.SortStableFunc(jobs, func(a, b JobStatus) int { return order[a.Type] - order[b.Type] })
	for _, j := range jobs {
		i := order[j.Type] - 1
		if i < 0 {
			continue // not a worker, or a type the spec no longer has
		}
		switch j.Ray {
		case MembershipWaiting:
			types[i].Pending++
		case MembershipJoined, MembershipDraining:
			types[i].Joined++
		}
	}
	return types
}
