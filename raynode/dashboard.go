package raynode

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/sraybatch/sraybatch/internal/clock"
	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/oneline"
)

// dashboardClient talks to the head's dashboard on its localhost.
type dashboardClient struct {
	base     string
	token    string
	insecure bool
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

func (d dashboardClient) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.base+path, nil)
	if err != nil {
		return nil, err
	}
	if !d.insecure {
		req.Header.Set("Authorization", "Bearer "+d.token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, oneline.Of(string(body)))
	}
	return body, nil
}

func (d dashboardClient) healthy(ctx context.Context) bool {
	body, err := d.get(ctx, "/api/gcs_healthz")
	return err == nil && strings.Contains(string(body), "success")
}

// rayNode is one entry of the dashboard's state API (/api/v0/nodes).
type rayNode struct {
	NodeID         string             `json:"node_id"`
	NodeIP         string             `json:"node_ip"`
	State          string             `json:"state"`
	ResourcesTotal map[string]float64 `json:"resources_total"`
	StartTimeMs    int64              `json:"start_time_ms"`
}

// aliveNodes lists ALIVE nodes only: DEAD ones stay listed forever and the
// API's default limit is 100, which an elastic cluster passes quickly.
func (d dashboardClient) aliveNodes(ctx context.Context) ([]rayNode, error) {
	body, err := d.get(ctx, "/api/v0/nodes?detail=true&limit=10000&filter_keys=state&filter_predicates=%3D&filter_values=ALIVE")
	if err != nil {
		return nil, err
	}
	var resp struct {
		Result bool   `json:"result"`
		Msg    string `json:"msg"`
		Data   struct {
			Result struct {
				// NumFiltered counts the ALIVE nodes; "total" would count dead ones too.
				NumFiltered int       `json:"num_filtered"`
				Result      []rayNode `json:"result"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("decode node list: %w", err)
	}
	if !resp.Result {
		return nil, fmt.Errorf("node list: %s", resp.Msg)
	}
	if n := len(resp.Data.Result.Result); resp.Data.Result.NumFiltered > n {
		return nil, fmt.Errorf("node list truncated: %d of %d alive nodes", n, resp.Data.Result.NumFiltered)
	}
	return resp.Data.Result.Result, nil
}

// membershipTracker keeps membership.json: which job's node is alive, and
// which ever was (so status tells `lost` from `waiting`).
type membershipTracker struct {
	dir   cluster.Dir
	dash  dashboardClient
	clock clock.Clock
	snap  cluster.MembershipSnapshot
}

func newMembershipTracker(dir cluster.Dir, dash dashboardClient, clock clock.Clock) *membershipTracker {
	snap, err := dir.Membership()
	if err != nil {
		snap = cluster.MembershipSnapshot{}
	}
	if snap.Nodes == nil {
		snap.Nodes = map[string]*cluster.MemberNode{}
	}
	return &membershipTracker{dir: dir, dash: dash, clock: clock, snap: snap}
}

func (m *membershipTracker) refresh(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	now := m.clock.Now().UTC()
	m.snap.Heartbeat = now
	nodes, err := m.dash.aliveNodes(ctx)
	if err != nil {
		m.dir.WriteMembership(m.snap) // the heartbeat only: stale alive data ages
		return
	}
	seen := map[string]bool{}
	for _, n := range nodes {
		job, ok := cluster.JobOfResources(n.ResourcesTotal)
		if !ok {
			continue
		}
		seen[job] = true
		e := m.snap.Nodes[job]
		if e == nil || e.NodeID != n.NodeID {
			e = &cluster.MemberNode{NodeID: n.NodeID, FirstSeen: now, Registered: time.UnixMilli(n.StartTimeMs).UTC()}
			m.snap.Nodes[job] = e
		}
		e.IP, e.GPUs, e.Alive, e.LastSeen = n.NodeIP, n.ResourcesTotal["GPU"], true, now
	}
	for job, e := range m.snap.Nodes {
		if !seen[job] {
			e.Alive = false
		}
	}
	m.snap.Updated = now
	m.dir.WriteMembership(m.snap)
}
