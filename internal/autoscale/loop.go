package autoscale

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/sraybatch/sraybatch/internal/clock"
	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/events"
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
	cfg LoopConfig
	mem Memory
	// mems are each worker type's memory, in the spec's order (a cluster
	// with types; mem serves one without).
	mems   []Memory
	joined map[string]joining
	// left holds the workers whose node was in Ray and is not any more:
	// their jobs are ending, however long SLURM still lists them, and are
	// no supply for new demand, unless SLURM requeues them (requeue.go).
	left map[string]leftNode
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
	return &Loop{cfg: cfg, joined: map[string]joining{}, left: map[string]leftNode{}}
}

// joining is when a worker job's node joined Ray, and which node it was.
type joining struct {
	at   time.Time
	node string
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

// Poll runs one round: read its input, decide, act, record; then it publishes the
// autoscaler's status. A cluster that never autoscaled gets none.
func (l *Loop) Poll(ctx context.Context, spec cluster.Spec) {
	settings := SettingsOf(spec.Autoscale)
	l.everOn = l.everOn || settings.Enabled
	if !l.everOn {
		return
	}
	st := l.poll(ctx, spec, settings)
	if err := l.cfg.Dir.WriteAutoscalerStatus(st); err != nil {
		l.cfg.Logf("autoscaler: cannot write its status: %v", err)
	}
}

// poll observes, decides, acts and records, and returns the status to
// publish.
func (l *Loop) poll(ctx context.Context, spec cluster.Spec, settings Settings) cluster.AutoscalerStatus {
	now := l.cfg.Clock.Now()
	st := cluster.AutoscalerStatus{Updated: now.UTC(), Enabled: spec.Autoscale.Enabled,
		MinWorkers: spec.Autoscale.MinWorkers, MaxWorkers: spec.Autoscale.MaxWorkers, Demand: map[string]int{}, LastDecision: l.last}
	if !settings.Enabled {
		st.Reason = "autoscaling is off"
		return st
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ray, jobs, subs, err := l.read(ctx, spec)
	if err != nil {
		st.Error = oneline.Of(err.Error())
		return st
	}
	in, head := l.input(now, spec, settings, ray, jobs, subs)
	if len(spec.Workers) > 0 {
		return l.pollTypes(ctx, spec, settings, in, head, st)
	}
	var d Decision
	d, l.mem = Decide(in, l.mem)
	acted := &cluster.AutoscaleDecision{At: now.UTC(), Why: d.Reason}
	if d.Submit > 0 {
		if refused := l.submitType(ctx, spec, head, spec.DefaultType(), d.Submit, &l.mem, acted); refused != "" {
			acted.Why = refused
		}
	}
	l.cancelAndDrain(ctx, d, acted, now)
	l.record(acted)
	st.LastDecision = l.last
	return statusOf(st, in, d, acted, l.mem)
}

// pollTypes decides and acts for a cluster with worker types: the demand
// routed across them, one sbatch call per type that needs workers.
func (l *Loop) pollTypes(ctx context.Context, spec cluster.Spec, settings Settings, in Input, head *scheduler.Job, st cluster.AutoscalerStatus) cluster.AutoscalerStatus {
	types := TypesOf(spec, settings)
	if len(l.mems) != len(types) { // the first poll, or the types changed
		l.mems = make([]Memory, len(types))
	}
	var td TypedDecision
	td, l.mems = DecideTypes(in, types, l.mems)
	acted := &cluster.AutoscaleDecision{At: in.Now.UTC(), Why: td.All.Reason}
	var backoff Memory // the latest backoff of any type, for status
	for i, d := range td.PerType {
		if d.Submit > 0 {
			if refused := l.submitType(ctx, spec, head, spec.Workers[i], d.Submit, &l.mems[i], acted); refused != "" {
				acted.Why = withTypeReason(acted.Why, types[i].Shape.Name, d.Reason, refused)
			}
		}
		if l.mems[i].BackoffUntil.After(backoff.BackoffUntil) {
			backoff = l.mems[i]
		}
	}
	l.cancelAndDrain(ctx, td.All, acted, in.Now)
	l.record(acted)
	st.LastDecision = l.last
	st = statusOf(st, in, td.All, acted, backoff)
	st.DemandByType = map[string]int{}
	for i, d := range td.Routed {
		st.DemandByType[types[i].Shape.Name] = d.bundles()
	}
	return st
}

// read asks Ray for its demand and the scheduler for the queue, and reads
// the cluster's submissions.
func (l *Loop) read(ctx context.Context, spec cluster.Spec) (raygcs.ClusterState, []scheduler.Job, []cluster.Submission, error) {
	ray, err := l.cfg.Ray.ClusterState(ctx)
	if err != nil {
		return ray, nil, nil, fmt.Errorf("read Ray's demand: %w", err)
	}
	// One squeue per poll, the one status and the head's observer ask too
	// (they share it: scheduler.SharedJobs): every job of this cluster.
	jobs, err := l.cfg.Sched.Jobs(ctx, observe.JobsQuery(spec))
	if err != nil {
		return ray, nil, nil, fmt.Errorf("read the queue: %w", err)
	}
	subs, err := l.cfg.Dir.Submissions()
	return ray, jobs, subs, err
}

// submitType submits n workers of type t (one sbatch call) and adds them
// to acted; a refusal backs that type off (mem), and its words are returned.
func (l *Loop) submitType(ctx context.Context, spec cluster.Spec, head *scheduler.Job, t cluster.WorkerType, n int, mem *Memory, acted *cluster.AutoscaleDecision) (refused string) {
	keys, err := l.submit(ctx, spec, head, t, n)
	if err != nil {
		return backOff(mem, err, acted.At)
	}
	mem.Failures, mem.SubmitError = 0, ""
	acted.Submitted = append(acted.Submitted, keys...)
	return ""
}

// withTypeReason puts a refused submission's words in place of its type's
// part of a typed decision's words ("gpu: …; cpu: …", DecideTypes): the
// other types' parts, a drain say, stay.
func withTypeReason(why, name, decided, refused string) string {
	part := name + ": " + decided
	if decided != "" && strings.Contains(why, part) {
		return strings.Replace(why, part, name+": "+refused, 1)
	}
	if why == "" {
		return name + ": " + refused
	}
	return why + "; " + name + ": " + refused
}

// cancelAndDrain carries out the rest of a decision (one scancel, a drain
// per idle worker) and adds it to acted.
func (l *Loop) cancelAndDrain(ctx context.Context, d Decision, acted *cluster.AutoscaleDecision, now time.Time) {
	if len(d.Cancel) > 0 {
		if err := l.cfg.Sched.Cancel(ctx, d.Cancel, scheduler.CancelOptions{}); err != nil {
			acted.Why += "; cancel failed: " + oneline.Of(err.Error())
		} else {
			acted.Cancelled = d.Cancel
		}
	}
	for _, dr := range d.Drain {
		if l.drain(ctx, dr, now) {
			acted.Drained = append(acted.Drained, dr.Job)
		}
	}
}

// backOff remembers a refused submission in mem: none is tried again for
// a wait that doubles with each refusal in a row. It returns the words for it.
func backOff(mem *Memory, err error, now time.Time) string {
	mem.Failures++
	wait := min(backoffBase<<min(mem.Failures-1, 10), backoffMax)
	mem.BackoffUntil, mem.SubmitError = now.Add(wait), oneline.Of(err.Error())
	return fmt.Sprintf("sbatch refused (%s); backing off %s", mem.SubmitError, wait)
}

// drain asks Ray to drain an idle worker and, once Ray accepts, tells the
// worker's supervisor why its Ray exits (the drain notice); it reports
// whether Ray accepted.
func (l *Loop) drain(ctx context.Context, dr Drain, now time.Time) bool {
	ok, rejection, err := l.cfg.Ray.Drain(ctx, dr.NodeID, raygcs.DrainIdleTermination, fmt.Sprintf("sraybatch: idle for %s", dr.Idle.Round(time.Second)), time.Time{})
	switch {
	case err != nil:
		l.cfg.Logf("autoscaler: drain worker %s: %v", dr.Job, err)
		return false
	case !ok:
		// Busy again since the poll: normal, the next poll decides anew.
		l.cfg.Logf("autoscaler: Ray refused to drain worker %s: %s", dr.Job, rejection)
		return false
	}
	notice := cluster.DrainNotice{Job: dr.Job, NodeID: dr.NodeID, Outcome: cluster.OutcomeDrainedIdle,
		Reason: fmt.Sprintf("drained for idleness after %s", dr.Idle.Round(time.Second)), Accepted: now.UTC()}
	if err := l.cfg.Dir.WriteDrainNotice(notice); err != nil {
		l.cfg.Logf("autoscaler: %v", err)
	}
	return true
}

// record logs a decision that did something, and appends to the event log
// one that did something or says something new: a decision that changes
// nothing is logged once, not every poll.
func (l *Loop) record(acted *cluster.AutoscaleDecision) {
	did := len(acted.Submitted)+len(acted.Cancelled)+len(acted.Drained) > 0
	if !did && (acted.Why == l.lastWhy || acted.Why == "") {
		return
	}
	l.lastWhy = acted.Why
	if did {
		l.last = acted
		l.cfg.Logf("autoscaler: %s (submitted %v, cancelled %v, drained %v)", acted.Why, acted.Submitted, acted.Cancelled, acted.Drained)
	}
	l.event(acted)
}

// statusOf fills the status of a poll that decided d on in and did acted:
// what Ray waits for, the workers on their way, the backoff, and why.
func statusOf(st cluster.AutoscalerStatus, in Input, d Decision, acted *cluster.AutoscaleDecision, mem Memory) cluster.AutoscalerStatus {
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
	if !mem.BackoffUntil.IsZero() && in.Now.Before(mem.BackoffUntil) {
		until := mem.BackoffUntil.UTC()
		st.BackoffUntil = &until
	}
	st.Reason = acted.Why
	return st
}

// submit adds n workers in one sbatch call, with --time capped at the
// head's time left and at the worker partition's MaxTime (SLURM accepts a longer
// --time by default, and the job then never starts: PartitionTimeLimit).
func (l *Loop) submit(ctx context.Context, spec cluster.Spec, head *scheduler.Job, t cluster.WorkerType, n int) ([]string, error) {
	if head == nil {
		return nil, fmt.Errorf("head job %s is not in the queue", l.cfg.HeadJob)
	}
	limit, err := submit.WorkerTimeLimit(spec, *head)
	if err != nil {
		return nil, err
	}
	if partMax, unlimited, err := l.cfg.Sched.MaxTime(ctx, t.Node.Partition); err == nil && !unlimited {
		if want, wantUnlimited, err := slurm.ParseTimeLimit(limit); limit == "" || wantUnlimited || (err == nil && want > partMax) {
			limit = slurm.FormatTimeLimit(partMax)
		}
	}
	return submit.Workers(ctx, l.cfg.Sched, l.cfg.Dir, spec, submit.Request{
		Type: t, Head: l.cfg.HeadJob, Count: n, TimeLimit: limit, Autoscaled: true,
	})
}

// event appends one decision to the autoscaler's event log.
func (l *Loop) event(d *cluster.AutoscaleDecision) {
	err := events.Append(l.cfg.Dir.AutoscalerEventsPath(), events.AutoscalerDecision{Stamp: events.At(d.At),
		Submitted: nonNil(d.Submitted), Cancelled: nonNil(d.Cancelled), Drained: nonNil(d.Drained), Reason: d.Why,
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
