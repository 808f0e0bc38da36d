package raynode

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

func TestRayLogFiles(t *testing.T) {
	t.Parallel()
	for role, want := range map[cluster.Role][]string{
		cluster.RoleHead:   {"gcs_server.out", "gcs_server.err", "raylet.out", "raylet.err"},
		cluster.RoleWorker: {"raylet.out", "raylet.err"},
		cluster.RoleDriver: {"raylet.out", "raylet.err", "python-core-driver-*.log"},
	} {
		if got := RayLogFiles(role); !slices.Equal(got, want) {
			t.Errorf("RayLogFiles(%s) = %v, want %v", role, got, want)
		}
	}
}

func writeLog(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A running node copies only its role's main logs, at most every
// rayLogsEvery, only what changed, each capped, all capped together.
func TestLiveRayLogs(t *testing.T) {
	t.Parallel()
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "ray-7")
	big := strings.Repeat("x", liveLogPerFile) + "NEWEST"
	writeLog(t, filepath.Join(src, "raylet.out"), big)
	writeLog(t, filepath.Join(src, "gcs_server.out"), "gcs up\n")
	writeLog(t, filepath.Join(src, "python-core-worker-1.log"), "not a main log\n")
	l := &liveRayLogs{src: src, dst: dst, patterns: RayLogFiles(cluster.RoleHead), copied: map[string]fileStamp{}}
	var warnings []string
	logf := func(f string, a ...any) { warnings = append(warnings, f) }
	start := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

	l.copyIfDue(start, logf)
	got := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dst, name))
		if err != nil {
			return "<" + err.Error() + ">"
		}
		return string(b)
	}
	if g := got("raylet.out"); len(g) != liveLogPerFile || !strings.HasSuffix(g, "NEWEST") {
		t.Errorf("raylet.out: %d bytes, want the newest %d", len(g), liveLogPerFile)
	}
	if got("gcs_server.out") != "gcs up\n" {
		t.Errorf("gcs_server.out = %q", got("gcs_server.out"))
	}
	if _, err := os.Stat(filepath.Join(dst, "python-core-worker-1.log")); err == nil {
		t.Error("a log outside the role's main ones was copied while running")
	}
	if st, err := os.Stat(dst); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("log dir %v, %v; want mode 0700", st, err)
	}
	if st, err := os.Stat(filepath.Join(dst, "gcs_server.out")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("copied log %v, %v; want mode 0600", st, err)
	}

	// Within rayLogsEvery nothing is copied; after it, what changed.
	writeLog(t, filepath.Join(src, "gcs_server.out"), "gcs up\nnode joined\n")
	l.copyIfDue(start.Add(rayLogsEvery-time.Second), logf)
	if got("gcs_server.out") != "gcs up\n" {
		t.Error("copied again before rayLogsEvery")
	}
	if err := os.Remove(filepath.Join(dst, "raylet.out")); err != nil { // unchanged: not rewritten
		t.Fatal(err)
	}
	l.copyIfDue(start.Add(rayLogsEvery), logf)
	if got("gcs_server.out") != "gcs up\nnode joined\n" {
		t.Errorf("changed log not recopied: %q", got("gcs_server.out"))
	}
	if _, err := os.Stat(filepath.Join(dst, "raylet.out")); err == nil {
		t.Error("an unchanged log was copied again")
	}

	// All files together stay under liveLogTotal.
	for _, name := range []string{"gcs_server.out", "gcs_server.err", "raylet.out", "raylet.err"} {
		writeLog(t, filepath.Join(src, name), strings.Repeat("y", liveLogPerFile*2))
	}
	l.copyIfDue(start.Add(2*rayLogsEvery), logf)
	var total int
	entries, _ := os.ReadDir(dst)
	for _, e := range entries {
		total += len(got(e.Name()))
	}
	if total > liveLogTotal {
		t.Errorf("copied %d bytes in all, over liveLogTotal %d", total, liveLogTotal)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings %v", warnings)
	}

	// A destination that cannot be written warns once, not every tick.
	blocked := &liveRayLogs{src: src, dst: filepath.Join(dst, "raylet.err", "x"), patterns: []string{"raylet.out"}, copied: map[string]fileStamp{}}
	blocked.copyIfDue(start, logf)
	blocked.copyIfDue(start.Add(rayLogsEvery), logf)
	if len(warnings) != 1 {
		t.Errorf("warnings %v, want one", warnings)
	}
}

// The supervisor's monitor copies the running node's Ray logs into the
// cluster's log dir, and at the end every log.
func TestRunCopiesRayLogsWhileRunning(t *testing.T) {
	t.Parallel()
	f := newRunFixture(t)
	f.heartbeat(t, "8")
	errc := f.start(cluster.RoleWorker, map[string]string{"SLURM_JOB_ID": "8", "CUDA_VISIBLE_DEVICES": "0"})
	calls := f.untilRunning(t, "8")
	rec, _, _ := f.dir.Node("8")
	logs := sessionLogs(rayTempDir(rec.TempDir))
	if err := os.MkdirAll(logs, 0o700); err != nil {
		t.Fatal(err)
	}
	writeLog(t, filepath.Join(logs, "raylet.out"), "raylet started\n")
	writeLog(t, filepath.Join(logs, "worker-1.out"), "a worker's output\n")
	copied := filepath.Join(RayLogDir(f.spec.LogDir, "8"), "raylet.out")
	for i := 0; ; i++ {
		if b, err := os.ReadFile(copied); err == nil && string(b) == "raylet started\n" {
			break
		}
		if i > int(rayLogsEvery/membershipInterval)+1 {
			t.Fatalf("raylet.out not copied to %s within %s", copied, rayLogsEvery)
		}
		f.heartbeat(t, "8")
		f.clock.Advance(membershipInterval)
		calls = f.clock.WaitAfterCalls(calls)
	}
	if _, err := os.Stat(filepath.Join(RayLogDir(f.spec.LogDir, "8"), "worker-1.out")); err == nil {
		t.Error("worker-1.out copied while running; only the main logs are")
	}
	f.procs.started[0].exit()
	go func() {
		for calls >= 0 {
			f.clock.Advance(500 * time.Millisecond)
			calls = f.clock.WaitAfterCalls(calls)
		}
	}()
	<-errc
	f.clock.Close()
	if _, err := os.Stat(filepath.Join(RayLogDir(f.spec.LogDir, "8"), "worker-1.out")); err != nil {
		t.Errorf("every log is kept at the end: %v", err)
	}
}
