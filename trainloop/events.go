package trainloop

import (
	"maps"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/events"
)

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
	events   *events.Reader
	actorJob map[string]string // live actors and the job each runs on
	p        cluster.TrainProgress
	// crossings places the steps around each generation's publication.
	crossings cluster.StepCrossings
}

// NewProgress is the progress of the driver whose events are at path.
func NewProgress(path string) *Progress {
	pr := &Progress{events: events.NewReader(path)}
	pr.reset()
	return pr
}

func (pr *Progress) reset() {
	pr.actorJob, pr.p = map[string]string{}, cluster.TrainProgress{}
	pr.crossings.Reset()
}

// Published makes generation g's publication at known, so that the steps
// folded from now on are placed around it (cluster.StepCrossings); call it
// before the Read that may hold its steps.
func (pr *Progress) Published(g int, at time.Time) { pr.crossings.Published(g, at) }

// Read folds what was appended and returns the progress so far. A file
// truncated or replaced is folded again from its start.
func (pr *Progress) Read() (cluster.TrainProgress, error) {
	err := pr.events.Fold(pr.reset, pr.fold)
	return pr.snapshot(), err
}

// fold folds one event; one that does not decode into its struct (a line
// malformed past its head, a field of another type) is skipped, as a line
// that is no event is.
func (pr *Progress) fold(e events.Event) {
	p := &pr.p
	switch e.Name {
	case events.NameActorSpawned:
		var ev events.ActorSpawned
		if e.Decode(&ev) == nil {
			pr.actorJob[ev.Actor] = ev.Job
		}
	case events.NameActorLost:
		var ev events.ActorLost
		if e.Decode(&ev) == nil {
			delete(pr.actorJob, ev.Actor)
		}
	case events.NameStepDone:
		var ev events.StepDone
		if e.Decode(&ev) == nil {
			p.LastStep, p.LastStepSeconds = &ev.Step, &ev.MeanDurationS
			pr.crossings.Step(cluster.StepMark{Step: ev.Step, At: ev.Time()})
		}
	case events.NameActorRestarted:
		if e.Decode(&events.ActorRestarted{}) == nil {
			p.Restarts++
		}
	case events.NameStateSynced:
		if e.Decode(&events.StateSynced{}) == nil {
			p.StateSyncs++
		}
	case events.NameCheckpointWritten:
		if e.Decode(&events.CheckpointWritten{}) == nil {
			p.Checkpoints++
		}
	case events.NameNodeExcluded:
		var ev events.NodeExcluded
		if e.Decode(&ev) != nil {
			return
		}
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
	if pr.crossings.Known() {
		p.Crossings = pr.crossings.All()
	}
	if pr.p.LastStep != nil {
		step := *pr.p.LastStep
		p.LastStep = &step
	}
	return p
}
