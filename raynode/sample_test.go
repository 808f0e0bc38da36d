package raynode

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"

	"github.com/sraybatch/sraybatch/internal/clock"
	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/gpu"
)

func TestSampleGPUsRecordsUseFromNVML(t *testing.T) {
	t.Parallel()
	dir := cluster.Dir{Path: t.TempDir()}
	if err := os.Mkdir(filepath.Join(dir.Path, "nodes"), 0o700); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"CUDA_VISIBLE_DEVICES": "2,5"}
	s := &supervisor{
		cfg:   Config{Dir: dir, GPUs: gpu.NewNVML(busyDGX(), func(k string) string { return env[k] }, io.Discard), Log: io.Discard},
		rec:   cluster.NodeRecord{Job: "7_0", Role: cluster.RoleWorker, Phase: cluster.PhaseRunning, GPUs: 2},
		tail:  newTailBuffer(5),
		clock: clock.System{},
	}
	s.logf = func(f string, a ...any) { t.Logf(f, a...) }
	s.sampleGPUs()
	rec, ok, err := dir.Node("7_0")
	if err != nil || !ok {
		t.Fatalf("record: %v %v", ok, err)
	}
	if len(rec.GPUSamples) != 2 || rec.GPUsSampled == nil {
		t.Fatalf("samples: %+v", rec.GPUSamples)
	}
	for _, g := range rec.GPUSamples {
		if !strings.HasPrefix(g.ID, "GPU-") || !strings.Contains(g.Name, "H100") || g.MemoryTotalMiB == nil || *g.MemoryTotalMiB != 81920 || g.UtilizationPct == nil || *g.UtilizationPct < 20 {
			t.Errorf("sample %+v: want a UUID, the H100 model and 80 GiB", g)
		}
	}
}

// busyDGX is go-nvml's DGX H100 mock with the calls it leaves out filled in:
// every GPU 40% busy, no processes.
func busyDGX() *server.Server {
	s := dgxh100.New()
	s.InitFunc = func() nvml.Return { return nvml.SUCCESS }
	s.ShutdownFunc = func() nvml.Return { return nvml.SUCCESS }
	for _, d := range s.Devices {
		d := d.(*server.Device)
		d.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) { return nvml.Utilization{Gpu: 40}, nvml.SUCCESS }
		d.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return nil, nvml.SUCCESS }
	}
	return s
}

func TestSampleGPUsSkipsSourcesWithoutUse(t *testing.T) {
	t.Parallel()
	dir := cluster.Dir{Path: t.TempDir()}
	if err := os.Mkdir(filepath.Join(dir.Path, "nodes"), 0o700); err != nil {
		t.Fatal(err)
	}
	s := &supervisor{
		cfg: Config{Dir: dir, GPUs: gpu.Env{Getenv: func(string) string { return "0" }}, Log: io.Discard},
		rec: cluster.NodeRecord{Job: "8", GPUs: 1},
	}
	s.sampleGPUs()
	if _, ok, _ := dir.Node("8"); ok {
		t.Error("an environment-only GPU source wrote samples")
	}
}
