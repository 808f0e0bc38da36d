package raynode

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/goldentest"
)

// goldenSupervisor is a supervisor as Run would set it up in job 7 of
// cluster exp1 on a node with 64 GiB and 16 CPUs allocated.
func goldenSupervisor(role cluster.Role, job string) *supervisor {
	env := map[string]string{"SLURM_MEM_PER_NODE": "65536", "SLURM_CPUS_ON_NODE": "16"}
	return &supervisor{
		cfg:  Config{Role: role, Getenv: func(k string) string { return env[k] }},
		spec: cluster.Spec{Name: "exp1", ObjectStoreMB: 8192},
		rec:  cluster.NodeRecord{Job: job, Role: role},
	}
}

// typedSupervisor is the worker of job 9, of a type "cpu" that advertises
// a custom resource and a label besides Ray's own.
func typedSupervisor() *supervisor {
	s := goldenSupervisor(cluster.RoleWorker, "9")
	s.cfg.WorkerType = cluster.WorkerType{
		Name: "cpu", Resources: map[string]float64{"decode": 4, "ssd": 1}, Labels: map[string]string{"zone": "b", "disk": "nvme"},
	}
	return s
}

// gpuTypeSupervisor is the worker of job 10, of a 2-GPU type "gpu" in a
// cluster that also has a CPU type: it advertises one CPU per GPU of its 16.
func gpuTypeSupervisor() *supervisor {
	s := goldenSupervisor(cluster.RoleWorker, "10")
	gpu := cluster.WorkerType{Name: "gpu", Node: cluster.NodeSpec{GPUs: 2, CPUs: 16}}
	s.spec.Workers = []cluster.WorkerType{gpu, {Name: "cpu", Node: cluster.NodeSpec{CPUs: 16}}}
	s.cfg.WorkerType = gpu
	return s
}

var goldenPorts = Ports{
	GCS: 20000, Dashboard: 20001, ClientServer: 20002, NodeManager: 20003, ObjectManager: 20004,
	AgentListen: 20005, AgentGRPC: 20006, MetricsExport: 20007, RuntimeEnv: 20008,
	AutoscalerMetrics: 20009, DashboardMetrics: 20010, Scrape: 20011,
	MinWorker: 20012, MaxWorker: 20074,
}

func TestStartArgvGolden(t *testing.T) {
	t.Parallel()
	cases := map[string]StartParams{
		"ray-start-head": goldenSupervisor(cluster.RoleHead, "7").
			startParams("10.1.2.3", 4, goldenPorts, "/tmp/srb-7-123", cluster.HeadInfo{}),
		"ray-start-worker": goldenSupervisor(cluster.RoleWorker, "8_1").
			startParams("10.1.2.4", 2, goldenPorts, "/tmp/srb-8_1-456", cluster.HeadInfo{Address: "10.1.2.3:20000"}),
		"ray-start-worker-typed": typedSupervisor().
			startParams("10.1.2.5", 0, goldenPorts, "/tmp/srb-9-789", cluster.HeadInfo{Address: "10.1.2.3:20000"}),
		"ray-start-worker-gpu-capped": gpuTypeSupervisor().
			startParams("10.1.2.6", 2, goldenPorts, "/tmp/srb-10-1", cluster.HeadInfo{Address: "10.1.2.3:20000"}),
	}
	for name, p := range cases {
		t.Run(name, func(t *testing.T) {
			got := strings.Join(append(p.Env(), p.Argv()...), "\n") + "\n"
			goldentest.Check(t, filepath.Join("testdata", name+".golden"), []byte(got))
		})
	}
}

// The supervisor's params carry what the node needs to be found again and to
// stay inside its allocation.
func TestStartParams(t *testing.T) {
	t.Parallel()
	head := goldenSupervisor(cluster.RoleHead, "7").startParams("10.1.2.3", 4, goldenPorts, "/tmp/t", cluster.HeadInfo{})
	worker := goldenSupervisor(cluster.RoleWorker, "8_1").startParams("10.1.2.4", 2, goldenPorts, "/tmp/t", cluster.HeadInfo{Address: "10.1.2.3:20000"})

	if !head.Head || worker.Head {
		t.Errorf("Head = %v / %v, want true for the head only", head.Head, worker.Head)
	}
	if head.Resources[cluster.JobResource("7")] != 1 || worker.Resources[cluster.JobResource("8_1")] != 1 {
		t.Errorf("job resources = %v / %v", head.Resources, worker.Resources)
	}
	for k, want := range map[string]string{
		"dashboard-host": "127.0.0.1", "include-dashboard": "true", "port": "20000", "num-gpus": "4",
		"num-cpus": "16", "memory": "41231686041", "object-store-memory": "8589934592",
	} {
		if head.Params[k] != want {
			t.Errorf("head --%s = %q, want %q", k, head.Params[k], want)
		}
	}
	if _, ok := head.Params["address"]; ok {
		t.Error("head has --address")
	}
	if worker.Params["address"] != "10.1.2.3:20000" {
		t.Errorf("worker --address = %q", worker.Params["address"])
	}
	for _, k := range []string{"port", "dashboard-port", "ray-client-server-port", "include-dashboard"} {
		if _, ok := worker.Params[k]; ok {
			t.Errorf("worker has head-only --%s", k)
		}
	}
	if worker.Labels["sraybatch-job"] != "8_1" || worker.Labels["sraybatch-role"] != "worker" || worker.Labels["sraybatch-cluster"] != "exp1" {
		t.Errorf("worker labels = %v", worker.Labels)
	}
}

func TestArgvDeterministicAndSorted(t *testing.T) {
	t.Parallel()
	mk := func() StartParams {
		return StartParams{
			Flags:     []string{"disable-usage-stats", "autoscaling-config-off", "verbose"},
			Params:    map[string]string{"temp-dir": "/tmp/x", "address": "10.0.0.1:6379", "num-gpus": "2", "node-ip-address": "10.0.0.2"},
			Resources: map[string]float64{"sraybatch_job_7": 1, "accel_a100": 2, "B": 0.5},
			Labels:    map[string]string{"z": "1", "a": "2", "m": "3"},
		}
	}
	want := []string{
		"start", "--block",
		"--autoscaling-config-off", "--disable-usage-stats", "--verbose",
		"--address=10.0.0.1:6379",
		"--labels=a=2,m=3,z=1",
		"--node-ip-address=10.0.0.2",
		"--num-gpus=2",
		`--resources={"B":0.5,"accel_a100":2,"sraybatch_job_7":1}`,
		"--temp-dir=/tmp/x",
	}
	for i := range 50 {
		if got := mk().Argv(); !slices.Equal(got, want) {
			t.Fatalf("call %d: Argv() =\n%q\nwant\n%q", i, got, want)
		}
	}
}

func TestArgv(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		p    StartParams
		want []string
	}{
		{"empty still blocks", StartParams{}, []string{"start", "--block"}},
		{"head", StartParams{Head: true}, []string{"start", "--block", "--head"}},
		{"flags have no value", StartParams{Flags: []string{"b", "a"}}, []string{"start", "--block", "--a", "--b"}},
		{"empty value kept", StartParams{Params: map[string]string{"x": ""}}, []string{"start", "--block", "--x="}},
		{"false is explicit", StartParams{Params: map[string]string{"include-dashboard": "false"}}, []string{"start", "--block", "--include-dashboard=false"}},
		{"empty maps add nothing", StartParams{Resources: map[string]float64{}, Labels: map[string]string{}}, []string{"start", "--block"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.p.Argv(); !slices.Equal(got, tt.want) {
				t.Errorf("Argv() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestArgvDoesNotChangeItsInput(t *testing.T) {
	t.Parallel()
	p := StartParams{
		Flags:     []string{"z", "a"},
		Params:    map[string]string{"k": "v"},
		Resources: map[string]float64{"r": 1},
		Labels:    map[string]string{"l": "1"},
	}
	p.Argv()
	if !slices.Equal(p.Flags, []string{"z", "a"}) {
		t.Errorf("Argv sorted the caller's Flags: %v", p.Flags)
	}
	if len(p.Params) != 1 || p.Params["k"] != "v" {
		t.Errorf("Argv changed the caller's Params: %v", p.Params)
	}
}

func TestParseRayVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    Version
		wantErr bool
	}{
		{"ray, version 2.60.0", Version{2, 60, 0}, false},
		{"ray, version 2.60.0\n", Version{2, 60, 0}, false},
		{"2.52.0rc1", Version{2, 52, 0}, false},
		{"ray, version 2.52.0rc1", Version{2, 52, 0}, false},
		{"ray, version 2.53.1.dev0", Version{2, 53, 1}, false},
		{"ray, version 3.0", Version{3, 0, 0}, false},
		{"2024-06-01 WARNING something odd\nray, version 2.52.1", Version{2, 52, 1}, false},
		{"", Version{}, true},
		{"   \n", Version{}, true},
		{"garbage", Version{}, true},
		{"ray, version 2", Version{}, true},
		{"ray, version x.y.z", Version{}, true},
		{"command not found: ray", Version{}, true},
	}
	for _, tt := range tests {
		got, err := ParseRayVersion(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseRayVersion(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), "ray --version") {
			t.Errorf("ParseRayVersion(%q) error %q does not name `ray --version`", tt.in, err)
		}
	}
}

func TestVersionAtLeast(t *testing.T) {
	t.Parallel()
	tests := []struct {
		v, o Version
		want bool
	}{
		{Version{2, 52, 0}, MinAuthVersion, true},
		{Version{2, 60, 0}, MinAuthVersion, true},
		{Version{2, 51, 9}, MinAuthVersion, false},
		{Version{3, 0, 0}, MinAuthVersion, true},
		{Version{1, 99, 99}, MinAuthVersion, false},
		{Version{2, 52, 1}, Version{2, 52, 2}, false},
		{Version{2, 52, 3}, Version{2, 52, 2}, true},
		{Version{2, 9, 0}, Version{2, 10, 0}, false},
	}
	for _, tt := range tests {
		if got := tt.v.AtLeast(tt.o); got != tt.want {
			t.Errorf("%v.AtLeast(%v) = %v, want %v", tt.v, tt.o, got, tt.want)
		}
	}
	if s := (Version{2, 52, 0}).String(); s != "2.52.0" {
		t.Errorf("String() = %q", s)
	}
}
