package observe

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/events"
	"github.com/sraybatch/sraybatch/internal/scheduler"
)

func TestRead(t *testing.T) {
	t.Parallel()
	spec := cluster.Spec{Name: "exp1", User: "alice"}
	dir, err := cluster.Store{Root: filepath.Join(t.TempDir(), "clusters")}.Create(spec, "")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for _, sub := range []cluster.Submission{{Role: cluster.RoleHead, JobID: "7", Submitted: now}, {Role: cluster.RoleDriver, JobID: "8", Submitted: now}} {
		if err := dir.AddSubmission(sub); err != nil {
			t.Fatal(err)
		}
	}
	if err := dir.WriteNode(cluster.NodeRecord{Job: "7", Role: cluster.RoleHead, Phase: cluster.PhaseRunning}); err != nil {
		t.Fatal(err)
	}
	if err := events.Append(dir.EventsPath("8"), events.StepDone{Stamp: events.Stamp{TS: 1}, Step: 3, Actors: 1, MeanDurationS: 0.5, Losses: []float64{1}}); err != nil {
		t.Fatal(err)
	}
	var asked int
	queue := func(ctx context.Context) (map[string]scheduler.Job, error) {
		asked++
		return ByKey([]scheduler.Job{{ID: "7", State: scheduler.Running}}), nil
	}
	o, err := Read(context.Background(), dir, spec, now, queue)
	if err != nil {
		t.Fatal(err)
	}
	if asked != 1 || len(o.Submissions) != 2 || o.Records["7"].Phase != cluster.PhaseRunning || o.Slurm["7"].State != scheduler.Running || !o.Now.Equal(now) {
		t.Errorf("observation: asked %d, %d submissions, records %v, slurm %v", asked, len(o.Submissions), o.Records, o.Slurm)
	}
	if p := o.Training["8"]; p.LastStep == nil || *p.LastStep != 3 || p.LastStepSeconds == nil || *p.LastStepSeconds != 0.5 {
		t.Errorf("driver progress %+v, want step 3 in 0.5 s", p)
	}
	if _, ok := o.Training["7"]; ok {
		t.Error("a head has training progress")
	}

	down := errors.New("SLURM did not answer")
	o, err = Read(context.Background(), dir, spec, now, func(context.Context) (map[string]scheduler.Job, error) { return nil, down })
	if err != nil || !errors.Is(o.SlurmErr, down) || o.Slurm != nil || len(o.Records) != 1 {
		t.Errorf("with SLURM down: %v, SlurmErr %v, records %d; want the files read and SLURM's error kept", err, o.SlurmErr, len(o.Records))
	}
}

// A Reader keeps each driver's progress between reads: the second read
// folds only the steps appended since the first, and agrees with a fresh read.
func TestReaderFoldsOnlyNewDriverEvents(t *testing.T) {
	t.Parallel()
	spec := cluster.Spec{Name: "exp1", User: "alice"}
	dir, err := cluster.Store{Root: filepath.Join(t.TempDir(), "clusters")}.Create(spec, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := dir.AddSubmission(cluster.Submission{Role: cluster.RoleDriver, JobID: "8"}); err != nil {
		t.Fatal(err)
	}
	step := func(n int) {
		t.Helper()
		if err := events.Append(dir.EventsPath("8"), events.StepDone{Stamp: events.Stamp{TS: float64(n)}, Step: n, Actors: 1, MeanDurationS: 0.5, Losses: []float64{1}}); err != nil {
			t.Fatal(err)
		}
	}
	queue := func(context.Context) (map[string]scheduler.Job, error) { return nil, nil }
	r := NewReader()
	step(0)
	if o, err := r.Read(context.Background(), dir, spec, time.Now(), queue); err != nil || *o.Training["8"].LastStep != 0 {
		t.Fatalf("first read: %+v, %v", o.Training, err)
	}
	folded := r.progress[dir.EventsPath("8")]
	step(1)
	step(2)
	o, err := r.Read(context.Background(), dir, spec, time.Now(), queue)
	if err != nil || *o.Training["8"].LastStep != 2 || r.progress[dir.EventsPath("8")] != folded {
		t.Errorf("second read: %+v, %v; want step 2 from the same folded progress", o.Training, err)
	}
	fresh, _ := Read(context.Background(), dir, spec, time.Now(), queue)
	if *fresh.Training["8"].LastStep != 2 {
		t.Errorf("a fresh read: step %d, want 2", *fresh.Training["8"].LastStep)
	}
}

func TestJobsQuery(t *testing.T) {
	t.Parallel()
	q := JobsQuery(cluster.Spec{Name: "exp1", User: "alice"})
	want := []string{"sray-exp1-head", "sray-exp1-worker", "sray-exp1-driver"}
	if q.User != "alice" || len(q.Names) != 3 || q.Names[0] != want[0] || q.Names[1] != want[1] || q.Names[2] != want[2] || q.JobIDs != nil {
		t.Errorf("JobsQuery = %+v, want this user's jobs named %v", q, want)
	}
}
