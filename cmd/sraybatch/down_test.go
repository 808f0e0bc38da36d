package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

// down counts the jobs it ends as status shows them, one per array task,
// not its scancel arguments (it said "cancelled 2 jobs" for a head and a
// 3-task array); jobs that had already ended are not counted.
func TestDownCountsTheJobsItEnds(t *testing.T) {
	t.Parallel()
	f := newUFixture(t)
	dir, spec := f.createCluster(t, "exp1", "41")
	now := time.Now().UTC()
	for _, sub := range []cluster.Submission{
		{Role: cluster.RoleWorker, JobID: "42", Tasks: 3, Submitted: now.Add(-time.Minute)},
		{Role: cluster.RoleWorker, JobID: "43", Submitted: now}, // ended before down
	} {
		if err := dir.AddSubmission(sub); err != nil {
			t.Fatal(err)
		}
	}
	f.expectClusterJobs(spec,
		squeueLine("41", "sray-exp1-head", "RUNNING", "None", "gpu01", "1:00:00", "1:00:00", "2:00:00"),
		squeueLine("42_0", "sray-exp1-worker", "RUNNING", "None", "gpu02", "30:00", "30:00", "1:00:00"),
		squeueLine("42_1", "sray-exp1-worker", "RUNNING", "None", "gpu03", "30:00", "30:00", "1:00:00"),
		squeueLine("42_2", "sray-exp1-worker", "PENDING", "Resources", "", "0:00", "1:00:00", "1:00:00"),
		squeueLine("43", "sray-exp1-worker", "CANCELLED", "None", "gpu02", "5:00", "0:00", "1:00:00"))
	// One scancel for the whole cluster, workers first.
	f.stub.Register([]string{uProgs.Scancel, "42", "43", "41"}, "", nil)
	f.expectClusterJobs(spec,
		squeueLine("41", "sray-exp1-head", "CANCELLED", "None", "gpu01", "1:00:00", "0:00", "2:00:00"),
		squeueLine("42_0", "sray-exp1-worker", "CANCELLED", "None", "gpu02", "30:00", "0:00", "1:00:00"))
	var s uStreams
	if err := runDown(context.Background(), s.io(false), f.app, downOptions{Cluster: "exp1", Timeout: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if first, _, _ := strings.Cut(s.errOut.String(), "\n"); first != "cluster exp1: cancelled 4 jobs; waiting for them to end" {
		t.Errorf("first line = %q, want 4 jobs: the head and the 3 tasks", first)
	}
}
