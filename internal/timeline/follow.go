package timeline

import (
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/events"
)

// Follower reads a cluster's timeline as it grows: each Next returns what
// appeared since the last call. Event files are read on from where the last
// read stopped, and a job's record no longer once it is final; submissions
// and live jobs' records are small and reread.
type Follower struct {
	dir         cluster.Dir
	drainBefore time.Duration
	// files are the event files, each read on from where it stopped.
	files map[string]*events.Reader
	// emitted are the derived events already returned, by name and job:
	// their sources are rewritten, not appended to.
	emitted map[string]bool
	// final are the jobs whose record is final (it never changes again).
	final map[string]bool
	// steps places each driver's steps around the generations'
	// publications, by its job key: its file is read on, not again.
	steps map[string]*cluster.StepCrossings
}

// NewFollower follows the cluster in dir, whose spec this is.
func NewFollower(dir cluster.Dir, spec cluster.Spec) *Follower {
	return &Follower{
		dir: dir, drainBefore: spec.DrainBefore(),
		files: map[string]*events.Reader{}, emitted: map[string]bool{}, final: map[string]bool{},
		steps: map[string]*cluster.StepCrossings{},
	}
}

// Load is the cluster's whole timeline so far, a handover under way
// included with what is known of it.
func Load(dir cluster.Dir, spec cluster.Spec) ([]Event, error) {
	return NewFollower(dir, spec).Last()
}

// Next returns the events that appeared since the last call (all of them on
// the first), ordered by time among themselves. A handover comes once its
// facts are in (handoverSettled), once.
func (f *Follower) Next() ([]Event, error) { return f.next(false) }

// Last is Next for the last read (the cluster has ended, or it is read
// once): a handover whose facts never all came is shown with those known.
func (f *Follower) Last() ([]Event, error) { return f.next(true) }

func (f *Follower) next(last bool) ([]Event, error) {
	s := Sources{DrainBefore: f.drainBefore, Records: map[string]cluster.NodeRecord{}, Drivers: map[string][]events.Event{}}
	var err error
	// The generations first: a driver's steps are placed around their
	// publications as they are read.
	if s.Generations, s.Handovers, err = f.dir.History(); err != nil {
		return nil, err
	}
	if err := f.readJobs(&s); err != nil {
		return nil, err
	}
	if err := f.readCluster(&s); err != nil {
		return nil, err
	}
	var fresh []Event
	for _, ev := range Merge(s) {
		if isDerived(ev.Source) {
			// A head job heads one generation, but a requeued old head may
			// come back as a worker and be promoted again.
			key := ev.Name + "/" + ev.Job + "/" + string(ev.Fields["generation"])
			if f.emitted[key] || (ev.unsettled && !last) {
				continue
			}
			f.emitted[key] = true
		}
		fresh = append(fresh, ev)
	}
	return fresh, nil
}

// readJobs reads the submissions, each driver's new events, and the record
// of every job whose last read record was not final.
func (f *Follower) readJobs(s *Sources) error {
	var err error
	if s.Submissions, err = f.dir.Submissions(); err != nil {
		return err
	}
	for _, sub := range s.Submissions {
		for _, key := range sub.JobKeys() {
			if sub.Role == cluster.RoleDriver {
				var restarted bool
				if s.Drivers[key], restarted, err = f.readFrom(f.dir.EventsPath(key)); err != nil {
					return err
				}
				if c := f.steps[key]; restarted && c != nil {
					c.Reset() // the file was truncated or replaced: its steps are read again
				}
				f.foldSteps(key, s)
			}
			if f.final[key] {
				continue
			}
			rec, ok, err := f.dir.Node(key)
			if err != nil {
				return err
			}
			if ok {
				s.Records[key] = rec
				f.final[key] = rec.Final()
			}
		}
	}
	return nil
}

// readCluster reads the cluster-wide files: the head, its ending, down,
// handovers, and what the cluster and autoscaler event files gained.
func (f *Follower) readCluster(s *Sources) error {
	var err error
	if h, ok, err := f.dir.Head(); err != nil {
		return err
	} else if ok {
		s.Head = &h
	}
	if h, ok, err := f.dir.HeadEnding(); err != nil {
		return err
	} else if ok {
		s.HeadEnding = &h
	}
	if d, ok, err := f.dir.Down(); err != nil {
		return err
	} else if ok {
		s.Down = &d
	}
	if s.Cluster, err = f.read(f.dir.ClusterEventsPath()); err != nil {
		return err
	}
	if s.Autoscaler, err = f.read(f.dir.AutoscalerEventsPath()); err != nil {
		return err
	}
	return nil
}

// read is what was appended to the event file at path since the last
// read; all of a file that was truncated or replaced since.
func (f *Follower) read(path string) ([]events.Event, error) {
	evs, _, err := f.readFrom(path)
	return evs, err
}

// readFrom is read, and whether the file was read again from its start.
func (f *Follower) readFrom(path string) ([]events.Event, bool, error) {
	r, ok := f.files[path]
	if !ok {
		r = events.NewReader(path)
		f.files[path] = r
	}
	return r.Read()
}

// isDerived reports events Merge makes from state files rather than reading
// them from an event file.
func isDerived(source string) bool {
	switch source {
	case SourceSubmission, SourceRecord, SourceHead, SourceDown:
		return true
	}
	return false
}

// foldSteps places the driver key's new steps around the generations'
// publications, and adds its crossings to s.
func (f *Follower) foldSteps(key string, s *Sources) {
	if len(s.Generations) == 0 {
		return
	}
	c := f.steps[key]
	if c == nil {
		c = &cluster.StepCrossings{}
		f.steps[key] = c
	}
	for _, g := range s.Generations {
		c.Published(g.Generation, g.Published)
	}
	for _, e := range s.Drivers[key] {
		var ev events.StepDone
		if e.Name == events.NameStepDone && e.Decode(&ev) == nil {
			c.Step(cluster.StepMark{Step: ev.Step, At: ev.Time()})
		}
	}
	if s.Crossings == nil {
		s.Crossings = map[int][]cluster.Crossing{}
	}
	for g, x := range c.All() {
		s.Crossings[g] = append(s.Crossings[g], x)
	}
}
