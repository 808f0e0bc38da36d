// Package events is sraybatch's one event vocabulary: every event's name
// and typed struct, defined once, the one appender that writes an event
// file's lines, and the one reader that resumes an event file from where it
// stopped (and notices a file truncated or replaced under it).
//
// Two kinds of event share the vocabulary. File events are lines of the
// JSON-lines files under a cluster's events/ (a driver's <job>.jsonl,
// written by Python; the head's cluster.jsonl and autoscaler.jsonl, written
// by Go): each embeds a Stamp. Timeline events are derived by the timeline
// from the cluster's state files and are never written to an event file;
// `sraybatch events` prints both kinds alike. Every name and its required
// fields are in testdata/shared-state.json, which Go's tests and pytest
// (sraybatch_trainloop/events.py) both check.
package events

import "time"

// File events: the lines of a cluster's event files. The driver's are
// written by its Python pool (sraybatch_trainloop/events.py documents them);
// the head's by its observer (job_state, cluster_sample) and autoscaler.
const (
	NameNodeJoined        = "node_joined"
	NameActorSpawned      = "actor_spawned"
	NameActorLost         = "actor_lost"
	NameActorRestarted    = "actor_restarted"
	NameStateSynced       = "state_synced"
	NameCheckpointWritten = "checkpoint_written"
	NameNodeExcluded      = "node_excluded"
	NameNodeDraining      = "node_draining"
	NameNodeLeft          = "node_left"
	NameStepDone          = "step_done"
	NameHeadTimeLimit     = "head_time_limit"
	NameDriverStopping    = "driver_stopping"
	// NameAutoscalerDecision is the head's autoscaler deciding (written to
	// events/autoscaler.jsonl; the observer counts them for /metrics).
	NameAutoscalerDecision = "autoscaler_decision"
	// NameJobState is a job whose SLURM state or Ray membership changed, as
	// the head saw it (its first sighting included).
	NameJobState = "job_state"
	// NameClusterSample is the cluster's GPUs: written when a value
	// changes, and at least every ClusterSampleEvery.
	NameClusterSample = "cluster_sample"
)

// Timeline events: derived from the cluster's state files by the timeline,
// never written to an event file.
const (
	// NameSubmitted: a job was submitted (one per job key of an array).
	NameSubmitted = "submitted"
	// NameJobStarted: the job's supervisor started on its node.
	NameJobStarted = "job_started"
	// NameJobEnded: the job's supervisor recorded its end.
	NameJobEnded = "job_ended"
	// NameTimeLimitWarning: SLURM warned that the job's time limit is near.
	NameTimeLimitWarning = "time_limit_warning"
	// NameHeadUp: the head published its address.
	NameHeadUp = "head_up"
	// NameHeadStopping: the head was told to stop.
	NameHeadStopping = "head_stopping"
	// NameDownRequested: `sraybatch down` was asked for.
	NameDownRequested = "down_requested"
	// NameHandover: a rollover cluster's head handed the cluster to the
	// next generation's head.
	NameHandover = "handover"
)

// ClusterSampleEvery bounds the gap between two cluster_sample events, so a
// reader can tell an unchanged cluster from a silent one.
const ClusterSampleEvery = time.Minute

// Payload is any event's struct: its fields, and its name.
type Payload interface {
	Name() string
}

// FileEvent is the struct of an event a file holds: it has its time (a
// Stamp), so only these can be appended.
type FileEvent interface {
	Payload
	Time() time.Time
}

// Stamp is when a file event happened; every file event's struct embeds it.
type Stamp struct {
	TS float64 `json:"ts"`
}

// At is the stamp of an event at t.
func At(t time.Time) Stamp { return Stamp{TS: TS(t)} }

// Time is the stamp as a time.
func (s Stamp) Time() time.Time { return UnixSeconds(s.TS) }

// UnixSeconds is an event's ts (float Unix seconds, as Python's time.time()
// writes it) as a time.
func UnixSeconds(ts float64) time.Time {
	sec := int64(ts)
	return time.Unix(sec, int64((ts-float64(sec))*1e9)).UTC()
}

// TS is t as an event's ts.
func TS(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
