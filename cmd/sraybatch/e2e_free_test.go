//go:build e2e

package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

// TestE2EFreeAndFill: `free` and `grow --fill` see GPUs others hold.
func TestE2EFreeAndFill(t *testing.T) {
	// Alone, not e2eShare: it counts every node's free GPUs.
	e := needE2E(t)
	holdGPUs(t, 2, "node1")
	holdGPUs(t, 1, "node2")
	var rows []freeNode
	if err := json.Unmarshal([]byte(e.mustSray(t, "free", "-o", "json").stdout), &rows); err != nil {
		t.Fatal(err)
	}
	free := map[string]int{}
	for _, r := range rows {
		free[r.Node] = r.Free
	}
	if free["node1"] != 0 || free["node2"] != 1 || free["node3"] != 2 {
		t.Fatalf("free GPUs per node %v, want node1 0, node2 1, node3 2", free)
	}
	if tsv := e.mustSray(t, "free", "--partition", "debug").stdout; !strings.HasPrefix(tsv, "PARTITION\tNODE\tSTATE") || strings.Count(tsv, "\n") != 4 {
		t.Errorf("free --partition debug as TSV:\n%s", tsv)
	}

	// A held head keeps the workers pending on their dependency: no GPU is taken.
	e.mustSray(t, "up", "--name", "e2efill", "--gpus-per-node", "1", "--sbatch-arg=--hold")
	t.Cleanup(func() { e.sray(t, "down", "--cluster", "e2efill", "--timeout", "30s") })
	capped := strings.Fields(e.mustSray(t, "grow", "--cluster", "e2efill", "--fill", "--max", "2").stdout)
	all := strings.Fields(e.mustSray(t, "grow", "--cluster", "e2efill", "--fill").stdout)
	if len(capped) != 2 || len(all) != 3 {
		t.Errorf("grow --fill --max 2 added %v, grow --fill added %v; want 2 and 3 workers", capped, all)
	}
	subs, err := cluster.Dir{Path: filepath.Join(e.home, "clusters", "e2efill")}.Submissions()
	if err != nil || len(subs) != 3 {
		t.Errorf("want the head and one sbatch call per grow, got %d submissions (%v)", len(subs), err)
	}
	e.mustSray(t, "up", "--name", "e2ecpu", "--gpus-per-node", "0", "--sbatch-arg=--hold")
	t.Cleanup(func() { e.sray(t, "down", "--cluster", "e2ecpu", "--timeout", "30s") })
	if r := e.sray(t, "grow", "--cluster", "e2ecpu", "--fill"); r.code != exitUsage {
		t.Errorf("grow --fill on a CPU-only cluster: exit %d, want %d", r.code, exitUsage)
	}
}
