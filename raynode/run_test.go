package raynode

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/clock/clocktest"
	"github.com/sraybatch/sraybatch/internal/metrics"
	"github.com/sraybatch/sraybatch/internal/raygcs"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/gpu"
)

// fakeProcesses starts nothing: each Process lives until stopped.
type fakeProcesses struct {
	mu      sync.Mutex
	started []*fakeProcess
}

type fakeProcess struct {
	argv    []string
	env     []string
	done    chan struct{}
	once    sync.Once
	stopped bool
	// sig is the signal Stop sent.
	sig syscall.Signal
}

func (p *fakeProcesses) Adopt() error                          { return nil }
func (p *fakeProcesses) StopLeftovers(grace time.Duration) int { return 0 }

func (p *fakeProcesses) Start(cmd *exec.Cmd) (Process, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fp := &fakeProcess{argv: cmd.Args, env: cmd.Env, done: make(chan struct{})}
	p.started = append(p.started, fp)
	return fp, nil
}

func (p *fakeProcess) Done() <-chan struct{} { return p.done }
func (p *fakeProcess) Err() error            { return nil }
func (p *fakeProcess) ExitCode() int         { return 0 }
func (p *fakeProcess) Stop(sig syscall.Signal, group bool, grace time.Duration) {
	p.once.Do(func() { p.stopped, p.sig = true, sig; close(p.done) })
}

// runFixture is a cluster directory with a published head, ready for a
// worker's supervisor.
type runFixture struct {
	dir   cluster.Dir
	spec  cluster.Spec
	clock *clocktest.Fake
	procs *fakeProcesses
	gcs   *fakeGCS
}

// fakeGCS is the head's GCS as a node's supervisor sees it.
type fakeGCS struct {
	mu     sync.Mutex
	frozen bool
	pings  int
	drains []fakeDrain
}

// fakeDrain is one drain a node asked of the GCS.
type fakeDrain struct {
	node     string
	reason   raygcs.DrainReason
	message  string
	deadline time.Time
}

func (g *fakeGCS) Ping(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pings++
	if g.frozen {
		return errors.New("context deadline exceeded")
	}
	return nil
}

func (g *fakeGCS) freeze(frozen bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.frozen = frozen
}

func (g *fakeGCS) Drain(ctx context.Context, id string, r raygcs.DrainReason, msg string, d time.Time) (bool, string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.drains = append(g.drains, fakeDrain{node: id, reason: r, message: msg, deadline: d})
	return true, "", nil
}
func (g *fakeGCS) Close() error { return nil }

func newRunFixture(t *testing.T) *runFixture {
	t.Helper()
	root := t.TempDir()
	ray := filepath.Join(root, "ray")
	if err := os.WriteFile(ray, []byte("#!/bin/sh\nexit 1\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	spec := cluster.Spec{Name: "exp1", ID: "id", Backend: cluster.BackendSlurm, Ray: ray, NodeIP: "127.0.0.1",
		LogDir: filepath.Join(root, "logs"), DrainBeforeS: 120, Node: cluster.NodeSpec{GPUs: 1}}
	dir, err := cluster.Store{Root: filepath.Join(root, "clusters")}.Create(spec, "")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	if err := dir.WriteHead(cluster.HeadInfo{Job: "7", Address: "127.0.0.1:20000", NodeIP: "127.0.0.1", Published: start}); err != nil {
		t.Fatal(err)
	}
	return &runFixture{dir: dir, spec: spec, clock: clocktest.New(start), procs: &fakeProcesses{}, gcs: &fakeGCS{}}
}

// heartbeat writes the head's membership snapshot as a live head would:
// this node alive, the heartbeat now.
func (f *runFixture) heartbeat(t *testing.T, job string) time.Time {
	t.Helper()
	now := f.clock.Now()
	m := cluster.MembershipSnapshot{Updated: now, Heartbeat: now, Nodes: map[string]*cluster.MemberNode{
		job: {NodeID: "n-" + job, Alive: true, FirstSeen: now, LastSeen: now.Add(time.Millisecond)},
	}}
	if err := f.dir.WriteMembership(m); err != nil {
		t.Fatal(err)
	}
	return now
}

func (f *runFixture) start(role cluster.Role, env map[string]string) <-chan error {
	errc := make(chan error, 1)
	go func() { errc <- Run(context.Background(), f.config(role, env)) }()
	return errc
}

// config is a supervisor's Config in the fixture's cluster, its job's
// environment env.
func (f *runFixture) config(role cluster.Role, env map[string]string) Config {
	return Config{
		Role: role, Dir: f.dir, Spec: f.spec, HeadJob: "7",
		Getenv: func(k string) string { return env[k] }, Environ: []string{"PATH=/usr/bin:/bin"},
		GPUs: gpu.Env{Getenv: func(k string) string { return env[k] }}, Log: io.Discard,
		Clock: f.clock, Processes: f.procs,
		DialRay: func(addr, token string) (RayClient, error) { return f.gcs, nil },
	}
}

// TestRunWorkerHeadFrozen drives a worker's supervisor through its whole life
// on the fake clock: it starts Ray, joins, keeps running while the head's
// heartbeat is fresh, and ends with head_lost once the heartbeat stops (a
// SIGSTOPped head), stopping its Ray and removing its temp dir.
func TestRunWorkerHeadFrozen(t *testing.T) {
	t.Parallel()
	f := newRunFixture(t)
	env := map[string]string{"SLURM_JOB_ID": "8", "SLURMD_NODENAME": "node2", "CUDA_VISIBLE_DEVICES": "0"}
	f.heartbeat(t, "8")
	errc := f.start(cluster.RoleWorker, env)

	record := func() cluster.NodeRecord {
		rec, _, err := f.dir.Node("8")
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	// The pattern of every step below: the supervisor is waiting on the clock
	// (calls); move time on; wait until it waits again.
	calls := f.clock.WaitAfterCalls(0)
	// Starting: waitUp polls every 300 ms until the snapshot shows the node.
	for record().Phase != cluster.PhaseRunning {
		f.heartbeat(t, "8")
		f.clock.Advance(300 * time.Millisecond)
		calls = f.clock.WaitAfterCalls(calls)
		if calls > 100 {
			t.Fatalf("not running after %d waits: %+v", calls, record())
		}
	}
	rec := record()
	if rec.IP != "127.0.0.1" || rec.GPUs != 1 || rec.GPUIDs != "0" || rec.TempDir == "" {
		t.Errorf("running record = %+v", rec)
	}
	if st, err := os.Stat(rec.TempDir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("temp dir %s: %v, %v; want a private directory", rec.TempDir, st, err)
	}
	if len(f.procs.started) != 1 || !strings.Contains(strings.Join(f.procs.started[0].argv, " "), "--temp-dir="+filepath.Join(rec.TempDir, "r")) {
		t.Fatalf("started %d processes; want one ray start with Ray's temp dir inside the private one", len(f.procs.started))
	}

	// A live head: ten monitor ticks with a fresh heartbeat change nothing.
	var lastBeat time.Time
	for range 10 {
		lastBeat = f.heartbeat(t, "8")
		f.clock.Advance(membershipInterval)
		calls = f.clock.WaitAfterCalls(calls)
	}
	select {
	case err := <-errc:
		t.Fatalf("Run returned %v while the head was alive", err)
	default:
	}
	if record().Phase != cluster.PhaseRunning {
		t.Fatalf("record while the head is alive = %+v", record())
	}

	// The head freezes: no more heartbeats, and its GCS does not answer. The
	// worker leaves once the silence passes headSilentAfter, and not before.
	if err := metrics.WriteTargets(f.dir, cluster.Spec{}, []byte(`[{"targets":["127.0.0.1:20011"],"labels":{"cluster":"exp1"}}]`)); err != nil {
		t.Fatal(err)
	}
	f.gcs.freeze(true)
	frozenAt := lastBeat
	ended := make(chan error, 1)
	go func() {
		err := <-errc
		f.clock.Close()
		ended <- err
	}()
	for calls >= 0 {
		if f.clock.Now().Sub(frozenAt) > headSilentAfter+3*membershipInterval {
			t.Fatalf("still running %s after the head froze", f.clock.Now().Sub(frozenAt))
		}
		f.clock.Advance(membershipInterval)
		calls = f.clock.WaitAfterCalls(calls)
	}
	err := <-ended
	if silent := f.clock.Now().Sub(frozenAt); silent <= headSilentAfter {
		t.Errorf("left after %s of silence, before headSilentAfter (%s)", silent, headSilentAfter)
	}
	if err == nil || !strings.Contains(err.Error(), "unresponsive") {
		t.Errorf("Run = %v, want the head's silence as the reason", err)
	}
	rec = record()
	if rec.Phase != cluster.PhaseEnded || rec.Outcome != cluster.OutcomeHeadLost || !strings.Contains(rec.Reason, "head job 7 unresponsive") {
		t.Errorf("final record = phase %s, outcome %s, reason %q; want ended, head_lost", rec.Phase, rec.Outcome, rec.Reason)
	}
	if !f.procs.started[0].stopped {
		t.Error("ray start was not stopped")
	}
	if _, err := os.Stat(rec.TempDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temp dir %s left behind: %v", rec.TempDir, err)
	}
	// The frozen head could not empty its scrape targets: the worker did.
	if b, err := os.ReadFile(f.dir.TargetsPath()); err != nil || strings.TrimSpace(string(b)) != "[]" {
		t.Errorf("scrape targets after the head was lost: %q, %v; want []", b, err)
	}
}

// A head that ends before publishing its address ends a waiting worker with
// join_failed, its job failing.
func TestRunWorkerHeadEndsBeforePublishing(t *testing.T) {
	t.Parallel()
	f := newRunFixture(t)
	if err := os.Remove(filepath.Join(f.dir.Path, "head.json")); err != nil {
		t.Fatal(err)
	}
	if err := f.dir.WriteNode(cluster.NodeRecord{Job: "7", Role: cluster.RoleHead, Phase: cluster.PhaseFailed, Outcome: cluster.OutcomeSetupFailed, Reason: "--setup failed"}); err != nil {
		t.Fatal(err)
	}
	errc := f.start(cluster.RoleWorker, map[string]string{"SLURM_JOB_ID": "8", "CUDA_VISIBLE_DEVICES": "0"})
	err := <-errc
	rec, _, _ := f.dir.Node("8")
	if err == nil || rec.Phase != cluster.PhaseFailed || rec.Outcome != cluster.OutcomeJoinFailed || !strings.Contains(rec.Reason, "before publishing") {
		t.Errorf("Run = %v, record %+v; want join_failed before publishing", err, rec)
	}
	if len(f.procs.started) != 0 {
		t.Errorf("started %d processes without a head", len(f.procs.started))
	}
}

// exit ends a fake process by itself, as a raylet does after Ray accepted
// draining its node.
func (p *fakeProcess) exit() { p.once.Do(func() { close(p.done) }) }

// A raylet that exits after the head's autoscaler had Ray drain it for
// idleness is that drain's end: outcome drained_idle, and the job ends well
// (SLURM records COMPLETED).
func TestRunWorkerDrainedForIdleness(t *testing.T) {
	t.Parallel()
	f := newRunFixture(t)
	f.heartbeat(t, "8")
	errc := f.start(cluster.RoleWorker, map[string]string{"SLURM_JOB_ID": "8", "CUDA_VISIBLE_DEVICES": "0"})
	f.untilRunning(t, "8")
	if err := f.dir.WriteDrainNotice(cluster.DrainNotice{Job: "8", NodeID: "n-8", Outcome: cluster.OutcomeDrainedIdle, Reason: "drained for idleness after 15s"}); err != nil {
		t.Fatal(err)
	}
	f.procs.started[0].exit()
	if err := <-errc; err != nil {
		t.Fatalf("Run = %v, want nil: a drained worker's job ends well", err)
	}
	rec, _, _ := f.dir.Node("8")
	if rec.Phase != cluster.PhaseEnded || rec.Outcome != cluster.OutcomeDrainedIdle || rec.Reason != "drained for idleness after 15s" {
		t.Errorf("record = phase %s, outcome %s, reason %q; want ended, drained_idle", rec.Phase, rec.Outcome, rec.Reason)
	}
}

// Without a drain notice the same exit is Ray failing by itself.
func TestRunWorkerRayExits(t *testing.T) {
	t.Parallel()
	f := newRunFixture(t)
	f.heartbeat(t, "8")
	errc := f.start(cluster.RoleWorker, map[string]string{"SLURM_JOB_ID": "8", "CUDA_VISIBLE_DEVICES": "0"})
	calls := f.untilRunning(t, "8")
	f.procs.started[0].exit()
	// The supervisor looks for a drain notice for drainNoticeWait.
	ended := make(chan error, 1)
	go func() { err := <-errc; f.clock.Close(); ended <- err }()
	for calls >= 0 {
		f.clock.Advance(500 * time.Millisecond)
		calls = f.clock.WaitAfterCalls(calls)
	}
	err := <-ended
	rec, _, _ := f.dir.Node("8")
	if err == nil || rec.Outcome != cluster.OutcomeRayExited || rec.Phase != cluster.PhaseEnded {
		t.Errorf("Run = %v, record %+v; want ray_exited", err, rec)
	}
}

// `ray start --block` outlives a raylet that Ray drained (it takes the
// raylet's clean exit for a graceful one): the supervisor ends the node at
// its next tick after the head's drain notice.
func TestRunWorkerDrainNoticeEndsTheNode(t *testing.T) {
	t.Parallel()
	f := newRunFixture(t)
	f.heartbeat(t, "8")
	errc := f.start(cluster.RoleWorker, map[string]string{"SLURM_JOB_ID": "8", "CUDA_VISIBLE_DEVICES": "0"})
	f.untilRunning(t, "8")
	if err := f.dir.WriteDrainNotice(cluster.DrainNotice{Job: "8", NodeID: "n-8", Outcome: cluster.OutcomeDrainedIdle, Reason: "drained for idleness after 15s"}); err != nil {
		t.Fatal(err)
	}
	f.heartbeat(t, "8")
	f.clock.Advance(membershipInterval)
	if err := <-errc; err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	rec, _, _ := f.dir.Node("8")
	if rec.Outcome != cluster.OutcomeDrainedIdle || !f.procs.started[0].stopped {
		t.Errorf("record %+v, ray stopped %v; want drained_idle and ray start stopped", rec, f.procs.started[0].stopped)
	}
}

// No false alarms: a heartbeat that stalls for 30 s (a shared filesystem
// stalling the head's writes) while the GCS answers, and a head frozen for
// less than the threshold, leave the worker running.
func TestRunWorkerNoFalseAlarms(t *testing.T) {
	t.Parallel()
	f := newRunFixture(t)
	f.heartbeat(t, "8")
	errc := f.start(cluster.RoleWorker, map[string]string{"SLURM_JOB_ID": "8", "CUDA_VISIBLE_DEVICES": "0"})
	calls := f.untilRunning(t, "8")
	running := func(what string) {
		t.Helper()
		select {
		case err := <-errc:
			t.Fatalf("%s: the worker left: %v", what, err)
		default:
		}
	}
	// 30 s without a heartbeat; the GCS answers every probe.
	for range 15 {
		f.clock.Advance(membershipInterval)
		calls = f.clock.WaitAfterCalls(calls)
	}
	running("a 30 s heartbeat stall")
	f.gcs.mu.Lock()
	pinged := f.gcs.pings
	f.gcs.mu.Unlock()
	if pinged == 0 {
		t.Error("the stale heartbeat was never checked against the GCS")
	}
	// Frozen for less than the threshold (heartbeat and GCS both silent).
	f.heartbeat(t, "8")
	f.gcs.freeze(true)
	for range 2 {
		f.clock.Advance(membershipInterval)
		calls = f.clock.WaitAfterCalls(calls)
	}
	f.gcs.freeze(false)
	f.heartbeat(t, "8")
	f.clock.Advance(membershipInterval)
	calls = f.clock.WaitAfterCalls(calls)
	running("a 4 s freeze")
	if rec, _, _ := f.dir.Node("8"); rec.Phase != cluster.PhaseRunning {
		t.Errorf("record = %+v, want running", rec)
	}
}

// untilRunning moves the fake clock on, with the head's heartbeat fresh,
// until the supervisor of job has joined (its record running), and returns
// the clock's After count then.
func (f *runFixture) untilRunning(t *testing.T, job string) int {
	t.Helper()
	calls := f.clock.WaitAfterCalls(0)
	for rec, _, _ := f.dir.Node(job); rec.Phase != cluster.PhaseRunning; rec, _, _ = f.dir.Node(job) {
		f.heartbeat(t, job)
		f.clock.Advance(300 * time.Millisecond)
		calls = f.clock.WaitAfterCalls(calls)
	}
	return calls
}
