//go:build e2e

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/metrics"
	"github.com/sraybatch/sraybatch/raynode"
)

// prometheusConfig is the README's scrape config: the bearer token goes to
// sraybatch's endpoint only, Ray's exporters are scraped without it; the
// file_sd is the one cluster's file, since the token is the one cluster's.
const prometheusConfig = `global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: sraybatch
    honor_labels: true
    authorization:
      credentials_file: %[1]s
    file_sd_configs:
      - files: ['%[2]s']
    relabel_configs:
      - source_labels: [__sraybatch_endpoint]
        regex: sraybatch
        action: keep
  - job_name: ray
    file_sd_configs:
      - files: ['%[2]s']
    relabel_configs:
      - source_labels: [__sraybatch_endpoint]
        regex: ray
        action: keep
`

// TestE2EMetricsPrometheus: a real Prometheus finds a cluster of a head
// and a worker through --metrics-sd-dir, scrapes sraybatch's endpoint with
// the scrape token and each Ray node's exporter without it, and sees what
// status sees; the endpoint refuses no token and the Ray token; after down
// the targets are gone.
func TestE2EMetricsPrometheus(t *testing.T) {
	e2eShare(t, 2)
	e := needE2E(t)
	prometheus, err := exec.LookPath("prometheus")
	if err != nil {
		skipOutsideCI(t, "the end-to-end metrics test needs Debian's prometheus (apt-get install prometheus)")
	}
	sd, err := os.MkdirTemp("", "sraybatch-sd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sd) })
	if err := os.Chmod(sd, 0o755); err != nil { // the user's, which a site's Prometheus reads
		t.Fatal(err)
	}
	e.user.give(t, sd)
	const name = "e2emet"
	e.mustSray(t, "up", "--name", name, "--gpus-per-node", "1", "--time", "10:00", "--setup", e.setup, "--object-store-mb", "80",
		"--workers", "1", "--metrics-sd-dir", sd, "--wait", "--timeout", "3m")
	t.Cleanup(func() { e.sray(t, "down", "--cluster", name) })
	dir := cluster.Dir{Path: filepath.Join(e.home, "clusters", name)}
	spec, err := dir.Spec()
	if err != nil {
		t.Fatal(err)
	}
	sdFile := metrics.SDFile(spec)

	// Prometheus, on a free loopback port, with a copy of the scrape token.
	promDir := t.TempDir()
	token, err := os.ReadFile(dir.MetricsTokenPath())
	if err != nil {
		t.Fatal(err)
	}
	tokenCopy := filepath.Join(promDir, "sraybatch-token")
	if err := os.WriteFile(tokenCopy, token, 0o600); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(promDir, "prometheus.yml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(prometheusConfig, tokenCopy, sdFile)), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	promAddr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	prom := exec.CommandContext(ctx, prometheus, "--config.file="+config, "--storage.tsdb.path="+filepath.Join(promDir, "data"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	promLog, _ := os.Create(filepath.Join(promDir, "prometheus.log"))
	prom.Stdout, prom.Stderr = promLog, promLog
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		prom.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", logTail(promLog.Name(), 30))
		}
	})
	api := func(path string, q url.Values, v any) error {
		resp, err := http.Get("http://" + promAddr + path + "?" + q.Encode())
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		return json.NewDecoder(resp.Body).Decode(v)
	}

	type target struct {
		Labels     map[string]string `json:"labels"`
		ScrapePool string            `json:"scrapePool"`
		Health     string            `json:"health"`
		LastError  string            `json:"lastError"`
	}
	var targets []target
	waitFor(t, "Prometheus scrapes every target of the sd file", 60*time.Second, func() bool {
		var r struct {
			Data struct {
				ActiveTargets []target `json:"activeTargets"`
			} `json:"data"`
		}
		if api("/api/v1/targets", url.Values{"state": {"active"}}, &r) != nil {
			return false
		}
		targets = r.Data.ActiveTargets
		pools := map[string]int{}
		for _, tg := range targets {
			if tg.Health != "up" {
				return false
			}
			pools[tg.ScrapePool]++
		}
		return pools["sraybatch"] == 1 && pools["ray"] == 2 // the head's and the worker's Ray
	})
	for _, tg := range targets {
		if tg.Labels["cluster"] != name || tg.Labels["slurm_job_id"] == "" || tg.Labels["role"] == "" {
			t.Errorf("target %+v lacks the cluster, slurm_job_id or role label", tg.Labels)
		}
	}

	// sraybatch's series agree with status.
	st := e.status(t, name)
	wantJoined, wantJobs := 0, len(st.Jobs)
	for _, j := range st.Jobs {
		if j.Ray == cluster.MembershipJoined {
			wantJoined += j.GPUs
		}
	}
	if wantJoined != 2 || wantJobs != 2 {
		t.Fatalf("status: %d GPUs joined over %d jobs, want 2 over 2: %+v", wantJoined, wantJobs, st.Jobs)
	}
	query := func(expr string) (float64, bool) {
		var r struct {
			Data struct {
				Result []struct {
					Value [2]any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		if api("/api/v1/query", url.Values{"query": {expr}}, &r) != nil || len(r.Data.Result) != 1 {
			return 0, false
		}
		s, _ := r.Data.Result[0].Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		return v, err == nil
	}
	checks := map[string]float64{
		fmt.Sprintf(`sraybatch_gpus_joined{cluster=%q}`, name):                                         float64(wantJoined),
		fmt.Sprintf(`sum(sraybatch_jobs{cluster=%q})`, name):                                           float64(wantJobs),
		fmt.Sprintf(`sum(sraybatch_jobs{cluster=%q,membership="joined",slurm_state="RUNNING"})`, name): float64(wantJobs),
		fmt.Sprintf(`sraybatch_gpus_requested{cluster=%q}`, name):                                      float64(wantJoined),
		fmt.Sprintf(`sraybatch_ray_gpus{cluster=%q}`, name):                                            float64(wantJoined),
		fmt.Sprintf(`count(up{job="ray",cluster=%q} == 1)`, name):                                      2,
	}
	waitFor(t, "Prometheus's sraybatch series agree with status", 20*time.Second, func() bool {
		for expr, want := range checks {
			if got, ok := query(expr); !ok || got != want {
				return false
			}
		}
		return true
	})
	if v, ok := query(fmt.Sprintf(`sraybatch_head_time_left_seconds{cluster=%q}`, name)); !ok || v <= 0 || v > 600 {
		t.Errorf("head time left %v (%v), want within the 10-minute limit", v, ok)
	}

	// The endpoint: 401 without the scrape token, with the Ray token.
	h, _, err := dir.Head()
	if err != nil || h.Metrics == "" {
		t.Fatalf("head.json names no metrics endpoint: %+v, %v", h, err)
	}
	if host, _, _ := net.SplitHostPort(h.Metrics); host != strings.Split(st.Cluster.HeadAddress, ":")[0] {
		t.Errorf("metrics endpoint %s is not at the head's node address %s", h.Metrics, st.Cluster.HeadAddress)
	}
	rayToken, err := os.ReadFile(dir.TokenPath())
	if err != nil {
		t.Fatal(err)
	}
	for what, bearer := range map[string]string{"no token": "", "the Ray token": string(rayToken), "the scrape token": string(token)} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+h.Metrics+"/metrics", nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(bearer))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := http.StatusUnauthorized
		if what == "the scrape token" {
			want = http.StatusOK
		}
		if resp.StatusCode != want {
			t.Errorf("GET /metrics with %s: %s, want %d", what, resp.Status, want)
		}
	}
	if b, _ := os.ReadFile(sdFile); strings.Contains(string(b), strings.TrimSpace(string(token))) {
		t.Errorf("%s holds the scrape token", sdFile)
	}

	waitFor(t, "Ray's Grafana dashboards in the cluster directory", 20*time.Second, func() bool {
		files, _ := filepath.Glob(filepath.Join(raynode.GrafanaDir(dir), "*.json"))
		return len(files) > 0
	})

	e.mustSray(t, "down", "--cluster", name)
	for _, path := range []string{sdFile, dir.TargetsPath()} {
		if b, err := os.ReadFile(path); err != nil || strings.TrimSpace(string(b)) != "[]" {
			t.Errorf("%s after down = %q (%v), want []", path, b, err)
		}
	}
}
