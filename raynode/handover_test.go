package raynode

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

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
	g2 := cluster.Generation{HeadInfo: cluster.HeadInfo{Job: "9", Address: "127.0.0.1:20100", NodeIP: "127.0.0.1", Published: f.clock.Now(), Generation: 2},
		How: cluster.GenerationPromoted, PreviousHeadJob: "7"}
	if err := f.dir.PublishGeneration(g2); err != nil {
		t.Fatal(err)
	}
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
