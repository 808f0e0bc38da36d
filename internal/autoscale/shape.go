package autoscale

import (
	"fmt"
	"sort"
	"strings"
)

// Shape is a bundle of Ray resources: resource name → amount, as Ray names
// them ("GPU", "CPU", "memory", custom names intact).
type Shape map[string]float64

// Resources a new worker job provides. memory and object_store_memory are
// not planned with: Ray derives them from the job's memory, and the
// scheduler's own limits hold the job to it.
const (
	resGPU = "GPU"
	resCPU = "CPU"
)

var ignored = map[string]bool{"memory": true, "object_store_memory": true}

// String is the shape as `status` shows it: "GPU:1 CPU:1", names sorted.
func (s Shape) String() string {
	keys := make([]string, 0, len(s))
	for k, v := range s {
		if v > 0 {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		// GPU first, then CPU, then the rest by name: what users look for.
		ri, rj := rank(keys[i]), rank(keys[j])
		if ri != rj {
			return ri < rj
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + ":" + trimFloat(s[k])
	}
	return strings.Join(parts, " ")
}

func rank(k string) int {
	switch k {
	case resGPU:
		return 0
	case resCPU:
		return 1
	}
	return 2
}

func trimFloat(v float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.3f", v), "0"), ".")
}

// NodeShape is what one worker job adds to the cluster.
type NodeShape struct {
	GPUs float64
	// CPUs is 0 when not known yet: CPUs then do not limit the plan.
	CPUs float64
	// Custom are the Ray resources a worker type's nodes advertise (its
	// resources:); none for a cluster without types.
	Custom Shape
}

func (n NodeShape) capacity() Shape {
	c := Shape{resGPU: n.GPUs}
	if n.CPUs > 0 {
		c[resCPU] = n.CPUs
	}
	for k, v := range n.Custom {
		c[k] = v
	}
	return c
}

// infeasibility says why no worker job can ever hold s, or "".
func (n NodeShape) infeasibility(s Shape) string {
	for k, v := range s {
		if v <= 0 || ignored[k] {
			continue
		}
		switch k {
		case resGPU:
			if v > n.GPUs {
				return fmt.Sprintf("needs %s GPUs, a worker job has %s", trimFloat(v), trimFloat(n.GPUs))
			}
		case resCPU:
			if n.CPUs > 0 && v > n.CPUs {
				return fmt.Sprintf("needs %s CPUs, a worker job has %s", trimFloat(v), trimFloat(n.CPUs))
			}
		default:
			// Another job's sraybatch_job_*, node:<ip>, a user's own resource:
			// no new job advertises it, unless its type does.
			if n.Custom[k] < v {
				return fmt.Sprintf("needs resource %q, which no new worker job has", k)
			}
		}
	}
	return ""
}

// gpuFree reports whether s asks for no GPU.
func (s Shape) gpuFree() bool { return s[resGPU] <= 0 }

// fits reports whether s fits in free.
func fits(s, free Shape) bool {
	for k, v := range s {
		if v <= 0 || ignored[k] {
			continue
		}
		if _, limited := free[k]; !limited && k == resCPU {
			continue // CPUs unknown: not limiting
		}
		if free[k]+1e-9 < v {
			return false
		}
	}
	return true
}

func take(free, s Shape) {
	for k, v := range s {
		if _, ok := free[k]; ok {
			free[k] -= v
		}
	}
}

// size orders bundles for first-fit decreasing: GPUs, then CPUs.
func size(s Shape) float64 { return s[resGPU]*1e6 + s[resCPU] }
