package autoscale

import (
	"maps"
	"slices"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/raygcs"
	"github.com/sraybatch/sraybatch/internal/scheduler"
)

// input builds Decide's input from one poll's answers, and returns the
// head job as the queue reports it (nil when it does not).
func (l *Loop) input(now time.Time, spec cluster.Spec, settings Settings, ray raygcs.ClusterState, jobs []scheduler.Job, subs []cluster.Submission) (Input, *scheduler.Job) {
	// Until demand is routed across types, the autoscaler starts the
	// default type: its shape is what one new worker brings.
	w := spec.WorkerNode()
	in := Input{Now: now, Settings: settings, HeadLeft: -1, MinHeadLeft: spec.DrainBefore() + joinTime,
		Shape: NodeShape{GPUs: float64(w.GPUs), CPUs: float64(w.CPUs)}}
	queue := map[string]scheduler.Job{}
	for _, j := range jobs {
		queue[j.ID] = j
	}
	var head *scheduler.Job
	if j, ok := queue[l.cfg.HeadJob]; ok {
		head = &j
		// A cluster that rolls over outlives its head: the head's end is
		// no reason to stop scaling up.
		if j.State == scheduler.Running && !j.Unlimited && !spec.RollsOver() {
			in.HeadLeft = j.TimeLeft
		}
	}
	workers := workerSubmissions(subs, l.cfg.HeadJob)
	nodeOf := l.nodes(&in, spec, ray, workers)
	in.Workers = l.workers(now, workers, queue, nodeOf)
	for i := range in.Workers {
		in.Workers[i].Type = typeOfJob(spec, workers[in.Workers[i].Job])
	}
	in.Demand = demandOf(ray)
	return in, head
}

// typeOfJob is a worker job's type in a cluster with types (its
// submission's, else the default); "" in a cluster without.
func typeOfJob(spec cluster.Spec, sub cluster.Submission) string {
	switch {
	case len(spec.Workers) == 0:
		return ""
	case sub.Type != "":
		return sub.Type
	}
	return spec.DefaultType().Name
}

// workerSubmissions is every worker job of the cluster, by job key, but
// head: a rollover cluster's worker promoted to head was submitted as a
// worker, and is its generation's head now, no worker supply (nor a node
// to drain when idle).
func workerSubmissions(subs []cluster.Submission, head string) map[string]cluster.Submission {
	workers := map[string]cluster.Submission{}
	for _, s := range subs {
		if s.Role == cluster.RoleWorker {
			for _, k := range s.JobKeys() {
				if k != head {
					workers[k] = s
				}
			}
		}
	}
	return workers
}

// nodes adds the Ray nodes alive to in, and the CPUs of a node when the
// spec leaves them to SLURM; it returns each job's node.
func (l *Loop) nodes(in *Input, spec cluster.Spec, ray raygcs.ClusterState, workers map[string]cluster.Submission) map[string]raygcs.Node {
	nodeOf := map[string]raygcs.Node{}
	for _, n := range ray.Nodes {
		if n.Status == raygcs.NodeDead {
			continue
		}
		job, _ := cluster.JobOfResources(n.Total)
		sub, isWorker := workers[job]
		node := Node{ID: n.ID, Job: job, Worker: isWorker, Total: Shape(n.Total), Draining: n.Status == raygcs.NodeDraining}
		if isWorker {
			node.Type = typeOfJob(spec, sub)
		}
		if n.Status == raygcs.NodeIdle {
			node.Idle = n.IdleFor
		}
		in.Nodes = append(in.Nodes, node)
		if job != "" {
			nodeOf[job] = n
		}
		// CPUs per node when the spec leaves them to SLURM: what Ray saw on a
		// node of the same shape (a worker of the default type; else, in a
		// cluster without types, the head, which has the workers' shape).
		ofDefault := isWorker && (sub.Type == "" || sub.Type == spec.DefaultType().Name)
		headLike := job == l.cfg.HeadJob && in.Shape.CPUs == 0 && len(spec.Workers) == 0
		if spec.WorkerNode().CPUs == 0 && (ofDefault || headLike) {
			in.Shape.CPUs = n.Total["CPU"]
		}
	}
	return nodeOf
}

// workers is where each worker job is, in job key order: joined (its
// node in Ray), starting or queued; jobs ended or ending are left out. It
// remembers when each joined, and which left Ray.
func (l *Loop) workers(now time.Time, workers map[string]cluster.Submission, queue map[string]scheduler.Job, nodeOf map[string]raygcs.Node) []Worker {
	var out []Worker
	seen := map[string]bool{}
	for _, key := range slices.Sorted(maps.Keys(workers)) {
		sub := workers[key]
		w := Worker{Job: key, Submitted: sub.Submitted, Autoscaled: sub.Autoscaled}
		j, inQueue := queue[key]
		rayNode := nodeOf[key].ID // "" when not in Ray
		if was, ok := l.joined[key]; ok && was.node != rayNode {
			l.left[key] = leftNode{node: was.node, at: now}
			delete(l.joined, key)
		}
		if !l.place(&w, now, j, inQueue, rayNode) {
			continue // ended, or ending: its node left Ray, or SLURM is completing it
		}
		seen[key] = true
		out = append(out, w)
	}
	l.forget(seen, queue)
	return out
}

// place fills in where worker job w is; false when it is no supply.
func (l *Loop) place(w *Worker, now time.Time, j scheduler.Job, inQueue bool, rayNode string) bool {
	if left, ok := l.left[w.Job]; ok {
		rec, hasRec, _ := l.cfg.Dir.Node(w.Job)
		switch placeAfterLeaving(left, j, inQueue, rayNode, rec, hasRec) {
		case requeueAwaited:
			w.State, w.Reason = Queued, reasonRequeueAwaited
			return true
		case requeued:
			w.State, w.Reason = Queued, j.Reason
			return true
		case rerunStarting:
			w.State = Starting
			return true
		case rerunJoined:
			delete(l.left, w.Job) // a worker again: joined from now on
		default:
			return false
		}
	}
	switch {
	case rayNode != "":
		w.State, w.NodeID = Joined, rayNode
		if _, ok := l.joined[w.Job]; !ok {
			l.joined[w.Job] = joining{at: now, node: rayNode}
		}
		w.JoinedAt = l.joined[w.Job].at
	case inQueue && j.State == scheduler.Pending:
		w.State, w.Reason = Queued, j.Reason
	case inQueue && (j.State == scheduler.Running || j.State == scheduler.Configuring):
		w.State = Starting
	default:
		return false
	}
	return true
}

// forget drops what the loop remembers of jobs gone: the join of a job not
// seen, and what left Ray once SLURM no longer lists the job.
func (l *Loop) forget(seen map[string]bool, queue map[string]scheduler.Job) {
	for key := range l.joined {
		if !seen[key] {
			delete(l.joined, key)
		}
	}
	for key := range l.left {
		if _, inQueue := queue[key]; !inQueue {
			delete(l.left, key)
		}
	}
}

// demandOf is what Ray waits for, in Decide's terms.
func demandOf(ray raygcs.ClusterState) Demand {
	var d Demand
	for _, c := range ray.Pending {
		d.Tasks = append(d.Tasks, Count{Shape: Shape(c.Request.Resources), N: c.Count, Selectors: c.Request.Selectors})
	}
	for _, g := range ray.Gangs {
		grp := Group{
			Spread: g.Strategy == raygcs.StrategySpread || g.Strategy == raygcs.StrategyStrictSpread,
			Strict: g.Strategy == raygcs.StrategyStrictPack || g.Strategy == raygcs.StrategyStrictSpread,
		}
		for _, b := range g.Bundles {
			grp.Bundles = append(grp.Bundles, Shape(b.Resources))
			grp.Selectors = append(grp.Selectors, b.Selectors)
		}
		if !slices.ContainsFunc(grp.Selectors, func(s []raygcs.LabelSelector) bool { return s != nil }) {
			grp.Selectors = nil // none: keeps groups without selectors as they were
		}
		d.Groups = append(d.Groups, grp)
	}
	for _, c := range ray.Constraints {
		d.Floors = append(d.Floors, Count{Shape: Shape(c.Request.Resources), N: c.Count, Selectors: c.Request.Selectors})
	}
	return d
}
