// Package report draws a cluster's life on one self-contained HTML page:
// a timeline row per job, the GPUs SLURM allocated, joined to Ray and Ray
// allocated over time, each driver's step rate, and the GPU-hours summary
// that says how much of what SLURM gave the cluster Ray put to use.
//
// Build is a pure function from the cluster's merged timeline
// (internal/timeline) and a time "now" to a Model; Render writes the Model
// as HTML with inline CSS and inline SVG under a Content-Security-Policy of
// default-src 'none', so the page fetches nothing.
package report

import (
	"sort"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

// State is what a job's row shows for a stretch of time.
type State string

const (
	// StatePending: submitted, not yet started by SLURM.
	StatePending State = "pending"
	// StateRunning: SLURM runs the job (it holds its GPUs), but its Ray node is
	// not in the cluster: not joined yet, or left it before the job ended.
	StateRunning State = "running"
	// StateJoined: the job's Ray node is in the cluster.
	StateJoined State = "joined"
	// StateDraining: in the cluster, but leaving (time limit, idle drain).
	StateDraining State = "draining"
	// StateEnded: SLURM no longer runs the job.
	StateEnded State = "ended"
)

// Interval is one stretch of a job's life in one state, [From, To).
type Interval struct {
	State    State
	From, To time.Time
	// Open marks a state that nothing has recorded the end of: it holds
	// until To, which is "now" for a live cluster (or when down was asked for).
	Open bool
}

// Duration is the interval's length.
func (iv Interval) Duration() time.Duration { return iv.To.Sub(iv.From) }

// Life is what a cluster's records and events tell about one job: when it
// was submitted, started by SLURM, joined Ray, began draining, left Ray and
// ended. A zero time is one nothing recorded.
type Life struct {
	Submitted, Started, Joined, Draining, Left, Ended time.Time
}

// Intervals cuts a job's life into its row's states, oldest first: pending
// from submission to start, running until its Ray node joined, joined (then
// draining) until it left Ray, running again should SLURM still hold the
// job after that, ended from its end. What nothing recorded the end of
// holds until openEnd. Times out of order (clocks of different nodes,
// observations late by a poll) are clamped into [Submitted, end], so the
// intervals never overlap.
func Intervals(l Life, openEnd time.Time) []Interval {
	end, open := l.Ended, l.Ended.IsZero()
	if open {
		end = openEnd
	}
	if end.Before(l.Submitted) {
		end = l.Submitted
	}
	clamp := func(t time.Time) time.Time {
		switch {
		case t.Before(l.Submitted):
			return l.Submitted
		case t.After(end):
			return end
		}
		return t
	}
	var out []Interval
	add := func(s State, from, to time.Time, isOpen bool) {
		if to.After(from) {
			out = append(out, Interval{State: s, From: from, To: to, Open: isOpen})
		}
	}
	started := l.Started
	if started.IsZero() {
		started = l.Joined // a node that joined Ray was running
	}
	if started.IsZero() {
		add(StatePending, l.Submitted, end, open)
	} else {
		started = clamp(started)
		add(StatePending, l.Submitted, started, false)
		if l.Joined.IsZero() {
			add(StateRunning, started, end, open)
		} else {
			joined := later(clamp(l.Joined), started)
			add(StateRunning, started, joined, false)
			leave, leaveOpen := end, open
			if !l.Left.IsZero() && clamp(l.Left).Before(end) {
				leave, leaveOpen = later(clamp(l.Left), joined), false
			}
			if d := clamp(l.Draining); !l.Draining.IsZero() && d.Before(leave) {
				d = later(d, joined)
				add(StateJoined, joined, d, false)
				add(StateDraining, d, leave, leaveOpen)
			} else {
				add(StateJoined, joined, leave, leaveOpen)
			}
			add(StateRunning, leave, end, open)
		}
	}
	if !open {
		out = append(out, Interval{State: StateEnded, From: end, To: end})
	}
	return out
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Held sums the time spent in any of the given states.
func Held(ivs []Interval, states ...State) time.Duration {
	var d time.Duration
	for _, iv := range ivs {
		for _, s := range states {
			if iv.State == s {
				d += iv.Duration()
			}
		}
	}
	return d
}

// SLURM holds a job's GPUs while it runs, in or out of Ray; Ray has them
// while the job's node is in the cluster.
var (
	slurmStates  = []State{StateRunning, StateJoined, StateDraining}
	joinedStates = []State{StateJoined, StateDraining}
)

// Sample is a value from some time on (a step function's step).
type Sample struct {
	At    time.Time
	Value float64
}

// StepIntegral is the area under a step function (each sample's value
// holds until the next sample) from its first sample until until, in
// value-seconds: GPU-seconds for a GPU count. Samples must be in time order.
func StepIntegral(samples []Sample, until time.Time) float64 {
	var sum float64
	for i, s := range samples {
		to := until
		if i+1 < len(samples) && samples[i+1].At.Before(until) {
			to = samples[i+1].At
		}
		if to.After(s.At) {
			sum += s.Value * to.Sub(s.At).Seconds()
		}
	}
	return sum
}

// Occupancy is the GPUs of jobs in the given states over time, as a step
// function: a sample at every change, starting at zero.
func Occupancy(jobs []Job, states ...State) []Sample {
	delta := map[time.Time]float64{}
	for _, j := range jobs {
		if j.GPUs == 0 {
			continue
		}
		for _, iv := range j.Intervals {
			for _, s := range states {
				if iv.State == s && iv.Duration() > 0 {
					delta[iv.From] += float64(j.GPUs)
					delta[iv.To] -= float64(j.GPUs)
				}
			}
		}
	}
	times := make([]time.Time, 0, len(delta))
	for t := range delta {
		times = append(times, t)
	}
	sort.Slice(times, func(i, k int) bool { return times[i].Before(times[k]) })
	var out []Sample
	level := 0.0
	for _, t := range times {
		if delta[t] == 0 { // one job leaves the state as another enters it
			continue
		}
		level += delta[t]
		out = append(out, Sample{At: t, Value: level})
	}
	return out
}

// StepRate is how many steps a driver finished per second, counted in
// windows of width window from from on: one sample per window.
func StepRate(steps []time.Time, from, until time.Time, window time.Duration) []Sample {
	if window <= 0 || !until.After(from) {
		return nil
	}
	n := int((until.Sub(from) + window - 1) / window)
	counts := make([]int, n)
	for _, t := range steps {
		if t.Before(from) || !t.Before(from.Add(time.Duration(n)*window)) {
			continue
		}
		counts[int(t.Sub(from)/window)]++
	}
	out := make([]Sample, n)
	for i, c := range counts {
		out[i] = Sample{At: from.Add(time.Duration(i) * window), Value: float64(c) / window.Seconds()}
	}
	return out
}

// Job is one job's row.
type Job struct {
	Job  string
	Role cluster.Role
	// Type is a worker's type in a cluster with types; "" otherwise.
	Type string
	GPUs int
	// Submitted is when sbatch accepted it.
	Submitted time.Time
	Intervals []Interval
	// Outcome and Reason say how the job ended, once it has.
	Outcome cluster.Outcome
	Reason  string
	// SlurmGPUSeconds is GPUs × the time SLURM ran the job;
	// JoinedGPUSeconds GPUs × the time its node was in Ray.
	SlurmGPUSeconds, JoinedGPUSeconds float64
}

// EndedAt is when the job ended, and whether it has.
func (j Job) EndedAt() (time.Time, bool) {
	for _, iv := range j.Intervals {
		if iv.State == StateEnded {
			return iv.From, true
		}
	}
	return time.Time{}, false
}

// first is when the job first entered a state, if it did.
func (j Job) first(s State) (time.Time, bool) {
	for _, iv := range j.Intervals {
		if iv.State == s {
			return iv.From, true
		}
	}
	return time.Time{}, false
}

// Summary is the cluster's GPU-hours: what SLURM allocated, what of it was
// in Ray, and what Ray handed to tasks and actors. A nil figure is unknown.
type Summary struct {
	SlurmGPUSeconds float64
	// JoinedGPUSeconds is nil when nothing recorded which jobs joined Ray
	// (the head's job_state events, or a driver's node_joined).
	JoinedGPUSeconds *float64
	// RayAllocatedGPUSeconds is nil without the head's cluster samples.
	RayAllocatedGPUSeconds *float64
}

// Ratio is num/den, or nil when either is unknown or den is zero.
func Ratio(num, den *float64) *float64 {
	if num == nil || den == nil || *den == 0 {
		return nil
	}
	r := *num / *den
	return &r
}

// StepSeries is one driver's training steps.
type StepSeries struct {
	Job         string
	Steps       int
	First, Last time.Time
	// Rate is steps per second, per window of Window.
	Rate   []Sample
	Window time.Duration
}

// MeanRate is the driver's steps per second between its first and last
// step (0 with fewer than two steps).
func (s StepSeries) MeanRate() float64 {
	if s.Steps < 2 || !s.Last.After(s.First) {
		return 0
	}
	return float64(s.Steps-1) / s.Last.Sub(s.First).Seconds()
}

// Model is everything the page shows.
type Model struct {
	Cluster, ClusterID string
	// Live is true while some job's end is not recorded and the cluster was
	// not taken down; its open intervals end at Generated.
	Live      bool
	Down      *time.Time
	Generated time.Time
	// Start and End bound the time axis: the first submission and the last
	// thing recorded (or now, while live).
	Start, End time.Time
	Jobs       []Job
	// Types are a typed cluster's worker types, in the cluster file's
	// order: the page colours each type's rows; none without types.
	Types []string
	// SlurmGPUs, JoinedGPUs and RayAllocatedGPUs are step functions over time.
	// JoinedFromSamples says JoinedGPUs is the head's own count
	// (cluster_sample) rather than the sum of the jobs' joined intervals.
	SlurmGPUs, JoinedGPUs, RayAllocatedGPUs []Sample
	JoinedFromSamples                       bool
	// SamplesUntil is where the head's last cluster sample stops holding:
	// the head's end, or the open end.
	SamplesUntil time.Time
	Steps        []StepSeries
	Summary      Summary
	// Generations are a rollover cluster's head generations, Handovers its
	// handovers (generations.go); none for a cluster without generations.
	Generations []Generation
	Handovers   []Handover
	// Missing says, in words, what the records did not tell.
	Missing []string
}
