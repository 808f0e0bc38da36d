package events

import "github.com/sraybatch/sraybatch/internal/cluster"

// The structs of the file events, one per name. Fields without omitempty
// are the ones testdata/shared-state.json requires; a number Python may
// write as an int or a float is a float64.

// NodeJoined: the pool saw a new ALIVE Ray node carrying its job's resource.
type NodeJoined struct {
	Stamp
	NodeID string  `json:"node_id"`
	Job    string  `json:"job"`
	GPUs   float64 `json:"gpus"`
}

// ActorSpawned: an actor answered its first call and joined the rotation.
type ActorSpawned struct {
	Stamp
	Actor          string `json:"actor"`
	NodeID         string `json:"node_id"`
	Job            string `json:"job"`
	PlacementGroup string `json:"placement_group"`
	// GPUIndex is the actor's CUDA_VISIBLE_DEVICES; null for a CPU actor.
	GPUIndex *string `json:"gpu_index,omitempty"`
}

// ActorLost: the actor left the pool; Reason is one of events.py's
// LOST_REASONS, Error how a call failed (actor_died).
type ActorLost struct {
	Stamp
	Actor  string  `json:"actor"`
	NodeID string  `json:"node_id"`
	Job    string  `json:"job"`
	Reason string  `json:"reason"`
	Error  *string `json:"error,omitempty"`
}

// ActorRestarted: an actor died while its node stayed alive; Actor is its
// replacement, Attempt the slot's failures in a row.
type ActorRestarted struct {
	Stamp
	Actor   string `json:"actor"`
	NodeID  string `json:"node_id"`
	Job     string `json:"job"`
	Attempt int    `json:"attempt"`
	Reason  string `json:"reason"`
}

// StateSynced: a replica received its state (from a peer or the last
// checkpoint) before joining the rotation.
type StateSynced struct {
	Stamp
	Job     string  `json:"job"`
	Actor   string  `json:"actor"`
	Source  string  `json:"source"`
	Bytes   int     `json:"bytes"`
	Seconds float64 `json:"seconds"`
}

// CheckpointWritten: the pool wrote one live actor's state to Path.
type CheckpointWritten struct {
	Stamp
	Path    string  `json:"path"`
	Bytes   int     `json:"bytes"`
	Seconds float64 `json:"seconds"`
}

// NodeExcluded: a node gets no more actors, while its job holds its GPUs.
type NodeExcluded struct {
	Stamp
	NodeID string `json:"node_id"`
	Job    string `json:"job"`
	Reason string `json:"reason"`
}

// NodeDraining: the node's job is draining; it gets no new steps.
type NodeDraining struct {
	Stamp
	NodeID string `json:"node_id"`
	Job    string `json:"job"`
}

// NodeLeft: the node is no longer ALIVE in Ray.
type NodeLeft struct {
	Stamp
	NodeID string `json:"node_id"`
	Job    string `json:"job"`
}

// StepDone: one training step finished on Actors survivors, in
// MeanDurationS per actor.
type StepDone struct {
	Stamp
	Step          int       `json:"step"`
	Actors        int       `json:"actors"`
	MeanDurationS float64   `json:"mean_duration_s"`
	Losses        []float64 `json:"losses"`
}

// HeadTimeLimit is reserved for the driver: the head's time limit is near.
type HeadTimeLimit struct {
	Stamp
	SecondsLeft float64 `json:"seconds_left"`
}

// DriverStopping: the driver stops before its work is done (Reason is the
// signal's name).
type DriverStopping struct {
	Stamp
	Reason string `json:"reason"`
}

// AutoscalerDecision: the worker jobs the autoscaler submitted, the pending
// ones it cancelled, the idle ones Ray drained, and why. The lists are
// never null: an empty one is [].
type AutoscalerDecision struct {
	Stamp
	Submitted []string `json:"submitted"`
	Cancelled []string `json:"cancelled"`
	Drained   []string `json:"drained"`
	Reason    string   `json:"reason"`
}

// JobState: a job's SLURM state or Ray membership as the head saw it change.
type JobState struct {
	Stamp
	Job        string             `json:"job"`
	Role       cluster.Role       `json:"role"`
	SlurmState string             `json:"slurm_state"`
	Membership cluster.Membership `json:"membership"`
	GPUs       int                `json:"gpus"`
	// Type is a worker's type in a cluster with types (cluster.JobStatus's);
	// absent otherwise, and in files written before types.
	Type string `json:"type,omitempty"`
}

// ClusterSample: the cluster's GPUs as the head counts them.
type ClusterSample struct {
	Stamp
	GPUsRequested int `json:"gpus_requested"`
	GPUsJoined    int `json:"gpus_joined"`
	// GPUsAllocated is what Ray has handed to tasks and actors; fractional
	// GPUs make it a float.
	GPUsAllocated float64 `json:"gpus_allocated"`
	Jobs          int     `json:"jobs"`
}

func (NodeJoined) Name() string         { return NameNodeJoined }
func (ActorSpawned) Name() string       { return NameActorSpawned }
func (ActorLost) Name() string          { return NameActorLost }
func (ActorRestarted) Name() string     { return NameActorRestarted }
func (StateSynced) Name() string        { return NameStateSynced }
func (CheckpointWritten) Name() string  { return NameCheckpointWritten }
func (NodeExcluded) Name() string       { return NameNodeExcluded }
func (NodeDraining) Name() string       { return NameNodeDraining }
func (NodeLeft) Name() string           { return NameNodeLeft }
func (StepDone) Name() string           { return NameStepDone }
func (HeadTimeLimit) Name() string      { return NameHeadTimeLimit }
func (DriverStopping) Name() string     { return NameDriverStopping }
func (AutoscalerDecision) Name() string { return NameAutoscalerDecision }
func (JobState) Name() string           { return NameJobState }
func (ClusterSample) Name() string      { return NameClusterSample }

// The structs of the timeline events: their fields, without the job and
// role every timeline event carries on its own.

// Submitted: JobID is the sbatch id, Tasks an array's size, Type a
// worker's type as its submission recorded it ("": the default type, or a
// cluster without types).
type Submitted struct {
	JobID      string `json:"job_id"`
	Tasks      int    `json:"tasks,omitempty"`
	Autoscaled bool   `json:"autoscaled,omitempty"`
	Type       string `json:"type,omitempty"`
}

// JobStarted: the SLURM node the job's supervisor started on.
type JobStarted struct {
	Node string `json:"node"`
}

// JobEnded: how the job's supervisor recorded its end; ExitCode is a
// driver's.
type JobEnded struct {
	Phase    cluster.Phase   `json:"phase"`
	Outcome  cluster.Outcome `json:"outcome"`
	Reason   string          `json:"reason"`
	ExitCode *int            `json:"exit_code,omitempty"`
}

// TimeLimitWarning: the job's time limit (RFC 3339), which SLURM's warning
// precedes by the spec's --drain-before.
type TimeLimitWarning struct {
	TimeLimitAt string `json:"time_limit_at"`
}

// HeadUp: the address the head published, its node and Ray's version; for
// a rollover cluster, one per generation, with how its head came to be
// (cluster.GenerationHow) and the head job it took over from.
type HeadUp struct {
	Address      string `json:"address"`
	Node         string `json:"node"`
	RayVersion   string `json:"ray_version"`
	Generation   int    `json:"generation,omitempty"`
	How          string `json:"how,omitempty"`
	PreviousHead string `json:"previous_head,omitempty"`
}

// HeadStopping: why the head was told to stop.
type HeadStopping struct {
	Reason string `json:"reason"`
}

// DownRequested has no fields.
type DownRequested struct{}

// Handover: generation's head (the event's job) handed over to successor
// (the next generation's head job), promoted or submitted, for reason. It
// is shown once its facts are in (timeline.handoverSettled): SealedS is how
// long the old head took from the handover's start to stop accepting,
// PublishedS to the next generation's publication (absent: not known). GapS and StepsLost are what the
// training paid (cluster.HandoverCost), absent without a driver's steps on
// both sides of the publication.
type Handover struct {
	Generation int      `json:"generation"`
	Successor  string   `json:"successor"`
	How        string   `json:"how"`
	Reason     string   `json:"reason"`
	SealedS    *float64 `json:"sealed_s,omitempty"`
	PublishedS *float64 `json:"published_s,omitempty"`
	GapS       *float64 `json:"gap_s,omitempty"`
	StepsLost  *int     `json:"steps_lost,omitempty"`
}

func (Submitted) Name() string        { return NameSubmitted }
func (JobStarted) Name() string       { return NameJobStarted }
func (JobEnded) Name() string         { return NameJobEnded }
func (TimeLimitWarning) Name() string { return NameTimeLimitWarning }
func (HeadUp) Name() string           { return NameHeadUp }
func (HeadStopping) Name() string     { return NameHeadStopping }
func (DownRequested) Name() string    { return NameDownRequested }
func (Handover) Name() string         { return NameHandover }
