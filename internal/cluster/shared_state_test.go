package cluster

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/sharedstate"
)

// readSharedState is testdata/shared-state.json: the state Go and Python
// both read or write, defined once. pytest checks the Python side against
// the same file (trainloop/python/tests/test_shared_state.py).
func readSharedState(t *testing.T) sharedstate.File { return sharedstate.Load(t) }

func TestSharedStateJobResource(t *testing.T) {
	t.Parallel()
	s := readSharedState(t)
	if s.JobResourcePrefix != JobResourcePrefix || JobResource("7_0") != s.JobResourcePrefix+"7_0" {
		t.Errorf("prefix %q, Go's %q", s.JobResourcePrefix, JobResourcePrefix)
	}
	for _, c := range s.JobResourceCases {
		got, ok := JobOfResources(c.Resources)
		if (c.Job == nil) == ok || (c.Job != nil && got != *c.Job) {
			t.Errorf("JobOfResources(%v) = %q, %v; the fixture says %v", c.Resources, got, ok, c.Job)
		}
	}
}

func TestSharedStateLayout(t *testing.T) {
	t.Parallel()
	s := readSharedState(t)
	d := Dir{Path: "/c"}
	got := map[string]string{
		"spec": d.file(specFile), "token": d.TokenPath(), "setup": d.SetupPath(), "head": d.file(headFile),
		"membership": d.file(membershipFile), "down": d.file(downFile), "node_record": d.nodePath("{job}"),
		"events": d.EventsPath("{job}"), "python": d.PythonPath(),
		"cluster_events": d.ClusterEventsPath(), "autoscaler_events": d.AutoscalerEventsPath(),
	}
	if len(got) != len(s.ClusterDir) {
		t.Errorf("the fixture names %d files, Go %d", len(s.ClusterDir), len(got))
	}
	for name, rel := range s.ClusterDir {
		if got[name] != "/c/"+rel {
			t.Errorf("%s: Go's path %q, the fixture's %q", name, got[name], rel)
		}
	}
	env := map[string]string{"cluster_dir": EnvClusterDir, "events": EnvEvents, "job": EnvJob, "head_job": EnvHeadJob,
		"generation": EnvGeneration, "resumed": EnvResumed}
	for name, v := range s.Env {
		if env[name] != v {
			t.Errorf("env %s: Go's %q, the fixture's %q", name, env[name], v)
		}
	}
}

func TestSharedStateNodeRecord(t *testing.T) {
	t.Parallel()
	s := readSharedState(t)
	phases := []string{string(PhaseStarting), string(PhaseRunning), string(PhaseDraining), string(PhaseEnded), string(PhaseFailed)}
	if !slices.Equal(phases, s.NodeRecord.Phases) || string(PhaseDraining) != s.NodeRecord.DrainingPhase {
		t.Errorf("Go's phases %v, the fixture's %v (draining %q)", phases, s.NodeRecord.Phases, s.NodeRecord.DrainingPhase)
	}
	at := time.Unix(1, 0).UTC()
	b, err := json.Marshal(NodeRecord{Phase: PhaseDraining, TimeLimitAt: &at})
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{s.NodeRecord.PhaseField, s.NodeRecord.TimeLimitField} {
		if _, ok := fields[f]; !ok {
			t.Errorf("a node record has no field %q: %s", f, b)
		}
	}
	// Go writes time_limit_at as RFC 3339 with nanoseconds; Python parses it.
	var parsed time.Time
	if err := json.Unmarshal([]byte(`"`+s.NodeRecord.Example.Text+`"`), &parsed); err != nil {
		t.Fatal(err)
	}
	if unix := float64(parsed.UnixNano()) / 1e9; math.Abs(unix-s.NodeRecord.Example.Unix) > 1e-6 {
		t.Errorf("%s is %f, the fixture says %f", s.NodeRecord.Example.Text, unix, s.NodeRecord.Example.Unix)
	}
	if b, _ := json.Marshal(parsed); !strings.Contains(string(b), s.NodeRecord.Example.Text) {
		t.Errorf("Go writes %s, the fixture's example is %s", b, s.NodeRecord.Example.Text)
	}
}
