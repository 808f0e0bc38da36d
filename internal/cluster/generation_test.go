package cluster

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/scheduler"
)

func testGeneration(g int, job string, how GenerationHow) Generation {
	return Generation{
		HeadInfo: HeadInfo{
			Job: job, Address: "10.0.0." + job + ":6379", NodeIP: "10.0.0." + job,
			Published: time.Date(2026, 12, 6, 12, g, 0, 0, time.UTC), Generation: g,
		},
		How: how,
	}
}

func TestHeadWithoutGenerationsIsHeadJSON(t *testing.T) {
	t.Parallel()
	d := mustCreate(t, Store{Root: t.TempDir()}, "plain")
	if err := d.WriteHead(HeadInfo{Job: "7", Address: "10.0.0.7:6379"}); err != nil {
		t.Fatal(err)
	}
	h, ok, err := d.Head()
	if err != nil || !ok || h.Job != "7" || h.Generation != 0 || h.TokenFile != "" {
		t.Fatalf("Head() = %+v, %v, %v; want head.json's job 7 without a generation", h, ok, err)
	}
	if got := d.TokenPathOf(h); got != d.TokenPath() {
		t.Errorf("TokenPathOf(head without generation) = %s, want %s", got, d.TokenPath())
	}
	if gens, err := d.Generations(); err != nil || len(gens) != 0 {
		t.Errorf("Generations() = %v, %v; want none", gens, err)
	}
}

func TestReadersFollowTheLatestGeneration(t *testing.T) {
	t.Parallel()
	d := mustCreate(t, Store{Root: t.TempDir()}, "long")
	if err := d.PublishGeneration(testGeneration(1, "7", GenerationFirst)); err != nil {
		t.Fatal(err)
	}
	var legacy HeadInfo
	if err := ReadJSON(filepath.Join(d.Path, "head.json"), &legacy); err != nil || legacy.Job != "7" || legacy.Generation != 1 {
		t.Errorf("head.json = %+v, %v; want generation 1's head", legacy, err)
	}
	if _, err := d.NewGenerationToken(2); err != nil {
		t.Fatal(err)
	}
	// Generation 10 sorts before 2 by name: the reader orders by number.
	for g := 2; g <= 10; g++ {
		if err := d.PublishGeneration(testGeneration(g, "9", GenerationPromoted)); err != nil {
			t.Fatal(err)
		}
	}
	h, ok, err := d.Head()
	if err != nil || !ok || h.Generation != 10 || h.Job != "9" || h.TokenFile != "token.g10" {
		t.Fatalf("Head() = %+v, %v, %v; want generation 10", h, ok, err)
	}
	if err := ReadJSON(filepath.Join(d.Path, "head.json"), &legacy); err != nil || legacy.Generation != 1 {
		t.Errorf("head.json changed after generation 1: %+v, %v", legacy, err)
	}
	if got, want := d.TokenPathOf(h), filepath.Join(d.Path, "token.g10"); got != want {
		t.Errorf("TokenPathOf = %s, want %s", got, want)
	}
}

func TestGenerationTokensAreFreshAndPrivate(t *testing.T) {
	t.Parallel()
	d := mustCreate(t, Store{Root: t.TempDir()}, "tok")
	p1, err := d.NewGenerationToken(1)
	if err != nil || p1 != d.TokenPath() {
		t.Fatalf("NewGenerationToken(1) = %s, %v; want up's token %s", p1, err, d.TokenPath())
	}
	p2, err := d.NewGenerationToken(2)
	if err != nil {
		t.Fatal(err)
	}
	again, err := d.NewGenerationToken(2)
	if err != nil || again != p2 {
		t.Fatalf("second NewGenerationToken(2) = %s, %v; want %s", again, err, p2)
	}
	t1, t2 := readFile(t, p1), readFile(t, p2)
	if t1 == t2 || len(t2) != 65 {
		t.Errorf("generation 2's token %q must be fresh (generation 1: %q)", t2, t1)
	}
	if got := perm(t, p2); got != 0o600 {
		t.Errorf("token.g2 mode = %v, want 0600", got)
	}
	if err := d.PublishGeneration(testGeneration(2, "9", GenerationPromoted)); err != nil {
		t.Fatal(err)
	}
	tok, err := d.RayToken(false)
	if err != nil || tok+"\n" != t2 {
		t.Errorf("RayToken after generation 2 = %q, %v; want generation 2's", tok, err)
	}
}

// Heads racing for one generation: exactly one publishes it, the others
// learn it is taken, and the file is the winner's.
func TestPublishGenerationHasOneWinner(t *testing.T) {
	t.Parallel()
	d := mustCreate(t, Store{Root: t.TempDir()}, "race")
	const racers = 16
	errs := make([]error, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = d.PublishGeneration(testGeneration(2, string(rune('a'+i)), GenerationPromoted))
		}()
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("racers %d and %d both published generation 2", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, ErrGenerationTaken):
			t.Errorf("racer %d: %v, want ErrGenerationTaken", i, err)
		}
	}
	g, ok, err := d.Generation(2)
	if winner < 0 || err != nil || !ok || g.Job != string(rune('a'+winner)) {
		t.Fatalf("generation 2 = %+v, %v, %v; want racer %d's", g, ok, err, winner)
	}
	if left, _ := filepath.Glob(filepath.Join(d.Path, "generations", ".*")); len(left) != 0 {
		t.Errorf("temp files left behind: %v", left)
	}
}

func TestPublishGenerationRefusesZero(t *testing.T) {
	t.Parallel()
	d := mustCreate(t, Store{Root: t.TempDir()}, "zero")
	if err := d.PublishGeneration(testGeneration(0, "7", GenerationFirst)); err == nil {
		t.Fatal("published generation 0")
	}
}

func TestHandoverRecordRoundTrip(t *testing.T) {
	t.Parallel()
	d := mustCreate(t, Store{Root: t.TempDir()}, "ho")
	if _, ok, err := d.Handover(1); ok || err != nil {
		t.Fatalf("Handover(1) before any = %v, %v", ok, err)
	}
	at := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	h := Handover{Generation: 1, HeadJob: "7", Started: at, How: GenerationPromoted, Successor: "8", Deadline: at.Add(time.Minute), LastStep: -1}
	if err := d.WriteHandover(h); err != nil {
		t.Fatal(err)
	}
	sealed := at.Add(20 * time.Second)
	h.Sealed, h.LastStep = &sealed, 41
	if err := d.WriteHandover(h); err != nil {
		t.Fatal(err)
	}
	got, ok, err := d.Handover(1)
	if err != nil || !ok || got.Sealed == nil || !got.Sealed.Equal(sealed) || got.LastStep != 41 || got.Successor != "8" {
		t.Errorf("Handover(1) = %+v, %v, %v", got, ok, err)
	}
}

func TestLateJoins(t *testing.T) {
	t.Parallel()
	next := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	nodes := []NodeStart{
		{Job: "7", Registered: next.Add(-time.Minute)},
		{Job: "8", Registered: next},
		{Job: "9", Registered: next.Add(time.Millisecond)},
	}
	if got := LateJoins(nodes, next); !slices.Equal(got, []string{"9"}) {
		t.Errorf("LateJoins = %v, want [9]", got)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// After a handover by promotion, status follows generation 2: worker job 7
// is the head (its row and the cluster's state), head job 6 ended handed
// over, and the cluster runs on.
func TestObserveAfterAHandover(t *testing.T) {
	t.Parallel()
	o := baseObservation()
	o.Spec.Rollover = &RolloverSpec{BeforeS: 240, HeadWaitS: 300}
	withHeadUp(&o)
	withWorkerJoined(&o)
	o.Slurm["6"] = scheduler.Job{ID: "6", State: scheduler.Completed}
	o.Records["6"] = NodeRecord{Job: "6", Role: RoleHead, Phase: PhaseEnded, Outcome: OutcomeHandedOver, Reason: "handed over to 7"}
	o.Membership.Nodes["6"].Alive = false
	o.Head = &HeadInfo{Job: "7", Address: "10.1.2.4:20000", SlurmNode: "gpu02", Generation: 2, TokenFile: "token.g2"}
	st := StatusOf(o)
	if st.Cluster.State != StateRunning || st.Cluster.Generation != 2 || st.Cluster.HeadJob != "7" {
		t.Fatalf("cluster = %+v, want running, generation 2, head job 7", st.Cluster)
	}
	if h := st.Head(); h == nil || h.JobID != "7" || h.Role != RoleHead {
		t.Errorf("Head() = %+v, want the promoted job 7", h)
	}
	if old := jobByID(t, st, "6"); old.Ray != MembershipEnded || old.Outcome != OutcomeHandedOver {
		t.Errorf("old head row = %+v, want ended, handed_over", old)
	}
}

// While the next generation is not published, status says the cluster is
// waiting for its head, and why.
func TestObserveWaitingForHead(t *testing.T) {
	t.Parallel()
	o := baseObservation()
	o.Spec.Rollover = &RolloverSpec{BeforeS: 240, HeadWaitS: 300}
	withHeadUp(&o)
	withWorkerJoined(&o)
	o.Head.Generation = 1
	o.Handover = &Handover{Generation: 1, HeadJob: "6", Started: obsNow.Add(-20 * time.Second), How: GenerationSubmitted, Successor: "9", Why: "time left"}
	st := StatusOf(o)
	if st.Cluster.State != StatePending || !strings.HasPrefix(st.Cluster.Reason, "waiting for head: generation 1 handed over to submitted job 9 20s ago") {
		t.Errorf("cluster = %s %q, want pending, waiting for head", st.Cluster.State, st.Cluster.Reason)
	}
}
