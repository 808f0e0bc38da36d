//go:build e2e

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestE2EWorkerTypes starts a cluster from a cluster file (with user and
// site defaults), grows it by a CPU-only type and checks what SLURM and Ray
// made of the type: the job's partition and GRES, the node's
// ray.io/node-group label and the type's resources and labels, and status's
// line per type.
func TestE2EWorkerTypes(t *testing.T) {
	e2eShare(t, 1) // the head's GPU; the cpu type holds none
	e := needE2E(t)
	start := time.Now()
	files := e.userDir(t, "cfg")
	write := func(name, content string) string {
		p := filepath.Join(files, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		e.user.give(t, p)
		return p
	}
	write("site.yaml", "object_store_mb: 80\nhead: {partition: debug}\n")
	if err := os.MkdirAll(filepath.Join(files, "xdg", "sraybatch"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(filepath.Join("xdg", "sraybatch", "config.yaml"), "head: {time: \"15:00\"}\n")
	e.user.give(t, filepath.Join(files, "xdg"))
	e.env = append(e.env, "SRAYBATCH_SITE_CONFIG="+filepath.Join(files, "site.yaml"), "XDG_CONFIG_HOME="+filepath.Join(files, "xdg"))
	file := write("types.yaml", fmt.Sprintf(`name: e2etypes
head: {gpus: 1}
setup: %q
workers:
  gpu: {gpus: 1, max: 2}
  cpu: {partition: debug, gpus: 0, cpus: 1, max: 3, resources: {decode: 2}, labels: {disk: nvme}}
`, e.setup))

	dry := e.mustSray(t, "up", "-f", file, "--dry-run")
	for _, want := range []string{"object_store_mb", "site " + filepath.Join(files, "site.yaml") + ":1", "user ", "--type cpu"} {
		if !strings.Contains(dry.stdout, want) {
			t.Errorf("dry run lacks %q", want)
		}
	}
	e.mustSray(t, "up", "-f", file, "--wait", "--timeout", "3m")
	t.Cleanup(func() { e.sray(t, "down", "--cluster", "e2etypes") })

	keys := strings.Fields(e.mustSray(t, "grow", "--cluster", "e2etypes", "--type", "cpu", "--wait", "--timeout", "3m").stdout)
	if len(keys) != 1 {
		t.Fatalf("grow printed %v, want one job", keys)
	}
	job := keys[0]
	out, err := exec.Command("squeue", "-h", "-j", job, "-o", "%P|%b").Output()
	if err != nil {
		t.Fatalf("squeue -j %s: %v", job, err)
	}
	if got := strings.TrimSpace(string(out)); got != "debug|N/A" {
		t.Errorf("cpu job's partition|gres = %q, want debug|N/A (no GPU held)", got)
	}

	var node *rayNodeReport
	for _, n := range e.rayNodes(t, "e2etypes") {
		if n.Job == job {
			node = &n
		}
	}
	if node == nil {
		t.Fatalf("job %s has no Ray node", job)
	}
	if node.Labels["ray.io/node-group"] != "cpu" || node.Labels["disk"] != "nvme" {
		t.Errorf("node labels = %v, want ray.io/node-group=cpu and disk=nvme", node.Labels)
	}
	if node.Resources["decode"] != 2 || node.Resources["GPU"] != 0 {
		t.Errorf("node resources = %v, want decode=2 and no GPU", node.Resources)
	}

	st := e.status(t, "e2etypes")
	if len(st.Types) != 2 || st.Types[0].Name != "gpu" || st.Types[1].Name != "cpu" || st.Types[1].Joined != 1 || st.Types[1].Max != 3 || st.Types[0].Joined != 0 {
		t.Errorf("status types = %+v", st.Types)
	}
	if j, ok := jobByID(st, job); !ok || j.Type != "cpu" {
		t.Errorf("status row of %s: %+v", job, j)
	}
	e.mustSray(t, "down", "--cluster", "e2etypes")
	t.Logf("worker types e2e: %s", time.Since(start).Round(time.Second))
}
