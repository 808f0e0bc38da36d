package raynode

import (
	"context"
	"testing"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

func TestJobMemMB(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		env  map[string]string
		cpus int
		want int64
	}{
		{"--mem", map[string]string{"SLURM_MEM_PER_NODE": "65536"}, 8, 65536},
		{"--mem-per-cpu", map[string]string{"SLURM_MEM_PER_CPU": "4000"}, 8, 32000},
		{"both: the node's", map[string]string{"SLURM_MEM_PER_NODE": "1000", "SLURM_MEM_PER_CPU": "4000"}, 8, 1000},
		{"none", map[string]string{}, 8, 0},
		{"garbage", map[string]string{"SLURM_MEM_PER_NODE": "64G"}, 8, 0},
		{"zero, then per cpu", map[string]string{"SLURM_MEM_PER_NODE": "0", "SLURM_MEM_PER_CPU": "100"}, 2, 200},
	} {
		if got := jobMemMB(func(k string) string { return c.env[k] }, c.cpus); got != c.want {
			t.Errorf("%s: %d MB, want %d", c.name, got, c.want)
		}
	}
}

// A worker records its job's memory and object store; the head weighs them
// when it picks whom to promote: a worker whose memory beside its object
// store cannot hold a head's GCS, dashboard and autoscaler is passed over.
func TestPromotionWeighsTheWorkersMemory(t *testing.T) {
	t.Parallel()
	s, members, _, _ := newHandoverHead(t, rayNodeJSON("h7", "10.0.0.1", "7", true, 1),
		rayNodeJSON("w8", "10.0.0.2", "8", true, 1), rayNodeJSON("w9", "10.0.0.3", "9", true, 1))
	for job, mem := range map[string]string{"8": "4096", "9": "65536"} {
		w := newSupervisor(Config{Role: cluster.RoleWorker, Spec: s.spec, Dir: s.cfg.Dir, Log: s.cfg.Log,
			Getenv: func(k string) string {
				return map[string]string{"SLURM_MEM_PER_NODE": mem, "SLURM_CPUS_ON_NODE": "4"}[k]
			}}, job)
		w.rec.Phase = cluster.PhaseRunning
		w.recordMemory()
		w.save()
	}
	rec, _, _ := s.cfg.Dir.Node("8")
	if rec.MemMB != 4096 || rec.ObjectStoreMB != 1228 {
		t.Fatalf("worker 8's record: %d MB, object store %d MB; want 4096 and 1228", rec.MemMB, rec.ObjectStoreMB)
	}
	cands := s.candidates(context.Background(), members)
	plan := pickSuccessor(cands, s.spec.Rollover.Before(), 0)
	if plan.How != cluster.GenerationPromoted || plan.Job != "9" {
		t.Errorf("plan = %+v from %+v, want worker 9 promoted (8 lacks the memory)", plan, cands)
	}
}
