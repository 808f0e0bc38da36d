package cluster

import (
	"testing"
	"time"
)

var hoStart = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

func mark(step int, s float64) StepMark {
	return StepMark{Step: step, At: hoStart.Add(time.Duration(s * float64(time.Second)))}
}

// The gap and the steps lost of a handover, from a driver's last step
// before the next generation's publication and its first after.
func TestHandoverCost(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name     string
		crossing Crossing
		gap      *time.Duration
		lost     *int
	}{
		{"no driver", Crossing{}, nil, nil},
		{"not stepped again yet", Crossing{Before: ptr(mark(40, 0))}, nil, nil},
		{"only after", Crossing{After: ptr(mark(1, 5))}, nil, nil},
		{"checkpoint at the stop: none lost", Crossing{Before: ptr(mark(40, 0)), After: ptr(mark(41, 12.5))}, ptr(12500 * time.Millisecond), ptr(0)},
		{"resumed from an older checkpoint", Crossing{Before: ptr(mark(40, 0)), After: ptr(mark(36, 20))}, ptr(20 * time.Second), ptr(5)},
		{"a step ahead (resumed past its last event)", Crossing{Before: ptr(mark(40, 0)), After: ptr(mark(43, 9))}, ptr(9 * time.Second), ptr(0)},
	} {
		gap, lost := HandoverCost(c.crossing)
		if (gap == nil) != (c.gap == nil) || (gap != nil && *gap != *c.gap) || (lost == nil) != (c.lost == nil) || (lost != nil && *lost != *c.lost) {
			t.Errorf("%s: gap %v lost %v, want %v %v", c.name, deref(gap), deref(lost), deref(c.gap), deref(c.lost))
		}
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// StepCrossings keeps, per publication, the last step before and the
// first after, whatever the order publications are made known in, as long
// as each is known before the steps after it are folded.
func TestStepCrossings(t *testing.T) {
	t.Parallel()
	var c StepCrossings
	c.Published(1, hoStart.Add(-time.Hour))
	c.Step(mark(1, 0))
	c.Step(mark(2, 1))
	c.Published(2, hoStart.Add(5*time.Second))
	if x := c.Of(2); x.Before == nil || x.Before.Step != 2 || x.After != nil {
		t.Fatalf("before the next step: %+v, want step 2 before, none after", x)
	}
	c.Step(mark(2, 9))
	c.Step(mark(3, 10))
	c.Published(2, hoStart.Add(time.Hour)) // again: no change
	if x := c.Of(2); x.Before.Step != 2 || x.After == nil || x.After.Step != 2 || !x.After.At.Equal(mark(2, 9).At) {
		t.Errorf("crossing of 2 = %+v %+v, want step 2 at 1 s, step 2 at 9 s", x.Before, x.After)
	}
	if x := c.Of(1); x.Before != nil || x.After == nil || x.After.Step != 1 {
		t.Errorf("crossing of 1 = %+v, want no step before, step 1 after", x)
	}
	c.Published(3, hoStart) // passed already: unknown, not a wrong answer
	if x := c.Of(3); x.Before != nil || x.After != nil {
		t.Errorf("a publication made known late = %+v, want unknown", x)
	}
	c.Reset()
	if x := c.Of(2); x.Before != nil || x.After != nil || !c.Known() {
		t.Errorf("after Reset: %+v, known %v: want no steps, the publications kept", x, c.Known())
	}
}

// status lists each handover with the next generation's head, and the
// longest gap of the drivers.
func TestHandoverStatusOf(t *testing.T) {
	t.Parallel()
	sealed := hoStart.Add(3 * time.Second)
	h := Handover{Generation: 1, HeadJob: "6", Started: hoStart, Sealed: &sealed, How: GenerationSubmitted, Successor: "9", Why: "time left"}
	under := HandoverStatusOf(Handover{Generation: 1, HeadJob: "6", Started: hoStart, How: GenerationPromoted, Successor: "7"}, nil, nil)
	if under.SealedAfterS != nil || under.PublishedAfterS != nil || under.GapS != nil || under.StepsLost != nil || under.NewHeadJob != "7" || under.NextGeneration != 2 {
		t.Errorf("under way = %+v, want the successor and no figures", under)
	}
	next := &Generation{HeadInfo: HeadInfo{Job: "9", Generation: 2, Published: hoStart.Add(4500 * time.Millisecond)}, How: GenerationSubmitted, PreviousHeadJob: "6"}
	got := HandoverStatusOf(h, next, []Crossing{
		{Before: ptr(mark(10, 0)), After: ptr(mark(11, 12))},
		{Before: ptr(mark(20, 1)), After: ptr(mark(19, 21))},
		{},
	})
	if *got.SealedAfterS != 3 || *got.PublishedAfterS != 4.5 || *got.GapS != 20 || *got.StepsLost != 2 || got.NewHeadJob != "9" || got.How != GenerationSubmitted {
		t.Errorf("done = %+v, want sealed 3 s, published 4.5 s, the longest gap 20 s with its 2 steps lost", got)
	}
}

// status names the current generation's origin and every handover; a
// cluster without generations shows none of it.
func TestObserveHandoverHistory(t *testing.T) {
	t.Parallel()
	o := baseObservation()
	o.Spec.Rollover = &RolloverSpec{BeforeS: 240, HeadWaitS: 300}
	withHeadUp(&o)
	withWorkerJoined(&o)
	if st := StatusOf(o); st.Cluster.GenerationHow != "" || st.Cluster.PreviousHeadJob != "" || st.Cluster.Handovers != nil {
		t.Fatalf("without generations: %+v", st.Cluster)
	}
	sealed := hoStart.Add(2 * time.Second)
	o.Head = &HeadInfo{Job: "7", Address: "10.1.2.4:20000", Generation: 2, Published: hoStart.Add(3 * time.Second)}
	o.Generations = []Generation{
		{HeadInfo: HeadInfo{Job: "6", Generation: 1}, How: GenerationFirst},
		{HeadInfo: *o.Head, How: GenerationPromoted, PreviousHeadJob: "6"},
	}
	o.Handovers = []Handover{{Generation: 1, HeadJob: "6", Started: hoStart, Sealed: &sealed, How: GenerationPromoted, Successor: "7"}}
	o.Training = map[string]TrainProgress{"8": {Crossings: map[int]Crossing{2: {Before: ptr(mark(5, 1)), After: ptr(mark(6, 14))}}}}
	c := StatusOf(o).Cluster
	if c.GenerationHow != GenerationPromoted || c.PreviousHeadJob != "6" || len(c.Handovers) != 1 {
		t.Fatalf("cluster = %+v, want generation 2 promoted from 6, one handover", c)
	}
	if h := c.Handovers[0]; h.OldHeadJob != "6" || h.NewHeadJob != "7" || *h.GapS != 13 || *h.StepsLost != 0 || *h.PublishedAfterS != 3 {
		t.Errorf("handover = %+v", h)
	}
}

// A worker job promoted to head stays a head row once a later generation's
// head takes over (it served as one; it is no worker of any type), and the
// head row status names is the current generation's.
func TestPromotedHeadStaysAHeadRow(t *testing.T) {
	t.Parallel()
	o := baseObservation()
	o.Spec.Rollover = &RolloverSpec{BeforeS: 240, HeadWaitS: 300}
	o.Spec.Workers = []WorkerType{{Name: "gpu", Node: NodeSpec{GPUs: 1}, Max: 2}}
	withHeadUp(&o)
	withWorkerJoined(&o)
	o.Submissions = append(o.Submissions, Submission{Role: RoleWorker, JobID: "8", Submitted: obsNow.Add(-40 * time.Minute), Type: "gpu"})
	o.Slurm["8"] = runningJob("8", "gpu03", 80*time.Minute)
	o.Head = &HeadInfo{Job: "8", Address: "10.1.2.5:20000", Generation: 3}
	o.Generations = []Generation{
		{HeadInfo: HeadInfo{Job: "6", Generation: 1}, How: GenerationFirst},
		{HeadInfo: HeadInfo{Job: "7", Generation: 2}, How: GenerationPromoted, PreviousHeadJob: "6"},
		{HeadInfo: *o.Head, How: GenerationPromoted, PreviousHeadJob: "7"},
	}
	st := StatusOf(o)
	for _, id := range []string{"6", "7", "8"} {
		if j := jobByID(t, st, id); j.Role != RoleHead || j.Type != "" {
			t.Errorf("job %s: role %s, type %q; want a head row without a type (a head of generation 1, 2 or 3)", id, j.Role, j.Type)
		}
	}
	if h := st.Head(); h == nil || h.JobID != "8" {
		t.Errorf("Head() = %+v, want generation 3's job 8", h)
	}
}
