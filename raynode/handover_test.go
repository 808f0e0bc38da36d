package raynode

import (
	"context"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/clock"
	"github.com/sraybatch/sraybatch/internal/cluster"
)

// newRolloverFixture is a run fixture whose cluster rolls over, its head
// job 7 generation 1.
func newRolloverFixture(t *testing.T, headWait time.Duration) *runFixture {
	t.Helper()
	f := newRunFixture(t)
	f.spec.Rollover = &cluster.RolloverSpec{BeforeS: 240, HeadWaitS: int(headWait / time.Second)}
	g1 := cluster.Generation{HeadInfo: cluster.HeadInfo{Job: "7", Address: "127.0.0.1:20000", NodeIP: "127.0.0.1", Published: f.clock.Now(), Generation: 1}, How: cluster.GenerationFirst}
	if err := f.dir.PublishGeneration(g1); err != nil {
		t.Fatal(err)
	}
	return f
}

// handOverTo records head 7's handover of generation 1 to worker job to.
func (f *runFixture) handOverTo(t *testing.T, to string) {
	t.Helper()
	h := cluster.Handover{Generation: 1, HeadJob: "7", Started: f.clock.Now(), How: cluster.GenerationPromoted, Successor: to, LastStep: -1}
	if err := f.dir.WriteHandover(h); err != nil {
		t.Fatal(err)
	}
}

// publishPromoted publishes generation 2, its head the promoted worker job 9.
func (f *runFixture) publishPromoted(t *testing.T) {
	t.Helper()
	g2 := cluster.Generation{HeadInfo: cluster.HeadInfo{Job: "9", Address: "127.0.0.1:20100", NodeIP: "127.0.0.1", Published: f.clock.Now(), Generation: 2},
		How: cluster.GenerationPromoted, PreviousHeadJob: "7"}
	if err := f.dir.PublishGeneration(g2); err != nil {
		t.Fatal(err)
	}
}

// A worker with time left follows the cluster into the next generation in
// its own job: its first Ray stops, and a second `ray start` joins the new
// head with the new generation's token.
func TestRunWorkerFollowsAHandover(t *testing.T) {
	t.Parallel()
	f := newRolloverFixture(t, 5*time.Minute)
	f.heartbeat(t, "8")
	errc := f.start(cluster.RoleWorker, map[string]string{"SLURM_JOB_ID": "8", "CUDA_VISIBLE_DEVICES": "0"})
	calls := f.untilRunning(t, "8")
	f.handOverTo(t, "9")
	for !f.procsStarted()[0].isStopped() { // the notice is read at the next tick
		f.clock.Advance(membershipInterval)
		calls = f.clock.WaitAfterCalls(calls)
	}
	tok, err := f.dir.NewGenerationToken(2)
	if err != nil {
		t.Fatal(err)
	}
	f.publishPromoted(t)
	for len(f.procsStarted()) < 2 {
		f.clock.Advance(membershipInterval)
		calls = f.clock.WaitAfterCalls(calls)
	}
	second := f.procsStarted()[1]
	if !slices.Contains(second.argv, "--address=127.0.0.1:20100") {
		t.Errorf("second ray start %v: want generation 2's address", second.argv)
	}
	if !slices.Contains(second.env, "RAY_AUTH_TOKEN_PATH="+tok) || tok != filepath.Join(f.dir.Path, "token.g2") {
		t.Errorf("second ray start's env lacks generation 2's token %s", tok)
	}
	// It joins generation 2 (the new head's snapshot shows it), then Ray
	// drains it: the run's end is as in any generation.
	f.untilRunning(t, "8")
	if err := f.dir.WriteDrainNotice(cluster.DrainNotice{Job: "8", NodeID: "n-8", Outcome: cluster.OutcomeDrainedIdle, Reason: "idle"}); err != nil {
		t.Fatal(err)
	}
	second.exit()
	if err := <-errc; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if rec, _, _ := f.dir.Node("8"); rec.Job != "8" || rec.Outcome != cluster.OutcomeDrainedIdle {
		t.Errorf("record = %+v, want the same job ending drained_idle", rec)
	}
}

// When no next head is published within --head-wait, the worker gives its
// GPUs back and says it was waiting for a head.
func TestRunWorkerWaitsForHeadAtMostHeadWait(t *testing.T) {
	t.Parallel()
	f := newRolloverFixture(t, time.Minute)
	f.heartbeat(t, "8")
	errc := f.start(cluster.RoleWorker, map[string]string{"SLURM_JOB_ID": "8", "CUDA_VISIBLE_DEVICES": "0"})
	calls := f.untilRunning(t, "8")
	f.handOverTo(t, "9")
	ended := make(chan error, 1)
	go func() { err := <-errc; f.clock.Close(); ended <- err }()
	for calls >= 0 {
		f.clock.Advance(membershipInterval)
		calls = f.clock.WaitAfterCalls(calls)
	}
	<-ended
	rec, _, _ := f.dir.Node("8")
	if rec.Outcome != cluster.OutcomeHeadLost || !strings.Contains(rec.Reason, "waiting for head") || len(f.procsStarted()) != 1 {
		t.Errorf("record = %s %q after %d ray starts; want head_lost, waiting for head, one start", rec.Outcome, rec.Reason, len(f.procsStarted()))
	}
}

func (f *runFixture) procsStarted() []*fakeProcess {
	f.procs.mu.Lock()
	defer f.procs.mu.Unlock()
	return slices.Clone(f.procs.started)
}

func (p *fakeProcess) isStopped() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// newHandoverHead is a head supervisor of generation 1 of a rollover
// cluster whose dashboard (fake) shows the given nodes, with worker
// records for every other job; order records what stops, in order.
func newHandoverHead(t *testing.T, nodes ...string) (*supervisor, *membershipTracker, *fakeDashboard, *[]string) {
	t.Helper()
	f := newRolloverFixture(t, time.Minute)
	for _, job := range []string{"8", "9"} {
		if err := f.dir.WriteNode(cluster.NodeRecord{Job: job, Role: cluster.RoleWorker, Phase: cluster.PhaseRunning}); err != nil {
			t.Fatal(err)
		}
	}
	dash, srv := newFakeDashboard(t, http.StatusOK, nodesAnswer(len(nodes), nodes...))
	cfg := f.config(cluster.RoleHead, map[string]string{"SLURM_JOB_ID": "7"})
	cfg.Clock, cfg.Spec = clock.System{}, f.spec
	s := newSupervisor(cfg, "7")
	s.joinGeneration(cluster.HeadInfo{})
	var order []string
	s.headStops = headStops{autoscaler: func() { order = append(order, "autoscaler") }, observer: func() { order = append(order, "observer") }}
	members := newMembershipTracker(f.dir, dashboardClient{base: srv.URL, token: "t"}, clock.System{})
	return s, members, dash, &order
}

// The head hands over to its worker: it records the handover, stops the
// autoscaler first, waits until the worker has left its GCS, stops its Ray,
// and seals the generation with the nodes its GCS knew.
func TestHeadHandsOverByPromotion(t *testing.T) {
	t.Parallel()
	s, members, dash, order := newHandoverHead(t, rayNodeJSON("h7", "10.0.0.1", "7", true, 1), rayNodeJSON("w8", "10.0.0.2", "8", false, 1))
	node := &fakeProcess{done: make(chan struct{})}
	go func() {
		for {
			if h, ok, _ := s.cfg.Dir.Handover(1); ok && h.Sealed == nil {
				dash.set(http.StatusOK, nodesAnswer(1, rayNodeJSON("h7", "10.0.0.1", "7", true, 1))) // the worker left
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	err := s.handOver(context.Background(), node, members, "time left", time.Time{})
	if outcomeOf(err) != cluster.OutcomeHandedOver {
		t.Fatalf("handOver = %v, want handed_over", err)
	}
	h, ok, _ := s.cfg.Dir.Handover(1)
	if !ok || h.Successor != "8" || h.How != cluster.GenerationPromoted || h.Sealed == nil || h.Sealed.Before(h.Started) || len(h.Nodes) != 2 {
		t.Errorf("handover = %+v, want to 8, promoted, sealed, 2 nodes", h)
	}
	if !slices.Equal(*order, []string{"autoscaler", "observer"}) || !node.isStopped() {
		t.Errorf("stopped %v, Ray stopped %v: want the autoscaler first, then the observer, then Ray", *order, node.isStopped())
	}
}

// Without a worker to promote the head goes on, and does not try again.
func TestHeadWithoutSuccessorGoesOn(t *testing.T) {
	t.Parallel()
	s, members, _, order := newHandoverHead(t, rayNodeJSON("h7", "10.0.0.1", "7", true, 1))
	node := &fakeProcess{done: make(chan struct{})}
	if err := s.handOver(context.Background(), node, members, "time left", time.Time{}); err != nil {
		t.Fatalf("handOver = %v, want nil: the head serves to its end", err)
	}
	if _, ok, _ := s.cfg.Dir.Handover(1); ok || len(*order) != 0 || node.isStopped() || !s.rollover.done {
		t.Errorf("a head without successor recorded a handover or stopped something: %v", *order)
	}
}

// A driver runs its command again after a handover at most --max-restarts
// times; past that its job ends, saying why.
func TestDriverMaxRestarts(t *testing.T) {
	t.Parallel()
	f := newRolloverFixture(t, time.Minute)
	cfg := f.config(cluster.RoleDriver, map[string]string{"SLURM_JOB_ID": "10"})
	cfg.Spec, cfg.MaxRestarts = f.spec, 1
	s := newSupervisor(cfg, "10")
	s.rollover = rolloverState{gen: 2, restarts: 1, driverRan: true}
	_, err := s.enterNext(context.Background(), cluster.Handover{Generation: 2, HeadJob: "8", How: cluster.GenerationPromoted, Successor: "9"})
	if outcomeOf(err) != cluster.OutcomeFailed || !strings.Contains(err.Error(), "--max-restarts 1 reached") {
		t.Errorf("enterNext after 1 restart of 1 = %v, want the job to end: --max-restarts reached", err)
	}
}

// A successor driver job caught by a head handover while it still waits for
// its predecessor follows into the next generation without counting a
// restart: its one run (Restarts, counted when it was submitted) has not
// happened yet, so --max-restarts 1 still lets it run, once, resumed.
func TestWaitingSuccessorDriverFollowsAHandoverUncounted(t *testing.T) {
	t.Parallel()
	f := newRolloverFixture(t, time.Minute)
	f.publishPromoted(t)
	cfg := f.config(cluster.RoleDriver, map[string]string{"SLURM_JOB_ID": "10"})
	cfg.Spec, cfg.MaxRestarts = f.spec, 1
	s := newSupervisor(cfg, "10")
	s.rollover = rolloverState{gen: 1, restarts: 1} // a successor: cfg.Restarts 1, its command not started
	head, err := s.enterNext(context.Background(), cluster.Handover{Generation: 1, HeadJob: "7", How: cluster.GenerationPromoted, Successor: "9"})
	if err != nil || head.Job != "9" {
		t.Fatalf("enterNext = %+v, %v; want generation 2's head 9", head, err)
	}
	if s.rollover.restarts != 1 {
		t.Errorf("restarts after following a handover before its first run = %d, want 1 (unchanged)", s.rollover.restarts)
	}
}

// A promoted worker publishes the Ray version of the generation it was in:
// Ray admits a worker only to a GCS of its own version, and the promoted
// head's head_up event and status carry it like the first head's.
func TestPromotedHeadInheritsRayVersion(t *testing.T) {
	t.Parallel()
	f := newRunFixture(t)
	f.spec.Rollover = &cluster.RolloverSpec{BeforeS: 240, HeadWaitS: 60}
	g1 := cluster.Generation{HeadInfo: cluster.HeadInfo{Job: "7", Address: "127.0.0.1:20000", Generation: 1, RayVersion: "2.60.0"}, How: cluster.GenerationFirst}
	if err := f.dir.PublishGeneration(g1); err != nil {
		t.Fatal(err)
	}
	cfg := f.config(cluster.RoleWorker, map[string]string{"SLURM_JOB_ID": "9"})
	cfg.Spec = f.spec
	s := newSupervisor(cfg, "9")
	s.rollover = rolloverState{gen: 1}
	if _, err := s.enterNext(context.Background(), cluster.Handover{Generation: 1, HeadJob: "7", How: cluster.GenerationPromoted, Successor: "9"}); err != nil {
		t.Fatal(err)
	}
	if s.cfg.Role != cluster.RoleHead || s.rayVersion != "2.60.0" {
		t.Errorf("promoted: role %s, ray version %q; want head, 2.60.0 (generation 1's)", s.cfg.Role, s.rayVersion)
	}
	if h := s.headInfo("127.0.0.1", Ports{GCS: 20100}); h.RayVersion != "2.60.0" {
		t.Errorf("the promoted head publishes ray version %q, want 2.60.0", h.RayVersion)
	}
}

// At a handover a driver job stops its driver with SIGINT (Ray Train's safe
// point), then its Ray node, and runs the command again against the next
// generation with SRAYBATCH_GENERATION and SRAYBATCH_RESUMED set.
func TestRunDriverFollowsAHandover(t *testing.T) {
	t.Parallel()
	f := newRolloverFixture(t, 5*time.Minute)
	cfg := f.config(cluster.RoleDriver, map[string]string{"SLURM_JOB_ID": "10"})
	cfg.DriverArgv, cfg.MaxRestarts = []string{"true"}, 1
	errc := make(chan error, 1)
	go func() { errc <- Run(context.Background(), cfg) }()
	calls := f.untilRunning(t, "10")
	for len(f.procsStarted()) < 2 { // the driver starts once the node runs
		f.clock.Advance(300 * time.Millisecond)
		calls = f.clock.WaitAfterCalls(calls)
	}
	node, driver := f.procsStarted()[0], f.procsStarted()[1]
	f.handOverTo(t, "9")
	for !node.isStopped() {
		f.clock.Advance(membershipInterval)
		calls = f.clock.WaitAfterCalls(calls)
	}
	if !driver.isStopped() || driver.sig != syscall.SIGINT || node.sig != syscall.SIGTERM {
		t.Errorf("at the handover the driver got %v and its node %v; want SIGINT first, then SIGTERM", driver.sig, node.sig)
	}
	f.publishPromoted(t)
	for len(f.procsStarted()) < 3 {
		f.clock.Advance(membershipInterval)
		calls = f.clock.WaitAfterCalls(calls)
	}
	calls = f.untilRunning(t, "10")
	for len(f.procsStarted()) < 4 {
		f.clock.Advance(300 * time.Millisecond)
		calls = f.clock.WaitAfterCalls(calls)
	}
	again := f.procsStarted()[3]
	if !slices.Contains(again.env, cluster.EnvResumed+"=1") || !slices.Contains(again.env, cluster.EnvGeneration+"=2") {
		t.Errorf("the driver's second run lacks %s=1 and %s=2: %v", cluster.EnvResumed, cluster.EnvGeneration, again.env)
	}
	again.exit()
	if err := <-errc; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if rec, _, _ := f.dir.Node("10"); rec.Outcome != cluster.OutcomeCompleted {
		t.Errorf("driver job ended %s (%s), want completed", rec.Outcome, rec.Reason)
	}
}

// fakeHeadSubmitter hands out job ids and counts its calls.
type fakeHeadSubmitter struct{ calls int }

func (f *fakeHeadSubmitter) SubmitHead(ctx context.Context) (string, error) {
	f.calls++
	return "20", nil
}

// With no worker to promote, the head submits a successor head job (once)
// and hands over to it.
func TestHeadHandsOverToASubmittedSuccessor(t *testing.T) {
	t.Parallel()
	s, members, _, order := newHandoverHead(t, rayNodeJSON("h7", "10.0.0.1", "7", true, 1))
	sub := &fakeHeadSubmitter{}
	s.cfg.Successor = sub
	node := &fakeProcess{done: make(chan struct{})}
	if err := s.handOver(context.Background(), node, members, "time left", time.Time{}); outcomeOf(err) != cluster.OutcomeHandedOver {
		t.Fatalf("handOver = %v, want handed_over", err)
	}
	h, _, _ := s.cfg.Dir.Handover(1)
	if h.How != cluster.GenerationSubmitted || h.Successor != "20" || h.Sealed == nil || sub.calls != 1 || len(*order) != 2 {
		t.Errorf("handover = %+v after %d submissions, stops %v; want sealed, to submitted job 20", h, sub.calls, *order)
	}
}

// A successor head job starts as the next generation's head: it takes the
// next number and a fresh token, waits (beyond --head-wait) while the old
// head serves, and publishes once the old head sealed its generation.
func TestSuccessorHeadWaitsForTheSeal(t *testing.T) {
	t.Parallel()
	f := newRolloverFixture(t, time.Minute)
	cfg := f.config(cluster.RoleHead, map[string]string{"SLURM_JOB_ID": "20"})
	cfg.Spec, cfg.HeadJob = f.spec, ""
	s := newSupervisor(cfg, "20")
	s.joinGeneration(cluster.HeadInfo{})
	if s.rollover.gen != 2 || s.rollover.prevHead != "7" || s.rollover.how != cluster.GenerationSubmitted || s.cfg.HeadJob != "7" ||
		s.rollover.token != filepath.Join(f.dir.Path, "token.g2") {
		t.Fatalf("successor's rollover = %+v, watching %s; want generation 2 after head 7, its own token", s.rollover, s.cfg.HeadJob)
	}
	done := make(chan error, 1)
	go func() { done <- s.awaitSeal(context.Background()) }()
	calls := f.clock.WaitAfterCalls(0)
	for range 3 * 60 * 2 { // three --head-wait without a handover: still waiting
		f.clock.Advance(headCheckInterval / 4)
		calls = f.clock.WaitAfterCalls(calls)
	}
	sealed := f.clock.Now()
	if err := f.dir.WriteHandover(cluster.Handover{Generation: 1, HeadJob: "7", How: cluster.GenerationSubmitted, Successor: "20", Sealed: &sealed}); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(headCheckInterval / 4)
	if err := <-done; err != nil {
		t.Errorf("awaitSeal = %v, want nil once sealed", err)
	}
}

// A preempted head hands over by SLURM's kill, seconds away: its GCS is
// gone already (under proctrack/linuxproc SLURM's SIGTERM reaches Ray
// too), so it promotes the worker its last snapshot showed, waits for no
// node to leave, stops Ray within the preemption's grace and seals at once.
func TestPreemptedHeadHandsOverAtOnce(t *testing.T) {
	t.Parallel()
	s, members, dash, _ := newHandoverHead(t, rayNodeJSON("h7", "10.0.0.1", "7", true, 1), rayNodeJSON("w8", "10.0.0.2", "8", false, 1))
	members.refresh(context.Background())
	dash.set(http.StatusServiceUnavailable, "") // its Ray died with the SIGTERM
	node := &fakeProcess{done: make(chan struct{})}
	killAt := time.Now().Add(9 * time.Second)
	began := time.Now()
	if err := s.handOver(context.Background(), node, members, "SLURM's preemption reached the head", killAt); outcomeOf(err) != cluster.OutcomeHandedOver {
		t.Fatalf("handOver = %v, want handed_over", err)
	}
	took := time.Since(began)
	h, _, _ := s.cfg.Dir.Handover(1)
	if h.How != cluster.GenerationPromoted || h.Successor != "8" || h.Sealed == nil || !h.Deadline.Equal(killAt.UTC()) {
		t.Errorf("handover = %+v, want to worker 8, sealed, its deadline SLURM's kill %s", h, killAt)
	}
	if took > 3*time.Second || s.ending != cluster.OutcomePreempted {
		t.Errorf("sealed after %s with the stop graces of %s; want at once, within the preemption's graces", took, s.ending)
	}
}

// A node probes (and drains through) the GCS of the head it dials with
// that head's generation's token: a promoted head waiting for its old
// head's seal holds the next generation's token, which the old GCS would
// refuse, and a refusal is no sign that the old head is gone.
func TestGCSDialsWithTheHeadsToken(t *testing.T) {
	t.Parallel()
	f := newRolloverFixture(t, time.Minute)
	var tokens []string
	cfg := f.config(cluster.RoleHead, map[string]string{"SLURM_JOB_ID": "8"})
	cfg.Spec = f.spec
	cfg.DialRay = func(addr, token string) (RayClient, error) { tokens = append(tokens, token); return f.gcs, nil }
	s := newSupervisor(cfg, "8")
	tok, err := f.dir.NewGenerationToken(2)
	if err != nil {
		t.Fatal(err)
	}
	s.rollover = rolloverState{gen: 2, token: tok, prevHead: "7", how: cluster.GenerationPromoted}
	if _, err := s.gcs(); err != nil {
		t.Fatal(err)
	}
	old, err := cluster.ReadToken(f.dir.TokenPath())
	if err != nil {
		t.Fatal(err)
	}
	if next, _ := cluster.ReadToken(tok); len(tokens) != 1 || tokens[0] != old || old == next {
		t.Errorf("dialled generation 1's GCS with %q, want its own token %q (not generation 2's %q)", tokens, old, next)
	}
}
