package scheduler

import (
	"context"
	"testing"
	"time"
)

// countingScheduler answers Jobs with one job per call and counts calls.
type countingScheduler struct {
	Scheduler
	asked, submitted int
}

func (c *countingScheduler) Jobs(context.Context, Query) ([]Job, error) {
	c.asked++
	return []Job{{ID: string(rune('0' + c.asked)), State: Running}}, nil
}

func (c *countingScheduler) Submit(context.Context, string) (string, error) {
	c.submitted++
	return "9", nil
}

func TestSharedJobs(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	s := &countingScheduler{}
	shared := NewSharedJobs(func() time.Time { return now })
	always, tolerant := shared.View(s, 0), shared.View(s, 5*time.Second)
	q := Query{User: "alice", Names: []string{"sray-exp1-worker"}}
	ctx := context.Background()

	// The autoscaler asks; 3 s later the observer takes its answer.
	always.Jobs(ctx, q)
	now = now.Add(3 * time.Second)
	if jobs, _ := tolerant.Jobs(ctx, q); s.asked != 1 || jobs[0].ID != "1" {
		t.Fatalf("a 3 s old answer within 5 s: asked %d times, got %v; want the shared one", s.asked, jobs)
	}
	if always.Jobs(ctx, q); s.asked != 2 {
		t.Errorf("a view with maxAge 0 asked %d times, want it to ask each time", s.asked)
	}
	if tolerant.Jobs(ctx, Query{User: "alice"}); s.asked != 3 {
		t.Errorf("another query was answered from the cache (asked %d)", s.asked)
	}
	now = now.Add(6 * time.Second)
	if tolerant.Jobs(ctx, q); s.asked != 4 {
		t.Errorf("a 6 s old answer was taken within 5 s (asked %d)", s.asked)
	}
	// A submission forgets every answer: nobody plans on a queue without it.
	if _, err := always.Submit(ctx, "w.sbatch"); err != nil || s.submitted != 1 {
		t.Fatal(err)
	}
	if tolerant.Jobs(ctx, q); s.asked != 5 {
		t.Errorf("an answer from before a Submit was reused (asked %d)", s.asked)
	}
}
