package templates

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/testci"
)

// injectPayloads try to break out of every quoting and comment context the
// script has. Each tries to create a file named CANARY in the working directory.
var injectPayloads = []string{
	"$(touch CANARY)",
	"`touch CANARY`",
	"'; touch CANARY; '",
	`"; touch CANARY; "`,
	`'"$(touch CANARY)"'`,
	";touch CANARY",
	"&& touch CANARY",
	"|touch CANARY",
	">CANARY",
	"\ntouch CANARY\n",
	"x\rtouch CANARY",
	"${IFS}touch${IFS}CANARY",
	"$'\\ntouch CANARY'",
	`\`,
	`"`,
	";",
	"&&",
	"*",
	"#",
	"-- --cluster-dir",
	"a\x00touch CANARY",
}

// injectField sends a payload through one field of a script; root is the
// test's temp dir, where path fields must stay.
type injectField struct {
	name string
	set  func(s *Script, root, payload string)
}

var injectFields = []injectField{
	{"cluster name", func(s *Script, _, p string) { s.Cluster = p }},
	{"cluster id", func(s *Script, _, p string) { s.ClusterID = p }},
	{"cluster dir", func(s *Script, root, p string) { s.ClusterDir = filepath.Join(root, p, "c") }},
	{"binary", func(s *Script, root, p string) { s.Binary = filepath.Join(root, p, "bin", "sraybatch") }},
	{"token path", func(s *Script, root, p string) { s.TokenPath = filepath.Join(root, "c", p) }},
	{"log dir", func(s *Script, root, p string) { s.LogDir = filepath.Join(root, p, "logs") }},
	{"partition", func(s *Script, _, p string) { s.Node.Partition = p }},
	{"partition suffix", func(s *Script, _, p string) { s.Node.Partition = "gpu" + p }},
	{"account", func(s *Script, _, p string) { s.Node.Account = p }},
	{"qos", func(s *Script, _, p string) { s.Node.QOS = p }},
	{"constraint", func(s *Script, _, p string) { s.Node.Constraint = "a100" + p }},
	{"time", func(s *Script, _, p string) { s.Time = "1:00:00" + p }},
	{"mem", func(s *Script, _, p string) { s.Node.Mem = "4G" + p }},
	{"sbatch arg", func(s *Script, _, p string) { s.Node.SbatchArgs = []string{"--comment=" + p} }},
	{"sbatch arg bare", func(s *Script, _, p string) { s.Node.SbatchArgs = []string{"--exclusive", p} }},
	{"head job", func(s *Script, _, p string) {
		if s.Role != cluster.RoleHead {
			s.HeadJob = "7" + p
		}
	}},
	{"driver argv", func(s *Script, _, p string) {
		if s.Role == cluster.RoleDriver {
			s.DriverArgv = []string{"python", p, "--arg=" + p, "it's " + p}
		}
	}},
}

// injectScript is a valid script of a role whose paths all lie under root.
func injectScript(role cluster.Role, root string) Script {
	s := Script{
		Role: role, Cluster: "inj", ClusterID: "0b7c2a4e", ClusterDir: filepath.Join(root, "c"),
		Binary: filepath.Join(root, "c", "bin", "sraybatch"), TokenPath: filepath.Join(root, "c", "token"),
		LogDir: filepath.Join(root, "c", "logs"), Time: "1:00:00", DrainBefore: 120,
		Node: cluster.NodeSpec{GPUs: 1, CPUs: 2, Mem: "4G", Partition: "gpu", Account: "proj", QOS: "normal", Constraint: "a100"},
	}
	if role != cluster.RoleHead {
		s.HeadJob = "7"
	}
	if role == cluster.RoleDriver {
		s.DriverArgv = []string{"python", "driver.py"}
	}
	return s
}

// TestRenderInjection sends every payload through every field of every role:
// Render either refuses it with a one-line error, or the script it renders,
// run by bash, does nothing but exec the supervisor with exactly the intended
// argv and auth environment.
func TestRenderInjection(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		testci.SkipOutsideCI(t, "needs bash")
	}
	var accepted, rejected int
	for _, role := range []cluster.Role{cluster.RoleHead, cluster.RoleWorker, cluster.RoleDriver} {
		for _, f := range injectFields {
			for i, p := range injectPayloads {
				root := t.TempDir()
				s := injectScript(role, root)
				s.Insecure = i%2 == 1
				f.set(&s, root, p)
				out, err := Render(s)
				if err != nil {
					rejected++
					if msg := err.Error(); strings.ContainsAny(msg, "\n\r") {
						t.Errorf("%s/%s/payload %d: error is not one line: %q", role, f.name, i, msg)
					}
					continue
				}
				accepted++
				// A payload may not add lines: #SBATCH directives and code are
				// line-based. Driver arguments are quoted words that may hold
				// newlines, after the last directive; running the script checks them.
				ref := injectScript(role, root)
				ref.Insecure = s.Insecure
				f.set(&ref, root, "-x")
				if want, err := Render(ref); err == nil && f.name != "driver argv" && bytes.Count(out, []byte("\n")) != bytes.Count(want, []byte("\n")) {
					t.Errorf("%s/%s/%q: the payload changed the script's line count:\n%s", role, f.name, p, out)
				}
				runInjected(t, bash, root, s, out, fmt.Sprintf("%s/%s/%q", role, f.name, p))
			}
		}
	}
	t.Logf("%d renders accepted and executed, %d refused", accepted, rejected)
	if accepted == 0 || rejected == 0 {
		t.Errorf("accepted %d, rejected %d: the payloads no longer exercise both paths", accepted, rejected)
	}
}

// runInjected runs a rendered script as the batch job would, with stub ray,
// module and sbatch first on PATH and a stub supervisor at s.Binary.
func runInjected(t *testing.T, bash, root string, s Script, script []byte, what string) {
	t.Helper()
	stubs := filepath.Join(root, "stubs")
	called := filepath.Join(root, "called")
	for _, dir := range []string{stubs, called, filepath.Dir(s.Binary)} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"ray", "module", "sbatch"} {
		stub := "#!/bin/sh\ntouch \"$SRB_CALLED/" + name + "\"\n"
		if err := os.WriteFile(filepath.Join(stubs, name), []byte(stub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	supervisor := "#!/bin/sh\n" +
		"printf '%s\\0' \"$0\" \"$@\" > \"$SRB_ARGV\"\n" +
		"printf '%s\\0' \"${RAY_AUTH_MODE-unset}\" \"${RAY_AUTH_TOKEN_PATH-unset}\" \"${RAY_AUTH_TOKEN-unset}\" \"${RAY_ADDRESS-unset}\" > \"$SRB_ARGV.env\"\n"
	if err := os.WriteFile(s.Binary, []byte(supervisor), 0o700); err != nil {
		t.Fatal(err)
	}
	scriptPath := filepath.Join(root, "job.sbatch")
	if err := os.WriteFile(scriptPath, script, 0o600); err != nil {
		t.Fatal(err)
	}
	before := tree(t, root)
	argvFile := filepath.Join(root, "argv")
	cmd := exec.Command(bash, scriptPath)
	cmd.Dir = root
	cmd.Env = []string{
		"PATH=" + stubs + ":/usr/bin:/bin", "HOME=" + root, "SRB_CALLED=" + called, "SRB_ARGV=" + argvFile,
		"RAY_AUTH_TOKEN=leaked-from-login", "RAY_ADDRESS=10.9.9.9:1",
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Errorf("%s: script failed: %v: %s\n%s", what, err, stderr.String(), script)
	}

	after := tree(t, root)
	var created []string
	for _, p := range after {
		if !slices.Contains(before, p) && p != argvFile && p != argvFile+".env" {
			created = append(created, p)
		}
	}
	if len(created) > 0 {
		t.Errorf("%s: the script created %q (injected code ran):\n%s", what, created, script)
	}

	want := []string{s.Binary, "node", string(s.Role), "--cluster-dir", s.ClusterDir}
	if s.HeadJob != "" {
		want = append(want, "--head-job", s.HeadJob)
	}
	if len(s.DriverArgv) > 0 {
		want = append(append(want, "--"), s.DriverArgv...)
	}
	if got := nulFields(t, argvFile); !slices.Equal(got, want) {
		t.Errorf("%s: supervisor argv\n got %q\nwant %q\n%s", what, got, want, script)
	}
	mode := "token"
	if s.Insecure {
		mode = "disabled"
	}
	if got, want := nulFields(t, argvFile+".env"), []string{mode, s.TokenPath, "unset", "unset"}; !slices.Equal(got, want) {
		t.Errorf("%s: supervisor's RAY_AUTH_MODE, RAY_AUTH_TOKEN_PATH, RAY_AUTH_TOKEN, RAY_ADDRESS = %q, want %q", what, got, want)
	}
}

// tree lists every path under root, sorted.
func tree(t *testing.T, root string) []string {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(paths)
	return paths
}

func nulFields(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("the stub supervisor did not run: %v", err)
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
}
