package main

// The injection test of `up`'s rendered scripts: a unit test (no SLURM, no
// Ray), kept apart from the end-to-end security test so it runs without the
// e2e build tag.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/backend"
	"github.com/sraybatch/sraybatch/internal/clock"
	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/testci"
	"github.com/sraybatch/sraybatch/slurm"
	"github.com/sraybatch/sraybatch/slurm/slurmtest"
)

// TestUpDryRunInjection sends injection payloads through every flag of `up`
// and through the state directory's path (a unit test: no SLURM, no Ray). The
// rendered scripts run under bash with stub ray, module and sbatch first on
// PATH and a stub supervisor at the cluster's binary path: no payload may run,
// and the supervisor must get exactly the intended argv.
func TestUpDryRunInjection(t *testing.T) {
	t.Parallel()
	bash, err := exec.LookPath("bash")
	if err != nil {
		testci.SkipOutsideCI(t, "needs bash")
	}
	payloads := []string{
		"$(touch CANARY)", "`touch CANARY`", "'; touch CANARY; '", `"; touch CANARY; "`, ";touch CANARY",
		"&& touch CANARY", "|touch CANARY", ">CANARY", "\ntouch CANARY\n", "x\rtouch CANARY",
		"${IFS}touch${IFS}CANARY", `\`, `"`, ";", "&&", "*", "#", "-- --cluster-dir", "a\x00touch CANARY",
	}
	fields := []struct {
		name string
		set  func(o *upOptions, home *string, root, p string)
	}{
		{"SRAYBATCH_HOME", func(_ *upOptions, home *string, root, p string) { *home = filepath.Join(root, p) }},
		{"--log-dir", func(o *upOptions, _ *string, root, p string) { o.LogDir = filepath.Join(root, p, "logs") }},
		{"--name", func(o *upOptions, _ *string, _, p string) { o.Name = p }},
		{"--partition", func(o *upOptions, _ *string, _, p string) { o.Node.Partition = p }},
		{"--account", func(o *upOptions, _ *string, _, p string) { o.Node.Account = "proj" + p }},
		{"--qos", func(o *upOptions, _ *string, _, p string) { o.Node.QOS = p }},
		{"--constraint", func(o *upOptions, _ *string, _, p string) { o.Node.Constraint = "a100" + p }},
		{"--mem", func(o *upOptions, _ *string, _, p string) { o.Node.Mem = "4G" + p }},
		{"--time", func(o *upOptions, _ *string, _, p string) { o.Node.Time = "1:00:00" + p }},
		{"--sbatch-arg", func(o *upOptions, _ *string, _, p string) { o.Node.SbatchArgs = []string{"--comment=" + p} }},
		{"--sbatch-arg bare", func(o *upOptions, _ *string, _, p string) { o.Node.SbatchArgs = []string{p} }},
		{"--setup", func(o *upOptions, _ *string, _, p string) { o.Setup = "touch SETUP-RAN " + p }},
		{"--ray", func(o *upOptions, _ *string, root, p string) { o.Ray = filepath.Join(root, p, "ray") }},
		{"--node-ip", func(o *upOptions, _ *string, _, p string) { o.NodeIP = p }},
		{"--interface", func(o *upOptions, _ *string, _, p string) { o.Interface = p }},
	}
	var accepted, rejected int
	for _, f := range fields {
		for _, p := range payloads {
			what := fmt.Sprintf("%s %q", f.name, p)
			root := t.TempDir()
			home := filepath.Join(root, "home")
			o := upOptions{Name: "inj", Node: cluster.NodeSpec{GPUs: 1, Partition: "gpu", Time: "1:00:00"}, Workers: 2,
				DryRun: true, ObjectStoreMB: 80, DrainBefore: 2 * time.Minute}
			f.set(&o, &home, root, p)
			a := &app{store: cluster.Store{Root: filepath.Join(home, "clusters")}, backends: backend.Schedulers{Slurm: slurm.New(slurmtest.NewRunner(t), uProgs)}, clock: clock.System{}}
			var s uStreams
			err := runUp(context.Background(), s.io(false), a, o)
			if !strings.ContainsRune(a.store.Root, 0) { // a path with NUL cannot exist
				if got := storeEntries(t, a.store); len(got) != 0 {
					t.Errorf("%s: dry run created %v", what, got)
				}
			}
			if err != nil {
				rejected++
				var ue usageError
				if !errors.As(err, &ue) || strings.ContainsAny(err.Error(), "\n\r") || s.out.Len() > 0 {
					t.Errorf("%s: %v (%T), want a one-line usage error and no output", what, err, err)
				}
				continue
			}
			accepted++
			out := s.out.String()
			if o.Setup != "" && strings.Contains(out, "SETUP-RAN") {
				t.Errorf("%s: --setup reached the script:\n%s", what, out)
			}
			headScript, workerScript, ok := strings.Cut(out, "\n# worker job script")
			if !ok || !strings.HasPrefix(headScript, "# head job script\n#!/bin/bash\n") {
				t.Fatalf("%s: want a head and a worker script in the dry run:\n%s", what, out)
			}
			_, workerScript, _ = strings.Cut(workerScript, "\n") // the rest of the heading
			d := a.store.Cluster("inj")
			for _, sc := range []struct {
				role   cluster.Role
				script string
				extra  []string
			}{{cluster.RoleHead, headScript, nil}, {cluster.RoleWorker, workerScript, []string{"--head-job", "0"}}} {
				argv, env, created := runWithStubs(t, bash, root, d.BinaryPath(), sc.script)
				want := append([]string{d.BinaryPath(), "node", string(sc.role), "--cluster-dir", d.Path}, sc.extra...)
				if !slices.Equal(argv, want) {
					t.Errorf("%s: %s supervisor argv\n got %q\nwant %q\n%s", what, sc.role, argv, want, sc.script)
				}
				if wantEnv := []string{"token", d.TokenPath(), "unset", "unset"}; !slices.Equal(env, wantEnv) {
					t.Errorf("%s: %s supervisor's RAY_AUTH_MODE, RAY_AUTH_TOKEN_PATH, RAY_AUTH_TOKEN, RAY_ADDRESS = %q, want %q", what, sc.role, env, wantEnv)
				}
				if len(created) > 0 {
					t.Errorf("%s: the %s script created %q (injected code ran):\n%s", what, sc.role, created, sc.script)
				}
			}
		}
	}
	t.Logf("%d dry runs accepted and executed, %d refused", accepted, rejected)
	if accepted == 0 || rejected == 0 {
		t.Errorf("accepted %d, rejected %d: the payloads no longer exercise both paths", accepted, rejected)
	}
}

// runWithStubs runs a batch script with bash in root as a job would, with
// stub ray, module and sbatch first on PATH and a stub supervisor at binary;
// it returns the supervisor's argv (its $0 first), its auth environment, and
// every path the run created besides the stubs' records.
func runWithStubs(t *testing.T, bash, root, binary, script string) (argv, env, created []string) {
	t.Helper()
	stubs, called := filepath.Join(root, "stubs"), filepath.Join(root, "called")
	for _, d := range []string{stubs, called, filepath.Dir(binary)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"ray", "module", "sbatch"} {
		if err := os.WriteFile(filepath.Join(stubs, name), []byte("#!/bin/sh\ntouch \"$SRB_CALLED/"+name+"\"\n"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	supervisor := "#!/bin/sh\n" +
		"printf '%s\\0' \"$0\" \"$@\" > \"$SRB_ARGV\"\n" +
		"printf '%s\\0' \"${RAY_AUTH_MODE-unset}\" \"${RAY_AUTH_TOKEN_PATH-unset}\" \"${RAY_AUTH_TOKEN-unset}\" \"${RAY_ADDRESS-unset}\" > \"$SRB_ARGV.env\"\n"
	if err := os.WriteFile(binary, []byte(supervisor), 0o700); err != nil {
		t.Fatal(err)
	}
	scriptPath := filepath.Join(root, "job.sbatch")
	if err := os.WriteFile(scriptPath, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	argvFile := filepath.Join(root, "argv")
	os.Remove(argvFile)
	os.Remove(argvFile + ".env")
	before := pathsUnder(t, root)
	// A stub written just now can still be open for writing in a child that
	// a parallel test forked before its exec closed the descriptor (Go issue
	// 22315): exec then fails with ETXTBSY. That says nothing about the
	// script, so it is run again; any other failure counts.
	var stderr bytes.Buffer
	var err error
	for try := 0; try < 5; try++ {
		cmd := exec.Command(bash, scriptPath)
		cmd.Dir = root
		cmd.Env = []string{"PATH=" + stubs + ":/usr/bin:/bin", "HOME=" + root, "SRB_CALLED=" + called, "SRB_ARGV=" + argvFile,
			"RAY_AUTH_TOKEN=leaked-from-login", "RAY_ADDRESS=10.9.9.9:1"}
		stderr.Reset()
		cmd.Stderr = &stderr
		if err = cmd.Run(); !strings.Contains(stderr.String(), "Text file busy") {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil || stderr.Len() > 0 {
		t.Errorf("script failed: %v: %s\n%s", err, stderr.String(), script)
	}
	for _, p := range pathsUnder(t, root) {
		if !slices.Contains(before, p) && p != argvFile && p != argvFile+".env" {
			created = append(created, p)
		}
	}
	read := func(path string) []string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("the stub supervisor did not run: %v", err)
			return nil
		}
		return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
	}
	return read(argvFile), read(argvFile + ".env"), created
}

func pathsUnder(t *testing.T, root string) []string {
	t.Helper()
	var paths []string
	if err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		paths = append(paths, p)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	sort.Strings(paths)
	return paths
}
