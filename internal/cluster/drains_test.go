package cluster

import (
	"os"
	"path/filepath"
	"testing"
)

// Status reads every drain notice at once; a cluster that never drained a
// worker (or one made before drains/ existed) has none, not an error.
func TestDrainNoticesRoundTrip(t *testing.T) {
	t.Parallel()
	d := mustCreate(t, Store{Root: t.TempDir()}, "exp1")
	if got, err := d.DrainNotices(); err != nil || len(got) != 0 {
		t.Errorf("DrainNotices() before any = %v, %v; want none", got, err)
	}
	for _, job := range []string{"7_0", "8"} {
		if err := d.WriteDrainNotice(DrainNotice{Job: job, NodeID: "n-" + job, Outcome: OutcomeDrainedIdle}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := d.DrainNotices()
	if err != nil || len(got) != 2 || got["7_0"].NodeID != "n-7_0" || got["8"].Outcome != OutcomeDrainedIdle || got["8"].SchemaVersion != SchemaVersion {
		t.Errorf("DrainNotices() = %+v, %v", got, err)
	}
	if err := os.RemoveAll(filepath.Join(d.Path, drainsDir)); err != nil {
		t.Fatal(err)
	}
	if got, err := d.DrainNotices(); err != nil || len(got) != 0 {
		t.Errorf("DrainNotices() without drains/ = %v, %v; want none", got, err)
	}
}
