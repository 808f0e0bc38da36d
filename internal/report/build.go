package report

import (
	"encoding/json"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/scheduler"
	"github.com/sraybatch/sraybatch/internal/timeline"
)

// Event names of the files Go and Python share (testdata/shared-state.json)
// that the report reads off the timeline.
const (
	eventNodeJoined   = "node_joined"
	eventNodeDraining = "node_draining"
	eventNodeLeft     = "node_left"
	eventStepDone     = "step_done"
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
	gpusSeen               bool
	outcome                cluster.Outcome
	slurmOutcome           cluster.Outcome
	reason                 string
}

func setFirst(t *time.Time, at time.Time) {
	if t.IsZero() || at.Before(*t) {
		*t = at
	}
}

// Build derives the page from a cluster's spec and merged timeline (in time
// order, as timeline.Merge returns it); now is the end of every interval
// that is still open, unless `down` was asked for earlier. It is a pure
// function of its input.
func Build(spec cluster.Spec, events []timeline.Event, now time.Time) Model {
	m := Model{Cluster: spec.Name, ClusterID: spec.ID, Generated: now.UTC()}
	jobs := map[string]*facts{}
	var order []string
	job := func(key string, role cluster.Role) *facts {
		f, ok := jobs[key]
		if !ok {
			f = &facts{role: role, gpus: specGPUs(spec, role)}
			jobs[key] = f
			order = append(order, key)
		}
		return f
	}
	var joinedSamples, allocSamples []Sample
	steps := map[string][]time.Time{}
	var stepJobs []string
	rayKnown := false
	var last time.Time
	for _, ev := range events {
		at := ev.Time.UTC()
		if at.After(last) {
			last = at
		}
		switch ev.Name {
		case timeline.Submitted:
			job(ev.Job, ev.Role).life.Submitted = at
		case timeline.JobStarted:
			job(ev.Job, ev.Role).life.Started = at
		case timeline.JobEnded:
			f := job(ev.Job, ev.Role)
			f.life.Ended = at
			f.outcome = cluster.Outcome(str(ev, "outcome"))
			f.reason = str(ev, "reason")
		case timeline.TimeLimitWarning:
			// A worker drains at SLURM's warning; the head and drivers are
			// only told, and keep working until the limit.
			if ev.Role == cluster.RoleWorker {
				setFirst(&job(ev.Job, ev.Role).life.Draining, at)
			}
		case timeline.HeadUp:
			// The head publishes its address once its Ray answers: it has
			// joined, before its own observer's first look says so.
			setFirst(&job(ev.Job, cluster.RoleHead).life.Joined, at)
			rayKnown = true
		case timeline.DownRequested:
			d := at
			m.Down = &d
		case cluster.EventJobState:
			rayKnown = true
			f := job(ev.Job, ev.Role)
			if g, ok := num(ev, "gpus"); ok {
				f.gpus, f.gpusSeen = int(g), true
			}
			state := scheduler.JobState(str(ev, "slurm_state"))
			switch {
			case state.Started():
				setFirst(&f.startedSeen, at)
			case state != "" && string(state) != cluster.SlurmGone && !state.Active():
				setFirst(&f.endedSeen, at)
				if o := cluster.OutcomeOfState(state); o != "" && f.slurmOutcome == "" {
					f.slurmOutcome = o
				}
			}
			switch cluster.Membership(str(ev, "membership")) {
			case cluster.Joined:
				setFirst(&f.life.Joined, at)
			case cluster.Draining:
				setFirst(&f.life.Draining, at)
			case cluster.Lost, cluster.Ended, cluster.Failed:
				if !f.life.Joined.IsZero() {
					setFirst(&f.life.Left, at)
				}
			}
		case eventNodeJoined, eventNodeDraining, eventNodeLeft:
			if ev.Job == "" {
				continue
			}
			rayKnown = true
			f := job(ev.Job, ev.Role)
			switch ev.Name {
			case eventNodeJoined:
				setFirst(&f.life.Joined, at)
			case eventNodeDraining:
				setFirst(&f.life.Draining, at)
			case eventNodeLeft:
				setFirst(&f.life.Left, at)
			}
		case cluster.EventClusterSample:
			if v, ok := num(ev, "gpus_joined"); ok {
				joinedSamples = append(joinedSamples, Sample{At: at, Value: v})
			}
			if v, ok := num(ev, "gpus_allocated"); ok {
				allocSamples = append(allocSamples, Sample{At: at, Value: v})
			}
		case eventStepDone:
			if ev.Job == "" {
				continue
			}
			if _, ok := steps[ev.Job]; !ok {
				stepJobs = append(stepJobs, ev.Job)
			}
			steps[ev.Job] = append(steps[ev.Job], at)
		}
	}

	openEnd := m.Generated
	if m.Down != nil && m.Down.Before(openEnd) {
		openEnd = *m.Down
	}
	for _, key := range order {
		f := jobs[key]
		if f.life.Submitted.IsZero() {
			continue // events about a job of no submission of this cluster
		}
		life := f.life
		if life.Started.IsZero() {
			life.Started = f.startedSeen
		}
		if life.Ended.IsZero() {
			life.Ended = f.endedSeen
		}
		j := Job{Job: key, Role: f.role, GPUs: f.gpus, Submitted: life.Submitted, Outcome: f.outcome, Reason: f.reason}
		if j.Outcome == "" {
			j.Outcome = f.slurmOutcome
		}
		j.Intervals = Intervals(life, openEnd)
		j.SlurmGPUSeconds = float64(j.GPUs) * Held(j.Intervals, slurmStates...).Seconds()
		j.JoinedGPUSeconds = float64(j.GPUs) * Held(j.Intervals, joinedStates...).Seconds()
		if _, ended := j.EndedAt(); !ended && m.Down == nil {
			m.Live = true
		}
		m.Jobs = append(m.Jobs, j)
	}

	m.Start, m.End = axis(spec, m, last, openEnd)
	for i := range m.Jobs {
		for k := range m.Jobs[i].Intervals {
			if iv := &m.Jobs[i].Intervals[k]; iv.State == Ended && m.End.After(iv.From) {
				iv.To = m.End // drawn to the end of the axis; it counts nowhere
			}
		}
	}

	m.SlurmGPUs = Occupancy(m.Jobs, slurmStates...)
	var joined, slurm float64
	for _, j := range m.Jobs {
		slurm += j.SlurmGPUSeconds
		joined += j.JoinedGPUSeconds
	}
	m.Summary.SlurmGPUSeconds = slurm
	switch {
	case len(joinedSamples) > 0:
		m.JoinedGPUs, m.JoinedFromSamples = joinedSamples, true
	case rayKnown:
		m.JoinedGPUs = Occupancy(m.Jobs, joinedStates...)
	}
	if rayKnown {
		m.Summary.JoinedGPUSeconds = &joined
	} else {
		m.Missing = append(m.Missing, "No job's Ray membership was recorded (the head's job_state events, a driver's node_joined): rows show SLURM's states only, and the GPU-hours joined to Ray are unknown.")
	}
	m.SamplesUntil = openEnd
	for _, j := range m.Jobs {
		if j.Role == cluster.RoleHead {
			if end, ok := j.EndedAt(); ok {
				m.SamplesUntil = end // the head's samples stop with it
			}
		}
	}
	if n := len(allocSamples); n > 0 {
		if lastSample := allocSamples[n-1].At; lastSample.After(m.SamplesUntil) {
			m.SamplesUntil = lastSample
		}
		m.RayAllocatedGPUs = allocSamples
		allocated := StepIntegral(allocSamples, m.SamplesUntil)
		m.Summary.RayAllocatedGPUSeconds = &allocated
	} else {
		m.Missing = append(m.Missing, "The head recorded no cluster samples (events/cluster.jsonl): the GPUs Ray allocated are unknown.")
	}

	window := niceStep(m.End.Sub(m.Start), stepRateWindows)
	for _, key := range stepJobs {
		ts := steps[key]
		m.Steps = append(m.Steps, StepSeries{
			Job: key, Steps: len(ts), First: ts[0], Last: ts[len(ts)-1], Window: window,
			Rate: StepRate(ts, m.Start, m.End, window),
		})
	}
	if len(m.Steps) == 0 {
		m.Missing = append(m.Missing, "No driver recorded a training step (step_done).")
	}
	return m
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
	if min := start.Add(time.Second); end.Before(min) {
		end = min
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

func str(ev timeline.Event, field string) string {
	var s string
	if raw, ok := ev.Fields[field]; ok {
		json.Unmarshal(raw, &s)
	}
	return s
}

func num(ev timeline.Event, field string) (float64, bool) {
	raw, ok := ev.Fields[field]
	if !ok {
		return 0, false
	}
	var f float64
	return f, json.Unmarshal(raw, &f) == nil
}
