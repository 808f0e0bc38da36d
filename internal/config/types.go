package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

// TypeDef is one worker type as a file gives it; a nil field is left out,
// and the type inherits it (Resolve).
type TypeDef struct {
	Name       string
	Line       int
	Source     Source
	Partition  *string
	GPUs       *int
	CPUs       *int
	Mem        *string
	Constraint *string
	Gres       *string
	SbatchArgs []string
	Setup      string
	Resources  map[string]float64
	Labels     map[string]string
	Min, Max   int
	// IdleTimeout nil: the autoscaler's --idle-timeout.
	IdleTimeout *time.Duration
	Cost        *float64
}

// typeKeys are a type's keys, in the order errors list them.
var typeKeys = []string{"partition", "gpus", "cpus", "mem", "constraint", "gres", "sbatch_args", "setup",
	"resources", "labels", "min", "max", "idle_timeout", "cost"}

// types decodes `workers:`, a mapping of type name to type, in order.
func (d decoder) types(m *yaml.Node) ([]TypeDef, error) {
	if m.Kind != yaml.MappingNode {
		return nil, d.errorf(m, "%s: expected a mapping of worker types (name: {partition: ..., gpus: ...})", TypesKey)
	}
	types := []TypeDef{}
	seen := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if err := cluster.ValidateTypeName(k.Value); err != nil {
			return nil, d.errorf(k, "%v", err)
		}
		if seen[k.Value] {
			return nil, d.errorf(k, "worker type %s is given twice", k.Value)
		}
		seen[k.Value] = true
		t := TypeDef{Name: k.Value, Line: k.Line, Source: Source{Origin: d.layer.Origin, Path: d.layer.Path, Line: k.Line}}
		if v.Kind != yaml.MappingNode {
			return nil, d.errorf(v, "%s.%s: expected a mapping of its settings (%s)", TypesKey, k.Value, strings.Join(typeKeys, ", "))
		}
		for j := 0; j+1 < len(v.Content); j += 2 {
			if err := d.typeField(&t, v.Content[j], v.Content[j+1]); err != nil {
				return nil, err
			}
		}
		types = append(types, t)
	}
	return types, nil
}

// typeField decodes one key of a worker type.
func (d decoder) typeField(t *TypeDef, k, v *yaml.Node) error {
	path := TypesKey + "." + t.Name + "." + k.Value
	strs := map[string]**string{"partition": &t.Partition, "mem": &t.Mem, "constraint": &t.Constraint, "gres": &t.Gres}
	if p, ok := strs[k.Value]; ok {
		s, err := d.typeText(v, path, String)
		*p = &s
		return err
	}
	// gpus and cpus stay nil when left out: the type inherits them.
	counts := map[string]**int{"gpus": &t.GPUs, "cpus": &t.CPUs}
	if p, ok := counts[k.Value]; ok {
		*p = new(int)
		return d.typeCount(v, path, *p)
	}
	switch k.Value {
	case "min":
		return d.typeCount(v, path, &t.Min)
	case "max":
		return d.typeCount(v, path, &t.Max)
	case "setup":
		s, err := d.typeText(v, path, String)
		t.Setup = s
		return err
	case "sbatch_args":
		list, err := d.strings(v, path)
		t.SbatchArgs = append([]string{}, list...) // non-nil: given, even if empty
		return err
	case "idle_timeout":
		s, err := d.typeText(v, path, Duration)
		dur, _ := time.ParseDuration(s)
		t.IdleTimeout = &dur
		return err
	case "cost":
		s, err := d.typeText(v, path, Float)
		f, _ := strconv.ParseFloat(s, 64)
		t.Cost = &f
		return err
	case "resources":
		return d.resources(t, v, path)
	case "labels":
		return d.labels(t, v, path)
	}
	return d.errorf(k, "unknown key %q in worker type %s: use one of %s", k.Value, t.Name, strings.Join(typeKeys, ", "))
}

// typeText is a type's scalar setting checked against kind.
func (d decoder) typeText(v *yaml.Node, path string, kind Kind) (string, error) {
	s, err := scalar(v, kind)
	if err != nil {
		return "", d.errorf(v, "%s: expected %s, got %s", path, kind.expected(), describe(v))
	}
	return s, nil
}

// typeCount is a type's non-negative integer setting.
func (d decoder) typeCount(v *yaml.Node, path string, p *int) error {
	s, err := d.typeText(v, path, Int)
	if err != nil {
		return err
	}
	*p, _ = strconv.Atoi(s)
	if *p < 0 {
		return d.errorf(v, "%s: expected a non-negative integer, got %d", path, *p)
	}
	return nil
}

// reservedResources are Ray's own resources (from the allocation) and
// sraybatch's job resources; a type may not advertise them.
var reservedResources = []string{"CPU", "GPU", "memory", "object_store_memory"}

func (d decoder) resources(t *TypeDef, v *yaml.Node, path string) error {
	t.Resources = map[string]float64{}
	return d.pairs(v, path, "Ray resource to amount, e.g. {h100: 8}", func(k, n *yaml.Node) error {
		s, err := scalar(n, Float)
		f, _ := strconv.ParseFloat(s, 64)
		if err != nil || f <= 0 {
			return d.errorf(n, "%s.%s: expected a positive number, got %s", path, k.Value, describe(n))
		}
		for _, r := range reservedResources {
			if k.Value == r {
				return d.errorf(k, "%s: %s is Ray's own resource, set by the allocation: use gpus, cpus or mem", path, r)
			}
		}
		if strings.HasPrefix(k.Value, cluster.JobResourcePrefix) || !labelPart(k.Value) {
			return d.errorf(k, "%s: invalid resource name %q: use letters, digits and _-./ , not starting with %s", path, k.Value, cluster.JobResourcePrefix)
		}
		t.Resources[k.Value] = f
		return nil
	})
}

func (d decoder) labels(t *TypeDef, v *yaml.Node, path string) error {
	t.Labels = map[string]string{}
	return d.pairs(v, path, "label to value, e.g. {disk: nvme}", func(k, n *yaml.Node) error {
		s, err := scalar(n, String)
		if err != nil || !labelPart(s) {
			return d.errorf(n, "%s.%s: expected a label value of letters, digits and _-./, got %s", path, k.Value, describe(n))
		}
		if !labelPart(k.Value) || strings.HasPrefix(k.Value, "ray.io/") || strings.HasPrefix(k.Value, "sraybatch-") {
			return d.errorf(k, "%s: invalid label %q: use letters, digits and _-./, not under ray.io/ or sraybatch- (Ray's and sraybatch's own)", path, k.Value)
		}
		t.Labels[k.Value] = s
		return nil
	})
}

// pairs calls each for every key and value of the mapping v (of what).
func (d decoder) pairs(v *yaml.Node, path, what string, each func(k, n *yaml.Node) error) error {
	if v.Kind != yaml.MappingNode {
		return d.errorf(v, "%s: expected a mapping of %s", path, what)
	}
	for i := 0; i+1 < len(v.Content); i += 2 {
		if err := each(v.Content[i], v.Content[i+1]); err != nil {
			return err
		}
	}
	return nil
}

// labelPart accepts what `ray start --labels k=v,k=v` and --resources can
// carry unambiguously: no separator, quote or space.
func labelPart(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, c := range s {
		ok := c == '_' || c == '-' || c == '.' || c == '/' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		if !ok {
			return false
		}
	}
	return true
}

// Resolve turns the file's types into the spec's, each with its whole
// allocation: what a type leaves out it inherits from the head (after the
// flags), its partition from workerPartition first, and account and QOS
// always from the cluster (a flag cannot name one type, so a type's own
// value wins over a flag). A type with a GRES and no gpus gets the GRES's
// count.
func Resolve(defs []TypeDef, head cluster.NodeSpec, workerPartition string) ([]cluster.WorkerType, error) {
	types := make([]cluster.WorkerType, 0, len(defs))
	for _, d := range defs {
		n := head
		n.Time, n.Gres = "", ""
		if workerPartition != "" {
			n.Partition = workerPartition
		}
		set(&n.Partition, d.Partition)
		set(&n.Mem, d.Mem)
		set(&n.Constraint, d.Constraint)
		set(&n.Gres, d.Gres)
		set(&n.CPUs, d.CPUs)
		if d.SbatchArgs != nil {
			n.SbatchArgs = d.SbatchArgs
		}
		gpus, err := typeGPUs(d, head.GPUs)
		if err != nil {
			return nil, &Error{Path: d.Source.Path, Line: d.Line, Msg: err.Error()}
		}
		n.GPUs = gpus
		if d.Max > 0 && d.Min > d.Max {
			return nil, &Error{Path: d.Source.Path, Line: d.Line, Msg: fmt.Sprintf("worker type %s: min %d is more than max %d", d.Name, d.Min, d.Max)}
		}
		t := cluster.WorkerType{Name: d.Name, Node: n, Setup: d.Setup, Resources: d.Resources, Labels: d.Labels, Min: d.Min, Max: d.Max, Cost: d.Cost}
		if d.IdleTimeout != nil {
			t.IdleTimeoutS = int(*d.IdleTimeout / time.Second)
		}
		types = append(types, t)
	}
	return types, nil
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// typeGPUs is a type's GPUs: its own, else its GRES's count, else the head's.
func typeGPUs(d TypeDef, head int) (int, error) {
	if d.Gres == nil {
		if d.GPUs != nil {
			return *d.GPUs, nil
		}
		return head, nil
	}
	parts := strings.Split(*d.Gres, ":")
	count, err := strconv.Atoi(parts[len(parts)-1])
	if len(parts) < 2 || len(parts) > 3 || parts[0] != "gpu" || err != nil || count < 0 {
		return 0, fmt.Errorf("worker type %s: gres %q: expected gpu[:TYPE]:COUNT, e.g. gpu:h100:8 (other GRES go in sbatch_args)", d.Name, *d.Gres)
	}
	if d.GPUs != nil && *d.GPUs != count {
		return 0, fmt.Errorf("worker type %s: gpus %d differs from the %d of gres %s: give one of them", d.Name, *d.GPUs, count, *d.Gres)
	}
	return count, nil
}
