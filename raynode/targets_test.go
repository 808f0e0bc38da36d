package raynode

import (
	"io"
	"os"
	"testing"

	"github.com/sraybatch/sraybatch/internal/clock"
	"github.com/sraybatch/sraybatch/internal/cluster"
)

func TestClearsTargets(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		own, latest int
		want        bool
	}{
		{0, 0, true},  // a cluster without generations
		{1, 1, true},  // the current head stops: the cluster ends with it
		{1, 2, false}, // generation 2's head wrote its targets already
		{2, 3, false},
		{3, 3, true},
	} {
		if got := clearsTargets(c.own, c.latest); got != c.want {
			t.Errorf("clearsTargets(%d, %d) = %v, want %v", c.own, c.latest, got, c.want)
		}
	}
}

// An old head stopping its observer after the next generation was
// published (its head gone, say) leaves the new head's targets alone; the
// last head empties them.
func TestOldHeadLeavesTheNewHeadsTargets(t *testing.T) {
	t.Parallel()
	dir := cluster.Dir{Path: t.TempDir()}
	newTargets := []byte(`[{"targets":["10.0.0.8:20001"],"labels":{"job":"sraybatch"}}]` + "\n")
	if err := os.WriteFile(dir.TargetsPath(), newTargets, 0o600); err != nil {
		t.Fatal(err)
	}
	for g, job := range map[int]string{1: "7", 2: "8"} {
		if err := dir.PublishGeneration(cluster.Generation{HeadInfo: cluster.HeadInfo{Job: job, Generation: g}, How: cluster.GenerationFirst}); err != nil {
			t.Fatal(err)
		}
	}
	s := &supervisor{cfg: Config{Dir: dir, Log: io.Discard}, clock: clock.System{}, rollover: rolloverState{gen: 1}}
	s.logf = func(f string, a ...any) { t.Logf(f, a...) }
	(&observer{s: s}).clearTargets()
	if got, _ := os.ReadFile(dir.TargetsPath()); string(got) != string(newTargets) {
		t.Errorf("generation 1's head stopping left %q, want generation 2's targets", got)
	}
	s.rollover.gen = 2
	(&observer{s: s}).clearTargets()
	if got, _ := os.ReadFile(dir.TargetsPath()); string(got) != "[]\n" {
		t.Errorf("the last head stopping left %q, want []", got)
	}
}

// Each generation's Ray node of a job keeps its log copies apart: the
// promoted worker's head logs do not overwrite its worker logs.
func TestRayLogDirPerGeneration(t *testing.T) {
	t.Parallel()
	s := &supervisor{spec: cluster.Spec{LogDir: "/logs"}, rec: cluster.NodeRecord{Job: "8", TempDir: "/tmp/x"}}
	seen := map[string]int{}
	for _, gen := range []int{0, 1, 2, 3} {
		s.rollover.gen = gen
		seen[s.rayLogDir()]++
		if gen <= 1 && s.rayLogDir() != RayLogDir("/logs", "8") {
			t.Errorf("generation %d: %s, want the job's first dir", gen, s.rayLogDir())
		}
		if l := s.liveRayLogs(); l.dst != s.rayLogDir() {
			t.Errorf("generation %d: live copies go to %s, want %s", gen, l.dst, s.rayLogDir())
		}
	}
	if len(seen) != 3 {
		t.Errorf("dirs %v: want generations 2 and 3 each apart from the first", seen)
	}
}
