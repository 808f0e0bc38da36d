package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

// runningCluster is cluster exp1 with head 41 and worker array 42 (two
// tasks): the head and 42_0 joined, 42_1 still pending.
func runningCluster(t *testing.T, f *uFixture) cluster.Spec {
	t.Helper()
	dir, spec := f.createCluster(t, "exp1", "41")
	now := time.Now().UTC()
	if err := dir.AddSubmission(cluster.Submission{Role: cluster.RoleWorker, JobID: "42", Tasks: 2, Submitted: now.Add(-30 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if err := dir.WriteHead(cluster.HeadInfo{Job: "41", Address: "10.1.2.3:20000", NodeIP: "10.1.2.3", Dashboard: "http://127.0.0.1:20001", SlurmNode: "gpu01"}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []cluster.NodeRecord{
		{Job: "41", Role: cluster.RoleHead, Phase: cluster.PhaseRunning, SlurmNode: "gpu01", IP: "10.1.2.3", GPUs: 1},
		{Job: "42_0", Role: cluster.RoleWorker, Phase: cluster.PhaseRunning, SlurmNode: "gpu02", IP: "10.1.2.4", GPUs: 1},
	} {
		if err := dir.WriteNode(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := dir.WriteMembership(cluster.MembershipSnapshot{Updated: now, Nodes: map[string]*cluster.MemberNode{
		"41":   {NodeID: "aaaabbbbccccdddd", IP: "10.1.2.3", GPUs: 1, Alive: true, FirstSeen: now, LastSeen: now},
		"42_0": {NodeID: "eeeeffff00001111", IP: "10.1.2.4", GPUs: 1, Alive: true, FirstSeen: now, LastSeen: now},
	}}); err != nil {
		t.Fatal(err)
	}
	return spec
}

func expectRunningJobs(f *uFixture, spec cluster.Spec) {
	f.expectClusterJobs(spec,
		squeueLine("41", "sray-exp1-head", "RUNNING", "None", "gpu01", "1:00:00", "1:00:00", "2:00:00"),
		squeueLine("42_0", "sray-exp1-worker", "RUNNING", "None", "gpu02", "30:00", "30:00", "1:00:00"),
		squeueLine("42_1", "sray-exp1-worker", "PENDING", "Resources", "", "0:00", "1:00:00", "1:00:00"),
	)
}

func TestStatusJSON(t *testing.T) {
	t.Parallel()
	f := newUFixture(t)
	spec := runningCluster(t, f)
	expectRunningJobs(f, spec)
	var s uStreams
	if err := runStatus(context.Background(), s.io(true), f.app, statusOptions{Cluster: "exp1", Output: "json"}); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Cluster map[string]any   `json:"cluster"`
		Jobs    []map[string]any `json:"jobs"`
	}
	if err := json.Unmarshal(s.out.Bytes(), &doc); err != nil {
		t.Fatalf("status -o json is not JSON: %v\n%s", err, s.out.String())
	}
	for k, v := range map[string]any{
		"name": "exp1", "id": "id-exp1", "state": "running", "head_address": "10.1.2.3:20000", "dashboard": "http://127.0.0.1:20001",
	} {
		if doc.Cluster[k] != v {
			t.Errorf("cluster.%s = %v, want %v", k, doc.Cluster[k], v)
		}
	}
	want := []map[string]any{
		{"role": "head", "job_id": "41", "slurm_state": "RUNNING", "node": "gpu01", "ray": "joined", "ray_node_id": "aaaabbbbccccdddd", "time_left_s": 3600.0, "gpus": 1.0},
		{"role": "worker", "job_id": "42_0", "slurm_state": "RUNNING", "node": "gpu02", "ray": "joined", "time_left_s": 1800.0},
		{"role": "worker", "job_id": "42_1", "slurm_state": "PENDING", "reason": "Resources", "ray": "waiting", "ray_node_id": ""},
	}
	if len(doc.Jobs) != len(want) {
		t.Fatalf("jobs = %v, want %d", doc.Jobs, len(want))
	}
	for i, w := range want {
		for k, v := range w {
			if got, ok := doc.Jobs[i][k]; !ok || got != v {
				t.Errorf("jobs[%d].%s = %v (present %v), want %v", i, k, got, ok, v)
			}
		}
	}
	if s.errOut.Len() != 0 {
		t.Errorf("stderr = %q, want nothing", s.errOut.String())
	}
}

func TestStatusTSV(t *testing.T) {
	t.Parallel()
	f := newUFixture(t)
	spec := runningCluster(t, f)
	expectRunningJobs(f, spec)
	var s uStreams
	// Piped and no --output: TSV.
	if err := runStatus(context.Background(), s.io(false), f.app, statusOptions{Cluster: "exp1"}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(s.out.String(), "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("TSV has %d lines, want a header and 3 jobs:\n%s", len(lines), s.out.String())
	}
	header := strings.Split(lines[0], "\t")
	if len(header) != len(jobColumns)+2 || header[0] != "CLUSTER" || header[1] != "STATE" || header[2] != "ROLE" || header[3] != "JOB" {
		t.Errorf("header = %q", header)
	}
	col := map[string]int{}
	for i, h := range header {
		col[h] = i
	}
	for i, want := range []struct{ job, slurm, ray string }{
		{"41", "RUNNING", "joined"}, {"42_0", "RUNNING", "joined"}, {"42_1", "PENDING", "waiting"},
	} {
		fields := strings.Split(lines[i+1], "\t")
		if len(fields) != len(header) {
			t.Errorf("line %d has %d fields, header %d: %q", i+1, len(fields), len(header), lines[i+1])
			continue
		}
		if fields[0] != "exp1" || fields[1] != "running" || fields[col["JOB"]] != want.job ||
			fields[col["SLURM"]] != want.slurm || fields[col["RAY"]] != want.ray {
			t.Errorf("line %d = %q, want job %s %s %s", i+1, fields, want.job, want.slurm, want.ray)
		}
	}
	if strings.Contains(s.out.String(), "\x1b[") {
		t.Error("TSV holds terminal escapes")
	}
}

func TestStatusTableOnTTY(t *testing.T) {
	t.Parallel()
	f := newUFixture(t)
	spec := runningCluster(t, f)
	expectRunningJobs(f, spec)
	var s uStreams
	if err := runStatus(context.Background(), s.io(true), f.app, statusOptions{}); err != nil {
		t.Fatal(err)
	}
	out := s.out.String()
	first, _, _ := strings.Cut(out, "\n")
	for _, want := range []string{"cluster exp1", "id id-exp1", "state running", "head 10.1.2.3:20000", "dashboard http://127.0.0.1:20001 (on gpu01)"} {
		if !strings.Contains(first, want) {
			t.Errorf("cluster line %q lacks %q", first, want)
		}
	}
	for _, want := range []string{"ROLE", "TIME LEFT", "42_1", "Resources", "aaaabbbb", "1h0m0s", "│"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "aaaabbbbccccdddd") {
		t.Errorf("table shows the full Ray node id; want it shortened:\n%s", out)
	}
}

func TestStatusSlurmUnavailable(t *testing.T) {
	t.Parallel()
	f := newUFixture(t)
	spec := runningCluster(t, f)
	f.stub.Fail(clusterSqueue(spec), "squeue: error: slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n")
	var s uStreams
	if err := runStatus(context.Background(), s.io(false), f.app, statusOptions{Output: "json"}); err != nil {
		t.Fatalf("status without SLURM = %v, want the last recorded state", err)
	}
	var st cluster.Status
	if err := json.Unmarshal(s.out.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.Cluster.SlurmError, "Unable to contact slurm controller") {
		t.Errorf("slurm_error = %q", st.Cluster.SlurmError)
	}
	for _, j := range st.Jobs {
		if j.Ray == cluster.MembershipFailed || j.SlurmState == cluster.SlurmGone {
			t.Errorf("job %s marked %s/%s only because squeue failed", j.JobID, j.Ray, j.SlurmState)
		}
	}

	// In a table or TSV the SLURM columns are empty, so stderr says why.
	f.stub.Fail(clusterSqueue(spec), "squeue: error: slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n")
	var tsv uStreams
	if err := runStatus(context.Background(), tsv.io(false), f.app, statusOptions{Output: "tsv"}); err != nil {
		t.Fatal(err)
	}
	if w := tsv.errOut.String(); !strings.HasPrefix(w, "warning: cluster exp1: ") || strings.Count(w, "\n") != 1 ||
		!strings.Contains(w, "Unable to contact slurm controller") {
		t.Errorf("stderr = %q, want one warning line with SLURM's reason", w)
	}
	if strings.Contains(tsv.out.String(), "failed") || strings.Count(tsv.out.String(), "\n") != 4 {
		t.Errorf("TSV without SLURM:\n%s", tsv.out.String())
	}
}

func TestStatusAllJSON(t *testing.T) {
	t.Parallel()
	f := newUFixture(t)
	specB := runningCluster(t, f)
	dirA, specA := f.createCluster(t, "alpha", "7")
	if err := dirA.MarkDown(time.Now()); err != nil {
		t.Fatal(err)
	}
	f.expectClusterJobs(specA) // squeue has forgotten alpha's jobs
	expectRunningJobs(f, specB)
	var s uStreams
	if err := runStatus(context.Background(), s.io(false), f.app, statusOptions{All: true, Output: "json"}); err != nil {
		t.Fatal(err)
	}
	var all []cluster.Status
	if err := json.Unmarshal(s.out.Bytes(), &all); err != nil {
		t.Fatalf("status --all -o json: %v\n%s", err, s.out.String())
	}
	if len(all) != 2 || all[0].Cluster.Name != "alpha" || all[1].Cluster.Name != "exp1" {
		t.Fatalf("clusters = %+v, want alpha then exp1", all)
	}
	if all[0].Cluster.State != cluster.StateEnded || all[0].Jobs[0].Ray != cluster.MembershipEnded || all[0].Jobs[0].SlurmState != cluster.SlurmGone {
		t.Errorf("downed alpha = %+v", all[0])
	}
}

func TestStatusBadOutput(t *testing.T) {
	t.Parallel()
	f := newUFixture(t)
	err := runStatus(context.Background(), IOStreams{}, f.app, statusOptions{Output: "yaml"})
	var ue usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), `invalid --output "yaml"`) {
		t.Errorf("runStatus -o yaml = %v, want a usage error", err)
	}
}

// NO_COLOR keeps the styled table but drops the colours: they are decided
// once (IOStreams.Color), not by whether Out is a terminal.
func TestStatusTableColor(t *testing.T) {
	t.Parallel()
	for _, color := range []bool{false, true} {
		f := newUFixture(t)
		spec := runningCluster(t, f)
		expectRunningJobs(f, spec)
		var s uStreams
		io := s.io(true)
		io.Color = color
		if err := runStatus(context.Background(), io, f.app, statusOptions{}); err != nil {
			t.Fatal(err)
		}
		out := s.out.String()
		if !strings.Contains(out, "│") {
			t.Errorf("color %v: not the styled table:\n%s", color, out)
		}
		// go-pretty itself also drops colours under NO_COLOR or TERM=dumb.
		goPrettyColors := os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb"
		if has := strings.Contains(out, "\x1b["); has != (color && goPrettyColors) {
			t.Errorf("color %v: ANSI escapes in the table: %v\n%q", color, has, out)
		}
	}
}
