package trainloop

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

// TestSharedEventSchema checks the Go reader against testdata/shared-state.json,
// which pytest checks the Python writer against: the event names Go folds
// exist with the fields it reads, and the fixture's stream folds to the
// fixture's progress.
func TestSharedEventSchema(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "shared-state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var fx struct {
		Events      map[string][]string `json:"events"`
		EventStream struct {
			Lines    []string `json:"lines"`
			Progress struct {
				Actors   map[string]int `json:"actors"`
				LastStep *int           `json:"last_step"`
			} `json:"progress"`
		} `json:"event_stream"`
	}
	if err := json.Unmarshal(b, &fx); err != nil {
		t.Fatal(err)
	}
	reads := map[string][]string{
		EventActorSpawned:      {"actor", "job"},
		EventActorLost:         {"actor"},
		EventStepDone:          {"step"},
		EventActorRestarted:    {},
		EventStateSynced:       {},
		EventCheckpointWritten: {},
		EventNodeExcluded:      {"job", "reason"},
	}
	for name, fields := range reads {
		have, ok := fx.Events[name]
		if !ok {
			t.Errorf("Go reads event %q, which the shared schema does not have", name)
		}
		for _, f := range fields {
			if !strings.Contains(","+strings.Join(have, ",")+",", ","+f+",") {
				t.Errorf("Go reads %s.%s, which the shared schema does not require", name, f)
			}
		}
	}
	p := cluster.TrainProgress{Actors: map[string]int{}}
	if err := foldEvents(strings.NewReader(strings.Join(fx.EventStream.Lines, "\n")+"\n"), &p); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(p.Actors, fx.EventStream.Progress.Actors) || p.LastStep == nil || fx.EventStream.Progress.LastStep == nil || *p.LastStep != *fx.EventStream.Progress.LastStep {
		t.Errorf("progress = %v, step %v; the fixture says %v, step %v", p.Actors, p.LastStep, fx.EventStream.Progress.Actors, fx.EventStream.Progress.LastStep)
	}
}
