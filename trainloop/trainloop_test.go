package trainloop

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

func TestReadProgressFoldsEvents(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "9.jsonl")
	lines := []string{
		`{"ts": 1.0, "event": "node_joined", "node_id": "n1", "job": "7_0", "gpus": 2}`,
		`{"ts": 1.1, "event": "actor_spawned", "actor": "a1", "node_id": "n1", "job": "7_0", "placement_group": "p1"}`,
		`{"ts": 1.2, "event": "actor_spawned", "actor": "a2", "node_id": "n1", "job": "7_0", "placement_group": "p2"}`,
		`{"ts": 1.3, "event": "actor_spawned", "actor": "a3", "node_id": "n2", "job": "8", "placement_group": "p3", "future_field": [1]}`,
		`{"ts": 1.4, "event": "step_done", "step": 4, "actors": 3, "mean_duration_s": 0.5, "losses": [1, 2, 3]}`,
		`{"ts": 1.5, "event": "actor_lost", "actor": "a3", "node_id": "n2", "job": "8", "reason": "node_left"}`,
		`{"ts": 1.6, "event": "step_done", "step": 5, "actors": 2, "mean_duration_s": 0.5, "losses": [1, 2]}`,
		`{"ts": 1.7, "event": "actor_spaw`, // the driver is still writing this line
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := ReadProgress(path)
	if err != nil {
		t.Fatal(err)
	}
	if p.Actors["7_0"] != 2 || p.Actors["8"] != 0 || p.LastStep == nil || *p.LastStep != 5 {
		t.Errorf("progress = actors %v, last step %v; want 7_0:2, 8:0, step 5", p.Actors, p.LastStep)
	}
}

func TestReadProgressWithoutEventsYet(t *testing.T) {
	t.Parallel()
	p, err := ReadProgress(filepath.Join(t.TempDir(), "none.jsonl"))
	if err != nil || len(p.Actors) != 0 || p.LastStep != nil {
		t.Errorf("no file: %+v, %v", p, err)
	}
}

func TestInstallPythonWritesThePackage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := InstallPython(dir); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"__init__.py", "pool.py", "events.py", "demo.py", "cluster.py"} {
		st, err := os.Stat(filepath.Join(dir, PythonPackage, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", f, st, err)
		}
	}
	if err := InstallPython(dir); err != nil { // a second train on the same cluster
		t.Errorf("reinstall: %v", err)
	}
}

// A driver's health and state traffic is counted, and an excluded node is
// named with the pool's reason.
func TestFoldHealthEvents(t *testing.T) {
	t.Parallel()
	lines := strings.Join([]string{
		`{"ts": 1, "event": "actor_restarted", "actor": "a1", "node_id": "n1", "job": "7_0", "attempt": 1, "reason": "actor_died"}`,
		`{"ts": 2, "event": "state_synced", "job": "7_0", "actor": "a1", "source": "peer", "bytes": 10, "seconds": 0.1}`,
		`{"ts": 3, "event": "state_synced", "job": "8", "actor": "a2", "source": "checkpoint", "bytes": 10, "seconds": 0.1}`,
		`{"ts": 4, "event": "checkpoint_written", "path": "/c/ckpt", "bytes": 10, "seconds": 0.2}`,
		`{"ts": 5, "event": "node_excluded", "node_id": "n1", "job": "7_0", "reason": "actor died 3 times"}`,
	}, "\n") + "\n"
	p := cluster.TrainProgress{Actors: map[string]int{}}
	if err := foldEvents(strings.NewReader(lines), &p); err != nil {
		t.Fatal(err)
	}
	if p.Restarts != 1 || p.StateSyncs != 2 || p.Checkpoints != 1 || p.Excluded["7_0"] != "actor died 3 times" {
		t.Errorf("progress = %+v", p)
	}
}
