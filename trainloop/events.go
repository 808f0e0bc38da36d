package trainloop

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

// Event names the Go side reads; the Python side writes them
// (sraybatch_trainloop/events.py). Both are checked against
// testdata/shared-state.json.
const (
	EventActorSpawned      = "actor_spawned"
	EventActorLost         = "actor_lost"
	EventStepDone          = "step_done"
	EventActorRestarted    = "actor_restarted"
	EventStateSynced       = "state_synced"
	EventCheckpointWritten = "checkpoint_written"
	EventNodeExcluded      = "node_excluded"
)

// Event is one line of a driver's event file; the schema is documented in
// python/sraybatch_trainloop/events.py. Unknown fields are ignored.
type Event struct {
	TS    float64 `json:"ts"`
	Event string  `json:"event"`
	Job   string  `json:"job,omitempty"`
	Actor string  `json:"actor,omitempty"`
	Step  *int    `json:"step,omitempty"`
	// MeanDurationS is a step's mean duration per actor (step_done).
	MeanDurationS *float64 `json:"mean_duration_s,omitempty"`
	// Reason says why a node was left out (node_excluded).
	Reason string `json:"reason,omitempty"`
}

// ReadProgress folds a driver's events into its pool's current state. A
// missing file is no progress yet; a torn last line (the driver is writing)
// is skipped.
func ReadProgress(path string) (cluster.TrainProgress, error) {
	p := cluster.TrainProgress{Actors: map[string]int{}, Excluded: map[string]string{}}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return p, fmt.Errorf("read events: %w", err)
	}
	defer f.Close()
	return p, foldEvents(f, &p)
}

func foldEvents(r io.Reader, p *cluster.TrainProgress) error {
	actorJob := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var ev Event
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue // a line still being written
		}
		switch ev.Event {
		case EventActorSpawned:
			actorJob[ev.Actor] = ev.Job
		case EventActorLost:
			delete(actorJob, ev.Actor)
		case EventStepDone:
			if ev.Step != nil {
				step := *ev.Step
				p.LastStep, p.LastStepSeconds = &step, ev.MeanDurationS
			}
		case EventActorRestarted:
			p.Restarts++
		case EventStateSynced:
			p.StateSyncs++
		case EventCheckpointWritten:
			p.Checkpoints++
		case EventNodeExcluded:
			if p.Excluded == nil {
				p.Excluded = map[string]string{}
			}
			p.Excluded[ev.Job] = ev.Reason
		}
	}
	for _, job := range actorJob {
		p.Actors[job]++
	}
	return sc.Err()
}
