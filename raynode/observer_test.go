package raynode

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/events"
	"github.com/sraybatch/sraybatch/internal/gpu"
	"github.com/sraybatch/sraybatch/internal/metrics"
	"github.com/sraybatch/sraybatch/internal/raygcs"
	"github.com/sraybatch/sraybatch/internal/scheduler"
	"github.com/sraybatch/sraybatch/internal/testci"
)

func TestClusterEvents(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	job := func(id string, role cluster.Role, state string, ray cluster.Membership, gpus int) cluster.JobStatus {
		return cluster.JobStatus{JobID: id, Role: role, SlurmState: state, Ray: ray, GPUs: gpus}
	}
	status := func(jobs ...cluster.JobStatus) cluster.Status { return cluster.Status{Jobs: jobs} }
	alloc := func(v float64) *float64 { return &v }
	headUp := status(job("7", cluster.RoleHead, "RUNNING", cluster.MembershipJoined, 1), job("8_0", cluster.RoleWorker, "PENDING", cluster.MembershipWaiting, 2))
	workerUp := status(job("7", cluster.RoleHead, "RUNNING", cluster.MembershipJoined, 1), job("8_0", cluster.RoleWorker, "RUNNING", cluster.MembershipJoined, 2))
	slurmDown := headUp
	cpuWorker := job("9", cluster.RoleWorker, "PENDING", cluster.MembershipWaiting, 0)
	cpuWorker.Type = "cpu"
	slurmDown.Cluster.SlurmError = "SLURM did not answer"

	type step struct {
		st        cluster.Status
		allocated *float64
		after     time.Duration
		want      []string // "job_state 8_0 RUNNING joined", "cluster_sample 3 3 2.5 2"
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"first sighting: every job and a sample", []step{
			{headUp, alloc(0.5), 0, []string{"job_state 7 RUNNING joined", "job_state 8_0 PENDING waiting", "cluster_sample 3 1 0.5 2"}},
		}},
		{"nothing changed: nothing written", []step{
			{headUp, alloc(0.5), 0, nil}, {headUp, alloc(0.5), 5 * time.Second, []string{}},
		}},
		{"a join: its job_state and a new sample", []step{
			{headUp, alloc(0.5), 0, nil}, {workerUp, alloc(2.5), 5 * time.Second, []string{"job_state 8_0 RUNNING joined", "cluster_sample 3 3 2.5 2"}},
		}},
		{"only Ray's allocation changed: a sample", []step{
			{headUp, alloc(0.5), 0, nil}, {headUp, alloc(1), 5 * time.Second, []string{"cluster_sample 3 1 1 2"}},
		}},
		{"unchanged for ClusterSampleEvery: a sample all the same", []step{
			{headUp, alloc(0.5), 0, nil}, {headUp, alloc(0.5), 55 * time.Second, []string{}}, {headUp, alloc(0.5), 5 * time.Second, []string{"cluster_sample 3 1 0.5 2"}},
		}},
		{"Ray silent: its last allocation stands", []step{
			{headUp, alloc(0.5), 0, nil}, {workerUp, nil, 5 * time.Second, []string{"job_state 8_0 RUNNING joined", "cluster_sample 3 3 0.5 2"}},
		}},
		{"SLURM silent: nothing, and nothing forgotten", []step{
			{headUp, alloc(0.5), 0, nil}, {slurmDown, alloc(0.5), 5 * time.Second, []string{}}, {headUp, alloc(0.5), 5 * time.Second, []string{}},
		}},
		{"a typed worker's job_state names its type", []step{
			{status(job("7", cluster.RoleHead, "RUNNING", cluster.MembershipJoined, 1), cpuWorker), alloc(0), 0,
				[]string{"job_state 7 RUNNING joined", "job_state 9 PENDING waiting type=cpu", "cluster_sample 1 1 0 2"}},
		}},
		{"a job that ends goes lost then gone", []step{
			{workerUp, alloc(2.5), 0, nil},
			{status(job("7", cluster.RoleHead, "RUNNING", cluster.MembershipJoined, 1), job("8_0", cluster.RoleWorker, "CANCELLED", cluster.MembershipLost, 2)), alloc(0.5), 5 * time.Second,
				[]string{"job_state 8_0 CANCELLED lost", "cluster_sample 1 1 0.5 1"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mem eventMemory
			now := t0
			for i, s := range tt.steps {
				now = now.Add(s.after)
				var evs []events.FileEvent
				evs, mem = clusterEvents(mem, s.st, s.allocated, now)
				if s.want == nil {
					continue
				}
				got := []string{}
				for _, e := range evs {
					switch e := e.(type) {
					case events.JobState:
						line := fmt.Sprintf("%s %s %s %s", e.Name(), e.Job, e.SlurmState, e.Membership)
						if e.Type != "" {
							line += " type=" + e.Type
						}
						got = append(got, line)
						if e.TS != events.TS(now) {
							t.Errorf("step %d: job_state ts %v, want now", i, e.TS)
						}
					case events.ClusterSample:
						got = append(got, fmt.Sprintf("%s %d %d %g %d", e.Name(), e.GPUsRequested, e.GPUsJoined, e.GPUsAllocated, e.Jobs))
					default:
						t.Fatalf("step %d: event of type %T", i, e)
					}
				}
				if !slices.Equal(got, s.want) {
					t.Errorf("step %d: events %q, want %q", i, got, s.want)
				}
			}
		})
	}
}

// headProcesses starts no Ray: a head's `ray start` becomes a fake
// dashboard on the port the supervisor gave it, reporting the nodes the
// test says are alive.
type headProcesses struct {
	fakeProcesses
	mu    sync.Mutex
	alive map[string]bool // job keys whose Ray node is alive
	srv   *http.Server
}

func (p *headProcesses) setAlive(jobs ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.alive = map[string]bool{}
	for _, j := range jobs {
		p.alive[j] = true
	}
}

func (p *headProcesses) Start(cmd *exec.Cmd) (Process, error) {
	for _, a := range cmd.Args {
		if tmp, ok := strings.CutPrefix(a, "--temp-dir="); ok { // Ray's dashboard writes its Grafana dashboards there
			dashboards := filepath.Join(tmp, "session_latest", "metrics", "grafana", "dashboards")
			if err := os.MkdirAll(dashboards, 0o700); err != nil {
				return nil, err
			}
			if err := os.WriteFile(filepath.Join(dashboards, "default_grafana_dashboard.json"), []byte(`{"title":"Default"}`), 0o600); err != nil {
				return nil, err
			}
		}
		if port, ok := strings.CutPrefix(a, "--dashboard-port="); ok {
			ln, err := net.Listen("tcp", "127.0.0.1:"+port)
			if err != nil {
				return nil, err
			}
			p.srv = &http.Server{Handler: http.HandlerFunc(p.serve)}
			go p.srv.Serve(ln)
		}
	}
	return p.fakeProcesses.Start(cmd)
}

func (p *headProcesses) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/api/gcs_healthz" {
		io.WriteString(w, "success")
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var nodes []map[string]any
	for job := range p.alive {
		nodes = append(nodes, map[string]any{"node_id": "n-" + job, "node_ip": "127.0.0.1", "state": "ALIVE",
			"resources_total": map[string]float64{"GPU": 1, cluster.JobResource(job): 1}, "start_time_ms": 1})
	}
	json.NewEncoder(w).Encode(map[string]any{"result": true, "data": map[string]any{"result": map[string]any{"num_filtered": len(nodes), "result": nodes}}})
}

// queueSched answers squeue from a table the test changes.
type queueSched struct {
	Scheduler // NodeAddr panics: the head makes no such call here
	mu        sync.Mutex
	jobs      []scheduler.Job
	calls     int
}

func (q *queueSched) set(jobs ...scheduler.Job) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.jobs = jobs
}

func (q *queueSched) Jobs(ctx context.Context, query scheduler.Query) ([]scheduler.Job, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.calls++
	return slices.Clone(q.jobs), nil
}

// gcsWithState is the GCS with its resource view: 1.5 of 2 GPUs in use.
type gcsWithState struct{ fakeGCS }

func (g *gcsWithState) ClusterState(ctx context.Context) (raygcs.ClusterState, error) {
	return raygcs.ClusterState{Nodes: []raygcs.Node{
		{ID: "n-7", Status: raygcs.NodeRunning, Total: map[string]float64{"GPU": 1}, Available: map[string]float64{"GPU": 0}},
		{ID: "n-8", Status: raygcs.NodeRunning, Total: map[string]float64{"GPU": 1}, Available: map[string]float64{"GPU": 0.5}},
		{ID: "n-9", Status: raygcs.NodeDead, Total: map[string]float64{"GPU": 1}, Available: map[string]float64{"GPU": 1}},
	}}, nil
}

// observedHead is a head's supervisor running on the fake clock with
// worker 8 submitted and pending, and a site's --metrics-sd-dir.
type observedHead struct {
	f       *runFixture
	sched   *queueSched
	procs   *headProcesses
	cancel  context.CancelFunc
	errc    chan error
	stopped sync.Once
}

func startObservedHead(t *testing.T) *observedHead {
	t.Helper()
	f := newRunFixture(t)
	f.spec.Insecure = true // no `ray --version` check: the fixture's ray is a stub
	sd := t.TempDir()
	f.spec.MetricsSDDir, f.spec.User = sd, "alice"
	if err := cluster.WriteJSON(f.dir.Path+"/spec.json", f.spec); err != nil { // the observer rereads it
		t.Fatal(err)
	}
	if err := os.Remove(f.dir.Path + "/head.json"); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []cluster.Submission{{Role: cluster.RoleHead, JobID: "7", Submitted: f.clock.Now()}, {Role: cluster.RoleWorker, JobID: "8", Submitted: f.clock.Now()}} {
		if err := f.dir.AddSubmission(sub); err != nil {
			t.Fatal(err)
		}
	}
	h := &observedHead{f: f, sched: &queueSched{}, procs: &headProcesses{}, errc: make(chan error, 1)}
	h.procs.setAlive("7")
	h.sched.set(scheduler.Job{ID: "7", State: scheduler.Running, GPUs: 1, TimeLeft: time.Hour}, scheduler.Job{ID: "8", State: scheduler.Pending, GPUs: 1})
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	t.Cleanup(h.stop) // before the fixture's directories go
	env := map[string]string{"SLURM_JOB_ID": "7", "CUDA_VISIBLE_DEVICES": "0"}
	go func() {
		h.errc <- Run(ctx, Config{Role: cluster.RoleHead, Dir: f.dir, Spec: f.spec, Scheduler: h.sched,
			Getenv: func(k string) string { return env[k] }, Environ: []string{"PATH=/usr/bin:/bin"},
			GPUs: gpu.Env{Getenv: func(k string) string { return env[k] }}, Log: io.Discard,
			Clock: f.clock, Processes: h.procs,
			DialRay: func(addr, token string) (RayClient, error) { return &gcsWithState{}, nil }})
	}()
	return h
}

// stop cancels the head and waits until its supervisor has ended.
func (h *observedHead) stop() {
	h.stopped.Do(func() {
		h.cancel()
		go func() {
			for i := 0; i < 2000; i++ { // the stop's grace periods wait on the clock
				h.f.clock.Advance(100 * time.Millisecond)
				time.Sleep(time.Millisecond)
			}
		}()
		<-h.errc
	})
}

// until moves the fake clock on in small steps until cond holds. The
// supervisor's loops (monitor, observer) wait on the clock side by side,
// so each step gives them a moment of real time instead of counting
// their waits; the bound is in real time, for a loaded machine.
func (h *observedHead) until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testci.EventuallyErr(t, what, 30*time.Second, 2*time.Millisecond, func() error {
		if cond() {
			return nil
		}
		h.f.clock.Advance(100 * time.Millisecond)
		b, _ := os.ReadFile(h.f.dir.TargetsPath())
		return fmt.Errorf("not after %s of fake time; targets %s", h.f.clock.Now().Sub(time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)), b)
	})
}

// endpoints lists the site's scrape targets as "endpoint job addresses".
func (h *observedHead) endpoints() []string {
	var groups []metrics.TargetGroup
	if b, err := os.ReadFile(metrics.SDFile(h.f.spec)); err == nil {
		json.Unmarshal(b, &groups)
	}
	var out []string
	for _, g := range groups {
		out = append(out, g.Labels[metrics.LabelEndpoint]+" "+g.Labels["slurm_job_id"]+" "+strings.Join(g.Targets, ","))
	}
	return out
}

// The head's scrape targets are written before head.json, on which `up
// --wait` returns: Prometheus finds the head at once, not one observation
// (observeInterval) later.
func TestHeadTargetsBeforeItPublishes(t *testing.T) {
	t.Parallel()
	h := startObservedHead(t)
	var head cluster.HeadInfo
	h.until(t, "head published", func() bool {
		var ok bool
		head, ok, _ = h.f.dir.Head()
		return ok
	})
	e := h.endpoints()
	if len(e) != 2 || e[0] != "sraybatch 7 "+head.Metrics || !strings.HasPrefix(e[1], "ray 7 127.0.0.1:") {
		t.Errorf("targets when head.json appeared: %q, want the head's endpoint and its Ray", e)
	}
}

// TestRunHeadObserver drives a head's supervisor on the fake clock: once
// its Ray serves it publishes its metrics endpoint, serves the cluster at
// /metrics to the scrape token only, writes job_state and cluster_sample
// events, rewrites the file_sd targets on a join and a leave, and empties
// them when it ends.
func TestRunHeadObserver(t *testing.T) {
	t.Parallel()
	h := startObservedHead(t)
	f, sched, procs, endpoints := h.f, h.sched, h.procs, h.endpoints
	until := func(what string, cond func() bool) {
		t.Helper()
		h.until(t, what, cond)
	}
	var head cluster.HeadInfo
	until("head published with a metrics endpoint", func() bool {
		h, ok, _ := f.dir.Head()
		head = h
		return ok && h.Metrics != ""
	})
	if host, _, _ := net.SplitHostPort(head.Metrics); host != "127.0.0.1" {
		t.Errorf("metrics endpoint %s, want it at the node's IP 127.0.0.1", head.Metrics)
	}
	token, _ := os.ReadFile(f.dir.MetricsTokenPath())
	rayToken, _ := os.ReadFile(f.dir.TokenPath())
	scrape := func(bearer string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+head.Metrics+"/metrics", nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(bearer))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	until("a scrape shows the head joined", func() bool {
		code, body := scrape(string(token))
		return code == http.StatusOK && strings.Contains(body, `sraybatch_jobs{cluster="exp1",role="head",slurm_state="RUNNING",membership="joined"} 1`)
	})
	_, body := scrape(string(token))
	for _, want := range []string{`sraybatch_gpus_allocated{cluster="exp1"} 1.5`, `sraybatch_jobs{cluster="exp1",role="worker",slurm_state="PENDING",membership="waiting"} 1`, "# EOF"} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q:\n%s", want, body)
		}
	}
	for _, bad := range []string{"", string(rayToken)} {
		if code, _ := scrape(bad); code != http.StatusUnauthorized {
			t.Errorf("scrape with %q: %d, want 401", bad, code)
		}
	}
	headRayTarget := "ray 7 127.0.0.1:" // the head's own exporter; its port is the node record's
	until("targets: the endpoint and the head's Ray", func() bool {
		e := endpoints()
		return len(e) == 2 && e[0] == "sraybatch 7 "+head.Metrics && strings.HasPrefix(e[1], headRayTarget)
	})

	until("Ray's Grafana dashboards copied out of the private temp dir", func() bool {
		b, err := os.ReadFile(filepath.Join(GrafanaDir(f.dir), "default_grafana_dashboard.json"))
		return err == nil && string(b) == `{"title":"Default"}`
	})

	// Worker 8 joins.
	if err := f.dir.WriteNode(cluster.NodeRecord{Job: "8", Role: cluster.RoleWorker, Phase: cluster.PhaseRunning, IP: "127.0.0.2", GPUs: 1, MetricsExportPort: 23456, Started: f.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	sched.set(scheduler.Job{ID: "7", State: scheduler.Running, GPUs: 1, TimeLeft: time.Hour}, scheduler.Job{ID: "8", State: scheduler.Running, GPUs: 1})
	procs.setAlive("7", "8")
	until("targets: worker 8's exporter after its join", func() bool {
		e := endpoints()
		return len(e) == 3 && e[2] == "ray 8 127.0.0.2:23456"
	})
	// Worker 8 is cancelled: it leaves.
	sched.set(scheduler.Job{ID: "7", State: scheduler.Running, GPUs: 1, TimeLeft: time.Hour}, scheduler.Job{ID: "8", State: scheduler.Cancelled, GPUs: 1})
	procs.setAlive("7")
	until("targets: worker 8 gone after it left", func() bool { return len(endpoints()) == 2 })

	evs, err := events.ReadAll(f.dir.ClusterEventsPath())
	if err != nil {
		t.Fatal(err)
	}
	var states []string
	samples := 0
	for _, e := range evs {
		switch e.Name {
		case events.NameJobState:
			var js events.JobState
			e.Decode(&js)
			states = append(states, js.Job+" "+js.SlurmState+" "+string(js.Membership))
		case events.NameClusterSample:
			samples++
		}
	}
	// The head may first be seen waiting, before its membership refresh.
	for _, want := range []string{"7 RUNNING joined", "8 PENDING waiting", "8 RUNNING joined", "8 CANCELLED lost"} {
		if !slices.Contains(states, want) {
			t.Errorf("job_state events %q lack %q", states, want)
		}
	}
	if samples < 3 {
		t.Errorf("%d cluster_sample events, want one per change (>= 3)", samples)
	}
	if sched.calls > int(f.clock.Now().Sub(head.Published)/observeInterval)+2 {
		t.Errorf("%d squeue calls in %s: more than one per observation", sched.calls, f.clock.Now().Sub(head.Published))
	}

	h.stop()
	for _, path := range []string{metrics.SDFile(f.spec), f.dir.TargetsPath()} {
		if b, _ := os.ReadFile(path); strings.TrimSpace(string(b)) != "[]" {
			t.Errorf("%s after the head ended = %s, want []", path, b)
		}
	}
	if st, err := os.Stat(metrics.SDFile(f.spec)); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("site targets file: %v %v, want 0644", st, err)
	}
	if conn, err := net.Dial("tcp", head.Metrics); err == nil {
		conn.Close()
		t.Error("the metrics endpoint still listens after the head ended")
	}
}
