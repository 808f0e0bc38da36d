package metrics

import (
	"cmp"
	"slices"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

// Histogram bounds: a queue wait spans seconds to hours, a join seconds.
var (
	submitToRunningBounds = []float64{1, 2, 5, 10, 30, 60, 300, 900, 3600, 14400}
	runningToJoinedBounds = []float64{1, 2, 5, 10, 20, 30, 60, 120, 300}
)

// families is the exposition of one snapshot. Every series carries the
// label cluster; per-job series slurm_job_id and role (never "job", which
// is Prometheus's own target label), and a worker's its worker_type in a
// cluster with types. Per-job series cover live jobs only,
// so a long-lived cluster's ended jobs do not pile up series.
func families(s Snapshot) []family {
	st := s.Status
	c := label{"cluster", st.Cluster.Name}
	base := []label{c}
	jobLabels := func(j cluster.JobStatus) []label {
		l := []label{c, {"slurm_job_id", j.JobID}, {"role", string(j.Role)}}
		if j.Type != "" { // a worker of a cluster with worker types
			l = append(l, label{"worker_type", j.Type})
		}
		return l
	}
	up := func(ok bool) float64 {
		if ok {
			return 1
		}
		return 0
	}
	t := TotalsOf(st)
	fams := []family{
		{name: "sraybatch_observed_timestamp_seconds", unit: "seconds", kind: gauge,
			help:    "When the head last observed the cluster (Unix time); a scrape serves that observation.",
			samples: []sample{{"", base, float64(s.At.UnixNano()) / 1e9}}},
		{name: "sraybatch_slurm_up", kind: gauge, help: "1 when the last observation's squeue answered, else 0 (SLURM figures are then the last known).",
			samples: []sample{{"", base, up(st.Cluster.SlurmError == "")}}},
		{name: "sraybatch_ray_up", kind: gauge, help: "1 when the last observation reached Ray's GCS, else 0.",
			samples: []sample{{"", base, up(s.Ray != nil)}}},
		jobsFamily(st, c),
		{name: "sraybatch_gpus_requested", kind: gauge, help: "GPUs the cluster's live jobs (pending or running) asked SLURM for.",
			samples: []sample{{"", base, float64(t.GPUsRequested)}}},
		{name: "sraybatch_gpus_joined", kind: gauge, help: "GPUs of the jobs whose Ray node is joined to the cluster (draining included).",
			samples: []sample{{"", base, float64(t.GPUsJoined)}}},
	}
	if s.Ray != nil {
		fams = append(fams,
			family{name: "sraybatch_gpus_allocated", kind: gauge, help: "GPUs Ray has allocated to tasks and actors (GCS totals minus available).",
				samples: []sample{{"", base, s.Ray.Allocated()}}},
			family{name: "sraybatch_ray_gpus", kind: gauge, help: "GPUs the cluster's alive Ray nodes advertise (GCS).",
				samples: []sample{{"", base, s.Ray.Total}}})
	}

	pj := newPerJob()
	for _, j := range st.Jobs {
		if Live(j) {
			pj.add(j, jobLabels(j), s.Observation.Training)
		}
	}
	fams = append(fams, pj.jobGPUs, pj.util, pj.memUsed, pj.memTotal)
	fams = append(fams, durationHistograms(s.Observation, c)...)
	fams = append(fams, pj.nodeActors, pj.driverActors, pj.lastStep, pj.stepTime, pj.timeLeft)
	if a := st.Autoscaler; a != nil {
		fams = append(fams, autoscalerFamilies(a, s.Autoscaler, s.At, base)...)
	}
	if st.Cluster.Generation > 0 {
		fams = append(fams, generationFamilies(s.Observation, st.Cluster, base)...)
	}
	return fams
}

// generationFamilies are a rollover cluster's head generations: the current
// one, the handovers so far, how long the last took from its start to the
// next generation's publication, and what the last whose driver stepped on
// both sides cost the training (cluster.HandoverCost).
func generationFamilies(o cluster.Observation, c cluster.ClusterStatus, base []label) []family {
	gen := c.Generation
	fams := []family{
		{name: "sraybatch_generation", kind: gauge, help: "The current head generation of a rollover cluster (up --rollover).",
			samples: []sample{{"", base, float64(gen)}}},
		{name: "sraybatch_handovers", kind: counter, help: "Head handovers so far (a generation each).",
			samples: []sample{{"_total", base, float64(gen - 1)}}},
	}
	if h := o.LastHandover; h != nil && o.Head != nil {
		fams = append(fams, family{name: "sraybatch_last_handover_seconds", unit: "seconds", kind: gauge,
			help:    "The last handover, from its start to the next generation's publication.",
			samples: []sample{{"", base, nonNegative(o.Head.Published.Sub(h.Started))}}})
	}
	for i := len(c.Handovers) - 1; i >= 0; i-- {
		h := c.Handovers[i]
		if h.GapS == nil || h.StepsLost == nil {
			continue
		}
		fams = append(fams,
			family{name: "sraybatch_last_handover_gap_seconds", unit: "seconds", kind: gauge,
				help:    "The driver's gap at the last handover it stepped across: its last step on the old generation to its first on the new.",
				samples: []sample{{"", base, *h.GapS}}},
			family{name: "sraybatch_last_handover_steps_lost", kind: gauge,
				help:    "The steps the driver lost at that handover: its last step on the old generation less the step it resumed from.",
				samples: []sample{{"", base, float64(*h.StepsLost)}}})
		break
	}
	return fams
}

// perJob is the families with a sample per live job (or per GPU of one).
type perJob struct {
	jobGPUs, util, memUsed, memTotal                       family
	nodeActors, driverActors, lastStep, stepTime, timeLeft family
}

func newPerJob() *perJob {
	return &perJob{
		jobGPUs:      family{name: "sraybatch_job_gpus", kind: gauge, help: "GPUs of each live job."},
		util:         family{name: "sraybatch_node_gpu_utilization_ratio", unit: "ratio", kind: gauge, help: "Each GPU's utilization (0-1) as NVML last sampled it on its node."},
		memUsed:      family{name: "sraybatch_node_gpu_memory_used_bytes", unit: "bytes", kind: gauge, help: "Each GPU's memory in use as NVML last sampled it."},
		memTotal:     family{name: "sraybatch_node_gpu_memory_total_bytes", unit: "bytes", kind: gauge, help: "Each GPU's memory as NVML reports it."},
		nodeActors:   family{name: "sraybatch_node_actors", kind: gauge, help: "Training actors the cluster's drivers run on each joined node."},
		driverActors: family{name: "sraybatch_driver_actors", kind: gauge, help: "Live actors of each running driver's pool."},
		lastStep:     family{name: "sraybatch_driver_last_step", kind: gauge, help: "The last step each running driver finished."},
		stepTime:     family{name: "sraybatch_driver_step_seconds", unit: "seconds", kind: gauge, help: "The mean duration per actor of each running driver's last step."},
		timeLeft:     family{name: "sraybatch_head_time_left_seconds", unit: "seconds", kind: gauge, help: "Time until the head job's SLURM time limit, which ends the cluster."},
	}
}

// add is one live job's samples, labelled l.
func (p *perJob) add(j cluster.JobStatus, l []label, training map[string]cluster.TrainProgress) {
	p.jobGPUs.samples = append(p.jobGPUs.samples, sample{"", l, float64(j.GPUs)})
	if j.Role == cluster.RoleHead && j.TimeLeftS != nil {
		p.timeLeft.samples = append(p.timeLeft.samples, sample{"", l, float64(*j.TimeLeftS)})
	}
	if InRay(j) {
		p.addGPUs(j.GPUSamples, l)
	}
	if j.Role != cluster.RoleDriver {
		if InRay(j) {
			p.nodeActors.samples = append(p.nodeActors.samples, sample{"", l, float64(j.Actors)})
		}
		return
	}
	p.driverActors.samples = append(p.driverActors.samples, sample{"", l, float64(j.Actors)})
	if pr, ok := training[j.JobID]; ok {
		if pr.LastStep != nil {
			p.lastStep.samples = append(p.lastStep.samples, sample{"", l, float64(*pr.LastStep)})
		}
		if pr.LastStepSeconds != nil {
			p.stepTime.samples = append(p.stepTime.samples, sample{"", l, *pr.LastStepSeconds})
		}
	}
}

// addGPUs is a joined node's NVML samples, one per GPU.
func (p *perJob) addGPUs(samples []cluster.GPUSample, l []label) {
	for _, g := range samples {
		gl := with(l, label{"gpu", g.ID})
		if g.UtilizationPct != nil {
			p.util.samples = append(p.util.samples, sample{"", gl, float64(*g.UtilizationPct) / 100})
		}
		if g.MemoryUsedMiB != nil {
			p.memUsed.samples = append(p.memUsed.samples, sample{"", gl, float64(*g.MemoryUsedMiB) * (1 << 20)})
		}
		if g.MemoryTotalMiB != nil {
			p.memTotal.samples = append(p.memTotal.samples, sample{"", gl, float64(*g.MemoryTotalMiB) * (1 << 20)})
		}
	}
}

// jobsFamily counts the jobs by role, SLURM state and Ray membership.
func jobsFamily(st cluster.Status, c label) family {
	type key struct{ role, slurm, ray string }
	counts := map[key]int{}
	for _, j := range st.Jobs {
		state := j.SlurmState
		if state == "" {
			state = "UNKNOWN" // squeue did not answer and the job never did
		}
		counts[key{string(j.Role), state, string(j.Ray)}]++
	}
	keys := make([]key, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b key) int {
		return cmp.Or(cmp.Compare(a.role, b.role), cmp.Compare(a.slurm, b.slurm), cmp.Compare(a.ray, b.ray))
	})
	f := family{name: "sraybatch_jobs", kind: gauge, help: "The cluster's jobs by role, SLURM state and Ray membership."}
	for _, k := range keys {
		f.samples = append(f.samples, sample{"", []label{c, {"role", k.role}, {"slurm_state", k.slurm}, {"membership", k.ray}}, float64(counts[k])})
	}
	return f
}

// durationHistograms are the times from submission to running (the job's
// supervisor starting) and from running to joined (its node registering
// with Ray), by role, over every job that got that far. Each is computed
// afresh from the records, so it only grows as jobs advance.
func durationHistograms(o cluster.Observation, c label) []family {
	toRunning := map[cluster.Role][]float64{}
	toJoined := map[cluster.Role][]float64{}
	for _, sub := range o.Submissions {
		for _, key := range sub.JobKeys() {
			rec, ok := o.Records[key]
			if !ok || rec.Started.IsZero() {
				continue
			}
			toRunning[sub.Role] = append(toRunning[sub.Role], nonNegative(rec.Started.Sub(sub.Submitted)))
			m := o.Membership.Nodes[key]
			if m == nil {
				continue
			}
			joined := m.Registered
			if joined.IsZero() {
				joined = m.FirstSeen
			}
			toJoined[sub.Role] = append(toJoined[sub.Role], nonNegative(joined.Sub(rec.Started)))
		}
	}
	running := family{name: "sraybatch_submitted_to_running_seconds", unit: "seconds", kind: histogram,
		help: "Time from a job's submission until it ran (its supervisor started), by role."}
	joined := family{name: "sraybatch_running_to_joined_seconds", unit: "seconds", kind: histogram,
		help: "Time from a job running until its Ray node registered with the cluster, by role."}
	for _, role := range []cluster.Role{cluster.RoleHead, cluster.RoleWorker, cluster.RoleDriver} {
		l := []label{c, {"role", string(role)}}
		if v, ok := toRunning[role]; ok {
			running.samples = append(running.samples, histogramSamples(l, submitToRunningBounds, v)...)
		}
		if v, ok := toJoined[role]; ok {
			joined.samples = append(joined.samples, histogramSamples(l, runningToJoinedBounds, v)...)
		}
	}
	return []family{running, joined}
}

func nonNegative(d time.Duration) float64 { return max(d.Seconds(), 0) } // clocks of two nodes may differ

func autoscalerFamilies(a *cluster.AutoscalerStatus, n AutoscalerCounts, now time.Time, base []label) []family {
	on := 0.0
	if a.Enabled {
		on = 1
	}
	backoff := 0.0
	if a.BackoffUntil != nil {
		backoff = max(a.BackoffUntil.Sub(now).Seconds(), 0)
	}
	return []family{
		{name: "sraybatch_autoscaler_enabled", kind: gauge, help: "1 while the head's autoscaler is on.", samples: []sample{{"", base, on}}},
		{name: "sraybatch_autoscaler_demand_gpus", kind: gauge, help: "GPUs Ray's pending demand asks for, as the autoscaler last read it.",
			samples: []sample{{"", base, a.DemandGPUs}}},
		{name: "sraybatch_autoscaler_pending_workers", kind: gauge, help: "Worker jobs submitted and not yet joined, as the autoscaler counts them.",
			samples: []sample{{"", base, float64(a.PendingWorkers)}}},
		{name: "sraybatch_autoscaler_backoff_seconds", unit: "seconds", kind: gauge, help: "Time left of the autoscaler's backoff after SLURM refused a submission (0: none).",
			samples: []sample{{"", base, backoff}}},
		{name: "sraybatch_autoscaler_decisions", kind: counter, help: "Decisions the autoscaler logged (events/autoscaler.jsonl).",
			samples: []sample{{"_total", base, float64(n.Decisions)}}},
		{name: "sraybatch_autoscaler_workers", kind: counter, help: "Worker jobs the autoscaler submitted, cancelled and drained.",
			samples: []sample{
				{"_total", with(base, label{"action", "cancelled"}), float64(n.Cancelled)},
				{"_total", with(base, label{"action", "drained"}), float64(n.Drained)},
				{"_total", with(base, label{"action", "submitted"}), float64(n.Submitted)},
			}},
	}
}
