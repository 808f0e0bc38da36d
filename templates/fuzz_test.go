package templates

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

// FuzzRender feeds arbitrary values through the renderer: whatever it accepts
// must be a script that bash parses, whose only command lines are ours.
func FuzzRender(f *testing.F) {
	f.Add("gpu", "2:00:00", "--exclusive", "/tmp/x")
	f.Add("$(touch canary)", "`id`", "--x=';touch c'", "/tmp/it's")
	f.Add("a\nb", "1:00", "--y\n", "/p")
	f.Fuzz(func(t *testing.T, partition, timeLimit, sbatchArg, dir string) {
		s := Script{
			Role: cluster.RoleWorker, Cluster: "fz", ClusterID: "id", ClusterDir: dir, Binary: dir + "/bin/sraybatch",
			TokenPath: dir + "/token", LogDir: "/logs", HeadJob: "1", Time: timeLimit,
			Node: cluster.NodeSpec{Partition: partition, SbatchArgs: []string{sbatchArg}},
		}
		out, err := Render(s)
		if err != nil {
			return
		}
		var code []string
		for _, line := range strings.Split(string(out), "\n") {
			if line != "" && !strings.HasPrefix(line, "#") {
				code = append(code, line)
			}
		}
		if len(code) != 5 {
			t.Fatalf("script has %d command lines, want 5:\n%s", len(code), out)
		}
		path := filepath.Join(t.TempDir(), "s.sh")
		if err := os.WriteFile(path, out, 0o600); err != nil {
			t.Fatal(err)
		}
		if msg, err := exec.Command("bash", "-n", path).CombinedOutput(); err != nil {
			t.Fatalf("bash -n: %v\n%s\n%s", err, msg, out)
		}
	})
}
