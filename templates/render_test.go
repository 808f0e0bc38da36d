package templates

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/goldentest"
)

func baseScript(role cluster.Role) Script {
	return Script{
		Role:       role,
		Cluster:    "exp1",
		ClusterID:  "0b7c2a4e-7f3c-4b53-9b1a-2f1f8a9c0d11",
		ClusterDir: "/home/ana/.sraybatch/clusters/exp1",
		Binary:     "/home/ana/.sraybatch/clusters/exp1/bin/sraybatch",
		TokenPath:  "/home/ana/.sraybatch/clusters/exp1/token",
		LogDir:     "/home/ana/.sraybatch/clusters/exp1/logs",
		Node: cluster.NodeSpec{
			GPUs: 2, CPUs: 8, Mem: "32G", Partition: "gpu", Account: "proj-42", QOS: "normal",
			Constraint: "a100&ib", SbatchArgs: []string{"--exclusive", "--mail-type=END"},
		},
		Time:        "2:00:00",
		DrainBefore: 120,
	}
}

func TestRenderGolden(t *testing.T) {
	worker := baseScript(cluster.RoleWorker)
	worker.HeadJob = "4242"
	array := worker
	array.Tasks = 3
	array.Time = "1:30:00"
	minimal := Script{
		Role: cluster.RoleHead, Cluster: "cpu-only", ClusterID: "id", ClusterDir: "/s/c dir/it's",
		Binary: "/s/c dir/it's/bin/sraybatch", TokenPath: "/s/c dir/it's/token", LogDir: "/s/logs", Insecure: true,
	}
	driver := baseScript(cluster.RoleDriver)
	driver.HeadJob = "4242"
	driver.Node = cluster.NodeSpec{CPUs: 1, Partition: "gpu"}
	driver.DriverArgv = []string{"python", "my driver.py", "--lr", "3e-4", "$(touch canary)", "it's"}
	typed := worker
	typed.WorkerType = "h100"
	typed.Node.Gres, typed.Node.GPUs = "gpu:h100:8", 8
	cases := map[string]Script{
		"worker-typed": typed,
		"driver":       driver,
		"head":         baseScript(cluster.RoleHead),
		"worker":       worker,
		"worker-array": array,
		"head-minimal": minimal,
	}
	for name, s := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := Render(s)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", name+".golden")
			goldentest.Check(t, path, got)
			out, err := exec.Command("bash", "-n", path).CombinedOutput()
			if err != nil {
				t.Errorf("bash -n %s: %v\n%s", path, err, out)
			}
		})
	}
}

func TestRenderRejectsBadInput(t *testing.T) {
	mutate := map[string]func(*Script){
		"newline in partition":  func(s *Script) { s.Node.Partition = "gpu\nrm -rf ~" },
		"space in account":      func(s *Script) { s.Node.Account = "a b" },
		"quote in qos":          func(s *Script) { s.Node.QOS = `n"` },
		"subshell in time":      func(s *Script) { s.Time = "$(touch x)" },
		"newline in sbatch-arg": func(s *Script) { s.Node.SbatchArgs = []string{"--exclusive\ntouch /tmp/x"} },
		"sbatch-arg not option": func(s *Script) { s.Node.SbatchArgs = []string{"touch"} },
		"NUL in binary":         func(s *Script) { s.Binary = "/bin/x\x00y" },
		"bad name":              func(s *Script) { s.Cluster = "Exp_1" },
		"space in log dir":      func(s *Script) { s.LogDir = "/a b" },
		"worker without head":   func(s *Script) { s.Role = cluster.RoleWorker },
		"negative gpus":         func(s *Script) { s.Node.GPUs = -1 },
		"space in gres":         func(s *Script) { s.Node.Gres = "gpu:h100 8" },
		"type on a head":        func(s *Script) { s.WorkerType = "cpu" },
		"bad type name":         func(s *Script) { s.Role, s.HeadJob, s.WorkerType = cluster.RoleWorker, "1", "CPU;x" },
	}
	for name, m := range mutate {
		t.Run(name, func(t *testing.T) {
			s := baseScript(cluster.RoleHead)
			m(&s)
			if _, err := Render(s); err == nil {
				t.Fatalf("Render accepted %s", name)
			} else if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestShellQuoteRoundTrip(t *testing.T) {
	for _, v := range []string{"", "plain", "it's", `$(touch x)`, "`id`", `a"b`, "; rm -rf /", `\`} {
		out, err := exec.Command("bash", "-c", "printf %s "+ShellQuote(v)).Output()
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != v {
			t.Errorf("ShellQuote(%q) came back as %q", v, out)
		}
	}
}

// ScriptExports names exactly what the batch script exports: jobs submitted
// from inside a job drop those (slurm.LoginEnv), so the list and the
// template must agree.
func TestScriptExports(t *testing.T) {
	t.Parallel()
	script, err := Render(Script{Role: cluster.RoleHead, Cluster: "exp1", ClusterID: "id", ClusterDir: "/c", Binary: "/c/bin/sraybatch",
		TokenPath: "/c/token", LogDir: "/c/logs"})
	if err != nil {
		t.Fatal(err)
	}
	var exported []string
	for _, m := range regexp.MustCompile(`(?m)^export ([A-Z_]+)=`).FindAllStringSubmatch(string(script), -1) {
		exported = append(exported, m[1])
	}
	if !slices.Equal(exported, ScriptExports) {
		t.Errorf("the script exports %v, ScriptExports says %v", exported, ScriptExports)
	}
}

// A rollover cluster's driver script carries --max-restarts (0 too); any
// other script renders as before.
func TestDriverMaxRestarts(t *testing.T) {
	t.Parallel()
	base := Script{Role: cluster.RoleDriver, Cluster: "exp1", ClusterID: "id", ClusterDir: "/c", Binary: "/c/bin/sraybatch",
		TokenPath: "/c/token", LogDir: "/c/logs", HeadJob: "41", DriverArgv: []string{"python3", "train.py"}}
	plain, err := Render(base)
	if err != nil || strings.Contains(string(plain), "--max-restarts") {
		t.Fatalf("without MaxRestarts: %v\n%s", err, plain)
	}
	for _, n := range []int{0, 3} {
		s := base
		s.MaxRestarts = &n
		script, err := Render(s)
		if want := fmt.Sprintf(" --head-job 41 --max-restarts %d -- 'python3' 'train.py'\n", n); err != nil || !strings.Contains(string(script), want) {
			t.Errorf("MaxRestarts %d: %v, want %q in\n%s", n, err, want, script)
		}
	}
}

// A worker or driver follows its head job by id, or by array task key: a
// rollover cluster's head may be a promoted task of a worker array.
func TestHeadJobKeys(t *testing.T) {
	for key, ok := range map[string]bool{"4242": true, "4242_3": true, "4242_": false, "_3": false, "4242_3_1": false, "42 42": false, "4242\n#SBATCH -x": false} {
		s := baseScript(cluster.RoleWorker)
		s.HeadJob = key
		script, err := Render(s)
		if (err == nil) != ok || (ok && !strings.Contains(string(script), "#SBATCH --dependency=after:"+key+"\n")) {
			t.Errorf("head job %q: Render error %v, want ok %v", key, err, ok)
		}
	}
}

// A successor driver job names the driver job it follows and the restarts
// so far; no other job does, and a bad job id is refused.
func TestDriverFollows(t *testing.T) {
	t.Parallel()
	driverScript := func() Script {
		return Script{Role: cluster.RoleDriver, Cluster: "exp1", ClusterID: "id", ClusterDir: "/c", Binary: "/c/bin/sraybatch",
			TokenPath: "/c/token", LogDir: "/c/logs", HeadJob: "41", DriverArgv: []string{"python3", "train.py"}}
	}
	s := driverScript()
	s.Follows, s.Restarts = "41", 3
	script, err := Render(s)
	if err != nil || !strings.Contains(string(script), " --follows 41 --restarts 3 -- ") {
		t.Fatalf("follows: %v\n%s", err, script)
	}
	bad := s
	bad.Follows = "41; rm -rf ~"
	if _, err := Render(bad); err == nil {
		t.Error("a bad job id to follow rendered")
	}
	neg := s
	neg.Restarts = -1
	if _, err := Render(neg); err == nil {
		t.Error("a negative restart count rendered")
	}
	w := driverScript()
	w.Role, w.DriverArgv, w.Follows = cluster.RoleWorker, nil, "41"
	if _, err := Render(w); err == nil {
		t.Error("a worker that follows a driver job rendered")
	}
}
