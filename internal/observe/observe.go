// Package observe gathers what a cluster's status is derived from: the
// records in its directory, each driver's progress, and one answer from the
// scheduler. The CLI's `status` and the head job's observer both read a
// cluster through Read, so they never disagree on what a job is.
package observe

import (
	"context"

	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/scheduler"
	"github.com/sraybatch/sraybatch/trainloop"
)

// Queue answers one scheduler query for the cluster's jobs, keyed by job
// key ("8", "7_0"). Its error is shown as the observation's SlurmErr.
type Queue func(ctx context.Context) (map[string]scheduler.Job, error)

// JobsQuery is the one squeue a cluster's observation asks: this user's jobs
// with this cluster's job names, so its cost does not grow with other
// users' jobs.
func JobsQuery(spec cluster.Spec) scheduler.Query {
	return scheduler.Query{User: spec.User, Names: []string{
		cluster.JobName(spec.Name, cluster.RoleHead),
		cluster.JobName(spec.Name, cluster.RoleWorker),
		cluster.JobName(spec.Name, cluster.RoleDriver),
	}}
}

// ByKey indexes jobs by their key.
func ByKey(jobs []scheduler.Job) map[string]scheduler.Job {
	byKey := make(map[string]scheduler.Job, len(jobs))
	for _, j := range jobs {
		byKey[j.ID] = j
	}
	return byKey
}

// Reader reads one cluster again and again (the head's observer): each
// driver's event file is folded on from where the previous Read stopped,
// so a long run's steps are not reread every few seconds.
type Reader struct {
	progress map[string]*trainloop.Progress // by event file
}

// NewReader is a Reader that has read nothing yet.
func NewReader() *Reader { return &Reader{progress: map[string]*trainloop.Progress{}} }

// Read is one observation by a Reader of its own (the CLI's status).
func Read(ctx context.Context, dir cluster.Dir, spec cluster.Spec, now time.Time, queue Queue) (cluster.Observation, error) {
	return NewReader().Read(ctx, dir, spec, now, queue)
}

// Read reads a cluster's state files and asks queue once, the two
// overlapped: the scheduler's round trip dominates. cluster.Observe derives
// the status from what it returns.
func (r *Reader) Read(ctx context.Context, dir cluster.Dir, spec cluster.Spec, now time.Time, queue Queue) (cluster.Observation, error) {
	o := cluster.Observation{Dir: dir, Spec: spec, Now: now}
	type answer struct {
		jobs map[string]scheduler.Job
		err  error
	}
	answered := make(chan answer, 1)
	go func() {
		jobs, err := queue(ctx)
		answered <- answer{jobs, err}
	}()
	if err := r.readFiles(dir, &o); err != nil {
		<-answered // the query must not outlive the call
		return cluster.Observation{}, err
	}
	got := <-answered
	o.Slurm, o.SlurmErr = got.jobs, got.err
	return o, nil
}

func (r *Reader) readFiles(dir cluster.Dir, o *cluster.Observation) error {
	var err error
	if o.Submissions, err = dir.Submissions(); err != nil {
		return err
	}
	if o.Records, err = dir.Nodes(); err != nil {
		return err
	}
	if o.Membership, err = dir.Membership(); err != nil {
		return err
	}
	if o.Drains, err = dir.DrainNotices(); err != nil {
		return err
	}
	if h, ok, err := dir.Head(); err != nil {
		return err
	} else if ok {
		o.Head = &h
		if ho, ok, err := dir.Handover(h.Generation); err == nil && ok && h.Generation > 0 {
			o.Handover = &ho // the current generation hands over
		}
		if ho, ok, err := dir.Handover(h.Generation - 1); err == nil && ok && h.Generation > 1 {
			o.LastHandover = &ho
		}
		if h.Generation > 0 {
			if o.Generations, o.Handovers, err = dir.History(); err != nil {
				return err
			}
		}
	}
	if as, ok, err := dir.Autoscaler(); err != nil {
		return err
	} else if ok {
		o.Autoscaler = &as
	}
	if d, ok, err := dir.Down(); err != nil {
		return err
	} else if ok {
		o.Down = &d
	}
	o.Training = map[string]cluster.TrainProgress{}
	for _, sub := range o.Submissions {
		if sub.Role != cluster.RoleDriver {
			continue
		}
		for _, key := range sub.JobKeys() {
			path := dir.EventsPath(key)
			pr, ok := r.progress[path]
			if !ok {
				pr = trainloop.NewProgress(path)
				r.progress[path] = pr
			}
			for _, g := range o.Generations {
				pr.Published(g.Generation, g.Published) // before its steps are read
			}
			if o.Training[key], err = pr.Read(); err != nil {
				return err
			}
		}
	}
	return nil
}
