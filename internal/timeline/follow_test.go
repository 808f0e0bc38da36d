package timeline

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/events"
)

func names(evs []Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Name + "/" + e.Job
	}
	return out
}

func appendLine(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// Each Next returns only what is new: event lines once (a torn line when
// whole), derived events once however often their file is rewritten.
func TestFollowerReturnsEachEventOnce(t *testing.T) {
	t.Parallel()
	store := cluster.Store{Root: filepath.Join(t.TempDir(), "clusters")}
	spec := cluster.Spec{Name: "tl", Created: t0, DrainBeforeS: 60}
	dir, err := store.Create(spec, "")
	if err != nil {
		t.Fatal(err)
	}
	f := NewFollower(dir, spec)
	if evs, err := f.Next(); err != nil || len(evs) != 0 {
		t.Fatalf("empty cluster: %v, %v", names(evs), err)
	}

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(dir.AddSubmission(cluster.Submission{Role: cluster.RoleHead, JobID: "7", Submitted: at(0)}))
	must(dir.AddSubmission(cluster.Submission{Role: cluster.RoleDriver, JobID: "9", Submitted: at(1)}))
	must(dir.WriteNode(cluster.NodeRecord{Job: "7", Role: cluster.RoleHead, Phase: cluster.PhaseRunning, Started: at(2)}))
	appendLine(t, dir.ClusterEventsPath(), line(at(3), events.NameJobState, `"job": "7", "role": "head", "slurm_state": "RUNNING", "membership": "joined", "gpus": 1`)+"\n")
	appendLine(t, dir.EventsPath("9"), line(at(4), events.NameStepDone, `"step": 0, "actors": 1, "mean_duration_s": 0.1, "losses": [1]`)+"\n"+`{"ts": 5, "event": "step_do`)

	evs, err := f.Next()
	must(err)
	want := []string{"submitted/7", "submitted/9", "job_started/7", "job_state/7", "step_done/9"}
	if got := names(evs); !slices.Equal(got, want) {
		t.Fatalf("first read %v, want %v", got, want)
	}

	// The record is rewritten (a GPU sample), the torn line completed, the
	// job warned of its time limit, down asked for.
	limit := at(100)
	must(dir.WriteNode(cluster.NodeRecord{Job: "7", Role: cluster.RoleHead, Phase: cluster.PhaseRunning, Started: at(2), TimeLimitAt: &limit}))
	appendLine(t, dir.EventsPath("9"), `ne", "step": 1, "actors": 1, "mean_duration_s": 0.1, "losses": [1]}`+"\n")
	must(dir.MarkDown(at(50)))
	evs, err = f.Next()
	must(err)
	want = []string{"step_done/9", "time_limit_warning/7", "down_requested/"}
	if got := names(evs); !slices.Equal(got, want) {
		t.Fatalf("second read %v, want %v", got, want)
	}

	must(dir.WriteNode(cluster.NodeRecord{Job: "7", Role: cluster.RoleHead, Phase: cluster.PhaseEnded, Outcome: cluster.OutcomeCancelled, Started: at(2), TimeLimitAt: &limit}))
	evs, err = f.Next()
	must(err)
	if got := names(evs); !slices.Equal(got, []string{"job_ended/7"}) {
		t.Fatalf("third read %v, want the head's end only", got)
	}
	if !f.final["7"] {
		t.Error("a final record is still reread")
	}
	if evs, err := f.Next(); err != nil || len(evs) != 0 {
		t.Fatalf("nothing new: %v, %v", names(evs), err)
	}

	// Load reads it all again, in time order.
	all, err := Load(dir, spec)
	must(err)
	if len(all) != 9 {
		t.Errorf("Load: %v, want 9 events", names(all))
	}
	for i := 1; i < len(all); i++ {
		if all[i].Time.Before(all[i-1].Time) {
			t.Errorf("Load out of order at %d: %v", i, names(all))
		}
	}
}

// An event file replaced under a follower (a driver's rerun) is read again
// from its start, not from where the old one stopped.
func TestFollowerRereadsAReplacedFile(t *testing.T) {
	t.Parallel()
	store := cluster.Store{Root: filepath.Join(t.TempDir(), "clusters")}
	spec := cluster.Spec{Name: "tl", Created: t0}
	dir, err := store.Create(spec, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := dir.AddSubmission(cluster.Submission{Role: cluster.RoleDriver, JobID: "9", Submitted: at(0)}); err != nil {
		t.Fatal(err)
	}
	step := func(s float64, n string) string {
		return line(at(s), events.NameStepDone, `"step": `+n+`, "actors": 1, "mean_duration_s": 0.1, "losses": [1]`) + "\n"
	}
	appendLine(t, dir.EventsPath("9"), step(1, "0")+step(2, "1"))
	f := NewFollower(dir, spec)
	if evs, err := f.Next(); err != nil || len(evs) != 3 {
		t.Fatalf("first read: %v, %v; want the submission and two steps", names(evs), err)
	}
	if err := os.WriteFile(dir.EventsPath("9"), []byte(step(3, "0")), 0o600); err != nil {
		t.Fatal(err)
	}
	evs, err := f.Next()
	if err != nil || len(evs) != 1 || evs[0].Name != events.NameStepDone || !evs[0].Time.Equal(at(3)) {
		t.Fatalf("after the file was replaced: %v, %v; want its one step", names(evs), err)
	}
}

// rolloverCluster is a cluster whose generation 1 (head job 7) was
// published at 1 s.
func rolloverCluster(t *testing.T) (cluster.Dir, cluster.Spec) {
	t.Helper()
	store := cluster.Store{Root: filepath.Join(t.TempDir(), "clusters")}
	spec := cluster.Spec{Name: "ho", Created: t0, DrainBeforeS: 60}
	dir, err := store.Create(spec, "")
	if err == nil {
		err = dir.PublishGeneration(cluster.Generation{HeadInfo: cluster.HeadInfo{Job: "7", Generation: 1, Published: at(1)}, How: cluster.GenerationFirst})
	}
	if err != nil {
		t.Fatal(err)
	}
	return dir, spec
}

// A follower shows a handover once, when its facts are in: not at its
// start (the record says only who and why), not at the seal, not at the
// next publication while the driver has not stepped again, but then, with
// its gap and steps lost.
func TestFollowerShowsAHandoverSettled(t *testing.T) {
	t.Parallel()
	dir, spec := rolloverCluster(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(dir.AddSubmission(cluster.Submission{Role: cluster.RoleDriver, JobID: "9", Submitted: at(0)}))
	step := func(s float64, n string) {
		appendLine(t, dir.EventsPath("9"), line(at(s), events.NameStepDone, `"step": `+n+`, "actors": 1, "mean_duration_s": 0.1, "losses": [1]`)+"\n")
	}
	step(2, "1")
	h := cluster.Handover{Generation: 1, HeadJob: "7", Started: at(10), How: cluster.GenerationPromoted, Successor: "8", Why: "time left", LastStep: -1}
	must(dir.WriteHandover(h))
	step(11, "2")
	f := NewFollower(dir, spec)
	handovers := func() []Event {
		t.Helper()
		evs, err := f.Next()
		must(err)
		var hs []Event
		for _, e := range evs {
			if e.Name == events.NameHandover {
				hs = append(hs, e)
			}
		}
		return hs
	}
	if hs := handovers(); len(hs) != 0 {
		t.Fatalf("at the handover's start: %v, want none yet", hs)
	}
	sealed := at(13)
	h.Sealed = &sealed
	must(dir.WriteHandover(h))
	if hs := handovers(); len(hs) != 0 {
		t.Fatalf("sealed, not published: %v", hs[0].Details())
	}
	must(dir.PublishGeneration(cluster.Generation{HeadInfo: cluster.HeadInfo{Job: "8", Generation: 2, Published: at(14)}, How: cluster.GenerationPromoted, PreviousHeadJob: "7"}))
	if hs := handovers(); len(hs) != 0 {
		t.Fatalf("published, the driver not stepped again: %v", hs[0].Details())
	}
	step(25, "2")
	hs := handovers()
	if len(hs) != 1 {
		t.Fatalf("after the driver's first step on generation 2: %d handovers, want 1", len(hs))
	}
	if got, want := hs[0].Details(), "gap_s=14, generation=1, how=promoted, published_s=4, reason=time left, sealed_s=3, steps_lost=1, successor=8"; got != want {
		t.Errorf("handover\n got %s\nwant %s", got, want)
	}
	step(26, "3")
	if hs := handovers(); len(hs) != 0 {
		t.Errorf("shown again: %v", hs[0].Details())
	}
}

// Read once (events without --follow, the report), a handover under way
// shows with what is known.
func TestLoadShowsAHandoverUnderWay(t *testing.T) {
	t.Parallel()
	dir, spec := rolloverCluster(t)
	if err := dir.WriteHandover(cluster.Handover{Generation: 1, HeadJob: "7", Started: at(10), How: cluster.GenerationSubmitted, Successor: "8", Why: "no worker"}); err != nil {
		t.Fatal(err)
	}
	evs, err := Load(dir, spec)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(evs); !slices.Equal(got, []string{"head_up/7", "handover/7"}) || evs[1].Details() != "generation=1, how=submitted, reason=no worker, successor=8" {
		t.Errorf("Load = %v, %s", got, evs[len(evs)-1].Details())
	}
}
