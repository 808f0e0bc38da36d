package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/clock/clocktest"
	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/raynode"
)

func TestSelectLogJobs(t *testing.T) {
	t.Parallel()
	subs := []cluster.Submission{
		{Role: cluster.RoleHead, JobID: "41"},
		{Role: cluster.RoleWorker, JobID: "42", Tasks: 2},
		{Role: cluster.RoleDriver, JobID: "43"},
	}
	tests := []struct {
		job, role string
		want      []string // job keys; nil: a usage error
		errHas    string
	}{
		{job: "43", want: []string{"43"}},
		{job: "42_1", want: []string{"42_1"}},
		{job: "42", want: []string{"42_0", "42_1"}},
		{role: "worker", want: []string{"42_0", "42_1"}},
		{role: "head", want: []string{"41"}},
		{job: "99", errHas: `no job "99"; its jobs: 41 head, 42_0 worker, 42_1 worker, 43 driver`},
		{job: "41", role: "head", errHas: "not both"},
		{errHas: "name a JOB or a --role"},
		{role: "gpu", errHas: `invalid --role "gpu"`},
	}
	for _, tt := range tests {
		got, err := selectLogJobs(subs, tt.job, tt.role)
		var keys []string
		for _, g := range got {
			keys = append(keys, g.key)
		}
		var ue usageError
		switch {
		case tt.want == nil && (!errors.As(err, &ue) || !strings.Contains(err.Error(), tt.errHas)):
			t.Errorf("job %q role %q: %v, want a usage error saying %q", tt.job, tt.role, err, tt.errHas)
		case tt.want != nil && (err != nil || !slices.Equal(keys, tt.want)):
			t.Errorf("job %q role %q: %v, %v; want %v", tt.job, tt.role, keys, err, tt.want)
		}
	}
	if _, err := selectLogJobs(subs[:1], "", "driver"); err == nil || !strings.Contains(err.Error(), "no driver job") {
		t.Errorf("a role without jobs: %v", err)
	}
}

func TestLastLines(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		n    int
		want string
	}{
		{"a\nb\nc\n", 0, "a\nb\nc\n"},
		{"a\nb\nc\n", 2, "b\nc\n"},
		{"a\nb\nc", 2, "b\nc"},
		{"a\nb\n", 5, "a\nb\n"},
		{"", 3, ""},
	} {
		if got := string(lastLines([]byte(tt.in), tt.n)); got != tt.want {
			t.Errorf("lastLines(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

// logsCluster is runningCluster with output for the head and the first
// worker, and copies of the head's Ray logs.
func logsCluster(t *testing.T, f *uFixture) cluster.Spec {
	t.Helper()
	spec := runningCluster(t, f)
	if err := os.MkdirAll(spec.LogDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for key, text := range map[string]string{"41": "head line 1\nhead line 2\n", "42_0": "worker line 1\n"} {
		role := cluster.RoleWorker
		if key == "41" {
			role = cluster.RoleHead
		}
		if err := os.WriteFile(cluster.JobLog(spec.LogDir, spec.Name, role, key), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ray := raynode.RayLogDir(spec.LogDir, "41")
	if err := os.MkdirAll(ray, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{"gcs_server.out": "GCS started\n", "raylet.out": "raylet started\n", "dashboard.log": "not shown\n"} {
		if err := os.WriteFile(filepath.Join(ray, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Worker 42_0 of a rollover cluster: a worker in generation 1, promoted
	// to the head of generation 2, still the head in generation 10.
	for gen, files := range map[int]map[string]string{
		1:  {"raylet.out": "worker raylet g1\n"},
		2:  {"gcs_server.out": "GCS g2\n", "raylet.out": "head raylet g2\n"},
		10: {"raylet.out": "head raylet g10\n"},
	} {
		dir := raynode.RayLogDirOf(spec.LogDir, "42_0", gen)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		for name, text := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	return spec
}

func TestLogs(t *testing.T) {
	t.Parallel()
	f := newUFixture(t)
	spec := logsCluster(t, f)
	w0 := cluster.JobLog(spec.LogDir, spec.Name, cluster.RoleWorker, "42_0")
	ray := raynode.RayLogDir(spec.LogDir, "41")
	tests := []struct {
		name    string
		o       logsOptions
		want    string
		wantErr string // on stderr
	}{
		{"one job: its output, no header", logsOptions{Job: "41"}, "head line 1\nhead line 2\n", ""},
		{"--lines", logsOptions{Job: "41", Lines: 1}, "head line 2\n", ""},
		{"a role: each job after a header", logsOptions{Role: "worker"},
			"==> worker 42_0: " + w0 + " <==\nworker line 1\n", "no output yet from worker 42_1"},
		{"--ray: the head's GCS and raylet", logsOptions{Job: "41", Ray: true},
			"==> head 41: " + filepath.Join(ray, "gcs_server.out") + " <==\nGCS started\n\n==> head 41: " + filepath.Join(ray, "raylet.out") + " <==\nraylet started\n", ""},
		{"--ray of a promoted worker: each generation's copies, in order", logsOptions{Job: "42_0", Ray: true},
			"==> worker 42_0: " + filepath.Join(spec.LogDir, "ray-42_0", "raylet.out") + " <==\nworker raylet g1\n\n" +
				"==> worker 42_0: " + filepath.Join(spec.LogDir, "ray-42_0.g2", "gcs_server.out") + " <==\nGCS g2\n\n" +
				"==> worker 42_0: " + filepath.Join(spec.LogDir, "ray-42_0.g2", "raylet.out") + " <==\nhead raylet g2\n\n" +
				"==> worker 42_0: " + filepath.Join(spec.LogDir, "ray-42_0.g10", "raylet.out") + " <==\nhead raylet g10\n", ""},
		{"--ray before anything was copied", logsOptions{Job: "42_1", Ray: true}, "", "no Ray logs copied yet for 42_1 worker"},
		{"a pending job", logsOptions{Job: "42_1"}, "", "no output yet from worker 42_1: "},
	}
	for _, tt := range tests {
		var s uStreams
		if err := runLogs(context.Background(), s.io(false), f.app, logsOptions{Cluster: "exp1", Job: tt.o.Job, Role: tt.o.Role, Ray: tt.o.Ray, Lines: tt.o.Lines}); err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if s.out.String() != tt.want {
			t.Errorf("%s: printed\n%s\nwant\n%s", tt.name, s.out.String(), tt.want)
		}
		if !strings.Contains(s.errOut.String(), tt.wantErr) || (tt.wantErr == "" && s.errOut.Len() > 0) {
			t.Errorf("%s: stderr %q, want %q", tt.name, s.errOut.String(), tt.wantErr)
		}
	}
}

func TestLogsBadInput(t *testing.T) {
	t.Parallel()
	f := newUFixture(t)
	logsCluster(t, f)
	for _, o := range []logsOptions{
		{Cluster: "exp1", Job: "99"},
		{Cluster: "exp1", Job: "41", Role: "head"},
		{Cluster: "exp1"},
		{Cluster: "exp1", Role: "boss"},
		{Cluster: "exp1", Job: "41", Lines: -1},
		{Cluster: "nope", Job: "41"},
	} {
		var s uStreams
		err := runLogs(context.Background(), s.io(false), f.app, o)
		var ue usageError
		if !errors.As(err, &ue) && !errors.Is(err, cluster.ErrNotFound) {
			t.Errorf("%+v: %v, want a usage error", o, err)
		}
		if code := exitCode(s.io(false), "logs", err); o.Cluster == "exp1" && code != exitUsage {
			t.Errorf("%+v: exit %d, want %d", o, code, exitUsage)
		}
		if strings.Count(s.errOut.String(), "\n") != 1 {
			t.Errorf("%+v: want one line on stderr, got %q", o, s.errOut.String())
		}
	}
	var s uStreams
	if code := run(context.Background(), s.io(false), []string{"logs", "41", "42"}); code != exitUsage {
		t.Errorf("two JOBs: exit %d, want %d", code, exitUsage)
	}
}

// logs -f prints what each of its jobs writes, as it comes, until they have
// ended (and once more for the last lines).
func TestLogsFollow(t *testing.T) {
	t.Parallel()
	f := newUFixture(t)
	spec := logsCluster(t, f)
	expectRunningJobs(f, spec)
	expectEndedJobs(f, spec)
	expectEndedJobs(f, spec)
	clk := clocktest.New(time.Now())
	f.app.clock = clk
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- runLogs(context.Background(), IOStreams{Out: &out, ErrOut: &errOut}, f.app, logsOptions{Cluster: "exp1", Role: "worker", Follow: true})
	}()
	clk.WaitAfterCalls(0)
	w0 := cluster.JobLog(spec.LogDir, spec.Name, cluster.RoleWorker, "42_0")
	w1 := cluster.JobLog(spec.LogDir, spec.Name, cluster.RoleWorker, "42_1")
	appendTo := func(path, s string) {
		fh, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		fh.WriteString(s)
		fh.Close()
	}
	appendTo(w1, "second worker starts\n")
	appendTo(w0, "worker line 2\n")
	clk.Advance(logsEvery)
	clk.WaitAfterCalls(1)
	appendTo(w0, "worker line 3\n")
	clk.Advance(logsEvery)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("logs -f did not end with its jobs")
	}
	want := "==> worker 42_0: " + w0 + " <==\nworker line 1\nworker line 2\n\n" +
		"==> worker 42_1: " + w1 + " <==\nsecond worker starts\n\n" +
		"==> worker 42_0: " + w0 + " <==\nworker line 3\n"
	if out.String() != want {
		t.Errorf("printed\n%s\nwant\n%s", out.String(), want)
	}
}
