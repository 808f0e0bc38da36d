package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/clock/clocktest"
	"github.com/sraybatch/sraybatch/internal/cluster"
)

// reportCluster makes a store holding cluster exp1: head 41 started and
// still running, worker 42 pending. It returns the app and a directory to
// write pages into.
func reportCluster(t *testing.T) (*app, cluster.Dir, string) {
	t.Helper()
	a := &app{store: cluster.Store{Root: filepath.Join(t.TempDir(), "clusters")}, clock: clocktest.New(time.Now())}
	dir, err := a.store.Create(uSpec("exp1"), "")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	for _, sub := range []cluster.Submission{
		{Role: cluster.RoleHead, JobID: "41", Submitted: now.Add(-10 * time.Minute)},
		{Role: cluster.RoleWorker, JobID: "42", Submitted: now.Add(-5 * time.Minute)},
	} {
		if err := dir.AddSubmission(sub); err != nil {
			t.Fatal(err)
		}
	}
	if err := dir.WriteNode(cluster.NodeRecord{Job: "41", Role: cluster.RoleHead, Phase: cluster.PhaseRunning, GPUs: 1, Started: now.Add(-9 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	return a, dir, t.TempDir()
}

func TestReportWritesThePage(t *testing.T) {
	t.Parallel()
	a, _, out := reportCluster(t)
	path := filepath.Join(out, "exp1.html")
	var s uStreams
	if err := runReport(s.io(false), a, reportOptions{Output: path}); err != nil {
		t.Fatal(err)
	}
	if s.out.String() != path+"\n" {
		t.Errorf("stdout = %q, want the page's path", s.out.String())
	}
	if !strings.Contains(s.errOut.String(), "report of 2 jobs written to "+path) {
		t.Errorf("stderr = %q", s.errOut.String())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, want := range []string{`<tr data-job="41" data-role="head">`, `<tr data-job="42" data-role="worker">`, `id="gpu-hours-slurm"`, "Content-Security-Policy"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("page mode %v (%v), want 0644: a page is made to be shared", st.Mode().Perm(), err)
	}
	if left := entries(t, out); len(left) != 1 {
		t.Errorf("the output directory holds %v, want the page alone (no temp file)", left)
	}
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// Bad input is one line, exit 2 (a usage error) and no file; a failure
// while reading leaves an earlier page as it was, with no temp file beside it.
func TestReportBadInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		setup   func(t *testing.T, a *app, dir cluster.Dir, out string) reportOptions
		usage   bool
		message string
	}{
		{"no --output", func(t *testing.T, a *app, dir cluster.Dir, out string) reportOptions {
			return reportOptions{Cluster: "exp1"}
		}, true, "give --output FILE"},
		{"--output into a missing directory", func(t *testing.T, a *app, dir cluster.Dir, out string) reportOptions {
			return reportOptions{Cluster: "exp1", Output: filepath.Join(out, "missing", "r.html")}
		}, true, "missing does not exist: create it or choose another --output"},
		{"--output names a directory", func(t *testing.T, a *app, dir cluster.Dir, out string) reportOptions {
			return reportOptions{Cluster: "exp1", Output: out}
		}, true, "is a directory"},
		{"no such cluster", func(t *testing.T, a *app, dir cluster.Dir, out string) reportOptions {
			return reportOptions{Cluster: "nosuch", Output: filepath.Join(out, "r.html")}
		}, true, `cluster "nosuch": cluster not found`},
		{"no live cluster and none named", func(t *testing.T, a *app, dir cluster.Dir, out string) reportOptions {
			if err := dir.MarkDown(time.Now()); err != nil {
				t.Fatal(err)
			}
			return reportOptions{Output: filepath.Join(out, "r.html")}
		}, true, "name one that was taken down with --cluster (exp1)"},
		{"a corrupt record", func(t *testing.T, a *app, dir cluster.Dir, out string) reportOptions {
			if err := os.WriteFile(filepath.Join(dir.Path, "nodes", "41.json"), []byte("{torn"), 0o600); err != nil {
				t.Fatal(err)
			}
			return reportOptions{Cluster: "exp1", Output: filepath.Join(out, "r.html")}
		}, false, "is corrupt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, dir, out := reportCluster(t)
			earlier := filepath.Join(out, "r.html")
			if err := os.WriteFile(earlier, []byte("the earlier page"), 0o644); err != nil {
				t.Fatal(err)
			}
			o := tt.setup(t, a, dir, out)
			var s uStreams
			err := runReport(s.io(false), a, o)
			var ue usageError
			switch {
			case err == nil:
				t.Fatal("no error")
			case errors.As(err, &ue) != tt.usage:
				t.Errorf("%v: usage error %v, want %v", err, !tt.usage, tt.usage)
			case !strings.Contains(err.Error(), tt.message):
				t.Errorf("error %q lacks %q", err, tt.message)
			}
			if code := exitCode(s.io(false), "report", err); (code == exitUsage) != tt.usage || code == exitOK {
				t.Errorf("exit %d", code)
			}
			if lines := strings.Count(s.errOut.String(), "\n"); lines != 1 {
				t.Errorf("stderr has %d lines, want one: %q", lines, s.errOut.String())
			}
			if b, _ := os.ReadFile(earlier); string(b) != "the earlier page" {
				t.Errorf("the earlier page was changed to %.80q", b)
			}
			if left := entries(t, out); len(left) != 1 {
				t.Errorf("the output directory holds %v, want the earlier page alone", left)
			}
		})
	}
}

// The command line: -o and -c, and the exit code main returns.
func TestReportCommandLine(t *testing.T) {
	a, _, out := reportCluster(t)
	t.Setenv("SRAYBATCH_HOME", filepath.Dir(a.store.Root))
	var s uStreams
	path := filepath.Join(out, "r.html")
	if code := run(context.Background(), s.io(false), []string{"report", "-c", "exp1", "-o", path}); code != exitOK {
		t.Fatalf("exit %d: %s", code, s.errOut.String())
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	s = uStreams{}
	if code := run(context.Background(), s.io(false), []string{"report", "-c", "exp1", "-o", filepath.Join(out, "no", "r.html")}); code != exitUsage {
		t.Errorf("-o into a missing directory: exit %d, want %d", code, exitUsage)
	}
	if !strings.HasPrefix(s.errOut.String(), "sraybatch report: --output ") || strings.Count(s.errOut.String(), "\n") != 1 {
		t.Errorf("stderr = %q, want one line", s.errOut.String())
	}
}
