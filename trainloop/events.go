package trainloop

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
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
// missing file is no progress yet; a line without its newline (the driver
// is writing it) waits for the next read.
func ReadProgress(path string) (cluster.TrainProgress, error) {
	return NewProgress(path).Read()
}

// Progress folds one driver's event file into its pool's state, reading
// only what was appended since its last Read: the head observes a run every
// few seconds for hours, and must not reread every step each time.
type Progress struct {
	path     string
	offset   int64             // after the last whole line folded
	actorJob map[string]string // live actors and the job each runs on
	p        cluster.TrainProgress
}

// NewProgress is the progress of the driver whose events are at path.
func NewProgress(path string) *Progress {
	pr := &Progress{path: path}
	pr.reset()
	return pr
}

func (pr *Progress) reset() {
	pr.offset, pr.actorJob, pr.p = 0, map[string]string{}, cluster.TrainProgress{}
}

// Read folds what was appended and returns the progress so far. A file
// shorter than what was read was replaced: it is folded again from its start.
func (pr *Progress) Read() (cluster.TrainProgress, error) {
	f, err := os.Open(pr.path)
	if errors.Is(err, fs.ErrNotExist) {
		return pr.snapshot(), nil
	}
	if err != nil {
		return pr.snapshot(), fmt.Errorf("read events: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() < pr.offset {
		pr.reset()
	}
	if _, err := f.Seek(pr.offset, io.SeekStart); err != nil {
		return pr.snapshot(), fmt.Errorf("read events %s: %w", pr.path, err)
	}
	err = pr.fold(bufio.NewReaderSize(f, 64<<10))
	return pr.snapshot(), err
}

// fold reads whole lines from r and folds each; unparsable lines are
// skipped, a last line without its newline is left for the next read.
func (pr *Progress) fold(r *bufio.Reader) error {
	for {
		line, err := r.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read events %s: %w", pr.path, err)
		}
		pr.offset += int64(len(line))
		var ev Event
		if json.Unmarshal(line, &ev) != nil {
			continue
		}
		pr.foldEvent(ev)
	}
}

func (pr *Progress) foldEvent(ev Event) {
	p := &pr.p
	switch ev.Event {
	case EventActorSpawned:
		pr.actorJob[ev.Actor] = ev.Job
	case EventActorLost:
		delete(pr.actorJob, ev.Actor)
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

// snapshot is the progress so far, sharing nothing with pr.
func (pr *Progress) snapshot() cluster.TrainProgress {
	p := pr.p
	p.Actors = map[string]int{}
	for _, job := range pr.actorJob {
		p.Actors[job]++
	}
	if pr.p.Excluded != nil {
		p.Excluded = maps.Clone(pr.p.Excluded)
	} else {
		p.Excluded = map[string]string{}
	}
	if pr.p.LastStep != nil {
		step := *pr.p.LastStep
		p.LastStep = &step
	}
	return p
}

// foldEvents folds a whole stream (a test's fixture) into p.
func foldEvents(r io.Reader, p *cluster.TrainProgress) error {
	pr := NewProgress("(stream)")
	err := pr.fold(bufio.NewReader(r))
	*p = pr.snapshot()
	return err
}
