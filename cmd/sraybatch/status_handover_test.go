package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

// handedOverStatus is a cluster in generation 3: 6 handed to worker 7 by
// promotion (a driver's steps on both sides), 7 to submitted head job 9
// (no driver stepped after it yet).
func handedOverStatus() cluster.Status {
	at := time.Date(2026, 12, 6, 12, 0, 0, 0, time.Local)
	f := func(v float64) *float64 { return &v }
	zero := 0
	return cluster.Status{Cluster: cluster.ClusterStatus{
		Name: "long", ID: "id-long", State: cluster.StateRunning, Generation: 3, HeadJob: "9",
		GenerationHow: cluster.GenerationSubmitted, PreviousHeadJob: "7",
		Handovers: []cluster.HandoverStatus{
			{Generation: 1, NextGeneration: 2, OldHeadJob: "6", NewHeadJob: "7", How: cluster.GenerationPromoted, Why: "time left", Started: at,
				SealedAfterS: f(3.2), PublishedAfterS: f(4), GapS: f(12.46), StepsLost: &zero},
			{Generation: 2, NextGeneration: 3, OldHeadJob: "7", NewHeadJob: "9", How: cluster.GenerationSubmitted, Why: "no worker to promote", Started: at.Add(time.Hour),
				SealedAfterS: f(5)},
		},
	}}
}

// The table shows the generation on the cluster line and one line per
// handover under it; an unknown figure is "-".
func TestStatusTableHandovers(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	printStatusTable(&b, handedOverStatus(), false)
	lines := strings.Split(b.String(), "\n")
	if !strings.Contains(lines[0], "generation 3 (head job 9, submitted from head job 7)") {
		t.Errorf("cluster line %q lacks the generation", lines[0])
	}
	want := []string{
		"handovers:",
		"  1→2  head job 6 → 7, promoted (time left) at 2026-12-06 12:00:00  sealed after 3.2s  published after 4.0s  gap 12.5s  steps lost 0",
		"  2→3  head job 7 → 9, submitted (no worker to promote) at 2026-12-06 13:00:00  sealed after 5.0s  published after -  gap -  steps lost -",
	}
	for i, w := range want {
		if lines[1+i] != w {
			t.Errorf("line %d\n got %q\nwant %q", 1+i, lines[1+i], w)
		}
	}
}

// In JSON every handover has each documented field, null where unknown.
func TestStatusJSONHandovers(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(handedOverStatus())
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Cluster struct {
			GenerationHow   string           `json:"generation_how"`
			PreviousHeadJob string           `json:"previous_head_job"`
			Handovers       []map[string]any `json:"handovers"`
		} `json:"cluster"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Cluster.GenerationHow != "submitted" || doc.Cluster.PreviousHeadJob != "7" || len(doc.Cluster.Handovers) != 2 {
		t.Fatalf("cluster %s", b)
	}
	fields := []string{"generation", "next_generation", "old_head_job", "new_head_job", "how", "why", "started",
		"sealed_after_s", "published_after_s", "gap_s", "steps_lost"}
	h := doc.Cluster.Handovers[1]
	for _, k := range fields {
		if _, ok := h[k]; !ok {
			t.Errorf("handovers[1] lacks %s: %v", k, h)
		}
	}
	if h["gap_s"] != nil || h["steps_lost"] != nil || h["published_after_s"] != nil || h["sealed_after_s"] != 5.0 {
		t.Errorf("handovers[1] = %v, want null gap, steps lost and publication", h)
	}
	if len(h) != len(fields) {
		t.Errorf("handovers[1] has %d fields, the README documents %d: %v", len(h), len(fields), h)
	}
}
