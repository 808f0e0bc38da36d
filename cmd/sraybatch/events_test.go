package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/clock/clocktest"
	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/events"
	"github.com/sraybatch/sraybatch/internal/goldentest"
	"github.com/sraybatch/sraybatch/internal/timeline"
)

// goldenTimeline is a small cluster's life: head and a worker submitted,
// started, joined; a driver stepping; the worker warned and drained; down.
func goldenTimeline(t *testing.T) []timeline.Event {
	t.Helper()
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	lines := func(ls ...string) []events.Event {
		path := filepath.Join(t.TempDir(), "e.jsonl")
		if err := os.WriteFile(path, []byte(strings.Join(ls, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		evs, err := events.ReadAll(path)
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}
	ts := func(s float64) string { b, _ := json.Marshal(events.TS(at(s))); return string(b) }
	limit := at(300)
	return timeline.Merge(timeline.Sources{
		DrainBefore: 120 * time.Second,
		Submissions: []cluster.Submission{
			{Role: cluster.RoleHead, JobID: "160", Submitted: at(0)},
			{Role: cluster.RoleDriver, JobID: "161", Submitted: at(4)},
			{Role: cluster.RoleWorker, JobID: "162", Tasks: 1, Submitted: at(5)},
		},
		Records: map[string]cluster.NodeRecord{
			"160":   {Job: "160", Role: cluster.RoleHead, Phase: cluster.PhaseEnded, Outcome: cluster.OutcomeCancelled, Reason: "cancelled (terminated)", SlurmNode: "node1", Started: at(0.5), Updated: at(200.2)},
			"162_0": {Job: "162_0", Role: cluster.RoleWorker, Phase: cluster.PhaseEnded, Outcome: cluster.OutcomeDrainedTimeLimit, Reason: "drained before the time limit", SlurmNode: "node2", Started: at(5.5), Updated: at(190), TimeLimitAt: &limit},
		},
		Head: &cluster.HeadInfo{Job: "160", Address: "10.0.0.11:20657", SlurmNode: "node1", RayVersion: "2.60.0", Published: at(2.1)},
		Down: &cluster.DownRequest{Requested: at(200)},
		Cluster: lines(
			`{"ts": `+ts(2.2)+`, "event": "job_state", "job": "160", "role": "head", "slurm_state": "RUNNING", "membership": "joined", "gpus": 1}`,
			`{"ts": `+ts(7)+`, "event": "job_state", "job": "162_0", "role": "worker", "slurm_state": "RUNNING", "membership": "joined", "gpus": 1}`,
			`{"ts": `+ts(7)+`, "event": "cluster_sample", "gpus_requested": 2, "gpus_joined": 2, "gpus_allocated": 2, "jobs": 3}`,
			`{"ts": `+ts(181)+`, "event": "job_state", "job": "162_0", "role": "worker", "slurm_state": "RUNNING", "membership": "draining", "gpus": 1}`,
		),
		Drivers: map[string][]events.Event{"161": lines(
			`{"ts": `+ts(7.5)+`, "event": "node_joined", "node_id": "bc9d0831aa55aa55aa55aa55aa55aa55", "job": "162_0", "gpus": 1}`,
			`{"ts": `+ts(9)+`, "event": "step_done", "step": 0, "actors": 2, "mean_duration_s": 0.5012, "losses": [9.0, 8.5]}`,
			`{"ts": `+ts(200.5)+`, "event": "driver_stopping", "reason": "SIGTERM"}`,
		)},
	})
}

func TestEventsOutputGolden(t *testing.T) {
	t.Parallel()
	evs := goldenTimeline(t)
	for _, format := range []string{"table", "tsv", "json"} {
		var out bytes.Buffer
		p := eventPrinter{w: &out, format: format, loc: time.UTC}
		if err := p.print(evs); err != nil {
			t.Fatal(err)
		}
		goldentest.Check(t, filepath.Join("testdata", "events."+format+".golden"), out.Bytes())
	}
}

// A terminal's table printed in batches (--follow) keeps one header and
// its columns' widths.
func TestEventsTableBatchesLineUp(t *testing.T) {
	t.Parallel()
	evs := goldenTimeline(t)
	var whole, batched bytes.Buffer
	(&eventPrinter{w: &whole, format: "table", loc: time.UTC}).print(evs)
	p := eventPrinter{w: &batched, format: "table", loc: time.UTC}
	p.print(evs[:3])
	p.print(nil)
	p.print(evs[3:4])
	if strings.Count(batched.String(), "TIME") != 1 {
		t.Errorf("header repeated:\n%s", batched.String())
	}
	wholeLines := strings.Split(whole.String(), "\n")
	batchLines := strings.Split(batched.String(), "\n")
	// header, rule (as wide as the batch's widest details), three rows;
	// then the fourth row as its own batch
	for i, want := range wholeLines[:5] {
		if i != 1 && batchLines[i] != want {
			t.Errorf("line %d:\n got %q\nwant %q", i, batchLines[i], want)
		}
	}
	if batchLines[5] != wholeLines[5] {
		t.Errorf("second batch's row does not line up:\n got %q\nwant %q", batchLines[5], wholeLines[5])
	}
}

// events -f prints each event once as it appears and ends by itself once
// every job of the cluster has ended.
func TestEventsFollow(t *testing.T) {
	t.Parallel()
	f := newUFixture(t)
	spec := runningCluster(t, f)
	dir := f.app.store.Cluster("exp1")
	expectRunningJobs(f, spec)
	expectRunningJobs(f, spec)
	expectEndedJobs(f, spec)
	now := time.Now()
	appendEvent := func(e events.FileEvent) {
		if err := events.Append(dir.ClusterEventsPath(), e); err != nil {
			t.Fatal(err)
		}
	}
	appendEvent(events.JobState{Stamp: events.At(now), Job: "42_0", Role: cluster.RoleWorker, SlurmState: "RUNNING", Membership: cluster.MembershipJoined, GPUs: 1})

	clk := clocktest.New(now)
	f.app.clock = clk
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- runEvents(context.Background(), IOStreams{Out: &out, ErrOut: &errOut}, f.app, eventsOptions{Cluster: "exp1", Follow: true})
	}()
	clk.WaitAfterCalls(0)
	first := out.String()
	if !strings.Contains(first, "job_state") || strings.Count(first, "submitted") != 3 {
		t.Fatalf("first tick:\n%s\nwant the submissions and the job_state", first)
	}
	appendEvent(events.JobState{Stamp: events.At(now.Add(time.Second)), Job: "42_1", Role: cluster.RoleWorker, SlurmState: "RUNNING", Membership: cluster.MembershipJoined, GPUs: 1})
	clk.Advance(eventsEvery)
	clk.WaitAfterCalls(1)
	second := strings.TrimPrefix(out.String(), first)
	if lines := strings.Split(strings.TrimSpace(second), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "\t42_1\tworker\tjob_state\t") {
		t.Fatalf("second tick printed %q, want only 42_1's job_state", second)
	}
	if err := dir.MarkDown(now.Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	clk.Advance(eventsEvery)
	if err := <-done; err != nil {
		t.Fatalf("events -f on an ended cluster: %v", err)
	}
	if !strings.HasSuffix(out.String(), "\t-\t-\tdown_requested\t\n") || strings.Count(out.String(), "TIME\t") != 1 {
		t.Errorf("output:\n%s\nwant one header, down_requested last", out.String())
	}
}

func TestEventsBadInput(t *testing.T) {
	t.Parallel()
	f := newUFixture(t)
	var s uStreams
	var ue usageError
	if err := runEvents(context.Background(), s.io(false), f.app, eventsOptions{}); !errors.As(err, &ue) {
		t.Errorf("no cluster: %v, want a usage error", err)
	}
	f.createCluster(t, "exp1", "41")
	if err := runEvents(context.Background(), s.io(false), f.app, eventsOptions{Output: "yaml"}); !errors.As(err, &ue) {
		t.Errorf("--output yaml: %v, want a usage error", err)
	}
	if code := run(context.Background(), s.io(false), []string{"events", "extra"}); code != exitUsage {
		t.Errorf("events with an argument: exit %d, want %d", code, exitUsage)
	}
}
