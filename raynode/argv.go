package raynode

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// StartParams are the options of one `ray start`. Params become `--key=value`
// in sorted key order, so the same node always gets the same argv (kuberay's
// convertParamMap); --block is always added because the supervisor owns the
// node's lifetime.
type StartParams struct {
	Head bool
	// Flags are options without a value ("disable-usage-stats").
	Flags     []string
	Params    map[string]string
	Resources map[string]float64
	Labels    map[string]string
	// NodeGroup is the worker type; Ray reads it from RAY_NODE_TYPE_NAME
	// (not a flag) and labels the node ray.io/node-group with it, as
	// KubeRay does per worker group. Ray refuses user labels under ray.io/,
	// so this is the only way to set that one.
	NodeGroup string
}

// nodeTypeEnv is Ray's ray._raylet.NODE_TYPE_NAME_ENV (Ray 2.60's
// resource_and_label_spec.py maps it to RAY_NODE_GROUP_KEY).
const nodeTypeEnv = "RAY_NODE_TYPE_NAME"

// Env is the environment `ray start` needs besides its argv, sorted.
func (p StartParams) Env() []string {
	if p.NodeGroup == "" {
		return nil
	}
	return []string{nodeTypeEnv + "=" + p.NodeGroup}
}

// Argv builds the argv after the ray executable.
func (p StartParams) Argv() []string {
	argv := []string{"start", "--block"}
	if p.Head {
		argv = append(argv, "--head")
	}
	params := map[string]string{}
	for k, v := range p.Params {
		params[k] = v
	}
	if len(p.Resources) > 0 {
		b, _ := json.Marshal(p.Resources) // encoding/json sorts map keys
		params["resources"] = string(b)
	}
	if len(p.Labels) > 0 {
		keys := slices.Sorted(maps.Keys(p.Labels))
		pairs := make([]string, len(keys))
		for i, k := range keys {
			pairs[i] = k + "=" + p.Labels[k]
		}
		params["labels"] = strings.Join(pairs, ",")
	}
	flags := append([]string(nil), p.Flags...)
	sort.Strings(flags)
	for _, f := range flags {
		argv = append(argv, "--"+f)
	}
	for _, k := range slices.Sorted(maps.Keys(params)) {
		argv = append(argv, "--"+k+"="+params[k])
	}
	return argv
}

// Version is a Ray release number.
type Version struct{ Major, Minor, Patch int }

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// AtLeast compares release numbers.
func (v Version) AtLeast(o Version) bool {
	if v.Major != o.Major {
		return v.Major > o.Major
	}
	if v.Minor != o.Minor {
		return v.Minor > o.Minor
	}
	return v.Patch >= o.Patch
}

// MinAuthVersion is the first Ray with token authentication.
var MinAuthVersion = Version{2, 52, 0}

// ParseRayVersion reads `ray --version` output ("ray, version 2.60.0").
func ParseRayVersion(out string) (Version, error) {
	fields := strings.Fields(strings.TrimSpace(out))
	if len(fields) == 0 {
		return Version{}, fmt.Errorf("empty `ray --version` output")
	}
	s := fields[len(fields)-1]
	parts := strings.SplitN(s, ".", 3)
	var v Version
	nums := []*int{&v.Major, &v.Minor, &v.Patch}
	for i, p := range parts {
		// keep the leading digits: "0rc1" -> 0
		end := 0
		for end < len(p) && p[end] >= '0' && p[end] <= '9' {
			end++
		}
		n, err := strconv.Atoi(p[:end])
		if err != nil {
			return Version{}, fmt.Errorf("unrecognised `ray --version` output %q", strings.TrimSpace(out))
		}
		*nums[i] = n
	}
	if len(parts) < 2 {
		return Version{}, fmt.Errorf("unrecognised `ray --version` output %q", strings.TrimSpace(out))
	}
	return v, nil
}
