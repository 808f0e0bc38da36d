package metrics

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/events"
	"github.com/sraybatch/sraybatch/internal/goldentest"
	"github.com/sraybatch/sraybatch/internal/scheduler"
	"github.com/sraybatch/sraybatch/internal/sharedstate"
	"github.com/sraybatch/sraybatch/internal/testci"
)

var t0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

// fixedSnapshot is a running cluster: a head and a driver joined, a worker
// array of type gpu with one task joined (GPU samples), one lost, one
// pending; the autoscaler on and backing off.
func fixedSnapshot() Snapshot {
	now := t0.Add(10 * time.Minute)
	spec := cluster.Spec{Name: "exp1", ID: "id-1", User: "alice", Created: t0, Node: cluster.NodeSpec{GPUs: 2},
		Autoscale: cluster.AutoscaleSpec{Enabled: true, MaxWorkers: 4},
		Workers:   []cluster.WorkerType{{Name: "gpu", Node: cluster.NodeSpec{GPUs: 2}}}}
	o := cluster.Observation{
		Spec: spec, Now: now,
		Submissions: []cluster.Submission{
			{Role: cluster.RoleHead, JobID: "7", Submitted: t0},
			{Role: cluster.RoleDriver, JobID: "8", Submitted: t0.Add(time.Minute)},
			{Role: cluster.RoleWorker, JobID: "9", Tasks: 3, Submitted: t0.Add(2 * time.Minute), Type: "gpu"},
		},
		Records: map[string]cluster.NodeRecord{
			"7": {Job: "7", Role: cluster.RoleHead, Phase: cluster.PhaseRunning, IP: "10.0.0.1", GPUs: 2, Started: t0.Add(3 * time.Second), MetricsExportPort: 20007},
			"8": {Job: "8", Role: cluster.RoleDriver, Phase: cluster.PhaseRunning, IP: "10.0.0.1", Started: t0.Add(61 * time.Second), MetricsExportPort: 20107},
			"9_0": {Job: "9_0", Role: cluster.RoleWorker, Phase: cluster.PhaseRunning, IP: "10.0.0.2", GPUs: 2, Started: t0.Add(150 * time.Second), MetricsExportPort: 20207,
				GPUsSampled: ptr(now.Add(-10 * time.Second)), GPUSamples: []cluster.GPUSample{
					{ID: "GPU-aaaa", UtilizationPct: ptr(87), MemoryUsedMiB: ptr(int64(30000)), MemoryTotalMiB: ptr(int64(81920))},
					{ID: "GPU-bbbb", UtilizationPct: ptr(0), MemoryUsedMiB: ptr(int64(0)), MemoryTotalMiB: ptr(int64(81920))},
				}},
			"9_1": {Job: "9_1", Role: cluster.RoleWorker, Phase: cluster.PhaseRunning, IP: "10.0.0.3", GPUs: 2, Started: t0.Add(200 * time.Second), MetricsExportPort: 20307},
		},
		Membership: cluster.MembershipSnapshot{Updated: now, Heartbeat: now, Nodes: map[string]*cluster.MemberNode{
			"7":   {NodeID: "n7", Alive: true, GPUs: 2, Registered: t0.Add(8 * time.Second)},
			"8":   {NodeID: "n8", Alive: true, Registered: t0.Add(64 * time.Second)},
			"9_0": {NodeID: "n90", Alive: true, GPUs: 2, Registered: t0.Add(153 * time.Second)},
			"9_1": {NodeID: "n91", Alive: false, GPUs: 2, FirstSeen: t0.Add(215 * time.Second)},
		}},
		Head: &cluster.HeadInfo{Job: "7", Address: "10.0.0.1:20000", NodeIP: "10.0.0.1", Metrics: "10.0.0.1:20500"},
		Slurm: map[string]scheduler.Job{
			"7":   {ID: "7", State: scheduler.Running, Node: "node1", GPUs: 2, TimeLeft: 50 * time.Minute, Elapsed: 10 * time.Minute},
			"8":   {ID: "8", State: scheduler.Running, Node: "node1", TimeLeft: 50 * time.Minute},
			"9_0": {ID: "9_0", State: scheduler.Running, Node: "node2", GPUs: 2, TimeLeft: 50 * time.Minute},
			"9_1": {ID: "9_1", State: scheduler.Cancelled, Node: "node3", GPUs: 2},
			"9_2": {ID: "9_2", State: scheduler.Pending, Reason: "Resources", GPUs: 2},
		},
		Training: map[string]cluster.TrainProgress{
			"8": {Actors: map[string]int{"7": 2, "9_0": 2}, LastStep: ptr(41), LastStepSeconds: ptr(0.25)},
		},
		Autoscaler: &cluster.AutoscalerStatus{Enabled: true, MaxWorkers: 4, DemandGPUs: 2, PendingWorkers: 1,
			BackoffUntil: ptr(now.Add(20 * time.Second)), Demand: map[string]int{"GPU:2": 1}},
	}
	return Snapshot{At: now, Observation: o, Status: cluster.StatusOf(o), Ray: &RayGPUs{Total: 4, Available: 0.5},
		Autoscaler: AutoscalerCounts{Decisions: 3, Submitted: 3, Cancelled: 1}}
}

func TestExpositionGolden(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		file        string
		openMetrics bool
	}{{"exposition.openmetrics.golden", true}, {"exposition.prom.golden", false}} {
		var buf bytes.Buffer
		if err := Write(&buf, fixedSnapshot(), tt.openMetrics); err != nil {
			t.Fatal(err)
		}
		goldentest.Check(t, filepath.Join("testdata", tt.file), buf.Bytes())
		if strings.Contains(buf.String(), ` job="`) || strings.Contains(buf.String(), `{job=`) {
			t.Errorf("%s: a label named job overrides Prometheus's own", tt.file)
		}
	}
}

// The exposition passes promtool's own lint. promtool (2.42) reads the
// Prometheus text format only, which the OpenMetrics form differs from in
// counter family names (foo vs foo_total), # UNIT and # EOF; the real
// Prometheus of the end-to-end test scrapes the OpenMetrics form.
func TestPromtoolCheckMetrics(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		testci.SkipOutsideCI(t, "promtool is not installed (apt-get install prometheus)")
	}
	var buf bytes.Buffer
	if err := Write(&buf, fixedSnapshot(), false); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

func TestHandlerAuth(t *testing.T) {
	t.Parallel()
	h := NewHandler("scrape-secret")
	h.Publish(fixedSnapshot())
	srv := httptest.NewServer(h)
	defer srv.Close()
	get := func(path, auth, accept string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for _, auth := range []string{"", "Bearer ray-token", "Bearer scrape-secre", "Bearer scrape-secretX", "Basic scrape-secret", "scrape-secret"} {
		resp := get("/metrics", auth, "")
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("Authorization %q: %s, WWW-Authenticate %q; want 401 asking for a bearer token", auth, resp.Status, resp.Header.Get("WWW-Authenticate"))
		}
	}
	for _, tt := range []struct{ accept, ctype string }{
		{"", ContentTypeOpenMetrics},
		{"application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1", ContentTypeOpenMetrics},
		{"text/plain;version=0.0.4", ContentTypeText},
	} {
		resp := get("/metrics", "Bearer scrape-secret", tt.accept)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != tt.ctype {
			t.Errorf("Accept %q: %s %q; want 200 %q", tt.accept, resp.Status, resp.Header.Get("Content-Type"), tt.ctype)
		}
	}
	if resp := get("/other", "Bearer scrape-secret", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("/other: %s, want 404", resp.Status)
	}
	empty := httptest.NewServer(NewHandler("x"))
	defer empty.Close()
	req, _ := http.NewRequest(http.MethodGet, empty.URL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer x")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("before any observation: %s, want 503", resp.Status)
	}
}

// The scrape latency the head promises with 100 jobs: a scrape copies the
// rendered bytes.
func BenchmarkScrape100Jobs(b *testing.B) {
	s := fixedSnapshot()
	for i := range 100 {
		s.Status.Jobs = append(s.Status.Jobs, cluster.JobStatus{Role: cluster.RoleWorker, JobID: "10_" + string(rune('0'+i%10)), SlurmState: "PENDING", Ray: cluster.MembershipWaiting, GPUs: 2})
	}
	h := NewHandler("t")
	h.Publish(s)
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Authorization", "Bearer t")
	for b.Loop() {
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
}

func TestTargets(t *testing.T) {
	t.Parallel()
	s := fixedSnapshot()
	got := Targets(s.Observation, s.Status)
	want := []struct{ target, job, role, endpoint string }{
		{"10.0.0.1:20500", "7", "head", EndpointSraybatch},
		{"10.0.0.1:20007", "7", "head", EndpointRay},
		{"10.0.0.1:20107", "8", "driver", EndpointRay},
		{"10.0.0.2:20207", "9_0", "worker", EndpointRay},
	}
	if len(got) != len(want) {
		t.Fatalf("Targets = %+v, want %d groups (the lost 9_1 and pending 9_2 have none)", got, len(want))
	}
	for i, w := range want {
		g := got[i]
		if len(g.Targets) != 1 || g.Targets[0] != w.target || g.Labels["slurm_job_id"] != w.job || g.Labels["role"] != w.role ||
			g.Labels[LabelEndpoint] != w.endpoint || g.Labels["cluster"] != "exp1" || g.Labels["job"] != "" {
			t.Errorf("group %d = %+v, want %+v", i, g, w)
		}
	}
	s.Observation.Down = &cluster.DownRequest{Requested: t0}
	if got := Targets(s.Observation, s.Status); len(got) != 0 {
		t.Errorf("a cluster marked down has targets %+v", got)
	}
	s = fixedSnapshot()
	s.Observation.Head.Metrics = ""
	if got := Targets(s.Observation, s.Status); len(got) != 3 || got[0].Labels[LabelEndpoint] != EndpointRay {
		t.Errorf("without the head's endpoint: %+v, want the three Ray exporters only", got)
	}
}

func TestWriteTargets(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	sd := filepath.Join(root, "sd")
	if err := os.Mkdir(sd, 0o755); err != nil {
		t.Fatal(err)
	}
	spec := cluster.Spec{Name: "exp1", User: "al/ice", MetricsSDDir: sd}
	dir, err := cluster.Store{Root: filepath.Join(root, "clusters")}.Create(spec, "")
	if err != nil {
		t.Fatal(err)
	}
	s := fixedSnapshot()
	content, err := EncodeTargets(Targets(s.Observation, s.Status))
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteTargets(dir, spec, content); err != nil {
		t.Fatal(err)
	}
	site := filepath.Join(sd, "sraybatch-al_ice-exp1.json")
	for path, perm := range map[string]os.FileMode{dir.TargetsPath(): 0o600, site: 0o644} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(path)
		if st.Mode().Perm() != perm || !bytes.Equal(b, content) {
			t.Errorf("%s: mode %v, content %s; want %v and the targets", path, st.Mode().Perm(), b, perm)
		}
		token, _ := os.ReadFile(dir.MetricsTokenPath())
		if len(token) < 32 || bytes.Contains(b, bytes.TrimSpace(token)) {
			t.Errorf("%s holds the scrape token, or there is none (%d bytes)", path, len(token))
		}
	}
	if err := ClearTargets(dir, spec); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{dir.TargetsPath(), site} {
		if b, _ := os.ReadFile(path); strings.TrimSpace(string(b)) != "[]" {
			t.Errorf("%s after ClearTargets = %q, want []", path, b)
		}
	}
	if st, err := os.Stat(dir.MetricsTokenPath()); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("metrics-token: %v, %v; want a 0600 file", st, err)
	}
}

func TestCountDecisions(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "autoscaler.jsonl")
	decided := func(ts float64, submitted, cancelled, drained []string, reason string) events.FileEvent {
		return events.AutoscalerDecision{Stamp: events.Stamp{TS: ts}, Submitted: submitted, Cancelled: cancelled, Drained: drained, Reason: reason}
	}
	log := NewDecisionLog(path)
	for _, e := range []events.FileEvent{
		decided(1, []string{"9_0", "9_1"}, []string{}, []string{}, "demand"),
		decided(2, []string{}, []string{"9_1"}, []string{"9_0"}, "idle"),
		events.JobState{Stamp: events.Stamp{TS: 3}, Job: "9_0"},
	} {
		if err := events.Append(path, e); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := log.Read(); err != nil || got != (AutoscalerCounts{Decisions: 2, Submitted: 2, Cancelled: 1, Drained: 1}) {
		t.Errorf("DecisionLog.Read = %+v, %v", got, err)
	}
	if err := events.Append(path, decided(4, []string{}, []string{}, []string{}, "nothing to do")); err != nil {
		t.Fatal(err)
	}
	evs, err := events.ReadAll(path)
	if err != nil {
		t.Fatal(err)
	}
	want := AutoscalerCounts{Decisions: 3, Submitted: 2, Cancelled: 1, Drained: 1}
	if got := CountDecisions(evs); got != want {
		t.Errorf("CountDecisions = %+v, want %+v", got, want)
	}
	if got, err := log.Read(); err != nil || got != want {
		t.Errorf("DecisionLog.Read of what was appended = %+v, %v; want %+v", got, err, want)
	}
	// A log replaced (a cluster's directory recreated) is counted anew.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := events.Append(path, decided(5, []string{"10_0"}, []string{}, []string{}, "demand")); err != nil {
		t.Fatal(err)
	}
	if got, err := log.Read(); err != nil || got != (AutoscalerCounts{Decisions: 1, Submitted: 1}) {
		t.Errorf("DecisionLog.Read of a new log = %+v, %v", got, err)
	}
	// The name is the shared schema's.
	if _, ok := sharedstate.Load(t).Events[events.NameAutoscalerDecision]; !ok {
		t.Errorf("%q is not an event of testdata/shared-state.json", events.NameAutoscalerDecision)
	}
}

// A rollover cluster adds its generation, its handovers and the last one's
// duration; the exposition passes promtool as the plain one does.
func TestGenerationFamilies(t *testing.T) {
	t.Parallel()
	s := fixedSnapshot()
	o := s.Observation
	o.Spec.Rollover = &cluster.RolloverSpec{BeforeS: 240, HeadWaitS: 300}
	o.Head.Generation, o.Head.Published = 3, t0.Add(9*time.Minute)
	o.LastHandover = &cluster.Handover{Generation: 2, Started: t0.Add(9*time.Minute - 12*time.Second)}
	o.Handovers = []cluster.Handover{*o.LastHandover}
	o.Generations = []cluster.Generation{{HeadInfo: *o.Head, How: cluster.GenerationSubmitted}}
	o.Training = map[string]cluster.TrainProgress{"9": {Crossings: map[int]cluster.Crossing{3: {
		Before: &cluster.StepMark{Step: 40, At: t0.Add(9*time.Minute - 13*time.Second)},
		After:  &cluster.StepMark{Step: 38, At: t0.Add(9*time.Minute + 7*time.Second)}}}}}
	s.Observation, s.Status = o, cluster.StatusOf(o)
	var buf bytes.Buffer
	if err := Write(&buf, s, true); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`sraybatch_generation{cluster="exp1"} 3`, `sraybatch_handovers_total{cluster="exp1"} 2`, `sraybatch_last_handover_seconds{cluster="exp1"} 12`,
		`sraybatch_last_handover_gap_seconds{cluster="exp1"} 20`, `sraybatch_last_handover_steps_lost{cluster="exp1"} 3`,
	} {
		if !strings.Contains(buf.String(), want+"\n") {
			t.Errorf("exposition lacks %q", want)
		}
	}
	if promtool, err := exec.LookPath("promtool"); err == nil {
		buf.Reset()
		Write(&buf, s, false)
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = &buf
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	}
}
