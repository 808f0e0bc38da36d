package container

import (
	"slices"
	"strings"
	"testing"

	"github.com/sraybatch/sraybatch/internal/goldentest"
)

// node is a Ray node's environment after --setup, with what must stay out
// of the image: the host's PATH, HOME, TMPDIR and a module's variables.
var node = []string{
	"PATH=/home/u/venv/bin:/usr/bin", "HOME=/home/u", "USER=u", "TMPDIR=/local/u",
	"LD_LIBRARY_PATH=/opt/cuda/lib64", "PYTHONPATH=/home/u/lib", "SLURM_JOB_ID=42",
	"RAY_AUTH_MODE=token", "RAY_AUTH_TOKEN_PATH=/home/u/.sraybatch/c/token", "CUDA_VISIBLE_DEVICES=0",
	"SRAYBATCH_JOB=42", "DASHBOARD_METRIC_PORT=40001", "RAY_ADDRESS=10.0.0.1:6379",
}

func TestCommandGolden(t *testing.T) {
	run := Run{
		Image: "/scratch/u/ray.img",
		Env:   Inside(node, nil, "HOME=/tmp/srb-42-1/home", "PATH="+PathFor("/opt/venv/bin/ray")),
		Host:  node,
		GPUs:  true,
		Dir:   "/tmp/srb-42-1",
	}
	cmd := []string{"/opt/venv/bin/ray", "start", "--block", "--head"}
	for _, rt := range Runtimes {
		t.Run(string(rt), func(t *testing.T) {
			r := run
			r.Runtime = rt
			r.Binds = append(SamePath([]string{"/home/u/.sraybatch/c", "/tmp/srb-42-1"}, rt.SharesTmp()), Bind{"/scratch/u/data", "/data"})
			c := r.Command(cmd)
			var b strings.Builder
			b.WriteString("# argv, one element a line\n")
			for _, a := range c.Argv {
				b.WriteString(a + "\n")
			}
			b.WriteString("# the runtime process's environment\n")
			for _, kv := range c.Env {
				b.WriteString(kv + "\n")
			}
			goldentest.Check(t, "testdata/"+string(rt)+".golden", []byte(b.String()))
			for _, kv := range c.Env {
				if strings.HasPrefix(kv, "TMPDIR=") || strings.HasPrefix(kv, "LD_LIBRARY_PATH=") {
					t.Errorf("%s reaches the runtime: %v", kv, c.Env)
				}
			}
		})
	}
}

func TestInsideKeepsOnlyWhatRayNeeds(t *testing.T) {
	got := Inside(node, []string{"SLURM_JOB_ID"}, "HOME=/tmp/h", "PATH="+DefaultPath)
	want := []string{
		"CUDA_VISIBLE_DEVICES=0", "DASHBOARD_METRIC_PORT=40001", "HOME=/tmp/h", "PATH=" + DefaultPath,
		"RAY_ADDRESS=10.0.0.1:6379", "RAY_AUTH_MODE=token", "RAY_AUTH_TOKEN_PATH=/home/u/.sraybatch/c/token",
		"SLURM_JOB_ID=42", "SRAYBATCH_JOB=42", "USER=u",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Inside:\n got %v\nwant %v", got, want)
	}
}

func TestParseBind(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Bind
		bad  bool
	}{
		{in: "/scratch/data:/data", want: Bind{"/scratch/data", "/data"}},
		{in: "/scratch/data/:/data/", want: Bind{"/scratch/data", "/data"}},
		{in: "data:/data", bad: true},
		{in: "/data", bad: true},
		{in: "/a:/b:ro", bad: true},
		{in: "/a,b:/c", bad: true},
		{in: "/a:/", bad: true},
	} {
		got, err := ParseBind(tc.in)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("ParseBind(%q) = %v, %v; want %v, bad %v", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

func TestSamePath(t *testing.T) {
	got := SamePath([]string{"/home/u/.sraybatch/c", "/home/u/logs", "/var/spool/c", "/tmp/srb-1", "/scratch/x"}, true)
	want := []Bind{{"/home", "/home"}, {"/var/spool/c", "/var/spool/c"}, {"/scratch", "/scratch"}}
	if !slices.Equal(got, want) {
		t.Errorf("SamePath = %v, want %v", got, want)
	}
	if got := SamePath([]string{"/tmp/srb-1"}, false); !slices.Equal(got, []Bind{{"/tmp/srb-1", "/tmp/srb-1"}}) {
		t.Errorf("SamePath without a shared /tmp = %v, want /tmp bound", got)
	}
}

func TestRuntimeOfImage(t *testing.T) {
	for _, tc := range []struct {
		image string
		dir   bool
		want  Runtime
	}{
		{"/s/ray", true, Charliecloud},
		{"/s/ray.sqfs", false, Charliecloud},
		{"/s/ray.sif", false, Apptainer},
		{"/s/ray.sqsh", false, ""},
	} {
		if got := FromImage(tc.image, tc.dir); got != tc.want {
			t.Errorf("FromImage(%q, %v) = %q, want %q", tc.image, tc.dir, got, tc.want)
		}
	}
	if _, err := ParseRuntime("docker"); err == nil || !strings.Contains(err.Error(), "charliecloud, apptainer") {
		t.Errorf("ParseRuntime(docker) = %v, want the list of runtimes", err)
	}
	if !Charliecloud.KeepsParent("/s/ray.sqfs") || Charliecloud.KeepsParent("/s/ray") {
		t.Error("ch-run keeps its FUSE parent for a SquashFS image only")
	}
}

func TestMountPoints(t *testing.T) {
	got := Charliecloud.MountPoints([]Bind{{"/home", "/home"}, {"/s/data", "/data"}})
	want := []string{"/dev", "/proc", "/sys", "/tmp", "/home", "/data"}
	if !slices.Equal(got, want) {
		t.Errorf("MountPoints = %v, want %v", got, want)
	}
	if got := Apptainer.MountPoints([]Bind{{"/s", "/s"}}); got != nil {
		t.Errorf("Apptainer creates its own mount points, got %v", got)
	}
}

func TestValidEnvName(t *testing.T) {
	for name, ok := range map[string]bool{"HF_HOME": true, "_X1": true, "OMP_NUM_THREADS": true, "": false, "1X": false, "A-B": false, "HOME": false, "PATH": false, "A=B": false} {
		if err := ValidEnvName(name); (err == nil) != ok {
			t.Errorf("ValidEnvName(%q) = %v, want ok %v", name, err, ok)
		}
	}
}

func TestProbe(t *testing.T) {
	v, err := ParseProbe("some warning\nsraybatch-probe 2.60.0 3.11.2\n")
	if err != nil || v != (Versions{Ray: "2.60.0", Python: "3.11.2"}) {
		t.Errorf("ParseProbe = %v, %v", v, err)
	}
	if _, err := ParseProbe("Traceback (most recent call last):\nModuleNotFoundError: No module named 'ray'\n"); err == nil || err.Error() != "ModuleNotFoundError: No module named 'ray'" {
		t.Errorf("ParseProbe without ray = %v, want the last line", err)
	}
	if got := PythonFor("/opt/venv/bin/ray"); got != "/opt/venv/bin/python3" {
		t.Errorf("PythonFor(/opt/venv/bin/ray) = %s", got)
	}
	if got := PythonFor("ray"); got != "python3" {
		t.Errorf("PythonFor(ray) = %s", got)
	}
	same := Versions{Ray: "2.60.0", Python: "3.11.2"}
	if why := Mismatch("/i", same, same); why != "" {
		t.Errorf("Mismatch of equal versions = %q", why)
	}
	why := Mismatch("/i", Versions{Ray: "2.60.0", Python: "3.11.4"}, same)
	for _, want := range []string{"ray 2.60.0 and Python 3.11.4", "cluster runs ray 2.60.0 and Python 3.11.2", "patch level"} {
		if !strings.Contains(why, want) {
			t.Errorf("Mismatch = %q, want %q in it", why, want)
		}
	}
	dirs := SquashFSDirs("Parallel unsquashfs: Using 2 processors\nsquashfs-root\nsquashfs-root/dev\nsquashfs-root/opt/venv\n")
	if !dirs["/dev"] || !dirs["/opt/venv"] || dirs[""] || len(dirs) != 2 {
		t.Errorf("SquashFSDirs = %v", dirs)
	}
}
