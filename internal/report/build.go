package report

import (
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/events"
	"github.com/sraybatch/sraybatch/internal/scheduler"
	"github.com/sraybatch/sraybatch/internal/timeline"
)

// facts are one job's evidence, gathered from the timeline in time order.
type facts struct {
	role cluster.Role
	// life holds the job's own records (started, ended) and the first
	// sighting of each Ray state; startedSeen and endedSeen are the head's
	// observations of SLURM's, used where the job recorded nothing.
	life                   Life
	startedSeen, endedSeen time.Time
	gpus                   int
	// workerType is a typed cluster's worker's type ("" otherwise).
	workerType   string
	outcome      cluster.Outcome
	slurmOutcome cluster.Outcome
	reason       string
}

func setFirst(t *time.Time, at time.Time) {
	if t.IsZero() || at.Before(*t) {
		*t = at
	}
}

// evidence is what a cluster's timeline tells the report, gathered one
// event at a time by the folds below.
type evidence struct {
	spec cluster.Spec
	// jobs are each job's facts, order the jobs as first named.
	jobs  map[string]*facts
	order []string
	// joinedSamples and allocSamples are the head's cluster samples.
	joinedSamples, allocSamples []Sample
	// steps are each driver's step times, stepJobs the drivers in order.
	steps    map[string][]time.Time
	stepJobs []string
	// rayKnown says something recorded Ray's membership.
	rayKnown bool
	// generations and handovers are a rollover cluster's (generations.go).
	generations []Generation
	handovers   []Handover
	down        *time.Time
	last        time.Time
}

// job is the facts of the job key, made on its first mention.
func (e *evidence) job(key string, role cluster.Role) *facts {
	f, ok := e.jobs[key]
	if !ok {
		f = &facts{role: role, gpus: specGPUs(e.spec, role)}
		e.jobs[key] = f
		e.order = append(e.order, key)
	}
	return f
}

// folds are how each event the report reads adds to the evidence; it
// reads no other. An event whose fields do not decode into its struct
// tells only its time and job.
var folds = map[string]func(*evidence, timeline.Event, time.Time){
	events.NameSubmitted:        (*evidence).submitted,
	events.NameJobStarted:       func(e *evidence, ev timeline.Event, at time.Time) { e.job(ev.Job, ev.Role).life.Started = at },
	events.NameJobEnded:         (*evidence).jobEnded,
	events.NameTimeLimitWarning: (*evidence).timeLimitWarning,
	events.NameHeadUp:           (*evidence).headUp,
	events.NameDownRequested:    func(e *evidence, _ timeline.Event, at time.Time) { e.down = &at },
	events.NameJobState:         (*evidence).jobState,
	events.NameNodeJoined:       (*evidence).rayNode,
	events.NameNodeDraining:     (*evidence).rayNode,
	events.NameNodeLeft:         (*evidence).rayNode,
	events.NameClusterSample:    (*evidence).clusterSample,
	events.NameStepDone:         (*evidence).stepDone,
	events.NameHandover:         (*evidence).handover,
}

// gather folds a timeline (in time order) into its evidence.
func gather(spec cluster.Spec, evs []timeline.Event) *evidence {
	e := &evidence{spec: spec, jobs: map[string]*facts{}, steps: map[string][]time.Time{}}
	for _, ev := range evs {
		at := ev.Time.UTC()
		if at.After(e.last) {
			e.last = at
		}
		if fold, ok := folds[ev.Name]; ok {
			fold(e, ev, at)
		}
	}
	return e
}

// submitted: a typed cluster's worker asks SLURM for its type's GPUs, and
// its submission names the type ("" is the default type).
func (e *evidence) submitted(ev timeline.Event, at time.Time) {
	f := e.job(ev.Job, ev.Role)
	f.life.Submitted = at
	var sub events.Submitted
	if ev.Role != cluster.RoleWorker || len(e.spec.Workers) == 0 || ev.Decode(&sub) != nil {
		return
	}
	if t, err := e.spec.Type(sub.Type); err == nil {
		f.workerType, f.gpus = t.Name, t.Node.GPUs
	} else {
		f.workerType = sub.Type // a type the spec no longer has still gets its own colour
	}
}

func (e *evidence) jobEnded(ev timeline.Event, at time.Time) {
	f := e.job(ev.Job, ev.Role)
	f.life.Ended = at
	var end events.JobEnded
	if ev.Decode(&end) == nil { // else how it ended is unknown
		f.outcome, f.reason = end.Outcome, end.Reason
	}
}

// timeLimitWarning: a worker drains at SLURM's warning; the head and
// drivers are only told, and keep working until the limit.
func (e *evidence) timeLimitWarning(ev timeline.Event, at time.Time) {
	if ev.Role == cluster.RoleWorker {
		setFirst(&e.job(ev.Job, ev.Role).life.Draining, at)
	}
}

// headUp: the head publishes its address once its Ray answers, so it has
// joined, before its own observer's first look says so.
func (e *evidence) headUp(ev timeline.Event, at time.Time) {
	setFirst(&e.job(ev.Job, cluster.RoleHead).life.Joined, at)
	e.rayKnown = true
	e.generationUp(ev, at)
}

// jobState is the head's view of a job: its GPUs, SLURM's state (its start
// and end where the job recorded none) and its Ray membership.
func (e *evidence) jobState(ev timeline.Event, at time.Time) {
	e.rayKnown = true
	f := e.job(ev.Job, ev.Role)
	var js events.JobState
	if ev.Decode(&js) != nil {
		return
	}
	f.gpus = js.GPUs
	if js.Type != "" && len(e.spec.Workers) > 0 {
		f.workerType = js.Type
	}
	state := scheduler.JobState(js.SlurmState)
	switch {
	case state.Started():
		setFirst(&f.startedSeen, at)
	case state != "" && string(state) != cluster.SlurmGone && !state.Active():
		setFirst(&f.endedSeen, at)
		if o := cluster.OutcomeOfState(state); o != "" && f.slurmOutcome == "" {
			f.slurmOutcome = o
		}
	}
	switch js.Membership {
	case cluster.MembershipJoined:
		setFirst(&f.life.Joined, at)
	case cluster.MembershipDraining:
		setFirst(&f.life.Draining, at)
	case cluster.MembershipLost, cluster.MembershipEnded, cluster.MembershipFailed:
		if !f.life.Joined.IsZero() {
			setFirst(&f.life.Left, at)
		}
	}
}

// rayNode is a driver's view of a job's Ray node joining, draining or
// leaving; one that names no job tells nothing.
func (e *evidence) rayNode(ev timeline.Event, at time.Time) {
	if ev.Job == "" {
		return
	}
	e.rayKnown = true
	f := e.job(ev.Job, ev.Role)
	switch ev.Name {
	case events.NameNodeJoined:
		setFirst(&f.life.Joined, at)
	case events.NameNodeDraining:
		setFirst(&f.life.Draining, at)
	case events.NameNodeLeft:
		setFirst(&f.life.Left, at)
	}
}

func (e *evidence) clusterSample(ev timeline.Event, at time.Time) {
	var s events.ClusterSample
	if ev.Decode(&s) != nil {
		return
	}
	e.joinedSamples = append(e.joinedSamples, Sample{At: at, Value: float64(s.GPUsJoined)})
	e.allocSamples = append(e.allocSamples, Sample{At: at, Value: s.GPUsAllocated})
}

// stepDone counts a driver's step (the timeline credits it to the driver).
func (e *evidence) stepDone(ev timeline.Event, at time.Time) {
	if ev.Job == "" {
		return
	}
	if _, ok := e.steps[ev.Job]; !ok {
		e.stepJobs = append(e.stepJobs, ev.Job)
	}
	e.steps[ev.Job] = append(e.steps[ev.Job], at)
}

// Build derives the page from a cluster's spec and merged timeline (in time
// order, as timeline.Merge returns it); now is the end of every interval
// that is still open, unless `down` was asked for earlier. It is a pure
// function of its input.
func Build(spec cluster.Spec, evs []timeline.Event, now time.Time) Model {
	e := gather(spec, evs)
	m := Model{Cluster: spec.Name, ClusterID: spec.ID, Generated: now.UTC(), Down: e.down}
	for _, t := range spec.Workers {
		m.Types = append(m.Types, t.Name)
	}
	openEnd := m.Generated
	if m.Down != nil && m.Down.Before(openEnd) {
		openEnd = *m.Down
	}
	m.Jobs, m.Live = e.rows(openEnd, m.Down != nil)
	m.Start, m.End = axis(spec, m, e.last, openEnd)
	drawEndedToAxis(m.Jobs, m.End)
	m.Summary.SlurmGPUSeconds = e.gpuSeries(&m)
	if e.rayKnown {
		m.Summary.JoinedGPUSeconds = ptr(joinedSeconds(m.Jobs))
	} else {
		m.Missing = append(m.Missing, "No job's Ray membership was recorded (the head's job_state events, a driver's node_joined): rows show SLURM's states only, and the GPU-hours joined to Ray are unknown.")
	}
	m.SamplesUntil = samplesUntil(m.Jobs, openEnd)
	if n := len(e.allocSamples); n > 0 {
		if lastSample := e.allocSamples[n-1].At; lastSample.After(m.SamplesUntil) {
			m.SamplesUntil = lastSample
		}
		m.RayAllocatedGPUs = e.allocSamples
		m.Summary.RayAllocatedGPUSeconds = ptr(StepIntegral(e.allocSamples, m.SamplesUntil))
	} else {
		m.Missing = append(m.Missing, "The head recorded no cluster samples (events/cluster.jsonl): the GPUs Ray allocated are unknown.")
	}
	m.Generations, m.Handovers = bands(e.generations, m.End), e.handovers
	m.Steps = e.stepSeries(m.Start, m.End)
	if len(m.Steps) == 0 {
		m.Missing = append(m.Missing, "No driver recorded a training step (step_done).")
	}
	return m
}

func ptr[T any](v T) *T { return &v }

// rows are the jobs of the cluster's submissions, each with its intervals
// (open ones until openEnd) and GPU-seconds; live says one has not ended
// and down was not asked for. Events about a job no submission of this
// cluster made draw no row.
func (e *evidence) rows(openEnd time.Time, down bool) (jobs []Job, live bool) {
	for _, key := range e.order {
		f := e.jobs[key]
		if f.life.Submitted.IsZero() {
			continue
		}
		life := f.life
		if life.Started.IsZero() {
			life.Started = f.startedSeen
		}
		if life.Ended.IsZero() {
			life.Ended = f.endedSeen
		}
		j := Job{Job: key, Role: f.role, Type: f.workerType, GPUs: f.gpus, Submitted: life.Submitted, Outcome: f.outcome, Reason: f.reason}
		if j.Outcome == "" {
			j.Outcome = f.slurmOutcome
		}
		j.Intervals = Intervals(life, openEnd)
		j.SlurmGPUSeconds = float64(j.GPUs) * Held(j.Intervals, slurmStates...).Seconds()
		j.JoinedGPUSeconds = float64(j.GPUs) * Held(j.Intervals, joinedStates...).Seconds()
		if _, ended := j.EndedAt(); !ended && !down {
			live = true
		}
		jobs = append(jobs, j)
	}
	return jobs, live
}

// drawEndedToAxis draws each job's ended state to the end of the axis; it
// counts nowhere.
func drawEndedToAxis(jobs []Job, end time.Time) {
	for i := range jobs {
		for k := range jobs[i].Intervals {
			if iv := &jobs[i].Intervals[k]; iv.State == StateEnded && end.After(iv.From) {
				iv.To = end
			}
		}
	}
}

// gpuSeries sets the page's SLURM and joined GPUs over time (the joined
// ones from the head's samples where it took them, else from the jobs'
// intervals where Ray's membership is known) and returns the GPU-seconds
// SLURM allocated.
func (e *evidence) gpuSeries(m *Model) (slurmSeconds float64) {
	m.SlurmGPUs = Occupancy(m.Jobs, slurmStates...)
	for _, j := range m.Jobs {
		slurmSeconds += j.SlurmGPUSeconds
	}
	switch {
	case len(e.joinedSamples) > 0:
		m.JoinedGPUs, m.JoinedFromSamples = e.joinedSamples, true
	case e.rayKnown:
		m.JoinedGPUs = Occupancy(m.Jobs, joinedStates...)
	}
	return slurmSeconds
}

func joinedSeconds(jobs []Job) float64 {
	var s float64
	for _, j := range jobs {
		s += j.JoinedGPUSeconds
	}
	return s
}

// samplesUntil is where the head's cluster samples stop holding: its end
// (its samples stop with it), else the open end.
func samplesUntil(jobs []Job, openEnd time.Time) time.Time {
	until := openEnd
	for _, j := range jobs {
		if j.Role == cluster.RoleHead {
			if end, ok := j.EndedAt(); ok {
				until = end
			}
		}
	}
	return until
}

// stepSeries are each driver's step rate over the axis [start, end].
func (e *evidence) stepSeries(start, end time.Time) []StepSeries {
	var out []StepSeries
	window := niceStep(end.Sub(start), stepRateWindows)
	for _, key := range e.stepJobs {
		ts := e.steps[key]
		out = append(out, StepSeries{
			Job: key, Steps: len(ts), First: ts[0], Last: ts[len(ts)-1], Window: window,
			Rate: StepRate(ts, start, end, window),
		})
	}
	return out
}

// axis is the span the page draws: from the first submission to now while
// the cluster is live, else to the last thing recorded.
func axis(spec cluster.Spec, m Model, last, openEnd time.Time) (start, end time.Time) {
	start = spec.Created.UTC()
	for _, j := range m.Jobs {
		if start.IsZero() || j.Submitted.Before(start) {
			start = j.Submitted
		}
	}
	if start.IsZero() {
		start = m.Generated
	}
	end = last
	if m.Live {
		end = m.Generated
	}
	for _, j := range m.Jobs {
		for _, iv := range j.Intervals {
			if iv.To.After(end) {
				end = iv.To
			}
		}
	}
	if end.After(m.Generated) {
		end = m.Generated // a clock ahead of this one draws nothing beyond now
	}
	if least := start.Add(time.Second); end.Before(least) {
		end = least
	}
	return start, end
}

// specGPUs is what each job of a role asks SLURM for (--gres=gpu:N); a
// driver asks for none.
func specGPUs(spec cluster.Spec, role cluster.Role) int {
	if role == cluster.RoleDriver {
		return 0
	}
	return spec.Node.GPUs
}
