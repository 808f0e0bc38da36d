package cluster

import (
	"fmt"
	"time"

	"github.com/sraybatch/sraybatch/internal/scheduler"
)

// MembershipFreshFor is how old the head's membership snapshot may be before
// its "alive" entries are no longer believed (the head refreshes it every 2 s).
const MembershipFreshFor = 15 * time.Second

// Observation is everything status is derived from: the spec and records in
// the cluster directory plus one squeue answer.
type Observation struct {
	Dir         Dir
	Spec        Spec
	Submissions []Submission
	Records     map[string]NodeRecord
	Membership  MembershipSnapshot
	Head        *HeadInfo
	Down        *DownRequest
	// Drains are the head's notices that Ray accepted draining a worker, by
	// job key: its node leaves Ray before its supervisor records the end.
	Drains map[string]DrainNotice
	// Slurm holds this cluster's jobs as squeue reported them, by job key;
	// nil with SlurmErr set when SLURM could not be asked.
	Slurm    map[string]scheduler.Job
	SlurmErr error
	// Training holds each driver job's progress, read from its event file.
	Training map[string]TrainProgress
	// Autoscaler is the head's autoscaler as it last wrote; nil: never.
	Autoscaler *AutoscalerStatus
	// Handover is the current generation's handover record, while the next
	// generation is not published yet; nil: none. LastHandover is the one
	// that made the current generation.
	Handover, LastHandover *Handover
	// Generations are every published generation, ascending, and
	// Handovers every handover record; none without generations.
	Generations []Generation
	Handovers   []Handover
	Now         time.Time
}

// TrainProgress is what a driver's events say about its elastic actor pool.
type TrainProgress struct {
	// Actors counts live actors per job key (the node they run on).
	Actors   map[string]int
	LastStep *int
	// LastStepSeconds is the last step's mean duration per actor (step_done's mean_duration_s).
	LastStepSeconds *float64
	// Restarts, StateSyncs and Checkpoints count actor_restarted,
	// state_synced and checkpoint_written events.
	Restarts, StateSyncs, Checkpoints int
	// Excluded names the jobs whose node the pool left out, and why: such a
	// node still holds its GPUs.
	Excluded map[string]string
	// Crossings are the driver's steps around each generation's
	// publication, by that generation (handovers.go).
	Crossings map[int]Crossing
}

// TrainingCounts is a driver's health and state traffic, as status shows it.
type TrainingCounts struct {
	ActorRestarts int `json:"actor_restarts"`
	StateSyncs    int `json:"state_syncs"`
	Checkpoints   int `json:"checkpoints"`
}

// Status is the observed state of a cluster, as `status` prints it.
type Status struct {
	Cluster ClusterStatus `json:"cluster"`
	Jobs    []JobStatus   `json:"jobs"`
	// Autoscaler is present for clusters started with --autoscale (or
	// switched on with `autoscale`).
	Autoscaler *AutoscalerStatus `json:"autoscaler,omitempty"`
	// Types is a line per worker type, in the cluster file's order; absent
	// for a cluster without types (its workers are all of one shape).
	Types []TypeStatus `json:"types,omitempty"`
}

// ClusterStatus is the cluster line of `status`.
type ClusterStatus struct {
	Name        string    `json:"name"`
	ID          string    `json:"id"`
	State       State     `json:"state"`
	Reason      string    `json:"reason,omitempty"`
	HeadAddress string    `json:"head_address"`
	Dashboard   string    `json:"dashboard"`
	HeadNode    string    `json:"head_node,omitempty"`
	Created     time.Time `json:"created"`
	AgeS        int64     `json:"age_s"`
	Insecure    bool      `json:"insecure"`
	// SlurmError is set when squeue could not be asked; SLURM columns are then stale or empty.
	SlurmError string `json:"slurm_error,omitempty"`
	// MembershipAgeS is the age of the head's Ray membership snapshot (null: none yet).
	MembershipAgeS *int64 `json:"membership_age_s"`
	// Warning says when the head's time limit, which ends the cluster, is near.
	Warning string `json:"warning,omitempty"`
	// Generation is the current head generation of a rollover cluster, and
	// HeadJob its head job; absent for a cluster without generations.
	Generation int    `json:"generation,omitempty"`
	HeadJob    string `json:"head_job,omitempty"`
	// GenerationHow is how the current generation's head came to be (first,
	// promoted, submitted), PreviousHeadJob the head job it took over from
	// (absent for the first).
	GenerationHow   GenerationHow `json:"generation_how,omitempty"`
	PreviousHeadJob string        `json:"previous_head_job,omitempty"`
	// Handovers are the cluster's handovers so far, oldest first (the one
	// under way included).
	Handovers []HandoverStatus `json:"handovers,omitempty"`
}

// JobStatus is one row of `status`: one SLURM job, one Ray node.
type JobStatus struct {
	Role       Role       `json:"role"`
	JobID      string     `json:"job_id"`
	SlurmState string     `json:"slurm_state"`
	Reason     string     `json:"reason"`
	Node       string     `json:"node"`
	GPUs       int        `json:"gpus"`
	Ray        Membership `json:"ray"`
	RayNodeID  string     `json:"ray_node_id"`
	IP         string     `json:"ip,omitempty"`
	ElapsedS   int64      `json:"elapsed_s"`
	// TimeLeftS is null when the job has no time limit or has ended.
	TimeLeftS *int64 `json:"time_left_s"`
	// Actors counts training actors on this job's node; for a driver, its whole pool.
	Actors int `json:"actors"`
	// GPUSamples is the node's GPU use as its supervisor last sampled it,
	// GPUsSampledAgeS how long ago (null: never).
	GPUSamples      []GPUSample `json:"gpu_samples,omitempty"`
	GPUsSampledAgeS *int64      `json:"gpus_sampled_age_s"`
	// Outcome is how the job ended (null while it runs or waits).
	Outcome Outcome `json:"outcome,omitempty"`
	// LastStep and ExitCode describe driver jobs (null for other roles).
	LastStep *int `json:"last_step"`
	ExitCode *int `json:"exit_code"`
	// Successor is the driver job this driver job handed its run over to.
	Successor string `json:"successor,omitempty"`
	// Training counts a driver's actor restarts, state syncs and checkpoints.
	Training *TrainingCounts `json:"training,omitempty"`
	// Excluded says why a driver's pool left this node out; the node still
	// holds its GPUs.
	Excluded string `json:"excluded,omitempty"`
	// Type is a worker's type in a cluster with types; "" otherwise.
	Type string `json:"type,omitempty"`
}

// SlurmGone is shown for jobs squeue no longer knows (ended longer ago than MinJobAge).
const SlurmGone = "GONE"

// StatusOf derives the cluster's status. It is a pure function of its input.
func StatusOf(o Observation) Status {
	fresh := !o.Membership.Updated.IsZero() && o.Now.Sub(o.Membership.Updated) < MembershipFreshFor
	st := Status{Cluster: ClusterStatus{
		Name:     o.Spec.Name,
		ID:       o.Spec.ID,
		Created:  o.Spec.Created,
		AgeS:     int64(o.Now.Sub(o.Spec.Created).Seconds()),
		Insecure: o.Spec.Insecure,
	}}
	if !o.Membership.Updated.IsZero() {
		st.Cluster.MembershipAgeS = seconds(o.Now.Sub(o.Membership.Updated))
	}
	if o.SlurmErr != nil {
		st.Cluster.SlurmError = o.SlurmErr.Error()
	}
	if o.Head != nil {
		st.Cluster.HeadAddress = o.Head.Address
		st.Cluster.Dashboard = o.Head.Dashboard
		st.Cluster.HeadNode = o.Head.SlurmNode
		if o.Head.Generation > 0 {
			st.Cluster.Generation, st.Cluster.HeadJob = o.Head.Generation, o.Head.Job
			generationsOf(o, &st.Cluster)
		}
	}
	heads := headJobs(o, st.Cluster.HeadJob)
	for _, sub := range o.Submissions {
		for _, key := range sub.JobKeys() {
			role := sub.Role
			if heads[key] {
				role = RoleHead // a worker job promoted to head (generation.go), now or before
			}
			js := jobStatusOf(o, role, key, fresh)
			if role == RoleWorker && len(o.Spec.Workers) > 0 {
				js.Type = typeOf(o.Spec, sub)
			}
			st.Jobs = append(st.Jobs, js)
		}
	}
	countActors(o, st.Jobs)
	st.Types = groupByType(o.Spec, st.Jobs, o.Autoscaler)
	if o.Autoscaler != nil || o.Spec.Autoscale.Enabled {
		st.Autoscaler = autoscalerStatusOf(o)
	}
	st.Cluster.State, st.Cluster.Reason = clusterState(o, st.Jobs, st.Cluster.HeadJob)
	if st.Cluster.State == StateRunning && !o.Spec.RollsOver() {
		st.Cluster.Warning = headTimeWarning(o, st.Jobs)
	}
	return st
}

// generationsOf fills in how the current generation came to be and every
// handover so far.
func generationsOf(o Observation, c *ClusterStatus) {
	published := map[int]*Generation{}
	for i := range o.Generations {
		published[o.Generations[i].Generation] = &o.Generations[i]
	}
	if g := published[c.Generation]; g != nil {
		c.GenerationHow, c.PreviousHeadJob = g.How, g.PreviousHeadJob
	}
	for _, h := range o.Handovers {
		var crossings []Crossing
		for _, p := range o.Training {
			if x, ok := p.Crossings[h.Generation+1]; ok {
				crossings = append(crossings, x)
			}
		}
		c.Handovers = append(c.Handovers, HandoverStatusOf(h, published[h.Generation+1], crossings))
	}
}

// headJobs is every job that has been a head: each published generation's,
// and the current one's. A worker promoted to head stays a head in status
// once a later generation's head takes over: it served as one.
func headJobs(o Observation, current string) map[string]bool {
	heads := map[string]bool{current: current != ""}
	for _, g := range o.Generations {
		heads[g.Job] = true
	}
	return heads
}

// headTimeWarning warns once the head is within --drain-before of its time
// limit (SLURM's own warning, or squeue's time left).
func headTimeWarning(o Observation, jobs []JobStatus) string {
	for _, j := range jobs {
		if j.Role != RoleHead {
			continue
		}
		left := time.Duration(-1)
		if rec, ok := o.Records[j.JobID]; ok && rec.TimeLimitAt != nil {
			left = rec.TimeLimitAt.Sub(o.Now)
		} else if j.TimeLeftS != nil && *j.TimeLeftS <= int64(o.Spec.DrainBeforeS) {
			left = time.Duration(*j.TimeLeftS) * time.Second
		}
		if left >= 0 {
			return fmt.Sprintf("the head reaches its time limit in about %s: the cluster ends then; checkpoint", left.Round(time.Second))
		}
	}
	return ""
}

// countActors credits each live node with the actors drivers placed on it,
// and each running driver with its live pool: a driver killed with its
// cluster never logs its actors' end, so only nodes still in Ray count.
func countActors(o Observation, jobs []JobStatus) {
	live := map[string]bool{}
	for _, j := range jobs {
		live[j.JobID] = j.Ray == MembershipJoined || j.Ray == MembershipDraining
	}
	for i := range jobs {
		j := &jobs[i]
		for driver, p := range o.Training {
			if live[j.JobID] {
				j.Actors += p.Actors[j.JobID]
			}
			if driver == j.JobID && live[driver] {
				for node, n := range p.Actors {
					if live[node] {
						j.Actors += n
					}
				}
			}
		}
	}
}

func jobStatusOf(o Observation, role Role, key string, fresh bool) JobStatus {
	js := JobStatus{Role: role, JobID: key}
	rec, hasRec := o.Records[key]
	sj, inSlurm := o.Slurm[key]
	switch {
	case inSlurm:
		js.SlurmState = string(sj.State)
		js.Reason = sj.Reason
		js.Node = sj.Node
		js.GPUs = sj.GPUs
		js.ElapsedS = int64(sj.Elapsed.Seconds())
		if !sj.Unlimited && sj.State.Active() {
			left := int64(sj.TimeLeft.Seconds())
			js.TimeLeftS = &left
		}
	case o.SlurmErr == nil:
		js.SlurmState = SlurmGone
	}
	if hasRec {
		if js.Node == "" {
			js.Node = rec.SlurmNode
		}
		if rec.GPUs > 0 || js.GPUs == 0 {
			js.GPUs = rec.GPUs
		}
		js.IP = rec.IP
		if rec.Reason != "" && (js.Reason == "" || rec.Final()) {
			js.Reason = rec.Reason
		}
		js.ExitCode, js.Successor = rec.ExitCode, rec.Successor
		if rec.GPUsSampled != nil {
			js.GPUSamples = rec.GPUSamples
			js.GPUsSampledAgeS = seconds(o.Now.Sub(*rec.GPUsSampled))
		}
	}
	if p, ok := o.Training[key]; ok {
		js.LastStep = p.LastStep
		js.Training = &TrainingCounts{ActorRestarts: p.Restarts, StateSyncs: p.StateSyncs, Checkpoints: p.Checkpoints}
	}
	for _, p := range o.Training {
		if why, ok := p.Excluded[key]; ok {
			js.Excluded = why
		}
	}
	member := o.Membership.Nodes[key]
	if member != nil {
		js.RayNodeID = member.NodeID
	}
	js.Outcome = jobOutcome(rec, hasRec, sj, inSlurm)
	js.Ray = membership(o, rec, hasRec, js.Outcome, sj, inSlurm, member, fresh)
	return js
}

// jobOutcome is how the job ended, or "" while it has not.
func jobOutcome(rec NodeRecord, hasRec bool, sj scheduler.Job, inSlurm bool) Outcome {
	var recorded Outcome
	if hasRec && rec.Final() {
		recorded = rec.Outcome
	}
	var state scheduler.JobState
	switch {
	case inSlurm && !sj.State.Active():
		state = sj.State
	case inSlurm && sj.State == scheduler.Pending && recorded == OutcomeCancelled:
		// Pending again after its run recorded a cancel: SLURM requeued
		// the job (PreemptMode=REQUEUE), and the SIGTERM its run took for
		// a cancel was the preemption's. Its rerun's record replaces this.
		state = scheduler.Preempted
	}
	return JobOutcome(recorded, state)
}

func seconds(d time.Duration) *int64 {
	s := int64(d.Seconds())
	return &s
}

func membership(o Observation, rec NodeRecord, hasRec bool, outcome Outcome, sj scheduler.Job, inSlurm bool, member *MemberNode, fresh bool) Membership {
	downed := o.Down != nil
	slurmEnded := inSlurm && !sj.State.Active()
	alive := member != nil && member.Alive && fresh && !(hasRec && rec.Final()) && !slurmEnded
	if alive {
		if hasRec && rec.Phase == PhaseDraining {
			return MembershipDraining
		}
		return MembershipJoined
	}
	everJoined := member != nil
	jobOver := (hasRec && rec.Final()) || slurmEnded || (!inSlurm && o.SlurmErr == nil)
	if everJoined {
		// Ray may let a node asked to leave go before its supervisor
		// records the end: not lost, ended.
		if downed || outcome.Orderly() || (leaving(o, rec, hasRec, member, fresh) && !jobOver) {
			return MembershipEnded
		}
		return MembershipLost
	}
	if hasRec && rec.Phase == PhaseFailed {
		return MembershipFailed
	}
	if jobOver {
		if downed {
			return MembershipEnded
		}
		return MembershipFailed
	}
	return MembershipWaiting
}

// leaving reports whether a node that a fresh snapshot shows gone from Ray
// was asked to leave in order: its supervisor was draining it before its
// time limit, or the head's autoscaler had Ray drain it for idleness (a
// drain notice). A preempted node drains too, but its job ends preempted,
// which is lost (and requeued): showing it ended first would flip back.
func leaving(o Observation, rec NodeRecord, hasRec bool, member *MemberNode, fresh bool) bool {
	if !fresh || member.Alive || !hasRec || rec.PreemptedAt != nil {
		return false
	}
	_, noticed := o.Drains[rec.Job]
	return rec.Phase == PhaseDraining || noticed
}

// Reasons a supervisor records for an orderly end, shown as `ended`, not `lost`.
const (
	// ReasonDrained: the node left Ray before its time limit.
	ReasonDrained = "drained before the time limit"
	// ReasonDriverFinished: the driver command exited 0.
	ReasonDriverFinished = "driver finished"
	// ReasonPreempted: SLURM preempted the job, and its node left Ray
	// through Ray's drain before SLURM's kill.
	ReasonPreempted = "preempted by SLURM: drained before the kill"
)

func clusterState(o Observation, jobs []JobStatus, current string) (State, string) {
	if o.Down != nil {
		return StateEnded, "down requested " + o.Down.Requested.Local().Format(time.DateTime)
	}
	if h := o.Handover; h != nil {
		return StatePending, waitingForHead(*h, o.Spec, o.Now)
	}
	head := headOf(jobs, current)
	if head == nil {
		return StatePending, "head not submitted"
	}
	switch head.Ray {
	case MembershipJoined, MembershipDraining:
		if why := lostByItsJobs(o); why != "" {
			// The head's last snapshot still looks fresh, but its workers,
			// which probe its GCS, have given it up since.
			return StateFailed, fmt.Sprintf("head job %s lost: %s", head.JobID, why)
		}
		return StateRunning, ""
	case MembershipWaiting:
		if o.Head != nil {
			return StateRunning, "" // published, membership not refreshed yet
		}
		return StatePending, head.Reason
	case MembershipLost:
		reason := head.Reason
		if hb := o.Membership.Heartbeat; reason == "" && !hb.IsZero() && o.Now.Sub(hb) > MembershipFreshFor {
			reason = fmt.Sprintf("unresponsive: no heartbeat for %s", o.Now.Sub(hb).Round(time.Second))
		}
		return StateFailed, fmt.Sprintf("head job %s lost: %s", head.JobID, orUnknown(reason))
	default:
		return StateFailed, fmt.Sprintf("head job %s %s: %s", head.JobID, head.Ray, orUnknown(head.Reason))
	}
}

// lostByItsJobs returns the reason a job recorded for giving up the head
// after the head's last heartbeat, or "".
func lostByItsJobs(o Observation) string {
	for _, rec := range o.Records {
		if rec.Final() && rec.Outcome == OutcomeHeadLost && rec.Updated.After(o.Membership.Heartbeat) {
			return rec.Reason
		}
	}
	return ""
}

func orUnknown(s string) string {
	if s == "" {
		return "no reason recorded"
	}
	return s
}

// Head is the head job's row (the current generation's); nil before the
// head was submitted.
func (st Status) Head() *JobStatus { return headOf(st.Jobs, st.Cluster.HeadJob) }

// headOf is the row of the head job current (a rollover cluster's current
// generation), or of the first head when current is "".
func headOf(jobs []JobStatus, current string) *JobStatus {
	for i := range jobs {
		if jobs[i].Role == RoleHead && (current == "" || jobs[i].JobID == current) {
			return &jobs[i]
		}
	}
	return nil
}

// autoscalerStatusOf is the autoscaler's status: its settings from the spec
// (a change shows at once), the rest as the head last wrote it.
func autoscalerStatusOf(o Observation) *AutoscalerStatus {
	a := AutoscalerStatus{Demand: map[string]int{}}
	if o.Autoscaler != nil {
		a = *o.Autoscaler
	}
	a.Enabled, a.MinWorkers, a.MaxWorkers = o.Spec.Autoscale.Enabled, o.Spec.Autoscale.MinWorkers, o.Spec.Autoscale.MaxWorkers
	if a.Infeasible == nil {
		a.Infeasible = []InfeasibleDemand{}
	}
	if o.Autoscaler == nil && a.Enabled {
		a.Reason = "waiting for the head to start the autoscaler"
	}
	return &a
}

// waitingForHead says why a rollover cluster has no head now: its head
// handed over, and the next generation is not published yet.
func waitingForHead(h Handover, spec Spec, now time.Time) string {
	wait := time.Duration(0)
	if spec.Rollover != nil {
		wait = spec.Rollover.HeadWait()
	}
	return fmt.Sprintf("waiting for head: generation %d handed over to %s job %s %s ago (%s); its workers keep their GPUs for --head-wait %s",
		h.Generation, h.How, h.Successor, now.Sub(h.Started).Round(time.Second), h.Why, wait)
}
