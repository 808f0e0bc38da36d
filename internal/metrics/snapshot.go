// Package metrics is the head job's view of its cluster for Prometheus: a
// Snapshot (what one observation saw), its exposition in the OpenMetrics
// and Prometheus text formats, the /metrics handler that serves the latest
// snapshot behind a scrape-only bearer token, and the file_sd targets that
// lead a Prometheus to it and to every Ray node's own exporter.
package metrics

import (
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/events"
	"github.com/sraybatch/sraybatch/internal/scheduler"
)

// Snapshot is one observation of the cluster: what status shows, the
// records it was derived from, and Ray's own figures. A scrape renders the
// latest one and never asks SLURM or Ray itself.
type Snapshot struct {
	// At is when the observation was made.
	At time.Time
	// Observation is what Status was derived from (cluster.StatusOf).
	Observation cluster.Observation
	Status      cluster.Status
	// Ray is the GCS's GPU figures; nil when Ray did not answer.
	Ray *RayGPUs
	// Autoscaler counts the autoscaler's decisions so far (its event log).
	Autoscaler AutoscalerCounts
}

// RayGPUs are the GPUs of the cluster's alive Ray nodes as the GCS counts
// them: what they advertise, and what is not handed to a task or actor.
type RayGPUs struct {
	Total, Available float64
}

// Allocated is what Ray has handed to tasks and actors (fractional GPUs
// make it a float).
func (r RayGPUs) Allocated() float64 { return r.Total - r.Available }

// AutoscalerCounts are the autoscaler's decisions (autoscaler_decision
// events) and the worker jobs they submitted, cancelled and drained.
type AutoscalerCounts struct {
	Decisions, Submitted, Cancelled, Drained int
}

// Totals are the cluster-wide figures both the metrics and the cluster's
// cluster_sample events report, computed once here so the two agree.
type Totals struct {
	// GPUsRequested: GPUs the live jobs (pending or running in SLURM) asked for.
	GPUsRequested int
	// GPUsJoined: GPUs of the jobs whose Ray node is joined (or draining).
	GPUsJoined int
	// Jobs: live jobs.
	Jobs int
}

// TotalsOf sums a status's jobs.
func TotalsOf(st cluster.Status) Totals {
	var t Totals
	for _, j := range st.Jobs {
		if Live(j) {
			t.Jobs++
			t.GPUsRequested += j.GPUs
		}
		if InRay(j) {
			t.GPUsJoined += j.GPUs
		}
	}
	return t
}

// Live reports whether SLURM still has the job pending or running.
func Live(j cluster.JobStatus) bool { return scheduler.JobState(j.SlurmState).Active() }

// InRay reports whether the job's Ray node is in the cluster.
func InRay(j cluster.JobStatus) bool {
	return j.Ray == cluster.MembershipJoined || j.Ray == cluster.MembershipDraining
}

// CountDecisions counts the autoscaler's decisions among events.
func CountDecisions(evs []events.Event) AutoscalerCounts {
	var n AutoscalerCounts
	n.Add(evs)
	return n
}

// Add counts the decisions among evs on top of those counted so far.
func (n *AutoscalerCounts) Add(evs []events.Event) {
	for _, e := range evs {
		n.add(e)
	}
}

// add counts e, should it be a decision.
func (n *AutoscalerCounts) add(e events.Event) {
	if e.Name != events.NameAutoscalerDecision {
		return
	}
	var d events.AutoscalerDecision
	if e.Decode(&d) != nil {
		return
	}
	n.Decisions++
	n.Submitted += len(d.Submitted)
	n.Cancelled += len(d.Cancelled)
	n.Drained += len(d.Drained)
}

// DecisionLog counts the decisions of the autoscaler's event file, reading
// only what it appended since the last Read (the head's observer reads it
// every few seconds for hours).
type DecisionLog struct {
	events *events.Reader
	n      AutoscalerCounts
}

// NewDecisionLog counts the decisions in the event file at path.
func NewDecisionLog(path string) *DecisionLog {
	return &DecisionLog{events: events.NewReader(path)}
}

// Read counts what was appended and returns the counts so far (counted
// again from the start of a file truncated or replaced).
func (l *DecisionLog) Read() (AutoscalerCounts, error) {
	err := l.events.Fold(func() { l.n = AutoscalerCounts{} }, l.n.add)
	return l.n, err
}
