package raygcs

import (
	"slices"
	"strconv"
	"strings"
	"time"
)

// ClusterState is one snapshot of what the GCS knows about the cluster: its
// nodes and the work that does not fit on them. An autoscaler grows the
// cluster for Pending, Gangs and Constraints and shrinks it by draining nodes
// that have stayed IDLE.
type ClusterState struct {
	// Version grows with every change the GCS sees; equal versions mean
	// nothing changed in between.
	Version int64
	// Nodes holds alive nodes and the dead nodes the GCS still remembers
	// (Status DEAD): skip those when counting capacity.
	Nodes []Node
	// Pending is tasks and actors waiting for resources, one entry per
	// distinct shape with the number waiting.
	Pending []RequestCount
	// Gangs is placement groups waiting to be placed, one per group.
	Gangs []Gang
	// Constraints is the floor set by ray.autoscaler.sdk.request_resources:
	// capacity the user wants available whether or not work waits for it.
	// It persists until the next request_resources call replaces it.
	Constraints []RequestCount
}

// Node is one Ray node (raylet) as the GCS sees it.
type Node struct {
	// ID is the node id in hex, as Ray prints it and as Drain takes it.
	ID string
	IP string
	// Status says whether the node is busy, idle, draining or dead.
	Status NodeStatus
	// IdleFor is how long the node has had nothing running; zero unless
	// Status is IDLE.
	IdleFor time.Duration
	// Total and Available are the node's logical resources ("CPU", "GPU",
	// "memory", "object_store_memory", "node:<ip>", custom names). Never nil.
	Total, Available map[string]float64
	// Labels merges the node's labels and Ray's dynamic labels (the latter,
	// e.g. "_PG_<group id>" for each placement group with a bundle here, win
	// on a clash, as in Ray's own autoscaler). Never nil.
	Labels map[string]string
	// Activity is Ray's human-readable reasons the node is busy (e.g.
	// "Resource: GPU currently in use."); empty when idle.
	Activity []string
}

// headResource is the resource Ray gives only the head node; Ray's own
// autoscaler finds the head the same way.
const headResource = "node:__internal_head__"

// IsHead reports whether n is the head node (false once it is DEAD: the GCS
// keeps no resources for dead nodes). An autoscaler must never drain it: Ray
// 2.60 accepts an idle-termination drain of an idle head, whose raylet then
// exits, leaving a GCS with no node to run anything.
func (n Node) IsHead() bool { return n.Total[headResource] > 0 }

// NodeStatus is the GCS's view of a node's life. Values are Ray's enum names.
type NodeStatus string

const (
	// NodeRunning: alive with work (tasks, actors, bundles, objects) on it.
	NodeRunning NodeStatus = "RUNNING"
	// NodeIdle: alive with nothing on it for Node.IdleFor.
	NodeIdle NodeStatus = "IDLE"
	// NodeDraining: alive but accepted a drain; Ray schedules nothing new there.
	NodeDraining NodeStatus = "DRAINING"
	// NodeDead: gone; the GCS keeps a bounded number of these.
	NodeDead NodeStatus = "DEAD"
	// NodeUnknown: unset, or a status newer than this client knows.
	NodeUnknown NodeStatus = "UNKNOWN"
)

// Alive reports whether the node still runs a raylet, draining or not.
func (s NodeStatus) Alive() bool {
	return s == NodeRunning || s == NodeIdle || s == NodeDraining
}

// Request is one shape of resources that must fit on a single node.
type Request struct {
	// Resources is the shape, e.g. {"GPU": 1}. Never nil.
	Resources map[string]float64
	// AntiAffinity: the request must not land on a node that has any of
	// these labels (STRICT_SPREAD groups use "_PG_<group id>"), so each
	// such request needs a node of its own.
	AntiAffinity []Label
	// Affinity: the request must land on a node that has these labels.
	Affinity []Label
	// Selectors are the request's label selectors (a task's or actor's
	// label_selector, request_resources' per-bundle ones) in Ray's order of
	// preference: the first is wanted, the others are fallbacks, and a node
	// that satisfies any of them will do. None: any node.
	Selectors []LabelSelector
}

// LabelSelector is one label selector: a node satisfies it when it
// satisfies every constraint (so an empty one, which Ray 2.60 sends with
// every plain task, is satisfied by any node).
type LabelSelector struct{ Constraints []LabelConstraint }

// LabelConstraint says a node's label Key must (In) or must not (NotIn)
// have one of Values. A node without the label satisfies only NotIn.
type LabelConstraint struct {
	Key    string
	Op     LabelOp
	Values []string
}

// LabelOp is a label constraint's operator. Values are Ray's
// LabelSelectorOperator numbers.
type LabelOp int32

const (
	// LabelIn: the label has one of the values ("key in (a,b)", "key=a").
	LabelIn LabelOp = 1 // ray.rpc.LabelSelectorOperator.LABEL_OPERATOR_IN
	// LabelNotIn: the label is missing or has none of the values ("!a").
	LabelNotIn LabelOp = 2 // ray.rpc.LabelSelectorOperator.LABEL_OPERATOR_NOT_IN
)

// Satisfied reports whether a node with labels satisfies any of sels, as
// Ray 2.60's autoscaler decides it (scheduler.py,
// _satisfies_label_constraints): an operator it does not know fails.
func Satisfied(sels []LabelSelector, labels map[string]string) bool {
	if len(sels) == 0 {
		return true
	}
	for _, s := range sels {
		if s.satisfiedBy(labels) {
			return true
		}
	}
	return false
}

func (s LabelSelector) satisfiedBy(labels map[string]string) bool {
	for _, c := range s.Constraints {
		v, ok := labels[c.Key]
		in := ok && slices.Contains(c.Values, v)
		switch {
		case c.Op == LabelIn && in, c.Op == LabelNotIn && !in:
		default:
			return false
		}
	}
	return true
}

// String is the selector as Ray's label_selector writes it, constraints
// joined by ",": "key in (a,b)", "key!=a"; "" for an empty one.
func (s LabelSelector) String() string {
	parts := make([]string, len(s.Constraints))
	for i, c := range s.Constraints {
		op := " in "
		if c.Op == LabelNotIn {
			op = " !in "
		}
		parts[i] = c.Key + op + "(" + strings.Join(c.Values, ",") + ")"
	}
	return strings.Join(parts, ",")
}

// Label is a node label name and value a Request is (anti-)affine to. Ray
// leaves Value empty when only the name matters.
type Label struct{ Name, Value string }

// RequestCount is Count requests of one shape.
type RequestCount struct {
	Request Request
	Count   int
}

// Gang is a placement group waiting to be placed: all of its bundles are
// placed together or none is.
type Gang struct {
	// ID is the placement group id in hex; "" when Ray did not say.
	ID string
	// Bundles are the group's bundles, in order.
	Bundles []Request
	// Strategy says how the bundles must spread across nodes.
	Strategy Strategy
	// State is the group's state as Ray names it (PENDING, RESCHEDULING);
	// "" when Ray did not say.
	State string
	// Details is Ray's raw description, "<group id>:<STRATEGY>|<STATE>"
	// in Ray 2.60, which ID, Strategy and State are read from.
	Details string
}

// Strategy is a placement group's strategy. Values are Ray's names.
type Strategy string

const (
	// StrategyPack: bundles on as few nodes as possible, spilling over.
	StrategyPack Strategy = "PACK"
	// StrategySpread: bundles on as many nodes as possible, sharing if need be.
	StrategySpread Strategy = "SPREAD"
	// StrategyStrictPack: all bundles on one node.
	StrategyStrictPack Strategy = "STRICT_PACK"
	// StrategyStrictSpread: every bundle on a node of its own.
	StrategyStrictSpread Strategy = "STRICT_SPREAD"
	// StrategyUnknown: Ray gave no strategy this client can read.
	StrategyUnknown Strategy = ""
)

// DrainReason tells Ray why a node is drained, which decides whether the
// node may refuse. Values are Ray's DrainNodeReason numbers.
type DrainReason int32

const (
	// DrainIdleTermination: the node is idle and no longer needed. The node
	// refuses when it is not idle any more, so work that just landed on it
	// is never lost.
	DrainIdleTermination DrainReason = 1 // ray.rpc.autoscaler.DrainNodeReason.DRAIN_NODE_REASON_IDLE_TERMINATION
	// DrainPreemption: the node goes away by the deadline whatever runs on
	// it (e.g. its SLURM job ends). Never refused; Ray moves work off it.
	DrainPreemption DrainReason = 2 // ray.rpc.autoscaler.DrainNodeReason.DRAIN_NODE_REASON_PREEMPTION
)

func (r DrainReason) String() string {
	switch r {
	case DrainIdleTermination:
		return "IDLE_TERMINATION"
	case DrainPreemption:
		return "PREEMPTION"
	}
	return "DrainReason(" + strconv.Itoa(int(r)) + ")"
}
