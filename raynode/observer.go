package raynode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/events"
	"github.com/sraybatch/sraybatch/internal/metrics"
	"github.com/sraybatch/sraybatch/internal/observe"
	"github.com/sraybatch/sraybatch/internal/oneline"
	"github.com/sraybatch/sraybatch/internal/raygcs"
	"github.com/sraybatch/sraybatch/internal/scheduler"
)

const (
	// observeInterval is how often the head observes its cluster: one
	// squeue and one GCS call each time, whatever scrapes there are.
	observeInterval = 5 * time.Second
	// observeTimeout bounds one observation's squeue and GCS call.
	observeTimeout = 10 * time.Second
	// ObservationStaleness is how old a squeue answer the observer takes
	// from the autoscaler, which asks about the same jobs every poll
	// (scheduler.SharedJobs): half its own interval.
	ObservationStaleness = observeInterval / 2
	// metricsListenTries is how many random ports of the cluster's range
	// the metrics endpoint tries before giving up.
	metricsListenTries = 50
)

// rayState is what the observer reads from the GCS (a *raygcs.Client).
type rayState interface {
	ClusterState(ctx context.Context) (raygcs.ClusterState, error)
}

// observer is the head job's view of its cluster: every observeInterval it
// observes the cluster as `status` does (observe.Read), serves the result
// at /metrics, appends what changed to events/cluster.jsonl and keeps the
// Prometheus file_sd targets current.
type observer struct {
	s       *supervisor
	handler *metrics.Handler
	server  *http.Server
	ln      net.Listener
	// addr is the metrics endpoint ("ip:port"); "" when it could not listen.
	addr string
	// head is what the head publishes in head.json (start).
	head    *cluster.HeadInfo
	ray     rayState
	rayConn RayClient
	events  eventMemory
	// reader keeps each driver's event file folded so far between ticks;
	// decisions the autoscaler's log counted so far.
	reader    *observe.Reader
	decisions *metrics.DecisionLog
	// targets is the file_sd content last written.
	targets []byte
	// lastErr is the last observation error logged: logged once, not every tick.
	lastErr string
	// rayTemp is Ray's --temp-dir; its Grafana dashboards are copied out
	// once (dashboardsCopied), since the directory is private and goes
	// with the job.
	rayTemp          string
	dashboardsCopied bool
}

// newObserver listens for scrapes at ip on the head's scrape port (from its
// block, so no Ray worker of any node is given it), or, should another
// process have taken that since the block was chosen, on a free port of the
// cluster's range; without a scrape token or a free port the head runs
// without an endpoint, and says why, but still writes events and targets.
func (s *supervisor) newObserver(ip, rayTemp string, scrapePort int) *observer {
	ob := &observer{s: s, rayTemp: rayTemp, reader: observe.NewReader(), decisions: metrics.NewDecisionLog(s.cfg.Dir.AutoscalerEventsPath())}
	token, err := os.ReadFile(s.cfg.Dir.MetricsTokenPath())
	if err != nil {
		s.logf("warning: no metrics endpoint: %v", err)
		return ob
	}
	portRange := DefaultPortRange
	if s.spec.PortRange != "" {
		if portRange, err = ParsePortRange(s.spec.PortRange); err != nil {
			s.logf("warning: no metrics endpoint: %v", err)
			return ob
		}
	}
	if ob.ln, err = net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(scrapePort))); err != nil {
		s.logf("warning: scrape port %d: %v; trying others in %s", scrapePort, err, portRange)
		if ob.ln, err = listenInRange(ip, portRange); err != nil {
			s.logf("warning: no metrics endpoint: %v", err)
			return ob
		}
	}
	ob.addr = ob.ln.Addr().String()
	ob.handler = metrics.NewHandler(strings.TrimSpace(string(token)))
	ob.server = &http.Server{Handler: ob.handler, ReadHeaderTimeout: 5 * time.Second}
	s.logf("metrics at http://%s/metrics (bearer token: %s)", ob.addr, s.cfg.Dir.MetricsTokenPath())
	return ob
}

// listenInRange listens on a random free port of r at ip, as Ray's ports
// come from the cluster's range: binding is the check, so no race.
func listenInRange(ip string, r PortRange) (net.Listener, error) {
	var err error
	for range metricsListenTries {
		port := r.Lo + rand.IntN(r.Hi-r.Lo+1)
		var ln net.Listener
		if ln, err = net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port))); err == nil {
			return ln, nil
		}
	}
	return nil, fmt.Errorf("no free port in %s at %s after %d tries (last: %w)", r, ip, metricsListenTries, err)
}

// start observes once at once, taking head as the head's published
// address until head.json says so, then serves scrapes and observes every
// observeInterval until the returned stop is called; stop empties the
// file_sd targets (a port this head used may be another user's next) and
// closes the endpoint.
func (ob *observer) start(ctx context.Context, head cluster.HeadInfo) (stop func()) {
	ob.head = &head
	ob.tick(ctx)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	if ob.server != nil {
		go ob.server.Serve(ob.ln)
	}
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-ob.s.clock.After(observeInterval):
			}
			ob.tick(ctx)
		}
	}()
	return func() {
		cancel()
		<-done
		ob.clearTargets()
		if ob.server != nil {
			ob.server.Close()
		}
		if ob.rayConn != nil {
			ob.rayConn.Close()
		}
	}
}

// clearTargets empties the file_sd targets as the head stops, unless a
// later generation is published: its head wrote its own targets by then,
// and rewrites them only when they change.
func (ob *observer) clearTargets() {
	s, latest := ob.s, 0
	if gens, err := s.cfg.Dir.Generations(); err == nil && len(gens) > 0 {
		latest = gens[len(gens)-1]
	}
	if !clearsTargets(s.rollover.gen, latest) {
		s.logf("Prometheus targets left to generation %d's head", latest)
		return
	}
	if err := metrics.ClearTargets(s.cfg.Dir, s.spec); err != nil {
		s.logf("warning: cannot empty the Prometheus targets: %v", err)
	}
}

// clearsTargets reports whether a stopping head of generation own (0:
// without generations) empties the targets, latest being the newest
// published generation (0: none): only while no later one is.
func clearsTargets(own, latest int) bool { return latest <= own }

// tick makes one observation and acts on it.
func (ob *observer) tick(ctx context.Context) {
	s := ob.s
	now := s.clock.Now()
	spec, err := s.cfg.Dir.Spec() // the autoscale settings change
	if err != nil {
		spec = s.spec
	}
	o, err := ob.reader.Read(ctx, s.cfg.Dir, spec, now, ob.queue(spec))
	if err != nil {
		ob.warn(fmt.Sprintf("observe the cluster: %v", err))
		return
	}
	if o.Head == nil {
		o.Head = ob.head // the first look, just before the head publishes it
	}
	st := cluster.StatusOf(o)
	ray := ob.rayGPUs(ctx)
	decisions, _ := ob.decisions.Read() // the counts so far, should it fail
	if ob.handler != nil {
		ob.handler.Publish(metrics.Snapshot{At: now, Observation: o, Status: st, Ray: ray, Autoscaler: decisions})
	}
	var allocated *float64
	if ray != nil {
		a := ray.Allocated()
		allocated = &a
	}
	var evs []events.FileEvent
	evs, ob.events = clusterEvents(ob.events, st, allocated, now)
	for _, e := range evs {
		if err := events.Append(s.cfg.Dir.ClusterEventsPath(), e); err != nil {
			ob.warn(err.Error())
			break
		}
	}
	if !ob.dashboardsCopied {
		ob.copyDashboards()
	}
	content, err := metrics.EncodeTargets(metrics.Targets(o, st))
	if err == nil && !bytes.Equal(content, ob.targets) {
		if err := metrics.WriteTargets(s.cfg.Dir, spec, content); err != nil {
			ob.warn(fmt.Sprintf("write the Prometheus targets: %v", err))
			return
		}
		ob.targets = content
	}
}

func (ob *observer) warn(msg string) {
	if msg != ob.lastErr {
		ob.s.logf("warning: %s", oneline.Of(msg))
		ob.lastErr = msg
	}
}

// queue is the observation's one squeue, from inside the job (the
// scheduler submits with the login node's environment, and lists alike).
func (ob *observer) queue(spec cluster.Spec) observe.Queue {
	return func(ctx context.Context) (map[string]scheduler.Job, error) {
		if ob.s.cfg.Scheduler == nil {
			return nil, errors.New("no scheduler to ask")
		}
		ctx, cancel := context.WithTimeout(ctx, observeTimeout)
		defer cancel()
		jobs, err := ob.s.cfg.Scheduler.Jobs(ctx, observe.JobsQuery(spec))
		if err != nil {
			return nil, err
		}
		return observe.ByKey(jobs), nil
	}
}

// rayGPUs asks the GCS for the GPUs of the alive nodes; nil when it does
// not answer (or cannot be asked).
func (ob *observer) rayGPUs(ctx context.Context) *metrics.RayGPUs {
	if ob.ray == nil {
		// A connection of its own: the supervisor's (gcs()) is the
		// monitor's, and this runs beside it.
		conn, err := ob.s.dialGCS(ob.head.Address)
		if err != nil {
			ob.warn(fmt.Sprintf("dial the GCS: %v", err))
			return nil
		}
		ray, ok := conn.(rayState)
		if !ok {
			conn.Close()
			return nil
		}
		ob.rayConn, ob.ray = conn, ray
	}
	ctx, cancel := context.WithTimeout(ctx, observeTimeout)
	defer cancel()
	state, err := ob.ray.ClusterState(ctx)
	if err != nil {
		return nil
	}
	var g metrics.RayGPUs
	for _, n := range state.Nodes {
		if n.Status.Alive() {
			g.Total += n.Total["GPU"]
			g.Available += n.Available["GPU"]
		}
	}
	return &g
}

// eventMemory is what the head last wrote to the cluster's event log.
type eventMemory struct {
	// jobs is each job's (SLURM state, membership) as last written.
	jobs map[string]jobSeen
	// sample is the last cluster_sample written, at sampled.
	sample  *events.ClusterSample
	sampled time.Time
}

type jobSeen struct {
	slurm string
	ray   cluster.Membership
}

// clusterEvents decides what one observation adds to events/cluster.jsonl:
// a job_state for every job whose SLURM state or membership changed (its
// first sighting included), and a cluster_sample when a figure changed or
// events.ClusterSampleEvery passed. An observation without SLURM's answer adds
// nothing (every SLURM state would be unknown, not changed); allocated is
// nil when Ray did not answer, and its last value stands.
func clusterEvents(mem eventMemory, st cluster.Status, allocated *float64, now time.Time) ([]events.FileEvent, eventMemory) {
	if st.Cluster.SlurmError != "" {
		return nil, mem
	}
	stamp := events.At(now)
	var out []events.FileEvent
	next := eventMemory{jobs: make(map[string]jobSeen, len(st.Jobs)), sample: mem.sample, sampled: mem.sampled}
	for _, j := range st.Jobs {
		seen := jobSeen{j.SlurmState, j.Ray}
		if prev, ok := mem.jobs[j.JobID]; !ok || prev != seen {
			out = append(out, events.JobState{Stamp: stamp, Job: j.JobID, Role: j.Role,
				SlurmState: j.SlurmState, Membership: j.Ray, GPUs: j.GPUs, Type: j.Type})
		}
		next.jobs[j.JobID] = seen
	}
	t := metrics.TotalsOf(st)
	sample := events.ClusterSample{Stamp: stamp,
		GPUsRequested: t.GPUsRequested, GPUsJoined: t.GPUsJoined, Jobs: t.Jobs}
	switch {
	case allocated != nil:
		sample.GPUsAllocated = *allocated
	case mem.sample != nil:
		sample.GPUsAllocated = mem.sample.GPUsAllocated
	}
	if last := mem.sample; last == nil || !sameFigures(*last, sample) || now.Sub(mem.sampled) >= events.ClusterSampleEvery {
		out = append(out, sample)
		next.sample, next.sampled = &sample, now
	}
	return out, next
}

func sameFigures(a, b events.ClusterSample) bool {
	a.TS, b.TS = 0, 0
	return a == b
}

// GrafanaDir is where the head copies Ray's own Grafana dashboards, which
// Ray writes into its session directory inside the job's private temp dir.
func GrafanaDir(dir cluster.Dir) string { return filepath.Join(dir.Path, "grafana-dashboards") }

// copyDashboards copies Ray's generated Grafana dashboards (JSON) into the
// cluster directory, once Ray has written them (its dashboard does so
// shortly after it starts).
func (ob *observer) copyDashboards() {
	src := filepath.Join(ob.rayTemp, "session_latest", "metrics", "grafana", "dashboards")
	files, _ := filepath.Glob(filepath.Join(src, "*.json"))
	if len(files) == 0 {
		return
	}
	dst := GrafanaDir(ob.s.cfg.Dir)
	if err := os.MkdirAll(dst, 0o700); err != nil {
		ob.warn(fmt.Sprintf("copy Ray's Grafana dashboards: %v", err))
		return
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil {
			err = cluster.WriteFileAtomic(filepath.Join(dst, filepath.Base(f)), b, 0o600)
		}
		if err != nil {
			ob.warn(fmt.Sprintf("copy Ray's Grafana dashboards: %v", err))
			return
		}
	}
	ob.dashboardsCopied = true
	ob.s.logf("Ray's Grafana dashboards copied to %s", dst)
}
