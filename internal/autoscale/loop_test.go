package autoscale

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/clock/clocktest"
	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/events"
	"github.com/sraybatch/sraybatch/internal/raygcs"
	"github.com/sraybatch/sraybatch/internal/scheduler"
	"github.com/sraybatch/sraybatch/internal/sharedstate"
)

// fakeSched is a scheduler that records what the loop asks of it.
type fakeSched struct {
	jobs      []scheduler.Job
	submitErr error
	maxTime   time.Duration
	submitted []string // script paths
	cancelled [][]string
	// maxTimeOf lists the partitions MaxTime was asked about.
	maxTimeOf []string
	queries   int
	nextID    int
}

func (f *fakeSched) Submit(ctx context.Context, script string) (string, error) {
	if f.submitErr != nil {
		return "", f.submitErr
	}
	f.submitted = append(f.submitted, script)
	f.nextID++
	return strconv.Itoa(100 + f.nextID), nil
}
func (f *fakeSched) Jobs(ctx context.Context, q scheduler.Query) ([]scheduler.Job, error) {
	f.queries++
	return f.jobs, nil
}
func (f *fakeSched) Cancel(ctx context.Context, ids []string, o scheduler.CancelOptions) error {
	f.cancelled = append(f.cancelled, ids)
	return nil
}
func (f *fakeSched) MaxArrayTasks(ctx context.Context) (int, error) { return 0, nil }
func (f *fakeSched) MaxTime(ctx context.Context, p string) (time.Duration, bool, error) {
	f.maxTimeOf = append(f.maxTimeOf, p)
	if f.maxTime == 0 {
		return 0, true, nil
	}
	return f.maxTime, false, nil
}

// fakeRay is a GCS that answers with a fixed state and accepts drains.
type fakeRay struct {
	state   raygcs.ClusterState
	refuse  bool
	drained []string
}

func (f *fakeRay) ClusterState(ctx context.Context) (raygcs.ClusterState, error) { return f.state, nil }
func (f *fakeRay) Drain(ctx context.Context, id string, r raygcs.DrainReason, msg string, d time.Time) (bool, string, error) {
	if f.refuse {
		return false, "node is busy", nil
	}
	f.drained = append(f.drained, id)
	return true, "", nil
}

type loopFixture struct {
	dir   cluster.Dir
	spec  cluster.Spec
	sched *fakeSched
	ray   *fakeRay
	clock *clocktest.Fake
	loop  *Loop
}

// newLoopFixture is a cluster with a running head; edit changes its spec.
func newLoopFixture(t *testing.T, edit ...func(*cluster.Spec)) *loopFixture {
	t.Helper()
	root := t.TempDir()
	spec := cluster.Spec{Name: "as", ID: "id", Backend: cluster.BackendSlurm, User: "ana", LogDir: filepath.Join(root, "logs"),
		Node: cluster.NodeSpec{GPUs: 1, Time: "1:00:00"}, DrainBeforeS: 60,
		Autoscale: cluster.AutoscaleSpec{Enabled: true, MaxWorkers: 3, IdleTimeoutS: 15, PollIntervalS: 2}}
	for _, e := range edit {
		e(&spec)
	}
	dir, err := cluster.Store{Root: filepath.Join(root, "clusters")}.Create(spec, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := dir.AddSubmission(cluster.Submission{Role: cluster.RoleHead, JobID: "6"}); err != nil {
		t.Fatal(err)
	}
	f := &loopFixture{dir: dir, spec: spec, clock: clocktest.New(time.Date(2026, 11, 29, 14, 0, 0, 0, time.UTC)),
		sched: &fakeSched{jobs: []scheduler.Job{{ID: "6", State: scheduler.Running, TimeLeft: 50 * time.Minute}}},
		ray: &fakeRay{state: raygcs.ClusterState{Nodes: []raygcs.Node{
			{ID: "head", Status: raygcs.NodeRunning, Total: map[string]float64{"GPU": 1, "CPU": 2, "sraybatch_job_6": 1, "node:__internal_head__": 1}},
		}}}}
	f.loop = NewLoop(LoopConfig{Dir: dir, HeadJob: "6", Sched: f.sched, Ray: f.ray, Clock: f.clock, Logf: t.Logf})
	return f
}

func (f *loopFixture) poll(t *testing.T) cluster.AutoscalerStatus {
	t.Helper()
	spec, err := f.dir.Spec()
	if err != nil {
		t.Fatal(err)
	}
	f.loop.Poll(context.Background(), spec)
	st, ok, err := f.dir.Autoscaler()
	if err != nil || !ok {
		t.Fatalf("no autoscaler status: %v", err)
	}
	return st
}

// request_resources for three GPUs on a head with one: one sbatch call for
// an array of two workers, recorded as the autoscaler's, their --time capped
// at the head's time left and the partition's MaxTime; one squeue per poll.
func TestLoopSubmitsOnceForAFloor(t *testing.T) {
	t.Parallel()
	f := newLoopFixture(t)
	f.sched.maxTime = 30 * time.Minute
	f.ray.state.Constraints = []raygcs.RequestCount{{Request: raygcs.Request{Resources: map[string]float64{"GPU": 1}}, Count: 3}}
	st := f.poll(t)
	if len(f.sched.submitted) != 1 || f.sched.queries != 1 {
		t.Fatalf("sbatch calls %d, squeue calls %d; want 1 and 1", len(f.sched.submitted), f.sched.queries)
	}
	script, _ := os.ReadFile(f.sched.submitted[0])
	for _, want := range []string{"#SBATCH --array=0-1", "#SBATCH --time=0-00:30:00", "#SBATCH --dependency=after:6", "--job-name=sray-as-worker"} {
		if !strings.Contains(string(script), want) {
			t.Errorf("worker script lacks %q:\n%s", want, script)
		}
	}
	subs, _ := f.dir.Submissions()
	if last := subs[len(subs)-1]; !last.Autoscaled || last.Tasks != 2 {
		t.Errorf("submission = %+v, want an autoscaled array of 2", last)
	}
	if st.LastDecision == nil || !slices.Equal(st.LastDecision.Submitted, []string{"101_0", "101_1"}) || !strings.Contains(st.Reason, "request_resources") ||
		st.DemandGPUs != 3 || st.PendingWorkers != 2 {
		t.Errorf("status = %+v (last %+v)", st, st.LastDecision)
	}
	events, _ := os.ReadFile(f.dir.AutoscalerEventsPath())
	if !strings.Contains(string(events), `"event":"autoscaler_decision"`) || !strings.Contains(string(events), `"101_0"`) {
		t.Errorf("event log = %s", events)
	}
	// The next poll sees them pending: nothing twice for the same demand.
	f.sched.jobs = append(f.sched.jobs, scheduler.Job{ID: "101_0", State: scheduler.Pending, Reason: "Resources"}, scheduler.Job{ID: "101_1", State: scheduler.Pending, Reason: "Priority"})
	f.clock.Advance(2 * time.Second)
	f.poll(t)
	if len(f.sched.submitted) != 1 {
		t.Errorf("%d sbatch calls after the second poll, want still 1", len(f.sched.submitted))
	}
}

// SLURM refusing sbatch backs off exponentially with SLURM's words, and
// the number of sbatch calls stays bounded.
func TestLoopBacksOffWhenSlurmRefuses(t *testing.T) {
	t.Parallel()
	f := newLoopFixture(t)
	f.ray.state.Pending = []raygcs.RequestCount{{Request: raygcs.Request{Resources: map[string]float64{"GPU": 1}}, Count: 1}}
	f.sched.submitErr = errors.New("sbatch failed: sbatch: error: Batch job submission failed: Required partition not available (inactive or drain)")
	var st cluster.AutoscalerStatus
	for range 60 { // two minutes of polls every 2 s
		st = f.poll(t)
		f.clock.Advance(2 * time.Second)
	}
	if st.BackoffUntil == nil || !strings.Contains(st.Reason, "Required partition not available") {
		t.Errorf("status = %+v, want a backoff with SLURM's words", st)
	}
	if n := f.loop.mem.Failures; n < 3 || n > 6 {
		t.Errorf("%d sbatch attempts in 2 minutes, want a handful (5 s, 10 s, 20 s, 40 s ...)", n)
	}
}

// An idle worker is drained through Ray, its drain recorded for the worker's
// supervisor; a refused drain is retried at the next poll.
func TestLoopDrainsIdleWorkers(t *testing.T) {
	t.Parallel()
	f := newLoopFixture(t)
	if err := f.dir.AddSubmission(cluster.Submission{Role: cluster.RoleWorker, JobID: "7", Autoscaled: true}); err != nil {
		t.Fatal(err)
	}
	f.sched.jobs = append(f.sched.jobs, scheduler.Job{ID: "7", State: scheduler.Running})
	f.ray.state.Nodes = append(f.ray.state.Nodes, raygcs.Node{ID: "w7", Status: raygcs.NodeIdle, IdleFor: time.Minute,
		Total: map[string]float64{"GPU": 1, "CPU": 2, "sraybatch_job_7": 1}})
	f.ray.refuse = true
	f.poll(t) // joined now: not idle long enough since joining
	f.clock.Advance(20 * time.Second)
	f.poll(t) // Ray refuses: busy again
	if _, ok, _ := f.dir.DrainNotice("7"); ok || len(f.ray.drained) != 0 {
		t.Fatal("a refused drain was recorded")
	}
	f.ray.refuse = false
	f.clock.Advance(2 * time.Second)
	st := f.poll(t)
	n, ok, err := f.dir.DrainNotice("7")
	if err != nil || !ok || n.Outcome != cluster.OutcomeDrainedIdle || n.NodeID != "w7" || !slices.Equal(f.ray.drained, []string{"w7"}) {
		t.Errorf("drain notice %+v, %v, %v; Ray drained %v", n, ok, err, f.ray.drained)
	}
	if st.LastDecision == nil || !slices.Equal(st.LastDecision.Drained, []string{"7"}) {
		t.Errorf("last decision = %+v", st.LastDecision)
	}
}

// Switched off, the loop asks Ray and SLURM nothing and does nothing; a
// cluster that never had autoscaling gets no autoscaler status at all.
func TestLoopOff(t *testing.T) {
	t.Parallel()
	f := newLoopFixture(t)
	as := f.spec.Autoscale
	as.Enabled = false
	if err := f.dir.WriteAutoscaleSettings(as); err != nil {
		t.Fatal(err)
	}
	spec, _ := f.dir.Spec()
	f.loop.Poll(context.Background(), spec)
	if _, ok, _ := f.dir.Autoscaler(); ok {
		t.Error("a cluster that never autoscaled wrote an autoscaler status")
	}
	as.Enabled = true
	f.dir.WriteAutoscaleSettings(as)
	f.poll(t)
	as.Enabled = false
	f.dir.WriteAutoscaleSettings(as)
	f.sched.queries, f.sched.submitted = 0, nil
	f.ray.state.Pending = []raygcs.RequestCount{{Request: raygcs.Request{Resources: map[string]float64{"GPU": 1}}, Count: 4}}
	st := f.poll(t)
	if st.Enabled || f.sched.queries != 0 || len(f.sched.submitted) != 0 || st.Reason != "autoscaling is off" {
		t.Errorf("off: status %+v, %d squeue calls, %d sbatch calls", st, f.sched.queries, len(f.sched.submitted))
	}
}

// Run stops when its context ends, and makes no call after.
func TestLoopRunStopsWithTheHead(t *testing.T) {
	t.Parallel()
	f := newLoopFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		f.loop.Run(ctx, cluster.HeadInfo{})
		close(done)
	}()
	calls := f.clock.WaitAfterCalls(0)
	cancel()
	<-done
	queries := f.sched.queries
	f.clock.Advance(time.Minute)
	if f.sched.queries != queries || calls != 1 {
		t.Errorf("squeue calls after the head ended: %d → %d", queries, f.sched.queries)
	}
}

// The autoscaler's event is part of the event schema Go and Python share
// (testdata/shared-state.json): every field the schema requires is there.
func TestLoopEventMatchesSharedSchema(t *testing.T) {
	t.Parallel()
	required, ok := sharedstate.Load(t).Events[events.NameAutoscalerDecision]
	if !ok {
		t.Fatalf("the shared schema has no %q event", events.NameAutoscalerDecision)
	}
	f := newLoopFixture(t)
	f.ray.state.Pending = []raygcs.RequestCount{{Request: raygcs.Request{Resources: map[string]float64{"GPU": 1}}, Count: 1}}
	f.poll(t)
	line, _ := os.ReadFile(f.dir.AutoscalerEventsPath())
	var ev map[string]any
	if err := json.Unmarshal([]byte(strings.SplitN(string(line), "\n", 2)[0]), &ev); err != nil {
		t.Fatalf("event %q: %v", line, err)
	}
	if ev["event"] != events.NameAutoscalerDecision {
		t.Errorf("event = %v", ev["event"])
	}
	for _, field := range append(required, "ts") {
		if _, ok := ev[field]; !ok {
			t.Errorf("the event lacks %q: %s", field, line)
		}
	}
}

// A worker whose node has left Ray (drained, lost) is no supply while SLURM
// still lists its ending job: new demand is served at once.
func TestLoopLeavingWorkerIsNoSupply(t *testing.T) {
	t.Parallel()
	f := newLoopFixture(t)
	if err := f.dir.AddSubmission(cluster.Submission{Role: cluster.RoleWorker, JobID: "7", Autoscaled: true}); err != nil {
		t.Fatal(err)
	}
	f.sched.jobs = append(f.sched.jobs, scheduler.Job{ID: "7", State: scheduler.Running})
	worker := raygcs.Node{ID: "w7", Status: raygcs.NodeRunning, Total: map[string]float64{"GPU": 1, "CPU": 2, "sraybatch_job_7": 1}}
	f.ray.state.Nodes = append(f.ray.state.Nodes, worker)
	f.poll(t) // joined
	f.ray.state.Nodes = f.ray.state.Nodes[:1]
	f.ray.state.Constraints = []raygcs.RequestCount{{Request: raygcs.Request{Resources: map[string]float64{"GPU": 1}}, Count: 2}}
	f.clock.Advance(time.Second)
	f.poll(t) // its node left Ray; SLURM still says RUNNING
	if len(f.sched.submitted) != 1 {
		t.Errorf("%d sbatch calls, want 1: a worker that left Ray is no supply", len(f.sched.submitted))
	}
	f.sched.jobs[1].State = scheduler.Completing
	f.sched.jobs = append(f.sched.jobs, scheduler.Job{ID: "101", State: scheduler.Pending, Reason: "Resources"})
	f.clock.Advance(time.Second)
	f.poll(t)
	if len(f.sched.submitted) != 1 {
		t.Errorf("%d sbatch calls after a second poll, want still 1", len(f.sched.submitted))
	}
}

// With a worker partition, the autoscaler's workers go there and their
// --time is capped at that partition's MaxTime; the head stays put.
func TestLoopSubmitsToTheWorkerPartition(t *testing.T) {
	t.Parallel()
	f := newLoopFixture(t, func(s *cluster.Spec) { s.Node.Partition, s.WorkerPartition = "debug", "scav" })
	f.sched.maxTime = 20 * time.Minute
	f.ray.state.Constraints = []raygcs.RequestCount{{Request: raygcs.Request{Resources: map[string]float64{"GPU": 1}}, Count: 2}}
	f.poll(t)
	if len(f.sched.submitted) != 1 || !slices.Equal(f.sched.maxTimeOf, []string{"scav"}) {
		t.Fatalf("sbatch calls %d, MaxTime asked of %q; want 1 and [scav]", len(f.sched.submitted), f.sched.maxTimeOf)
	}
	script, _ := os.ReadFile(f.sched.submitted[0])
	for _, want := range []string{"#SBATCH --partition=scav\n", "#SBATCH --time=0-00:20:00\n"} {
		if !strings.Contains(string(script), want) {
			t.Errorf("worker script lacks %q:\n%s", want, script)
		}
	}
}

// On a rollover cluster's worker promoted to head, the autoscaler runs as
// on any head: its own job, submitted as a worker, is no worker supply (the
// --min-workers floor brings a new one) and never drained for idleness.
func TestLoopOnAPromotedHead(t *testing.T) {
	t.Parallel()
	f := newLoopFixture(t, func(s *cluster.Spec) {
		s.Rollover = &cluster.RolloverSpec{BeforeS: 240, HeadWaitS: 300}
		s.Autoscale.MinWorkers = 1
	})
	if err := f.dir.AddSubmission(cluster.Submission{Role: cluster.RoleWorker, JobID: "8"}); err != nil {
		t.Fatal(err)
	}
	f.sched.jobs = []scheduler.Job{{ID: "8", State: scheduler.Running, TimeLeft: 50 * time.Minute}} // head 6 is gone
	f.ray.state.Nodes = []raygcs.Node{{ID: "h8", Status: raygcs.NodeIdle, IdleFor: time.Hour,
		Total: map[string]float64{"GPU": 1, "CPU": 2, "sraybatch_job_8": 1, "node:__internal_head__": 1}}}
	f.loop = NewLoop(LoopConfig{Dir: f.dir, HeadJob: "8", Sched: f.sched, Ray: f.ray, Clock: f.clock, Logf: t.Logf})
	st := f.poll(t)
	f.sched.jobs = append(f.sched.jobs, scheduler.Job{ID: "101", State: scheduler.Pending, Reason: "Resources"})
	f.clock.Advance(time.Minute)
	f.poll(t)
	if len(f.sched.submitted) != 1 || len(f.ray.drained) != 0 {
		t.Fatalf("sbatch calls %d, drained %v; want one worker for the floor and no drain of the head (status %+v)", len(f.sched.submitted), f.ray.drained, st)
	}
	script, _ := os.ReadFile(f.sched.submitted[0])
	if !strings.Contains(string(script), "#SBATCH --dependency=after:8\n") {
		t.Errorf("worker script does not follow the promoted head 8:\n%s", script)
	}
}

// A type's refused sbatch takes the place of that type's words only: the
// other types' words (a drain, a submission) stay in the decision.
func TestWithTypeReason(t *testing.T) {
	t.Parallel()
	const refused = "sbatch refused (partition drained); backing off 2s"
	for _, tc := range []struct{ why, name, decided, want string }{
		{"gpu: 1 bundle waits; cpu: drain 1 idle worker", "gpu", "1 bundle waits",
			"gpu: " + refused + "; cpu: drain 1 idle worker"},
		{"cpu: drain 1 idle worker; gpu: 1 bundle waits", "gpu", "1 bundle waits",
			"cpu: drain 1 idle worker; gpu: " + refused},
		{"cpu: drain 1 idle worker", "gpu", "", "cpu: drain 1 idle worker; gpu: " + refused},
		{"", "gpu", "", "gpu: " + refused},
	} {
		if got := withTypeReason(tc.why, tc.name, tc.decided, refused); got != tc.want {
			t.Errorf("withTypeReason(%q, %s) = %q, want %q", tc.why, tc.name, got, tc.want)
		}
	}
}
