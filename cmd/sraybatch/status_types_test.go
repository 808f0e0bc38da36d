package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

// A cluster with worker types shows a line per type and each worker row's
// type; the TSV rows carry it too.
func TestStatusShowsWorkerTypes(t *testing.T) {
	t.Parallel()
	st := cluster.Status{
		Cluster: cluster.ClusterStatus{Name: "long", State: cluster.StateRunning},
		Jobs: []cluster.JobStatus{
			{Role: cluster.RoleHead, JobID: "6", Ray: cluster.MembershipJoined},
			{Role: cluster.RoleWorker, JobID: "7", Ray: cluster.MembershipJoined, Type: "gpu"},
			{Role: cluster.RoleWorker, JobID: "8", Ray: cluster.MembershipWaiting, Type: "cpu"},
		},
		Types: []cluster.TypeStatus{{Name: "gpu", Max: 8, Joined: 1}, {Name: "cpu", Min: 1, Max: 16, Demand: 3, Pending: 1}},
	}
	var b bytes.Buffer
	printStatusTable(&b, st, false)
	out := b.String()
	for _, want := range []string{"type gpu 0–8 · demand 0 · pending 0 · joined 1\n", "type cpu 1–16 · demand 3 · pending 1 · joined 0\n", "worker/gpu", "worker/cpu"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	printStatusTSV(&b, st)
	if !strings.Contains(b.String(), "long\trunning\tworker/cpu\t8\t") {
		t.Errorf("TSV:\n%s", b.String())
	}
}
