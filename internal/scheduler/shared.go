package scheduler

import (
	"context"
	"encoding/json"
	"sync"
	"time"
)

// SharedJobs lets the loops of one process that watch the same jobs (the
// head job's observer and autoscaler) share squeue answers: a View answers
// Jobs from the last answer to the same query while it is younger than the
// view's maxAge, else asks and keeps the answer for every view. A Submit or
// Cancel through any view forgets every answer, so no loop plans on a
// queue that lacks what it has just changed.
type SharedJobs struct {
	now  func() time.Time
	mu   sync.Mutex
	last map[string]sharedAnswer // by query
	// changes counts Submits and Cancels: an answer asked before one is not
	// kept after it.
	changes int
}

type sharedAnswer struct {
	at   time.Time
	jobs []Job
}

// NewSharedJobs shares answers, aged by now.
func NewSharedJobs(now func() time.Time) *SharedJobs {
	return &SharedJobs{now: now, last: map[string]sharedAnswer{}}
}

// View is s whose Jobs takes a shared answer up to maxAge old (0: always
// asks, and shares what it got). Callers share the returned slices: they
// only read them.
func (c *SharedJobs) View(s Scheduler, maxAge time.Duration) Scheduler {
	return sharedView{Scheduler: s, shared: c, maxAge: maxAge}
}

func (c *SharedJobs) forget() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.last)
	c.changes++
}

type sharedView struct {
	Scheduler
	shared *SharedJobs
	maxAge time.Duration
}

func (v sharedView) Jobs(ctx context.Context, q Query) ([]Job, error) {
	key, err := json.Marshal(q)
	if err != nil {
		return v.Scheduler.Jobs(ctx, q)
	}
	c := v.shared
	c.mu.Lock()
	a, ok := c.last[string(key)]
	changes := c.changes
	c.mu.Unlock()
	if ok && v.maxAge > 0 && c.now().Sub(a.at) <= v.maxAge {
		return a.jobs, nil
	}
	asked := c.now()
	jobs, err := v.Scheduler.Jobs(ctx, q)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if prev, ok := c.last[string(key)]; c.changes == changes && (!ok || !prev.at.After(asked)) {
		c.last[string(key)] = sharedAnswer{at: asked, jobs: jobs}
	}
	c.mu.Unlock()
	return jobs, nil
}

func (v sharedView) Submit(ctx context.Context, scriptPath string) (string, error) {
	defer v.shared.forget()
	return v.Scheduler.Submit(ctx, scriptPath)
}

func (v sharedView) Cancel(ctx context.Context, ids []string, opts CancelOptions) error {
	defer v.shared.forget()
	return v.Scheduler.Cancel(ctx, ids, opts)
}
