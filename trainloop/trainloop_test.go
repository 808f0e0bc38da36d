package trainloop

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	for _, f := range []string{"__init__.py", "pool.py", "membership.py", "statesync.py", "checkpoint.py", "messages.py", "events.py", "demo.py", "cluster.py"} {
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
	p := foldLines(t,
		`{"ts": 1, "event": "actor_restarted", "actor": "a1", "node_id": "n1", "job": "7_0", "attempt": 1, "reason": "actor_died"}`,
		`{"ts": 2, "event": "state_synced", "job": "7_0", "actor": "a1", "source": "peer", "bytes": 10, "seconds": 0.1}`,
		`{"ts": 3, "event": "state_synced", "job": "8", "actor": "a2", "source": "checkpoint", "bytes": 10, "seconds": 0.1}`,
		`{"ts": 4, "event": "checkpoint_written", "path": "/c/ckpt", "bytes": 10, "seconds": 0.2}`,
		`{"ts": 5, "event": "node_excluded", "node_id": "n1", "job": "7_0", "reason": "actor died 3 times"}`,
	)
	if p.Restarts != 1 || p.StateSyncs != 2 || p.Checkpoints != 1 || p.Excluded["7_0"] != "actor died 3 times" {
		t.Errorf("progress = %+v", p)
	}
}

// A Progress folds only what was appended since its last Read: actors
// spawned in one read and lost in a later one are counted right, a line
// the driver is still writing waits, and a replaced (shorter) file is
// folded again from its start.
func TestProgressReadsOnlyWhatIsNew(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "9.jsonl")
	appendLines := func(s string) {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
	}
	size := func() int64 {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	pr := NewProgress(path)
	if p, err := pr.Read(); err != nil || len(p.Actors) != 0 || p.LastStep != nil {
		t.Fatalf("before the file exists: %+v, %v", p, err)
	}
	appendLines(`{"ts": 1.1, "event": "actor_spawned", "actor": "a1", "node_id": "n1", "job": "7_0", "placement_group": "p1"}` + "\n" +
		`{"ts": 1.2, "event": "actor_spawned", "actor": "a2", "node_id": "n2", "job": "8", "placement_group": "p2"}` + "\n" +
		`{"ts": 1.3, "event": "step_done", "step": 0, "actors": 2, "mean_duration_s": 0.5, "losses": [1, 2]}` + "\n" +
		`{"ts": 1.4, "event": "actor_lost", "actor": "a2", "node_id": "n2", "job": "8", "rea`)
	p, err := pr.Read()
	if err != nil || p.Actors["7_0"] != 1 || p.Actors["8"] != 1 || p.LastStep == nil || *p.LastStep != 0 {
		t.Fatalf("first read: %+v, %v; want one actor on each job, step 0", p, err)
	}
	if whole := size() - int64(len(`{"ts": 1.4, "event": "actor_lost", "actor": "a2", "node_id": "n2", "job": "8", "rea`)); pr.events.Offset() != whole {
		t.Errorf("offset %d after the first read, want %d (the whole lines only)", pr.events.Offset(), whole)
	}
	p.Actors["7_0"] = 99 // a caller's copy is its own
	appendLines(`son": "node_left"}` + "\n" +
		`{"ts": 1.5, "event": "step_done", "step": 1, "actors": 1, "mean_duration_s": 0.4, "losses": [1]}` + "\n" +
		`{"ts": 1.6, "event": "node_excluded", "node_id": "n2", "job": "8", "reason": "3 failures"}` + "\n")
	p, err = pr.Read()
	if err != nil || p.Actors["7_0"] != 1 || p.Actors["8"] != 0 || *p.LastStep != 1 || p.Excluded["8"] != "3 failures" {
		t.Fatalf("second read: %+v, %v; want 7_0:1, 8:0, step 1, 8 excluded", p, err)
	}
	if pr.events.Offset() != size() {
		t.Errorf("offset %d after the second read, want the file's size %d", pr.events.Offset(), size())
	}
	again, _ := ReadProgress(path) // the same file folded whole agrees
	if again.Actors["7_0"] != 1 || again.Actors["8"] != 0 || *again.LastStep != 1 || again.Excluded["8"] != "3 failures" {
		t.Errorf("a whole read: %+v", again)
	}
	if err := os.WriteFile(path, []byte(`{"ts": 2.0, "event": "step_done", "step": 0, "actors": 0, "mean_duration_s": 0.1, "losses": []}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if p, err = pr.Read(); err != nil || len(p.Actors) != 0 || *p.LastStep != 0 || len(p.Excluded) != 0 {
		t.Errorf("after the file was replaced: %+v, %v; want only the new file's step 0", p, err)
	}
}

// A line whose head is an event but whose rest is not JSON is skipped, as
// any line that is no event.
func TestProgressSkipsMalformedLines(t *testing.T) {
	t.Parallel()
	p := foldLines(t,
		`{"ts": 1, "event": "step_done", "step": 1, "actors": 1, "mean_duration_s": 0.5, "losses": []}`,
		`{"ts": 2, "event": "step_done", "step": 2, "actors": 1, "mean_duration_s": 0.5, "losses": [}`,
		`{"ts": 3, "event": "actor_restarted", "actor": "a1", "node_id": "n1", "job": "7_0", "attempt": 1, "reason": "x"`,
		`{"ts": 4, "event": "checkpoint_written", "path": "/c", "bytes": 1, "seconds": 0.1}`,
	)
	if p.LastStep == nil || *p.LastStep != 1 || p.Restarts != 0 || p.Checkpoints != 1 {
		t.Errorf("progress = step %v, %d restarts, %d checkpoints; want step 1, 0, 1", p.LastStep, p.Restarts, p.Checkpoints)
	}
}
