package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

func TestUpDryRunPrintsScriptsAndCreatesNothing(t *testing.T) {
	t.Parallel()
	f := newUFixture(t) // no stubs: any SLURM call fails the test
	var s uStreams
	o := upOptions{Name: "exp1", Node: cluster.NodeSpec{GPUs: 2, Partition: "gpu", Time: "2:00:00"}, WorkerPartition: "scav", Workers: 3, DryRun: true}
	if err := runUp(context.Background(), s.io(false), f.app, o); err != nil {
		t.Fatal(err)
	}
	out := s.out.String()
	for _, want := range []string{
		"# head job script\n#!/bin/bash\n",
		"#SBATCH --job-name=sray-exp1-head",
		"#SBATCH --gres=gpu:2",
		"#SBATCH --partition=gpu",
		"#SBATCH --time=2:00:00",
		"#SBATCH --no-requeue",
		"# worker job script",
		"#SBATCH --job-name=sray-exp1-worker",
		"#SBATCH --array=0-2",
		"#SBATCH --dependency=after:0",
		"#SBATCH --partition=scav", // --worker-partition: the workers' alone
		"node head --cluster-dir",
		"node worker --cluster-dir",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out)
		}
	}
	if head, _, _ := strings.Cut(out, "# worker job script"); strings.Contains(head, "scav") {
		t.Errorf("the head job goes to the worker partition:\n%s", head)
	}
	if got := storeEntries(t, f.app.store); len(got) != 0 {
		t.Errorf("dry run created %v", got)
	}
	if bash, err := exec.LookPath("bash"); err == nil {
		cmd := exec.Command(bash, "-n")
		cmd.Stdin = strings.NewReader(out)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("bash -n on the dry run output: %v\n%s", err, b)
		}
	}
}

func TestUpValidation(t *testing.T) {
	t.Parallel()
	valid := upOptions{Name: "exp1", Node: cluster.NodeSpec{GPUs: 1, Time: "1:00:00"}}
	tests := []struct {
		name   string
		mutate func(o *upOptions)
		want   string
	}{
		{"missing name", func(o *upOptions) { o.Name = "" }, "--name is required"},
		{"bad name", func(o *upOptions) { o.Name = "Exp_1" }, `invalid cluster name "Exp_1"`},
		{"name with a slash", func(o *upOptions) { o.Name = "../x" }, "invalid cluster name"},
		{"newline in partition", func(o *upOptions) { o.Node.Partition = "gpu\n#SBATCH --uid=0" }, "invalid --partition"},
		{"newline in sbatch-arg", func(o *upOptions) { o.Node.SbatchArgs = []string{"--exclusive\nrm -rf ~"} }, "invalid --sbatch-arg"},
		{"sbatch-arg not an option", func(o *upOptions) { o.Node.SbatchArgs = []string{"exclusive"} }, "invalid --sbatch-arg"},
		{"newline in time", func(o *upOptions) { o.Node.Time = "1:00:00\n" }, "invalid --time"},
		{"bad time", func(o *upOptions) { o.Node.Time = "two hours" }, `invalid --time "two hours"`},
		{"space in account", func(o *upOptions) { o.Node.Account = "a b" }, "invalid --account"},
		{"bad port range", func(o *upOptions) { o.PortRange = "80-90" }, `invalid --port-range "80-90"`},
		{"port range too small", func(o *upOptions) { o.PortRange = "20000-20010" }, "invalid --port-range"},
		{"port range reversed", func(o *upOptions) { o.PortRange = "30000-20000" }, "invalid --port-range"},
		{"negative workers", func(o *upOptions) { o.Workers = -1 }, "must not be negative"},
		{"negative gpus", func(o *upOptions) { o.Node.GPUs = -2 }, "must not be negative"},
		{"NUL in setup", func(o *upOptions) { o.Setup = "module load x\x00" }, "--setup contains NUL"},
		{"space in log dir", func(o *upOptions) { o.LogDir = "/scratch/my logs" }, "invalid --log-dir"},
	}
	for _, tt := range tests {
		for _, dry := range []bool{false, true} {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				f := newUFixture(t) // no stubs: nothing may reach SLURM
				o := valid
				o.DryRun = dry
				tt.mutate(&o)
				var s uStreams
				err := runUp(context.Background(), s.io(false), f.app, o)
				var ue usageError
				if !errors.As(err, &ue) {
					t.Fatalf("runUp = %v (%T), want a usageError", err, err)
				}
				if msg := err.Error(); !strings.Contains(msg, tt.want) || strings.ContainsAny(msg, "\n\r") {
					t.Errorf("error %q: want one line containing %q", msg, tt.want)
				}
				if got := storeEntries(t, f.app.store); len(got) != 0 {
					t.Errorf("rejected up left %v in the store", got)
				}
				if s.out.Len() != 0 {
					t.Errorf("rejected up printed %q", s.out.String())
				}
			})
		}
	}
}

func TestUpSbatchFailureLeavesNothing(t *testing.T) {
	t.Parallel()
	f := newUFixture(t)
	const slurmSays = "sbatch: error: invalid partition specified: nope"
	f.expectSbatch(cluster.RoleHead, "", slurmSays+"\nsbatch: error: Batch job submission failed: Invalid partition name specified\n")
	var s uStreams
	o := upOptions{Name: "exp1", Node: cluster.NodeSpec{GPUs: 1, Partition: "nope"}, Workers: 2}
	err := runUp(context.Background(), s.io(false), f.app, o)
	if err == nil || !strings.Contains(err.Error(), slurmSays) {
		t.Fatalf("runUp = %v, want an error carrying SLURM's message %q", err, slurmSays)
	}
	var ue usageError
	if errors.As(err, &ue) {
		t.Errorf("a SLURM refusal is reported as a usage error: %v", err)
	}
	if got := storeEntries(t, f.app.store); len(got) != 0 {
		t.Errorf("failed up left %v in the store", got)
	}
	if len(f.runner.submitted()) != 1 {
		t.Errorf("%d sbatch calls, want 1 (no workers after the head failed)", len(f.runner.submitted()))
	}
	// What the user sees: SLURM's words, on one line, exit 1.
	var e uStreams
	if code := exitCode(e.io(false), "up", err); code != exitFailure {
		t.Errorf("exit code = %d, want %d", code, exitFailure)
	}
	if msg := e.errOut.String(); !strings.HasPrefix(msg, "sraybatch up: ") || strings.Count(msg, "\n") != 1 || !strings.Contains(msg, slurmSays) {
		t.Errorf("stderr = %q, want one line with SLURM's message", msg)
	}
}

func TestUpSubmitsHeadThenWorkers(t *testing.T) {
	t.Parallel()
	f := newUFixture(t)
	f.expectSbatch(cluster.RoleHead, "41", "")
	f.expectSbatch(cluster.RoleWorker, "42", "")
	var s uStreams
	o := upOptions{Name: "exp1", Node: cluster.NodeSpec{GPUs: 1, Time: "2:00:00"}, Workers: 2, Setup: "source ~/ray/bin/activate"}
	if err := runUp(context.Background(), s.io(false), f.app, o); err != nil {
		t.Fatal(err)
	}
	if s.out.String() != "exp1\n" {
		t.Errorf("stdout = %q, want the cluster name alone", s.out.String())
	}
	if !strings.Contains(s.errOut.String(), "head job 41 submitted") || !strings.Contains(s.errOut.String(), "[42_0 42_1]") {
		t.Errorf("stderr = %q", s.errOut.String())
	}
	dir, err := f.app.store.Open("exp1")
	if err != nil {
		t.Fatal(err)
	}
	subs, err := dir.Submissions()
	if err != nil {
		t.Fatal(err)
	}
	if len(subs) != 2 || subs[0].Role != cluster.RoleHead || subs[0].JobID != "41" || subs[0].Tasks != 0 ||
		subs[1].Role != cluster.RoleWorker || subs[1].JobID != "42" || subs[1].Tasks != 2 {
		t.Fatalf("submissions = %+v, want head 41 and a 2-task worker array 42", subs)
	}
	scripts := f.runner.submitted()
	if len(scripts) != 2 {
		t.Fatalf("%d scripts submitted, want 2", len(scripts))
	}
	for i, sc := range scripts {
		if sc.path != subs[i].Script || filepath.Dir(sc.path) != filepath.Join(dir.Path, "scripts") {
			t.Errorf("script %d at %s, submission records %s", i, sc.path, subs[i].Script)
		}
		if st, err := os.Stat(sc.path); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("script %s: %v, %v; want mode 0600", sc.path, st, err)
		}
	}
	if w := scripts[1].text; !strings.Contains(w, "#SBATCH --dependency=after:41\n") || !strings.Contains(w, "#SBATCH --array=0-1\n") ||
		!strings.Contains(w, "#SBATCH --time=2:00:00\n") {
		t.Errorf("worker script does not follow head 41 as a 2-task array:\n%s", w)
	}
	// The jobs run a copy of this binary, not whatever is on PATH later.
	if st, err := os.Stat(dir.BinaryPath()); err != nil || st.Mode().Perm() != 0o700 || st.Size() == 0 {
		t.Errorf("binary copy: %v, %v", st, err)
	}
	if setup, err := os.ReadFile(dir.SetupPath()); err != nil || string(setup) != "source ~/ray/bin/activate\n" {
		t.Errorf("setup = %q, %v", setup, err)
	}
	spec, _ := dir.Spec()
	if st, err := os.Stat(spec.LogDir); err != nil || !st.IsDir() || spec.LogDir != filepath.Join(dir.Path, "logs") {
		t.Errorf("log dir %q: %v", spec.LogDir, err)
	}
}

func TestUpExistingNameIsUsageError(t *testing.T) {
	t.Parallel()
	f := newUFixture(t)
	f.createCluster(t, "exp1", "41")
	var s uStreams
	err := runUp(context.Background(), s.io(false), f.app, upOptions{Name: "exp1", Node: cluster.NodeSpec{GPUs: 1}})
	var ue usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("runUp over an existing cluster = %v, want a usage error saying it exists", err)
	}
}
