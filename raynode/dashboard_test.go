package raynode

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/clock/clocktest"
	"github.com/sraybatch/sraybatch/internal/cluster"
)

// rayNodeJSON is one node as Ray 2.5x's state API prints it (trimmed of
// fields sraybatch does not read, but with their shapes kept).
func rayNodeJSON(id, ip, job string, head bool, gpus float64) string {
	res := fmt.Sprintf(`"CPU": 8.0, "GPU": %v, "memory": 41231686041.0, "object_store_memory": 8589934592.0, "node:%s": 1.0`, gpus, ip)
	if head {
		res += `, "node:__internal_head__": 1.0`
	}
	if job != "" {
		res += fmt.Sprintf(`, %q: 1.0`, cluster.JobResource(job))
	}
	return fmt.Sprintf(`{"node_id": %q, "node_ip": %q, "is_head_node": %v, "state": "ALIVE", "state_message": null,
  "node_name": %q, "resources_total": {%s},
  "labels": {"ray.io/node_id": %q, "sraybatch-job": %q, "sraybatch-role": "worker"},
  "start_time_ms": 1717243200000, "end_time_ms": 0}`, id, ip, head, ip, res, id, job)
}

// nodesAnswer is the state API's answer with alive ALIVE nodes matching the
// filter, of which nodes are returned; "total" also counts dead nodes.
func nodesAnswer(alive int, nodes ...string) string {
	return fmt.Sprintf(`{"result": true, "msg": "", "data": {"result": {"total": %d, "num_after_truncation": %d, "num_filtered": %d,
  "result": [%s], "partial_failure_warning": "", "warnings": null}}}`, alive+7, len(nodes), alive, strings.Join(nodes, ",\n"))
}

// fakeDashboard serves /api/v0/nodes with whatever answer is set, and
// records the requests it got.
type fakeDashboard struct {
	mu     sync.Mutex
	status int
	answer string
	reqs   []*http.Request
}

func (f *fakeDashboard) set(status int, answer string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status, f.answer = status, answer
}

func (f *fakeDashboard) requests() []*http.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reqs)
}

func (f *fakeDashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, r)
	if r.URL.Path != "/api/v0/nodes" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(f.status)
	fmt.Fprint(w, f.answer)
}

func newFakeDashboard(t *testing.T, status int, answer string) (*fakeDashboard, *httptest.Server) {
	t.Helper()
	f := &fakeDashboard{status: status, answer: answer}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func TestAliveNodes(t *testing.T) {
	t.Parallel()
	answer := nodesAnswer(3,
		rayNodeJSON("a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4", "127.0.0.11", "6", true, 1),
		rayNodeJSON("0f1e2d3c4b5a0f1e2d3c4b5a0f1e2d3c4b5a0f1e2d3c4b5a0f1e2d3c", "127.0.0.12", "7_0", false, 2),
		rayNodeJSON("ffffeeeeddddccccbbbbaaaa99998888777766665555444433332222", "127.0.0.13", "", false, 0),
	)
	f, srv := newFakeDashboard(t, http.StatusOK, answer)
	d := dashboardClient{base: srv.URL, token: "s3cret"}

	nodes, err := d.aliveNodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 3 {
		t.Fatalf("aliveNodes() = %d nodes, want 3", len(nodes))
	}
	w := nodes[1]
	if w.NodeID != "0f1e2d3c4b5a0f1e2d3c4b5a0f1e2d3c4b5a0f1e2d3c4b5a0f1e2d3c" || w.NodeIP != "127.0.0.12" || w.State != "ALIVE" ||
		w.ResourcesTotal["GPU"] != 2 || w.ResourcesTotal[cluster.JobResource("7_0")] != 1 {
		t.Errorf("decoded node = %+v", w)
	}
	var jobs []string
	for _, n := range nodes {
		job, _ := cluster.JobOfResources(n.ResourcesTotal)
		jobs = append(jobs, job)
	}
	if !slices.Equal(jobs, []string{"6", "7_0", ""}) {
		t.Errorf("JobOfResources = %q, want 6, 7_0 and none", jobs)
	}

	reqs := f.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if got := r.Header.Get("Authorization"); got != "Bearer s3cret" {
		t.Errorf("Authorization = %q, want the bearer token", got)
	}
	q := r.URL.Query()
	// Only ALIVE nodes, and more than the API's default limit of 100.
	if q.Get("filter_keys") != "state" || q.Get("filter_predicates") != "=" || q.Get("filter_values") != "ALIVE" ||
		q.Get("limit") != "10000" || q.Get("detail") != "true" {
		t.Errorf("query = %v, want detail, limit=10000 and state=ALIVE", q)
	}
}

func TestAliveNodesInsecureSendsNoToken(t *testing.T) {
	t.Parallel()
	f, srv := newFakeDashboard(t, http.StatusOK, nodesAnswer(0))
	nodes, err := dashboardClient{base: srv.URL, token: "s3cret", insecure: true}.aliveNodes(context.Background())
	if err != nil || len(nodes) != 0 {
		t.Fatalf("aliveNodes() = %v, %v; want none", nodes, err)
	}
	if got := f.requests()[0].Header.Get("Authorization"); got != "" {
		t.Errorf("insecure client sent Authorization %q", got)
	}
}

func TestAliveNodesErrors(t *testing.T) {
	t.Parallel()
	one := rayNodeJSON("abc", "127.0.0.12", "7", false, 1)
	tests := []struct {
		name    string
		status  int
		answer  string
		wantErr string
	}{
		{"truncated", http.StatusOK, nodesAnswer(150, one), "node list truncated: 1 of 150 alive nodes"},
		{"ray says no", http.StatusOK, `{"result": false, "msg": "Failed to get nodes: GCS unavailable", "data": {}}`, "node list: Failed to get nodes: GCS unavailable"},
		{"not json", http.StatusOK, `<html>proxy error</html>`, "decode node list"},
		{"cut short", http.StatusOK, nodesAnswer(1, one)[:80], "decode node list"},
		{"unauthorized", http.StatusUnauthorized, "Unauthorized: invalid token\n", "401 Unauthorized: Unauthorized: invalid token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, srv := newFakeDashboard(t, tt.status, tt.answer)
			nodes, err := dashboardClient{base: srv.URL, token: "t"}.aliveNodes(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("aliveNodes() = %v, %v; want an error containing %q", nodes, err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q spans lines", err)
			}
		})
	}
}

func TestHealthy(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.HandleFunc("/api/gcs_healthz", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer good" {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, "success")
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx := context.Background()
	if !(dashboardClient{base: srv.URL, token: "good"}).healthy(ctx) {
		t.Error("healthy() = false with the right token")
	}
	if (dashboardClient{base: srv.URL, token: "bad"}).healthy(ctx) {
		t.Error("healthy() = true with a wrong token")
	}
	srv.Close()
	if (dashboardClient{base: srv.URL, token: "good"}).healthy(ctx) {
		t.Error("healthy() = true with the dashboard gone")
	}
}

func TestMembershipTrackerRefresh(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := cluster.Dir{Path: t.TempDir()}
	f, srv := newFakeDashboard(t, http.StatusOK, nodesAnswer(3,
		rayNodeJSON("head6", "10.0.0.1", "6", true, 1),
		rayNodeJSON("work70", "10.0.0.2", "7_0", false, 2),
		rayNodeJSON("driver", "10.0.0.3", "", false, 0), // not one of our jobs' nodes
	))
	// The tracker stamps first/last seen from its clock: a fake one moves only
	// when told, so "later" is certain without sleeping on the real clock.
	clk := clocktest.New(time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC))
	m := newMembershipTracker(dir, dashboardClient{base: srv.URL, token: "t"}, clk)

	m.refresh(ctx)
	first, err := dir.Membership()
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Nodes) != 2 || first.Nodes["6"] == nil || first.Nodes["7_0"] == nil {
		t.Fatalf("after first refresh nodes = %v, want 6 and 7_0", first.Nodes)
	}
	w := *first.Nodes["7_0"]
	if !w.Alive || w.NodeID != "work70" || w.IP != "10.0.0.2" || w.GPUs != 2 || w.FirstSeen.IsZero() || !w.LastSeen.Equal(w.FirstSeen) {
		t.Errorf("7_0 after first refresh = %+v", w)
	}
	if first.Updated.IsZero() || first.SchemaVersion != cluster.SchemaVersion {
		t.Errorf("snapshot header = %v, schema %d", first.Updated, first.SchemaVersion)
	}

	// 7_0 vanishes: kept, not alive, first seen unchanged.
	clk.Advance(5 * time.Second)
	f.set(http.StatusOK, nodesAnswer(1, rayNodeJSON("head6", "10.0.0.1", "6", true, 1)))
	m.refresh(ctx)
	second, err := dir.Membership()
	if err != nil {
		t.Fatal(err)
	}
	gone := second.Nodes["7_0"]
	if gone == nil {
		t.Fatal("vanished node dropped from the snapshot; status could not tell lost from waiting")
	}
	if gone.Alive || !gone.FirstSeen.Equal(w.FirstSeen) || !gone.LastSeen.Equal(w.LastSeen) || gone.NodeID != "work70" {
		t.Errorf("vanished 7_0 = %+v; want not alive with first/last seen kept (%v)", *gone, w.FirstSeen)
	}
	if h := second.Nodes["6"]; !h.Alive || !h.FirstSeen.Equal(first.Nodes["6"].FirstSeen) || !h.LastSeen.After(first.Nodes["6"].LastSeen) {
		t.Errorf("head after second refresh = %+v", *h)
	}
	if !second.Updated.After(first.Updated) {
		t.Errorf("Updated did not advance: %v then %v", first.Updated, second.Updated)
	}

	// The same job back with a new Ray node is a new member.
	clk.Advance(5 * time.Second)
	f.set(http.StatusOK, nodesAnswer(1, rayNodeJSON("work70-again", "10.0.0.4", "7_0", false, 2)))
	m.refresh(ctx)
	third, _ := dir.Membership()
	if n := third.Nodes["7_0"]; !n.Alive || n.NodeID != "work70-again" || !n.FirstSeen.After(w.FirstSeen) {
		t.Errorf("restarted 7_0 = %+v; want a new entry", *n)
	}
	if third.Nodes["6"].Alive {
		t.Error("head still alive after it vanished from the answer")
	}

	// A failed query keeps the membership as it was, so its age shows, but
	// the heartbeat advances: the head's supervisor is alive.
	clk.Advance(5 * time.Second)
	f.set(http.StatusInternalServerError, "boom")
	m.refresh(ctx)
	fourth, _ := dir.Membership()
	if !fourth.Updated.Equal(third.Updated) || !reflect.DeepEqual(fourth.Nodes, third.Nodes) {
		t.Errorf("a failed query changed the membership: %+v", fourth)
	}
	if !fourth.Heartbeat.After(third.Heartbeat) {
		t.Errorf("heartbeat did not advance on a failed query: %v then %v", third.Heartbeat, fourth.Heartbeat)
	}
}

func TestNewMembershipTrackerKeepsHistory(t *testing.T) {
	t.Parallel()
	dir := cluster.Dir{Path: t.TempDir()}
	seen := time.Date(2025, 6, 1, 11, 0, 0, 0, time.UTC)
	if err := dir.WriteMembership(cluster.MembershipSnapshot{Updated: seen, Nodes: map[string]*cluster.MemberNode{
		"7": {NodeID: "n7", Alive: true, FirstSeen: seen, LastSeen: seen},
	}}); err != nil {
		t.Fatal(err)
	}
	// A restarted head supervisor still knows job 7 was a member.
	_, srv := newFakeDashboard(t, http.StatusOK, nodesAnswer(0))
	m := newMembershipTracker(dir, dashboardClient{base: srv.URL, token: "t"}, clocktest.New(seen.Add(time.Hour)))
	m.refresh(context.Background())
	snap, _ := dir.Membership()
	if n := snap.Nodes["7"]; n == nil || n.Alive || !n.FirstSeen.Equal(seen) {
		t.Errorf("job 7 after restart = %+v; want kept, not alive", n)
	}
}
