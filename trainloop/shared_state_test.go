package trainloop

import (
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/sharedstate"
)

// foldLines is the progress of a driver whose event file holds lines.
func foldLines(t *testing.T, lines ...string) cluster.TrainProgress {
	t.Helper()
	path := filepath.Join(t.TempDir(), "driver.jsonl")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := ReadProgress(path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSharedEventStream checks the Go reader against testdata/shared-state.json,
// which pytest checks the Python writer against: the fixture's stream folds
// to the fixture's progress. (The events' names and fields are checked
// once, in internal/events.)
func TestSharedEventStream(t *testing.T) {
	t.Parallel()
	fx := sharedstate.Load(t).EventStream
	p := foldLines(t, fx.Lines...)
	if !maps.Equal(p.Actors, fx.Progress.Actors) || p.LastStep == nil || fx.Progress.LastStep == nil || *p.LastStep != *fx.Progress.LastStep {
		t.Errorf("progress = %v, step %v; the fixture says %v, step %v", p.Actors, p.LastStep, fx.Progress.Actors, fx.Progress.LastStep)
	}
}
