package cluster

import (
	"fmt"
	"time"
)

// DefaultTypeName names the one implicit worker type of a spec without
// Workers; its nodes advertise it as their node group like any type's.
const DefaultTypeName = "default"

// WorkerType is one kind of worker node: its SLURM allocation, what its
// Ray nodes advertise, and the autoscaler's bounds on it (Ray's
// available_node_types, KubeRay's workerGroupSpecs).
type WorkerType struct {
	Name string `json:"name"`
	// Node is the type's allocation, fully resolved at `up` (the file's
	// type fields over the cluster's), so no reader repeats the merge.
	// Its Time is unused: a worker's limit is the head's time left.
	Node NodeSpec `json:"node"`
	// Setup replaces the cluster's --setup lines on this type's nodes;
	// "": the cluster's. Written to SetupPathOf(Name) at `up`.
	Setup string `json:"setup,omitempty"`
	// Resources and Labels are advertised by the type's Ray nodes, besides
	// Ray's own (and ray.io/node-group = Name).
	Resources map[string]float64 `json:"resources,omitempty"`
	Labels    map[string]string  `json:"labels,omitempty"`
	Min       int                `json:"min,omitempty"`
	// Max bounds the type's worker jobs; 0: the autoscaler's MaxWorkers.
	Max          int `json:"max,omitempty"`
	IdleTimeoutS int `json:"idle_timeout_s,omitempty"`
	// Cost ranks the types when demand could go to several; nil: counted
	// from the allocation (GPUs first, then CPUs).
	Cost *float64 `json:"cost,omitempty"`
}

// IdleTimeout is how long the type's idle nodes stay; 0: the autoscaler's.
func (t WorkerType) IdleTimeout() time.Duration {
	return time.Duration(t.IdleTimeoutS) * time.Second
}

// Types are the cluster's worker types in the file's order; the first is
// the default (grow without --type, the autoscaler). A spec without types
// has one, built from the flags of `up` as before types existed.
func (s Spec) Types() []WorkerType {
	if len(s.Workers) > 0 {
		return s.Workers
	}
	return []WorkerType{{
		Name: DefaultTypeName, Node: s.legacyWorkerNode(),
		Min: s.Autoscale.MinWorkers, Max: s.Autoscale.MaxWorkers, IdleTimeoutS: s.Autoscale.IdleTimeoutS,
	}}
}

// DefaultType is the first worker type.
func (s Spec) DefaultType() WorkerType { return s.Types()[0] }

// Type finds a worker type by name; "" is the default type.
func (s Spec) Type(name string) (WorkerType, error) {
	if name == "" {
		return s.DefaultType(), nil
	}
	names := make([]string, 0, len(s.Types()))
	for _, t := range s.Types() {
		if t.Name == name {
			return t, nil
		}
		names = append(names, t.Name)
	}
	return WorkerType{}, fmt.Errorf("cluster %s has no worker type %q: use one of %v", s.Name, name, names)
}

// ValidateTypeName accepts names that are safe as a script argument, a
// file name and a Ray label value: a cluster name's rules.
func ValidateTypeName(name string) error {
	if !validName(name) {
		return fmt.Errorf("invalid worker type name %q: use 1-40 characters of a-z, 0-9 and '-', starting with a letter or digit", name)
	}
	return nil
}

// CPUsPerGPU is how many CPUs a GPU node advertises to Ray per GPU when the
// CPU trap is closed (RayCPUs): what a GPU task or actor asks by default.
const CPUsPerGPU = 1

// RayCPUs is how many of a node's cpus it advertises to Ray (`ray start
// --num-cpus`) when it has gpus GPUs. Ray's scheduler fills any free CPU
// with CPU tasks, GPU nodes first when they have room, so on a cluster
// with a CPU type (gpus: 0) CPU work would squat on GPU nodes (GPU-hours
// burnt on CPU work, GPU actors then waiting for a CPU) and its demand
// would never show for the CPU type to serve. A GPU node there, head
// included, advertises only CPUsPerGPU per GPU. --cpu-only-demand, which
// lets CPU work use GPU nodes, lifts the cap.
func (s Spec) RayCPUs(gpus, cpus int) int {
	if gpus <= 0 || s.Autoscale.CPUOnlyDemand || !s.hasCPUType() {
		return cpus
	}
	return min(cpus, gpus*CPUsPerGPU)
}

// hasCPUType reports whether a worker type has no GPUs.
func (s Spec) hasCPUType() bool {
	for _, t := range s.Workers {
		if t.Node.GPUs == 0 {
			return true
		}
	}
	return false
}

// MinWorkers is how many worker jobs the autoscaler keeps (what `up
// --wait` waits for): the types' min summed in a cluster with types (each
// type keeps its own), else --min-workers.
func (s Spec) MinWorkers() int {
	if len(s.Workers) == 0 {
		return s.Autoscale.MinWorkers
	}
	n := 0
	for _, t := range s.Workers {
		n += t.Min
	}
	return n
}
