package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

func TestPrintClusterGPUs(t *testing.T) {
	t.Parallel()
	i64 := func(v int64) *int64 { return &v }
	pct := func(v int) *int { return &v }
	st := cluster.Status{Jobs: []cluster.JobStatus{
		{JobID: "7_0", Node: "gpu01", GPUs: 2, Ray: cluster.MembershipJoined, GPUsSampledAgeS: i64(12), GPUSamples: []cluster.GPUSample{
			{ID: "GPU-1234567890ab", Name: "NVIDIA H100 80GB HBM3", MemoryUsedMiB: i64(40960), MemoryTotalMiB: i64(81920), UtilizationPct: pct(97), Processes: 1},
			{ID: "GPU-abcdef", Name: "NVIDIA H100 80GB HBM3"},
		}},
		{JobID: "8", Node: "gpu02", GPUs: 1, Ray: cluster.MembershipJoined},
		{JobID: "9", Node: "gpu03", GPUs: 1, Ray: cluster.MembershipLost, GPUsSampledAgeS: i64(40), GPUSamples: []cluster.GPUSample{{ID: "GPU-gone"}}},
	}}
	var out bytes.Buffer
	printClusterGPUs(&out, st, false)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{
		"JOB\tNODE\tGPU\tMODEL\tMEM USED\tMEM TOTAL\tUTIL\tPROCS\tSAMPLED",
		"7_0\tgpu01\tGPU-1234\tNVIDIA H100 80GB HBM3\t40960 MiB\t81920 MiB\t97%\t1\t12s ago",
		"7_0\tgpu01\tGPU-abcd\tNVIDIA H100 80GB HBM3\t-\t-\t-\t0\t12s ago",
		"8\tgpu02\t-\tno NVML data\t-\t-\t-\t-\t-",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", out.String(), strings.Join(want, "\n"))
	}
}
