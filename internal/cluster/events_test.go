package cluster

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The head's events, as Go writes them, are the lines of the shared fixture
// that pytest validates (test_cluster_events_validate), field for field.
func TestClusterEventsMatchSharedSchema(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "shared-state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var fx struct {
		Events map[string][]string `json:"events"`
		Lines  []string            `json:"cluster_event_lines"`
	}
	if err := json.Unmarshal(b, &fx); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cluster.jsonl")
	if err := os.WriteFile(path, []byte(strings.Join(fx.Lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	events, err := ReadEvents(path)
	if err != nil || len(events) != len(fx.Lines) {
		t.Fatalf("ReadEvents: %d events, %v; want %d", len(events), err, len(fx.Lines))
	}
	for i, e := range events {
		var v any
		switch e.Name {
		case EventJobState:
			v = &JobStateEvent{}
		case EventClusterSample:
			v = &ClusterSampleEvent{}
		default:
			t.Fatalf("line %d: event %q is no cluster event", i, e.Name)
		}
		if err := e.Decode(v); err != nil {
			t.Fatal(err)
		}
		// Go writes back exactly the fixture's fields.
		again, _ := json.Marshal(v)
		var got map[string]any
		json.Unmarshal(again, &got)
		var keys []string
		for k := range got {
			if k != "ts" && k != "event" {
				keys = append(keys, k)
			}
		}
		want := slices.Clone(fx.Events[e.Name])
		slices.Sort(keys)
		slices.Sort(want)
		if !slices.Equal(keys, want) {
			t.Errorf("Go writes %s with %v; the schema requires %v", e.Name, keys, want)
		}
		var orig map[string]any
		json.Unmarshal([]byte(fx.Lines[i]), &orig)
		for k, ov := range orig {
			if got[k] != ov {
				t.Errorf("line %d field %s: Go %v, fixture %v", i, k, got[k], ov)
			}
		}
	}
	var js JobStateEvent
	events[1].Decode(&js)
	if js.Membership != Waiting || js.Role != RoleWorker || js.GPUs != 2 {
		t.Errorf("decoded %+v", js)
	}
}

func TestAppendAndReadEvents(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "cluster.jsonl")
	at := time.Date(2026, 11, 29, 12, 0, 0, 500_000_000, time.UTC)
	if err := AppendEvent(path, ClusterSampleEvent{TS: TS(at), Event: EventClusterSample, GPUsJoined: 2}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("event file %v, %v; want mode 0600", fi, err)
	}
	// a garbage line and a half-written last line are not events
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("not json\n{\"event\": \"job_state\"}\n{\"ts\": 3, \"event\": \"job_st")
	f.Close()
	events, err := ReadEvents(path)
	if err != nil || len(events) != 1 {
		t.Fatalf("ReadEvents = %v, %v; want the one whole event", events, err)
	}
	if !events[0].Time().Equal(at) || events[0].Name != EventClusterSample {
		t.Errorf("event %v at %v; want %s at %v", events[0].Name, events[0].Time(), EventClusterSample, at)
	}
	if none, err := ReadEvents(filepath.Join(t.TempDir(), "missing.jsonl")); err != nil || none != nil {
		t.Errorf("a missing file: %v, %v", none, err)
	}
}
