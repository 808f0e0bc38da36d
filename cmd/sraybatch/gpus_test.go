package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"github.com/sraybatch/sraybatch/internal/gpu"
)

// mockGPUs is a DGX H100 with fixed UUIDs; GPU 5 runs someone's 30 GiB
// process and GPU 3 fails to list its processes.
func mockGPUs() *server.Server {
	s := dgxh100.New()
	for i, d := range s.Devices {
		d := d.(*server.Device)
		d.UUID = fmt.Sprintf("GPU-00000000-0000-0000-0000-00000000000%d", i)
		d.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) { return nvml.Utilization{Gpu: uint32(10 * i)}, nvml.SUCCESS }
		d.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return nil, nvml.SUCCESS }
	}
	busy := s.Devices[5].(*server.Device)
	busy.MemoryInfo.Used = 30 << 30
	busy.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) {
		return []nvml.ProcessInfo{{Pid: 4242, UsedGpuMemory: 30 << 30}}, nvml.SUCCESS
	}
	s.Devices[3].(*server.Device).GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) {
		return nil, nvml.ERROR_UNKNOWN
	}
	return s
}

func gpusOpts(lib nvml.Interface, output string, env ...string) gpusOptions {
	vars := map[string]string{}
	for i := 0; i < len(env); i += 2 {
		vars[env[i]] = env[i+1]
	}
	return gpusOptions{Output: output, NewInventory: func(warn io.Writer) gpu.InventorySource {
		return gpu.NewNVML(lib, func(k string) string { return vars[k] }, warn)
	}}
}

func runGpusTest(t *testing.T, tty bool, o gpusOptions) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = runGpus(IOStreams{Out: &out, ErrOut: &errOut, OutIsTTY: tty}, o)
	return out.String(), errOut.String(), err
}

func TestGpusTSVWhenPiped(t *testing.T) {
	out, errOut, err := runGpusTest(t, false, gpusOpts(mockGPUs(), "", "CUDA_VISIBLE_DEVICES", "3,5"))
	if err != nil {
		t.Fatal(err)
	}
	want := "INDEX\tUUID\tMODEL\tUSED MIB\tTOTAL MIB\tUTIL %\tPROCESSES\n" +
		"3\tGPU-00000000-0000-0000-0000-000000000003\tNVIDIA H100 80GB HBM3\t0\t81920\t30\t-\n" +
		"5\tGPU-00000000-0000-0000-0000-000000000005\tNVIDIA H100 80GB HBM3\t30720\t81920\t50\t4242 (30720 MiB)\n"
	if out != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", out, want)
	}
	if want := "warning: GPU GPU-00000000-0000-0000-0000-000000000003: nvml get compute processes: ERROR_UNKNOWN\n"; errOut != want {
		t.Errorf("stderr = %q, want %q", errOut, want)
	}
}

func TestGpusTableOnTTY(t *testing.T) {
	out, _, err := runGpusTest(t, true, gpusOpts(mockGPUs(), ""))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 8+4 || !strings.HasPrefix(lines[0], "┌") || !strings.Contains(lines[1], "UTIL %") {
		t.Fatalf("want a styled table of 8 GPUs, got:\n%s", out)
	}
	if row := lines[3+5]; !strings.Contains(row, "GPU-00000000-0000-0000-0000-000000000005") || !strings.Contains(row, "4242 (30720 MiB)") {
		t.Errorf("GPU 5's row = %q", row)
	}
}

func TestGpusJSON(t *testing.T) {
	out, _, err := runGpusTest(t, true, gpusOpts(mockGPUs(), "json", "CUDA_VISIBLE_DEVICES", "5"))
	if err != nil {
		t.Fatal(err)
	}
	var got gpu.Inventory
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v in\n%s", err, out)
	}
	if len(got.GPUs) != 1 || got.Source != "NVML" || got.GPUs[0].Index == nil || *got.GPUs[0].Index != 5 || got.GPUs[0].MemoryUsed != 30<<30 ||
		len(got.GPUs[0].Processes) != 1 || got.GPUs[0].Processes[0].PID != 4242 {
		t.Errorf("json = %s", out)
	}
	for _, key := range []string{`"source"`, `"uuid"`, `"memory_total_bytes"`, `"utilization_pct"`, `"used_memory_bytes"`} {
		if !strings.Contains(out, key) {
			t.Errorf("json lacks %s:\n%s", key, out)
		}
	}
}

func TestGpusFallbackWithoutNVML(t *testing.T) {
	s := mockGPUs()
	s.InitFunc = func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }
	out, errOut, err := runGpusTest(t, false, gpusOpts(s, "", "SLURM_JOB_GPUS", "4,6"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "ID\n4\n6\n"; out != want {
		t.Errorf("stdout = %q, want %q", out, want)
	}
	if want := "NVML unavailable: ERROR_LIBRARY_NOT_FOUND; using SLURM_JOB_GPUS\n"; errOut != want {
		t.Errorf("stderr = %q, want %q", errOut, want)
	}
}

func TestGpusMissingGPUsFail(t *testing.T) {
	_, _, err := runGpusTest(t, false, gpusOpts(mockGPUs(), "", "CUDA_VISIBLE_DEVICES", "0,8"))
	if err == nil || !strings.Contains(err.Error(), "names 8, which the driver does not see") {
		t.Errorf("error = %v", err)
	}
}

func TestGpusUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	streams := IOStreams{Out: &out, ErrOut: &errOut}
	if code := run(context.Background(), streams, []string{"gpus", "--output", "yaml"}); code != exitUsage {
		t.Errorf("gpus --output yaml: exit %d, want %d (stderr %q)", code, exitUsage, errOut.String())
	}
	if code := run(context.Background(), streams, []string{"gpus", "extra"}); code != exitUsage {
		t.Errorf("gpus extra: exit %d, want %d", code, exitUsage)
	}
	out.Reset()
	if code := run(context.Background(), streams, []string{"gpus", "--help"}); code != exitOK || !strings.Contains(out.String(), "Usage: sraybatch gpus") {
		t.Errorf("gpus --help: exit %d, stdout %q", code, out.String())
	}
}

// Unknown numbers are JSON null and "-" in tables: -1 would read as a value,
// and an idle GPU's 0 % must stay 0.
func TestGpusUnknownIsNull(t *testing.T) {
	s := mockGPUs()
	s.Devices[2].(*server.Device).GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
		return nvml.Utilization{}, nvml.ERROR_NOT_SUPPORTED // MIG mode on
	}
	out, _, err := runGpusTest(t, false, gpusOpts(s, "json", "CUDA_VISIBLE_DEVICES", "0,2"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		GPUs []map[string]any `json:"gpus"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.GPUs) != 2 {
		t.Fatalf("json = %s (%v), want 2 GPUs", out, err)
	}
	if util, ok := doc.GPUs[0]["utilization_pct"]; !ok || util != 0.0 || doc.GPUs[0]["index"] != 0.0 {
		t.Errorf("GPU 0: index %v, utilization_pct %v; want 0 and 0", doc.GPUs[0]["index"], util)
	}
	if util, ok := doc.GPUs[1]["utilization_pct"]; !ok || util != nil {
		t.Errorf("GPU 2 without utilization: utilization_pct = %v, want null", util)
	}

	tsv, _, err := runGpusTest(t, false, gpusOpts(s, "tsv", "CUDA_VISIBLE_DEVICES", "2"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "2\tGPU-00000000-0000-0000-0000-000000000002\tNVIDIA H100 80GB HBM3\t0\t81920\t-\t-\n"; !strings.HasSuffix(tsv, want) {
		t.Errorf("tsv = %q, want the row %q", tsv, want)
	}

	s.InitFunc = func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }
	out, _, err = runGpusTest(t, false, gpusOpts(s, "json", "SLURM_JOB_GPUS", "4"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `"index": null`) || !strings.Contains(out, `"utilization_pct": null`) || strings.Contains(out, "-1") {
		t.Errorf("without NVML, json = %s; want index and utilization_pct null", out)
	}
}
