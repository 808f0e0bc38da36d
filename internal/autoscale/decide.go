// Package autoscale turns what Ray waits for into worker jobs, and idle
// workers into drains. Decide is a pure function of one poll's observation
// and what the previous polls left in Memory; the head job's loop (Loop)
// gathers the observation, carries out the decision and records it.
package autoscale

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/sraybatch/sraybatch/internal/raygcs"
)

// Settings are the autoscaler's knobs (the cluster spec's autoscale part).
type Settings struct {
	Enabled    bool
	MinWorkers int
	MaxWorkers int
	// MaxPending bounds the worker jobs waiting in the queue at once; 0: MaxWorkers.
	MaxPending int
	// IdleTimeout is how long a worker stays idle before it is drained; 0: never.
	IdleTimeout time.Duration
	// UpscaleDelay is how long demand must last before jobs are submitted for it.
	UpscaleDelay time.Duration
	// CPUOnly lets demand that asks for no GPU start worker jobs (which hold GPUs).
	CPUOnly bool
}

// Demand is what Ray waits for.
type Demand struct {
	// Tasks are pending tasks and actors, by shape.
	Tasks []Count
	// Groups are pending placement groups.
	Groups []Group
	// Floors are request_resources bundles: a floor on the cluster's total
	// capacity, head included, standing until the caller lifts it.
	Floors []Count
}

// Count is n bundles of one shape.
type Count struct {
	Shape Shape
	N     int
	// Selectors are the bundles' label selectors (raygcs.Request's): only
	// a type whose labels satisfy one of them may serve them.
	Selectors []raygcs.LabelSelector
}

// Group is a pending placement group.
type Group struct {
	Bundles []Shape
	// Selectors[i] are Bundles[i]'s label selectors, as Count's; nil or
	// shorter than Bundles: none.
	Selectors [][]raygcs.LabelSelector
	// Spread places every bundle on a node of its own (SPREAD, STRICT_SPREAD).
	Spread bool
	// Strict with !Spread (STRICT_PACK) needs every bundle on one node.
	Strict bool
}

// Node is a Ray node alive in the cluster.
type Node struct {
	ID string
	// Job is the job key of the node; Worker marks a worker job of this cluster.
	Job    string
	Worker bool
	Total  Shape
	// Idle is how long Ray has seen the node idle; 0 while it is busy.
	Idle     time.Duration
	Draining bool
	// Type is a worker node's type (DecideTypes); "" for the head.
	Type string
}

// WorkerState is where a worker job of the cluster is.
type WorkerState int

const (
	// Queued: pending in the scheduler.
	Queued WorkerState = iota
	// Starting: running, its Ray node not joined yet.
	Starting
	// Joined: its Ray node is in the cluster.
	Joined
)

// Worker is a worker job of the cluster that has not ended.
type Worker struct {
	Job   string
	State WorkerState
	// Reason is the scheduler's pending reason (Queued).
	Reason    string
	Submitted time.Time
	// JoinedAt is when its node joined Ray (Joined).
	JoinedAt time.Time
	NodeID   string
	// Autoscaled marks jobs the autoscaler submitted: only those are
	// cancelled while pending, never a user's `grow`.
	Autoscaled bool
	// Type is the job's worker type (DecideTypes); "" in a cluster without.
	Type string
}

// Input is one poll's observation.
type Input struct {
	Now      time.Time
	Settings Settings
	Shape    NodeShape
	Demand   Demand
	Nodes    []Node
	Workers  []Worker
	// HeadLeft is the head job's time left; negative when unknown or unlimited.
	HeadLeft time.Duration
	// MinHeadLeft: no scale-up once the head has less left than this
	// (--drain-before plus the time a worker takes to join).
	MinHeadLeft time.Duration
}

// Memory is what a decision needs from earlier polls; the loop keeps it.
type Memory struct {
	// UnmetSince is when the current unmet demand first showed; zero: none.
	UnmetSince time.Time
	// BackoffUntil: no submission before it; SubmitError says why (SLURM's words).
	BackoffUntil time.Time
	Failures     int
	SubmitError  string
}

// Drain is a worker to drain for idleness.
type Drain struct {
	Job, NodeID string
	Idle        time.Duration
}

// Infeasible is demand no worker job can ever serve.
type Infeasible struct {
	Shape Shape
	Why   string
}

// Decision is what to do now.
type Decision struct {
	// Submit is how many worker jobs to submit, in one sbatch call.
	Submit int
	// Cancel lists pending worker jobs whose demand is gone, or over the cap.
	Cancel []string
	Drain  []Drain
	// Infeasible demand is never submitted for.
	Infeasible []Infeasible
	// Wanted is how many new worker jobs the demand needs, before limits.
	Wanted int
	// Capped: limits (max workers, max pending) held the submission back.
	Capped bool
	// Reason says, in one line, why it did what it did, or why not.
	Reason string
	// DemandGPUs sums the GPUs of everything Ray waits for.
	DemandGPUs float64
}

// maxBundles bounds the bundles planned per shape: beyond any cluster's
// --max-workers, and a million pending tasks must not cost a million steps.
const maxBundles = 4096

// Decide plans one poll. It is pure: the same input and memory give the
// same decision and memory. Its steps: classify the demand, plan it onto
// the jobs in flight and new ones (needsOf), cancel pending jobs no demand
// uses (cancelSurplus), submit for what is left (planSubmit), and drain
// idle workers (idleDrains).
func Decide(in Input, mem Memory) (Decision, Memory) {
	var d Decision
	if !in.Settings.Enabled {
		d.Reason = "autoscaling is off"
		return d, Memory{BackoffUntil: mem.BackoffUntil, Failures: mem.Failures, SubmitError: mem.SubmitError}
	}
	tasks, groups, floors := in.classify(&d)
	n := in.needsOf(tasks, groups, floors)
	d.Wanted = n.wanted()
	var q queueCount
	d.Cancel, q = cancelSurplus(in.Workers, n.used, countQueue(in.Workers), in.Settings)
	var ripe bool
	mem, ripe = ripen(mem, d.Wanted, in.Now, in.Settings.UpscaleDelay)
	var reasons []string
	d.Submit, d.Capped, reasons = planSubmit(in, mem, ripe, n, q)
	if len(d.Cancel) > 0 {
		reasons = append(reasons, fmt.Sprintf("cancel %d pending workers no longer needed", len(d.Cancel)))
	}
	d.Drain = in.idleDrains(d.Wanted, n.protected, q.active-max(in.Settings.MinWorkers, 0))
	if len(d.Drain) > 0 {
		reasons = append(reasons, fmt.Sprintf("drain %d idle workers", len(d.Drain)))
	}
	if len(d.Infeasible) > 0 {
		reasons = append(reasons, fmt.Sprintf("%d shapes infeasible", len(d.Infeasible)))
	}
	d.Reason = strings.Join(reasons, "; ")
	return d, mem
}

// needs is what the demand asks of the cluster's worker jobs.
type needs struct {
	// forDemand and forFloors are the new jobs pending tasks, actors and
	// groups need, and those request_resources floors need.
	forDemand, forFloors int
	// used are the jobs in flight that some demand is planned onto.
	used map[string]bool
	// protected are the alive nodes a floor needs: never drained.
	protected map[string]bool
}

func (n needs) wanted() int { return max(n.forDemand, n.forFloors) }

// needsOf plans the feasible demand onto the jobs in flight, then onto new
// jobs: tasks and groups on their own, floors against the alive nodes too.
func (in Input) needsOf(tasks []Shape, groups []Group, floors []Shape) needs {
	inFlight := in.inFlight()
	p := newPlan(in.Shape, inFlight)
	for _, s := range tasks {
		p.place(s)
	}
	for _, g := range groups {
		p.placeGroup(g)
	}
	fp := newPlan(in.Shape, inFlight)
	n := needs{used: map[string]bool{}}
	n.protected = fp.placeFloors(in.Nodes, floors)
	n.forDemand, n.forFloors = len(p.newBins), len(fp.newBins)
	for _, b := range append(p.flight, fp.flight...) {
		if b.used {
			n.used[b.job] = true
		}
	}
	return n
}

// queueCount counts the worker jobs that are, or will be, workers.
type queueCount struct {
	// active are the jobs not stuck in the queue; queued those of them pending.
	active, queued int
	// limitReason is a SLURM limit a pending job waits on ("" when none).
	limitReason string
}

func countQueue(ws []Worker) queueCount {
	var c queueCount
	for _, w := range ws {
		if w.State == Queued && stuck(w.Reason) {
			continue
		}
		c.active++
		if w.State == Queued {
			c.queued++
			if limit(w.Reason) && c.limitReason == "" {
				c.limitReason = w.Reason
			}
		}
	}
	return c
}

// cancelSurplus lists the pending autoscaled jobs to cancel, newest first:
// those no demand uses any more (down to --min-workers), then those over
// --max-workers; it returns the count without them.
func cancelSurplus(ws []Worker, used map[string]bool, c queueCount, s Settings) ([]string, queueCount) {
	var cancel []string
	keep := max(s.MinWorkers, 0)
	var surplus []Worker
	for _, w := range ws {
		if w.State == Queued && w.Autoscaled && !used[w.Job] {
			surplus = append(surplus, w)
		}
	}
	sort.SliceStable(surplus, func(i, j int) bool { return surplus[i].Submitted.After(surplus[j].Submitted) })
	for _, w := range surplus {
		if c.active <= keep {
			break
		}
		cancel = append(cancel, w.Job)
		c.active--
		if !stuck(w.Reason) {
			c.queued--
		}
	}
	for _, w := range newestQueued(ws, cancel) {
		if c.active <= s.MaxWorkers {
			break
		}
		cancel = append(cancel, w.Job)
		c.active--
		c.queued--
	}
	return cancel, c
}

// ripen remembers when the unmet demand first showed (none: zero) and
// reports whether it has lasted the upscale delay.
func ripen(mem Memory, wanted int, now time.Time, delay time.Duration) (Memory, bool) {
	switch {
	case wanted == 0:
		mem.UnmetSince = time.Time{}
	case mem.UnmetSince.IsZero():
		mem.UnmetSince = now
	}
	return mem, wanted > 0 && now.Sub(mem.UnmetSince) >= delay
}

// planSubmit decides how many worker jobs to submit: the demand once ripe,
// at least what --min-workers lacks, within --max-workers and
// --max-pending; none while backing off, while a job waits on a SLURM
// limit, or near the head's end. It says why in reasons.
func planSubmit(in Input, mem Memory, ripe bool, n needs, c queueCount) (submit int, capped bool, reasons []string) {
	s := in.Settings
	want := 0
	if ripe {
		want = n.wanted()
	}
	topUp := s.MinWorkers - c.active
	want = max(want, topUp)
	maxPending := s.MaxPending
	if maxPending <= 0 {
		maxPending = s.MaxWorkers
	}
	switch {
	case want <= 0:
		if n.wanted() > 0 {
			return 0, false, []string{fmt.Sprintf("demand for %d workers waits out the upscale delay (%s)", n.wanted(), s.UpscaleDelay)}
		}
		return 0, false, nil
	case in.Now.Before(mem.BackoffUntil):
		return 0, false, []string{fmt.Sprintf("backing off until %s: %s", mem.BackoffUntil.Format(time.TimeOnly), mem.SubmitError)}
	case c.limitReason != "":
		return 0, false, []string{"held back: a worker job waits on SLURM limit " + c.limitReason}
	case in.HeadLeft >= 0 && in.HeadLeft < in.MinHeadLeft:
		return 0, false, []string{fmt.Sprintf("no scale-up: the head ends in %s", in.HeadLeft.Round(time.Second))}
	}
	room := min(s.MaxWorkers-c.active, maxPending-c.queued)
	submit = max(min(want, room), 0)
	capped = submit < want
	switch {
	case submit > 0 && topUp > 0 && !ripe:
		reasons = append(reasons, fmt.Sprintf("+%d workers to keep --min-workers %d", submit, s.MinWorkers))
	case submit > 0:
		reasons = append(reasons, fmt.Sprintf("+%d workers for %s", submit, demandWords(n.forDemand, n.forFloors)))
	}
	if capped {
		reasons = append(reasons, fmt.Sprintf("capped: %d wanted, --max-workers %d, --max-pending %d", want, s.MaxWorkers, maxPending))
	}
	return submit, capped, reasons
}

func demandWords(forDemand, forFloors int) string {
	if forFloors > forDemand {
		return "request_resources"
	}
	return "pending tasks, actors and placement groups"
}

// classify splits the demand into plannable bundles and infeasible shapes,
// and sums its GPUs.
func (in Input) classify(d *Decision) (tasks []Shape, groups []Group, floors []Shape) {
	seen := map[string]bool{}
	feasible := func(s Shape) bool {
		why := in.Shape.infeasibility(s)
		if why == "" && s.gpuFree() && in.Shape.GPUs > 0 && !in.Settings.CPUOnly {
			why = "asks for no GPU (allow it with --cpu-only-demand)"
		}
		if why == "" {
			return true
		}
		if key := s.String(); !seen[key] {
			seen[key] = true
			d.Infeasible = append(d.Infeasible, Infeasible{Shape: s, Why: why})
		}
		return false
	}
	expand := func(cs []Count, into *[]Shape) {
		for _, c := range cs {
			d.DemandGPUs += c.Shape[resGPU] * float64(c.N)
			if !feasible(c.Shape) {
				continue
			}
			for range min(c.N, maxBundles) {
				*into = append(*into, c.Shape)
			}
		}
	}
	expand(in.Demand.Tasks, &tasks)
	expand(in.Demand.Floors, &floors)
next:
	for _, g := range in.Demand.Groups {
		for _, b := range g.Bundles {
			d.DemandGPUs += b[resGPU]
		}
		for _, b := range g.Bundles {
			if !feasible(b) {
				continue next
			}
		}
		if !g.Spread && g.Strict {
			sum := Shape{}
			for _, b := range g.Bundles {
				for k, v := range b {
					sum[k] += v
				}
			}
			if !feasible(sum) {
				continue
			}
		}
		groups = append(groups, g)
	}
	return tasks, groups, floors
}

// inFlight lists the worker jobs that will join without further action:
// starting first (sooner), then queued oldest first; jobs stuck in the
// queue are no supply.
func (in Input) inFlight() []Worker {
	var ws []Worker
	for _, w := range in.Workers {
		if w.State == Starting || (w.State == Queued && !stuck(w.Reason)) {
			ws = append(ws, w)
		}
	}
	sort.SliceStable(ws, func(i, j int) bool {
		if ws[i].State != ws[j].State {
			return ws[i].State == Starting
		}
		return ws[i].Submitted.Before(ws[j].Submitted)
	})
	return ws
}

// idleDrains lists joined workers idle for --idle-timeout, longest idle
// first, at most n, never one a request_resources floor still needs; none
// while demand wants workers, or without an idle timeout.
func (in Input) idleDrains(wanted int, protected map[string]bool, n int) []Drain {
	if in.Settings.IdleTimeout <= 0 || wanted > 0 {
		return nil
	}
	joined := map[string]Worker{}
	for _, w := range in.Workers {
		if w.State == Joined {
			joined[w.NodeID] = w
		}
	}
	var out []Drain
	for _, node := range in.Nodes {
		w, ok := joined[node.ID]
		if !ok || !node.Worker || node.Draining || protected[node.ID] {
			continue
		}
		if node.Idle >= in.Settings.IdleTimeout && in.Now.Sub(w.JoinedAt) >= in.Settings.IdleTimeout {
			out = append(out, Drain{Job: w.Job, NodeID: node.ID, Idle: node.Idle})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Idle > out[j].Idle })
	if n < len(out) {
		out = out[:max(n, 0)]
	}
	return out
}

// newestQueued lists queued autoscaled workers not already cancelled,
// newest first: the ones a lowered cap cancels.
func newestQueued(ws []Worker, cancelled []string) []Worker {
	var out []Worker
	for _, w := range ws {
		if w.State == Queued && w.Autoscaled && !contains(cancelled, w.Job) {
			out = append(out, w)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Submitted.After(out[j].Submitted) })
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
