package autoscale

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/sraybatch/sraybatch/internal/clock"
	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/observe"
	"github.com/sraybatch/sraybatch/internal/oneline"
	"github.com/sraybatch/sraybatch/internal/raygcs"
	"github.com/sraybatch/sraybatch/internal/scheduler"
	"github.com/sraybatch/sraybatch/internal/submit"
	"github.com/sraybatch/sraybatch/slurm"
)

// Ray is what the loop asks of the cluster's GCS (a *raygcs.Client).
type Ray interface {
	ClusterState(ctx context.Context) (raygcs.ClusterState, error)
	Drain(ctx context.Context, nodeID string, reason raygcs.DrainReason, message string, deadline time.Time) (bool, string, error)
}

// Scheduler is what the loop asks of the scheduler (a
// scheduler.Scheduler): the cluster's jobs, the partition's time limit,
// cancels, and what submitting workers takes.
type Scheduler interface {
	submit.Scheduler
	Jobs(ctx context.Context, q scheduler.Query) ([]scheduler.Job, error)
	MaxTime(ctx context.Context, partition string) (limit time.Duration, unlimited bool, err error)
}

var _ Scheduler = scheduler.Scheduler(nil)

// LoopConfig is what the head job's autoscaler works with.
type LoopConfig struct {
	Dir     cluster.Dir
	HeadJob string
	// Sched submits and cancels workers; inside the head job it must submit
	// with slurm.LoginEnv, so workers do not inherit the head's variables.
	Sched Scheduler
	Ray   Ray
	Clock clock.Clock
	// Logf writes a line to the head job's log.
	Logf func(format string, args ...any)
}

// Loop polls Ray's demand and the queue, and acts on Decide.
type Loop struct {
	cfg      LoopConfig
	mem      Memory
	joinedAt map[string]time.Time
	// left holds the workers whose node was in Ray and is not any more:
	// their jobs are ending, however long SLURM still lists them, and are
	// no supply for new demand.
	left map[string]bool
	// lastWhy is the reason last written to the event log: a decision that
	// changes nothing is logged once, not every poll.
	lastWhy string
	last    *cluster.AutoscaleDecision
	// everOn: a cluster that never had autoscaling writes no status, so
	// its shared filesystem sees no write every poll and status no line.
	everOn bool
}

// NewLoop makes the head job's autoscaler.
func NewLoop(cfg LoopConfig) *Loop {
	return &Loop{cfg: cfg, joinedAt: map[string]time.Time{}, left: map[string]bool{}}
}

func (l *Loop) dial(head cluster.HeadInfo) (*raygcs.Client, error) {
	spec, err := l.cfg.Dir.Spec()
	if err != nil {
		return nil, err
	}
	token, err := l.cfg.Dir.RayToken(spec.Insecure)
	if err != nil {
		return nil, err
	}
	return raygcs.Dial(head.Address, token)
}

// joinTime is what a new worker takes from starting to joining Ray; no
// worker is added when the head ends sooner than that after --drain-before.
const joinTime = time.Minute

// Backoff after SLURM refused a submission: doubling from backoffBase, at
// most backoffMax, so a drained partition or a QOS limit never makes a tight
// loop of sbatch calls.
const (
	backoffBase = 5 * time.Second
	backoffMax  = 5 * time.Minute
)

// Run polls until ctx ends (the head job ends): no submission is made after.
// It runs inside the head job once its Ray serves; without a Ray of its own
// (LoopConfig.Ray) it dials the GCS at head.Address with the cluster's token.
func (l *Loop) Run(ctx context.Context, head cluster.HeadInfo) {
	if l.cfg.Ray == nil {
		c, err := l.dial(head)
		if err != nil {
			l.cfg.Logf("autoscaler: %v", err)
			return
		}
		defer c.Close()
		l.cfg.Ray = c
	}
	for {
		spec, err := l.cfg.Dir.Spec()
		interval := 2 * time.Second
		if err == nil && spec.Autoscale.PollInterval() > 0 {
			interval = spec.Autoscale.PollInterval()
		}
		if err == nil {
			l.Poll(ctx, spec)
		}
		select {
		case <-ctx.Done():
			return
		case <-l.cfg.Clock.After(interval):
		}
	}
}

// Poll runs one round: observe, decide, act, record.
func (l *Loop) Poll(ctx context.Context, spec cluster.Spec) {
	now := l.cfg.Clock.Now()
	st := cluster.AutoscalerStatus{Updated: now.UTC(), Enabled: spec.Autoscale.Enabled,
		MinWorkers: spec.Autoscale.MinWorkers, MaxWorkers: spec.Autoscale.MaxWorkers, Demand: map[string]int{}, LastDecision: l.last}
	settings := SettingsOf(spec.Autoscale)
	l.everOn = l.everOn || settings.Enabled
	if !l.everOn {
		return
	}
	defer func() {
		if err := l.cfg.Dir.WriteAutoscalerStatus(st); err != nil {
			l.cfg.Logf("autoscaler: cannot write its status: %v", err)
		}
	}()
	if !settings.Enabled {
		st.Reason = "autoscaling is off"
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ray, err := l.cfg.Ray.ClusterState(ctx)
	if err != nil {
		st.Error = "read Ray's demand: " + oneline.Of(err.Error())
		return
	}
	// One squeue per poll, the one status and the head's observer ask too
	// (they share it: scheduler.SharedJobs): every job of this cluster.
	jobs, err := l.cfg.Sched.Jobs(ctx, observe.JobsQuery(spec))
	if err != nil {
		st.Error = "read the queue: " + oneline.Of(err.Error())
		return
	}
	subs, err := l.cfg.Dir.Submissions()
	if err != nil {
		st.Error = oneline.Of(err.Error())
		return
	}
	in, head := l.observe(now, spec, settings, ray, jobs, subs)
	var d Decision
	d, l.mem = Decide(in, l.mem)

	acted := &cluster.AutoscaleDecision{At: now.UTC(), Why: d.Reason}
	if d.Submit > 0 {
		keys, err := l.submit(ctx, spec, head, d.Submit)
		if err != nil {
			l.mem.Failures++
			wait := min(backoffBase<<min(l.mem.Failures-1, 10), backoffMax)
			l.mem.BackoffUntil, l.mem.SubmitError = now.Add(wait), oneline.Of(err.Error())
			acted.Why = fmt.Sprintf("sbatch refused (%s); backing off %s", l.mem.SubmitError, wait)
		} else {
			l.mem.Failures, l.mem.SubmitError = 0, ""
			acted.Submitted = keys
		}
	}
	if len(d.Cancel) > 0 {
		if err := l.cfg.Sched.Cancel(ctx, d.Cancel, scheduler.CancelOptions{}); err != nil {
			acted.Why += "; cancel failed: " + oneline.Of(err.Error())
		} else {
			acted.Cancelled = d.Cancel
		}
	}
	for _, dr := range d.Drain {
		ok, rejection, err := l.cfg.Ray.Drain(ctx, dr.NodeID, raygcs.DrainIdleTermination, fmt.Sprintf("sraybatch: idle for %s", dr.Idle.Round(time.Second)), time.Time{})
		switch {
		case err != nil:
			l.cfg.Logf("autoscaler: drain worker %s: %v", dr.Job, err)
		case !ok:
			// Busy again since the poll: normal, the next poll decides anew.
			l.cfg.Logf("autoscaler: Ray refused to drain worker %s: %s", dr.Job, rejection)
		default:
			notice := cluster.DrainNotice{Job: dr.Job, NodeID: dr.NodeID, Outcome: cluster.OutcomeDrainedIdle,
				Reason: fmt.Sprintf("drained for idleness after %s", dr.Idle.Round(time.Second)), Accepted: now.UTC()}
			if err := l.cfg.Dir.WriteDrainNotice(notice); err != nil {
				l.cfg.Logf("autoscaler: %v", err)
			}
			acted.Drained = append(acted.Drained, dr.Job)
		}
	}

	for _, c := range in.Demand.Tasks {
		st.Demand[c.Shape.String()] += c.N
	}
	for _, g := range in.Demand.Groups {
		for _, b := range g.Bundles {
			st.Demand[b.String()]++
		}
	}
	for _, c := range in.Demand.Floors {
		st.Demand[c.Shape.String()] += c.N
	}
	st.DemandGPUs = d.DemandGPUs
	for _, w := range in.Workers {
		if w.State != Joined {
			st.PendingWorkers++
		}
	}
	st.PendingWorkers += len(acted.Submitted) - len(acted.Cancelled)
	for _, x := range d.Infeasible {
		st.Infeasible = append(st.Infeasible, cluster.InfeasibleDemand{Shape: x.Shape.String(), Why: x.Why})
	}
	if !l.mem.BackoffUntil.IsZero() && now.Before(l.mem.BackoffUntil) {
		until := l.mem.BackoffUntil.UTC()
		st.BackoffUntil = &until
	}
	st.Reason = acted.Why
	if len(acted.Submitted)+len(acted.Cancelled)+len(acted.Drained) > 0 || (acted.Why != l.lastWhy && acted.Why != "") {
		l.lastWhy = acted.Why
		if len(acted.Submitted)+len(acted.Cancelled)+len(acted.Drained) > 0 {
			l.last = acted
			st.LastDecision = acted
			l.cfg.Logf("autoscaler: %s (submitted %v, cancelled %v, drained %v)", acted.Why, acted.Submitted, acted.Cancelled, acted.Drained)
		}
		l.event(acted)
	}
}

// submit adds n workers in one sbatch call, with --time capped at the
// head's time left and at the partition's MaxTime (SLURM accepts a longer
// --time by default, and the job then never starts: PartitionTimeLimit).
func (l *Loop) submit(ctx context.Context, spec cluster.Spec, head *scheduler.Job, n int) ([]string, error) {
	if head == nil {
		return nil, fmt.Errorf("head job %s is not in the queue", l.cfg.HeadJob)
	}
	limit, err := submit.WorkerTimeLimit(spec, *head)
	if err != nil {
		return nil, err
	}
	if partMax, unlimited, err := l.cfg.Sched.MaxTime(ctx, spec.Node.Partition); err == nil && !unlimited {
		if want, wantUnlimited, err := slurm.ParseTimeLimit(limit); limit == "" || wantUnlimited || (err == nil && want > partMax) {
			limit = slurm.FormatTimeLimit(partMax)
		}
	}
	return submit.Workers(ctx, l.cfg.Sched, l.cfg.Dir, spec, l.cfg.HeadJob, n, limit, true)
}

// event appends one decision to the autoscaler's event log.
func (l *Loop) event(d *cluster.AutoscaleDecision) {
	err := cluster.AppendEvent(l.cfg.Dir.AutoscalerEventsPath(), map[string]any{
		"ts": cluster.TS(d.At), "event": cluster.EventAutoscalerDecision,
		"submitted": nonNil(d.Submitted), "cancelled": nonNil(d.Cancelled), "drained": nonNil(d.Drained), "reason": d.Why,
	})
	if err != nil {
		l.cfg.Logf("autoscaler: %v", err)
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// SettingsOf turns the spec's settings into Decide's.
func SettingsOf(a cluster.AutoscaleSpec) Settings {
	return Settings{
		Enabled: a.Enabled, MinWorkers: a.MinWorkers, MaxWorkers: a.MaxWorkers, MaxPending: a.MaxPending,
		IdleTimeout:  a.IdleTimeout(),
		UpscaleDelay: a.UpscaleDelay(),
		CPUOnly:      a.CPUOnlyDemand,
	}
}

// observe builds Decide's input from one poll's answers, and returns the
// head job as the queue reports it (nil when it does not).
func (l *Loop) observe(now time.Time, spec cluster.Spec, settings Settings, ray raygcs.ClusterState, jobs []scheduler.Job, subs []cluster.Submission) (Input, *scheduler.Job) {
	in := Input{Now: now, Settings: settings, HeadLeft: -1,
		MinHeadLeft: spec.DrainBefore() + joinTime}
	in.Shape = NodeShape{GPUs: float64(spec.Node.GPUs), CPUs: float64(spec.Node.CPUs)}

	queue := map[string]scheduler.Job{}
	for _, j := range jobs {
		queue[j.ID] = j
	}
	var head *scheduler.Job
	if j, ok := queue[l.cfg.HeadJob]; ok {
		head = &j
		if j.State == scheduler.Running && !j.Unlimited {
			in.HeadLeft = j.TimeLeft
		}
	}

	workers := map[string]cluster.Submission{}
	for _, s := range subs {
		if s.Role == cluster.RoleWorker {
			for _, k := range s.JobKeys() {
				workers[k] = s
			}
		}
	}
	nodeOf := map[string]raygcs.Node{}
	for _, n := range ray.Nodes {
		if n.Status == raygcs.NodeDead {
			continue
		}
		job, _ := cluster.JobOfResources(n.Total)
		_, isWorker := workers[job]
		node := Node{ID: n.ID, Job: job, Worker: isWorker, Total: Shape(n.Total), Draining: n.Status == raygcs.NodeDraining}
		if n.Status == raygcs.NodeIdle {
			node.Idle = n.IdleFor
		}
		in.Nodes = append(in.Nodes, node)
		if job != "" {
			nodeOf[job] = n
		}
		// CPUs per node when the spec leaves them to SLURM: what Ray saw on a
		// node of the same shape (a worker; else the head, which has the
		// spec's shape too).
		if spec.Node.CPUs == 0 && (isWorker || (job == l.cfg.HeadJob && in.Shape.CPUs == 0)) {
			in.Shape.CPUs = n.Total["CPU"]
		}
	}

	keys := make([]string, 0, len(workers))
	for k := range workers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	seen := map[string]bool{}
	for _, key := range keys {
		sub := workers[key]
		w := Worker{Job: key, Submitted: sub.Submitted, Autoscaled: sub.Autoscaled}
		j, inQueue := queue[key]
		n, inRay := nodeOf[key]
		if _, joinedBefore := l.joinedAt[key]; joinedBefore && !inRay {
			l.left[key] = true
		}
		switch {
		case inRay && !l.left[key]:
			w.State, w.NodeID = Joined, n.ID
			if _, ok := l.joinedAt[key]; !ok {
				l.joinedAt[key] = now
			}
			w.JoinedAt = l.joinedAt[key]
		case inQueue && j.State == scheduler.Pending:
			w.State, w.Reason = Queued, j.Reason
		case inQueue && (j.State == scheduler.Running || j.State == scheduler.Configuring) && !l.left[key]:
			w.State = Starting
		default:
			continue // ended, or ending: its node left Ray, or SLURM is completing it
		}
		seen[key] = true
		in.Workers = append(in.Workers, w)
	}
	for key := range l.joinedAt {
		if !seen[key] && !l.left[key] {
			delete(l.joinedAt, key)
		}
	}
	for key := range l.left {
		if _, inQueue := queue[key]; !inQueue {
			delete(l.left, key)
			delete(l.joinedAt, key)
		}
	}

	for _, c := range ray.Pending {
		in.Demand.Tasks = append(in.Demand.Tasks, Count{Shape: Shape(c.Request.Resources), N: c.Count})
	}
	for _, g := range ray.Gangs {
		grp := Group{
			Spread: g.Strategy == raygcs.StrategySpread || g.Strategy == raygcs.StrategyStrictSpread,
			Strict: g.Strategy == raygcs.StrategyStrictPack || g.Strategy == raygcs.StrategyStrictSpread,
		}
		for _, b := range g.Bundles {
			grp.Bundles = append(grp.Bundles, Shape(b.Resources))
		}
		in.Demand.Groups = append(in.Demand.Groups, grp)
	}
	for _, c := range ray.Constraints {
		in.Demand.Floors = append(in.Demand.Floors, Count{Shape: Shape(c.Request.Resources), N: c.Count})
	}
	return in, head
}
