package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/metrics"
)

// up stores --metrics-sd-dir as an absolute path and makes a scrape token
// of the cluster's own, apart from the Ray token; a directory that does not
// exist is a usage error that creates nothing.
func TestUpMetricsSDDir(t *testing.T) {
	t.Parallel()
	f := newUFixture(t)
	var s uStreams
	missing := filepath.Join(t.TempDir(), "nope")
	err := runUp(context.Background(), s.io(false), f.app, upOptions{Name: "exp1", Node: cluster.NodeSpec{GPUs: 1}, MetricsSDDir: missing})
	var ue usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--metrics-sd-dir") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("up with a missing --metrics-sd-dir = %v, want a one-line usage error naming the flag", err)
	}
	if got := storeEntries(t, f.app.store); len(got) != 0 {
		t.Errorf("rejected up left %v", got)
	}

	sd := t.TempDir()
	f.expectSbatch(cluster.RoleHead, "41", "")
	if err := runUp(context.Background(), s.io(false), f.app, upOptions{Name: "exp1", Node: cluster.NodeSpec{GPUs: 1}, MetricsSDDir: sd}); err != nil {
		t.Fatal(err)
	}
	dir := f.app.store.Cluster("exp1")
	spec, err := dir.Spec()
	if err != nil || spec.MetricsSDDir != sd {
		t.Fatalf("spec %+v, %v: want metrics_sd_dir %s", spec, err, sd)
	}
	scrape, err := os.ReadFile(dir.MetricsTokenPath())
	if err != nil {
		t.Fatal(err)
	}
	ray, _ := os.ReadFile(dir.TokenPath())
	if st, _ := os.Stat(dir.MetricsTokenPath()); st.Mode().Perm() != 0o600 || len(bytes.TrimSpace(scrape)) != 64 || bytes.Equal(scrape, ray) {
		t.Errorf("metrics-token: mode %v, %d hex digits, same as the Ray token %v; want 0600, 64, false", st.Mode().Perm(), len(bytes.TrimSpace(scrape)), bytes.Equal(scrape, ray))
	}
}

// down empties the cluster's Prometheus targets, the site's copy too.
func TestDownEmptiesTargets(t *testing.T) {
	t.Parallel()
	f := newUFixture(t)
	dir, spec := f.createCluster(t, "exp1", "41")
	spec.MetricsSDDir = t.TempDir()
	if err := cluster.WriteJSON(filepath.Join(dir.Path, "spec.json"), spec); err != nil {
		t.Fatal(err)
	}
	stale := []byte(`[{"targets":["10.0.0.1:20500"],"labels":{"cluster":"exp1"}}]`)
	if err := metrics.WriteTargets(dir, spec, stale); err != nil {
		t.Fatal(err)
	}
	f.expectClusterJobs(spec, squeueLine("41", "sray-exp1-head", "RUNNING", "None", "gpu01", "1:00:00", "1:00:00", "2:00:00"))
	f.stub.Register([]string{uProgs.Scancel, "41"}, "", nil)
	f.expectClusterJobs(spec, squeueLine("41", "sray-exp1-head", "CANCELLED", "None", "gpu01", "1:00:00", "0:00", "2:00:00"))
	var s uStreams
	if err := runDown(context.Background(), s.io(false), f.app, downOptions{Cluster: "exp1", Timeout: time.Minute}); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{dir.TargetsPath(), metrics.SDFile(spec)} {
		if b, err := os.ReadFile(path); err != nil || strings.TrimSpace(string(b)) != "[]" {
			t.Errorf("%s after down = %q, %v; want []", path, b, err)
		}
	}
}
