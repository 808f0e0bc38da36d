// Package sharedstate is testdata/shared-state.json for Go's tests: the
// state a Go process and a Python process both read or write, defined once
// in that file. Each Go test that checks its own constants against the file
// reads it through Load; pytest reads the same file
// (trainloop/python/tests/test_shared_state.py), so a change on one side
// breaks a test on the other.
package sharedstate

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// File is the whole fixture.
type File struct {
	JobResourcePrefix string            `json:"job_resource_prefix"`
	JobResourceCases  []JobResourceCase `json:"job_resource_cases"`
	ClusterDir        map[string]string `json:"cluster_dir"`
	Env               map[string]string `json:"env"`
	NodeRecord        NodeRecord        `json:"node_record"`
	// Events are the file events' names and the fields each requires.
	Events map[string][]string `json:"events"`
	// TimelineEvents are the events the timeline derives from state files
	// (never written to an event file), with the fields each requires.
	TimelineEvents map[string][]string `json:"timeline_events"`
	// OptionalFields are the fields an event may carry besides its
	// required ones, for every event that has any (file and timeline).
	OptionalFields map[string][]string `json:"optional_fields"`
	// ClusterEventLines are the head's events as Go writes them.
	ClusterEventLines []string    `json:"cluster_event_lines"`
	EventStream       EventStream `json:"event_stream"`
}

// JobResourceCase is a Ray node's resources and the job they name (nil: none).
type JobResourceCase struct {
	Resources map[string]float64 `json:"resources"`
	Job       *string            `json:"job"`
}

// NodeRecord is what Python reads of a job's record.
type NodeRecord struct {
	PhaseField     string   `json:"phase_field"`
	TimeLimitField string   `json:"time_limit_field"`
	Phases         []string `json:"phases"`
	DrainingPhase  string   `json:"draining_phase"`
	Example        struct {
		Text string  `json:"text"`
		Unix float64 `json:"unix"`
	} `json:"time_limit_at_example"`
}

// EventStream is a driver's event file and the progress it folds to.
type EventStream struct {
	Lines    []string `json:"lines"`
	Progress struct {
		Actors   map[string]int `json:"actors"`
		LastStep *int           `json:"last_step"`
	} `json:"progress"`
}

// Name is the fixture's file name under the module's testdata/.
const Name = "shared-state.json"

// Load reads the fixture from the module's testdata/, found from the test's
// working directory (its package's) up to the module's root.
func Load(t testing.TB) File {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("no go.mod above the test's directory, so no testdata/%s", Name)
		}
		dir = parent
	}
	b, err := os.ReadFile(filepath.Join(dir, "testdata", Name))
	if err != nil {
		t.Fatal(err)
	}
	var f File
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("testdata/%s: %v", Name, err)
	}
	return f
}
