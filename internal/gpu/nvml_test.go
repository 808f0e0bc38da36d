package gpu_test

import (
	"bytes"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/gpus"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"

	"github.com/sraybatch/sraybatch/internal/gpu"
)

const gib = 1 << 30

// newDGX is a DGX H100 (8 GPUs) with the calls the mock leaves out filled in:
// idle GPUs at 10×index % utilization.
func newDGX(t *testing.T) *server.Server {
	t.Helper()
	return mockNode(t, dgxh100.New())
}

// mockNode fills in s's missing calls and checks, at the end of the test,
// that every successful Init was matched by a Shutdown.
func mockNode(t *testing.T, s *server.Server) *server.Server {
	t.Helper()
	var inits, shutdowns int
	s.InitFunc = func() nvml.Return { inits++; return nvml.SUCCESS }
	s.ShutdownFunc = func() nvml.Return { shutdowns++; return nvml.SUCCESS }
	for _, d := range s.Devices {
		d := d.(*server.Device)
		d.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
			return nvml.Utilization{Gpu: uint32(10 * d.Index)}, nvml.SUCCESS
		}
		d.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return nil, nvml.SUCCESS }
	}
	t.Cleanup(func() {
		if inits != shutdowns {
			t.Errorf("nvml Init succeeded %d times, Shutdown called %d", inits, shutdowns)
		}
	})
	return s
}

func dev(s *server.Server, i int) *server.Device { return s.Devices[i].(*server.Device) }

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func ids(gs []gpu.Device) []string {
	out := make([]string, len(gs))
	for i, g := range gs {
		out[i] = g.ID
	}
	return out
}

func uuids(s *server.Server, indices ...int) []string {
	out := make([]string, len(indices))
	for i, k := range indices {
		out[i] = dev(s, k).UUID
	}
	return out
}

func visible(t *testing.T, s *server.Server, getenv func(string) string) []string {
	t.Helper()
	var warn bytes.Buffer
	got, err := gpu.NewNVML(s, getenv, &warn).Visible()
	if err != nil {
		t.Fatalf("Visible: %v", err)
	}
	if warn.Len() > 0 {
		t.Errorf("warned %q with NVML working", warn.String())
	}
	return ids(got)
}

func TestNVMLFullNode(t *testing.T) {
	s := newDGX(t)
	if got, want := visible(t, s, env()), uuids(s, 0, 1, 2, 3, 4, 5, 6, 7); !slices.Equal(got, want) {
		t.Errorf("Visible() = %v, want all 8 UUIDs %v", got, want)
	}
}

func TestNVMLSubsetByIndex(t *testing.T) {
	s := newDGX(t)
	for _, tt := range []struct {
		cvd  string
		want []int
	}{{"2,5", []int{2, 5}}, {"5,2", []int{5, 2}}, {" 7 ", []int{7}}} {
		if got, want := visible(t, s, env("CUDA_VISIBLE_DEVICES", tt.cvd, "SLURM_JOB_GPUS", "0,1")), uuids(s, tt.want...); !slices.Equal(got, want) {
			t.Errorf("CUDA_VISIBLE_DEVICES=%s: Visible() = %v, want %v (CUDA's order)", tt.cvd, got, want)
		}
	}
}

func TestNVMLSubsetByUUID(t *testing.T) {
	s := newDGX(t)
	u := uuids(s, 0, 1, 2, 3, 4, 5, 6, 7)
	cvd := u[6] + "," + u[3][:12] // a full UUID and a unique prefix, as CUDA accepts
	if got, want := visible(t, s, env("CUDA_VISIBLE_DEVICES", cvd)), []string{u[6], u[3]}; !slices.Equal(got, want) {
		t.Errorf("CUDA_VISIBLE_DEVICES=%s: Visible() = %v, want %v", cvd, got, want)
	}
}

func TestNVMLAmbiguousOrDuplicateGPU(t *testing.T) {
	s := newDGX(t)
	for cvd, want := range map[string]string{
		"GPU-":                "prefix of more than one GPU",
		"0," + dev(s, 0).UUID: "are the same GPU",
		"1,x":                 "neither an index nor a GPU/MIG UUID",
	} {
		_, err := gpu.NewNVML(s, env("CUDA_VISIBLE_DEVICES", cvd), nil).Visible()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CUDA_VISIBLE_DEVICES=%s: error = %v, want one containing %q", cvd, err, want)
		}
	}
}

// SLURM_JOB_GPUS holds GRES indices, which follow /dev/nvidiaN minor numbers,
// not NVML indices; CUDA numbers those GPUs in bus order.
func TestNVMLSlurmJobGPUsByMinorNumber(t *testing.T) {
	s := newDGX(t)
	for i := range s.Devices {
		dev(s, i).Minor = 7 - i
	}
	if got, want := visible(t, s, env("SLURM_JOB_GPUS", "0,6")), uuids(s, 1, 7); !slices.Equal(got, want) {
		t.Errorf("SLURM_JOB_GPUS=0,6 with minor = 7-index: Visible() = %v, want %v", got, want)
	}
}

// CUDA ordinals (CUDA_DEVICE_ORDER=PCI_BUS_ID) follow the bus, whatever NVML's order.
func TestNVMLCUDAOrdinalsFollowPCIBus(t *testing.T) {
	s := newDGX(t)
	for i := range s.Devices {
		bus := uint32(0x10 * (8 - i))
		dev(s, i).GetPciInfoFunc = func() (nvml.PciInfo, nvml.Return) { return nvml.PciInfo{Bus: bus}, nvml.SUCCESS }
	}
	if got, want := visible(t, s, env("CUDA_VISIBLE_DEVICES", "0,1")), uuids(s, 7, 6); !slices.Equal(got, want) {
		t.Errorf("buses in reverse NVML order: Visible() = %v, want %v", got, want)
	}
	if got, want := visible(t, s, env()), uuids(s, 7, 6, 5, 4, 3, 2, 1, 0); !slices.Equal(got, want) {
		t.Errorf("buses in reverse NVML order, no env: Visible() = %v, want %v", got, want)
	}
}

func TestNVMLFewerGPUsThanAllocated(t *testing.T) {
	s := mockNode(t, dgxh100.NewWithGPUs(gpus.Multiple(2, gpus.H100_SXM5_80GB)...))
	for _, tt := range []struct{ name, value, want string }{
		{"SLURM_JOB_GPUS", "0,1,2,3", "the job was given 4 GPUs (SLURM_JOB_GPUS=0,1,2,3) but the driver sees 2: " + dev(s, 0).UUID},
		{"CUDA_VISIBLE_DEVICES", "0,3", "CUDA_VISIBLE_DEVICES=0,3 names 3, which the driver does not see; it sees 2: "},
		{"CUDA_VISIBLE_DEVICES", "GPU-0000dead", "names GPU-0000dead, which the driver does not see"},
	} {
		_, err := gpu.NewNVML(s, env(tt.name, tt.value), nil).Visible()
		if !errors.Is(err, gpu.ErrMissing) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s=%s: error = %v, want ErrMissingGPUs containing %q", tt.name, tt.value, err, tt.want)
		}
	}
}

func TestNVMLMIGUUIDsCounted(t *testing.T) {
	s := newDGX(t)
	cvd := "MIG-11111111-2222-3333-4444-555555555555,MIG-66666666-7777-8888-9999-000000000000"
	if got, want := visible(t, s, env("CUDA_VISIBLE_DEVICES", cvd)), strings.Split(cvd, ","); !slices.Equal(got, want) {
		t.Errorf("Visible() = %v, want %v", got, want)
	}
	// The mock knows no MIG instance: the inventory says so per entry.
	inv, err := gpu.NewNVML(s, env("CUDA_VISIBLE_DEVICES", cvd), nil).Inventory()
	if err != nil || len(inv.GPUs) != 2 {
		t.Fatalf("Inventory() = %+v, %v; want 2 entries", inv, err)
	}
	if g := inv.GPUs[0]; !g.MIG || g.Error != "nvml get MIG device by UUID: ERROR_INVALID_ARGUMENT" {
		t.Errorf("unknown MIG instance: %+v", g)
	}
}

func TestNVMLInventoryMIGInstance(t *testing.T) {
	s := newDGX(t)
	const mig = "MIG-11111111-2222-3333-4444-555555555555"
	byUUID := s.DeviceGetHandleByUUIDFunc
	s.DeviceGetHandleByUUIDFunc = func(uuid string) (nvml.Device, nvml.Return) {
		if uuid != mig {
			return byUUID(uuid)
		}
		return &mock.Device{
			GetNameFunc:       func() (string, nvml.Return) { return "NVIDIA H100 80GB HBM3 MIG 1g.10gb", nvml.SUCCESS },
			GetMemoryInfoFunc: func() (nvml.Memory, nvml.Return) { return nvml.Memory{Total: 10 * gib, Used: gib}, nvml.SUCCESS },
			GetComputeRunningProcessesFunc: func() ([]nvml.ProcessInfo, nvml.Return) {
				return []nvml.ProcessInfo{{Pid: 77, UsedGpuMemory: gib}}, nvml.SUCCESS
			},
			GetDeviceHandleFromMigDeviceHandleFunc: func() (nvml.Device, nvml.Return) { return s.Devices[4], nvml.SUCCESS },
		}, nvml.SUCCESS
	}
	inv, err := gpu.NewNVML(s, env("CUDA_VISIBLE_DEVICES", mig+",1"), nil).Inventory()
	if err != nil || len(inv.GPUs) != 2 {
		t.Fatalf("Inventory() = %+v, %v; want 2 entries", inv, err)
	}
	g := inv.GPUs[0]
	if !g.MIG || g.ID != mig || g.Index == nil || *g.Index != 4 || g.MemoryTotal != 10*gib || g.MemoryUsed != gib ||
		g.UtilizationPct != nil || !slices.Equal(g.Processes, []gpu.Process{{PID: 77, UsedMemory: gib}}) || g.Error != "" {
		t.Errorf("MIG instance = %+v", g)
	}
	if g := inv.GPUs[1]; g.MIG || g.ID != dev(s, 1).UUID {
		t.Errorf("whole GPU after a MIG instance = %+v", g)
	}
}

func TestNVMLInventory(t *testing.T) {
	s := newDGX(t)
	var warn bytes.Buffer
	inv, err := gpu.NewNVML(s, env("CUDA_VISIBLE_DEVICES", "2,5"), &warn).Inventory()
	if err != nil {
		t.Fatal(err)
	}
	want := gpu.Inventory{Source: "NVML", GPUs: []gpu.Info{
		{ID: dev(s, 2).UUID, Index: new(2), UUID: dev(s, 2).UUID, Name: "NVIDIA H100 80GB HBM3", MemoryTotal: 80 * gib, UtilizationPct: new(20), Processes: []gpu.Process{}},
		{ID: dev(s, 5).UUID, Index: new(5), UUID: dev(s, 5).UUID, Name: "NVIDIA H100 80GB HBM3", MemoryTotal: 80 * gib, UtilizationPct: new(50), Processes: []gpu.Process{}},
	}}
	if !reflect.DeepEqual(inv, want) || warn.Len() > 0 {
		t.Errorf("Inventory() = %+v (warned %q)\nwant %+v", inv, warn.String(), want)
	}
}

func TestNVMLInventoryForeignProcess(t *testing.T) {
	s := newDGX(t)
	d := dev(s, 5)
	d.MemoryInfo = nvml.Memory{Total: 80 * gib, Used: 30 * gib, Free: 50 * gib}
	d.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) {
		return []nvml.ProcessInfo{{Pid: 4242, UsedGpuMemory: 30 * gib}}, nvml.SUCCESS
	}
	inv, err := gpu.NewNVML(s, env("CUDA_VISIBLE_DEVICES", "4,5"), nil).Inventory()
	if err != nil || len(inv.GPUs) != 2 {
		t.Fatalf("Inventory() = %+v, %v", inv, err)
	}
	if g := inv.GPUs[0]; len(g.Processes) != 0 || g.MemoryUsed != 0 {
		t.Errorf("idle GPU 4 = %+v", g)
	}
	if g := inv.GPUs[1]; !slices.Equal(g.Processes, []gpu.Process{{PID: 4242, UsedMemory: 30 * gib}}) || g.MemoryUsed != 30*gib || g.Error != "" {
		t.Errorf("busy GPU 5 = %+v, want process 4242 using 30 GiB", g)
	}
	// A busy GPU is still the job's: Visible does not drop it.
	if got := visible(t, s, env("CUDA_VISIBLE_DEVICES", "4,5")); len(got) != 2 {
		t.Errorf("Visible() = %v, want both GPUs", got)
	}
}

func TestNVMLErrorOnOneDevice(t *testing.T) {
	s := newDGX(t)
	dev(s, 3).GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return nil, nvml.ERROR_UNKNOWN }
	dev(s, 6).GetUUIDFunc = func() (string, nvml.Return) { return "", nvml.ERROR_GPU_IS_LOST }
	inv, err := gpu.NewNVML(s, env(), nil).Inventory()
	if err != nil || len(inv.GPUs) != 8 {
		t.Fatalf("Inventory() = %+v, %v; want all 8 listed", inv, err)
	}
	for i, g := range inv.GPUs {
		want := ""
		switch i {
		case 3:
			want = "nvml get compute processes: ERROR_UNKNOWN"
		case 6:
			want = "nvml get UUID: ERROR_GPU_IS_LOST"
		}
		if g.Error != want || g.Index == nil || *g.Index != i || g.Name != "NVIDIA H100 80GB HBM3" {
			t.Errorf("GPU %d = %+v, want error %q and the rest filled in", i, g, want)
		}
	}
	// Still counted; without a UUID it goes by the name CUDA knows it by.
	got := visible(t, s, env("CUDA_VISIBLE_DEVICES", "3,6"))
	if want := []string{dev(s, 3).UUID, "6"}; !slices.Equal(got, want) {
		t.Errorf("Visible() = %v, want %v", got, want)
	}
}

func TestNVMLDeviceCountError(t *testing.T) {
	s := newDGX(t)
	s.DeviceGetCountFunc = func() (int, nvml.Return) { return 0, nvml.ERROR_UNKNOWN }
	_, err := gpu.NewNVML(s, env(), nil).Visible()
	if err == nil || err.Error() != "nvml get device count: ERROR_UNKNOWN" {
		t.Errorf("Visible() error = %v", err)
	}
}

func TestNVMLInitFailsFallsBackToEnv(t *testing.T) {
	for _, tt := range []struct {
		env  []string
		want []string
		line string
	}{
		{[]string{"CUDA_VISIBLE_DEVICES", "0,1", "SLURM_JOB_GPUS", "4,5"}, []string{"0", "1"}, "using CUDA_VISIBLE_DEVICES"},
		{[]string{"SLURM_JOB_GPUS", "4,5"}, []string{"4", "5"}, "using SLURM_JOB_GPUS"},
		{[]string{"GPU_DEVICE_ORDINAL", "3"}, []string{"3"}, "using GPU_DEVICE_ORDINAL"},
		{[]string{"CUDA_VISIBLE_DEVICES", "MIG-1,MIG-2"}, []string{"MIG-1", "MIG-2"}, "using CUDA_VISIBLE_DEVICES"},
		{nil, nil, "no CUDA_VISIBLE_DEVICES or SLURM_JOB_GPUS set, so no GPUs"},
	} {
		s := newDGX(t) // and Shutdown must not be called
		s.InitFunc = func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }
		var warn bytes.Buffer
		g := gpu.NewNVML(s, env(tt.env...), &warn)
		got, err := g.Visible()
		wantLine := "NVML unavailable: ERROR_LIBRARY_NOT_FOUND; " + tt.line + "\n"
		if err != nil || !slices.Equal(ids(got), tt.want) || warn.String() != wantLine {
			t.Errorf("env %v: Visible() = %v, %v, warned %q; want %v and %q", tt.env, ids(got), err, warn.String(), tt.want, wantLine)
		}
		warn.Reset()
		inv, err := g.Inventory()
		if err != nil || len(inv.GPUs) != len(tt.want) || warn.String() != wantLine {
			t.Errorf("env %v: Inventory() = %+v, %v, warned %q", tt.env, inv, err, warn.String())
		}
		for i, gi := range inv.GPUs {
			if gi.ID != tt.want[i] || gi.Index != nil || gi.UtilizationPct != nil || gi.Name != "" || gi.Processes == nil { // [] not null in JSON
				t.Errorf("env %v: fallback entry %+v, want ID %s only", tt.env, gi, tt.want[i])
			}
		}
	}
}

// On a machine without the NVIDIA driver the real library falls back cleanly.
func TestSystemGPUsWithoutDriver(t *testing.T) {
	var warn bytes.Buffer
	got, err := gpu.System(env("CUDA_VISIBLE_DEVICES", "0,1"), &warn).Visible()
	if warn.Len() == 0 {
		t.Skipf("NVML works here (a driver is present): Visible() = %v, %v", ids(got), err)
	}
	t.Logf("%s", warn.String())
	if err != nil || !slices.Equal(ids(got), []string{"0", "1"}) {
		t.Errorf("Visible() = %v, %v; want the environment's 0,1", ids(got), err)
	}
	if line := warn.String(); !strings.HasPrefix(line, "NVML unavailable: ") || !strings.HasSuffix(line, "; using CUDA_VISIBLE_DEVICES\n") || strings.Count(line, "\n") != 1 {
		t.Errorf("warned %q, want one NVML unavailable line", line)
	}
}
