package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Without SRAYBATCH_BENCH_PHASES a command times nothing and writes nothing;
// with it, one JSON line of its steps, each summed over its calls.
func TestPhases(t *testing.T) {
	ctx := withPhases(context.Background(), newPhases("", time.Now()))
	if phasesOf(ctx) != nil {
		t.Fatal("phases without a file")
	}
	step(ctx, "squeue")() // a no-op, not a panic
	phasesOf(ctx).write()

	path := filepath.Join(t.TempDir(), "phases.jsonl")
	p := newPhases(path, time.Now())
	ctx = withPhases(context.Background(), p)
	for _, name := range []string{"read state", "squeue", "read state"} {
		step(ctx, name)()
	}
	p.write()
	p.write()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		MainMS float64  `json:"main_ms"`
		Steps  [][2]any `json:"steps"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	for range 2 { // appended, one line per write
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("decode %q: %v", b, err)
		}
	}
	if len(got.Steps) != 2 || got.Steps[0][0] != "read state" || got.Steps[1][0] != "squeue" || got.MainMS < 0 {
		t.Errorf("phases = %+v, want read state then squeue, once each", got)
	}
}
