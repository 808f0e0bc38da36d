package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/gpu"
	"github.com/sraybatch/sraybatch/internal/local"
	"github.com/sraybatch/sraybatch/internal/scheduler"
)

// fakeGPUs is an inventory of n GPUs for the local backend's claims.
func fakeGPUs(n int) func() (gpu.Inventory, error) {
	return func() (gpu.Inventory, error) {
		inv := gpu.Inventory{Source: "NVML", GPUs: []gpu.Info{}}
		for i := 0; i < n; i++ {
			id := fmt.Sprintf("GPU-test-%d", i)
			inv.GPUs = append(inv.GPUs, gpu.Info{ID: id, UUID: id, Index: new(i), Processes: []gpu.Process{}})
		}
		return inv, nil
	}
}

// newLocalFixture is a uFixture whose local backend sees n fake GPUs and
// runs each job as a process that only waits (no Ray): enough for
// submissions, claims and status. Any SLURM call fails the test.
func newLocalFixture(t *testing.T, gpus int) *uFixture {
	t.Helper()
	f := newUFixture(t)
	home := filepath.Dir(f.app.store.Root)
	sched := local.New(local.Config{
		Registry: local.RegistryDir(home),
		Claims:   &local.Claims{Base: filepath.Join(home, "gpu-claims"), Inventory: fakeGPUs(gpus)},
		// A job's process reads its go-ahead to the end, then just lives.
		Launcher: []string{"bash", "-c", "cat >/dev/null; exec sleep 300"},
	})
	f.app.backends.Local = sched
	t.Cleanup(func() {
		jobs, _ := sched.Jobs(context.Background(), scheduler.Query{})
		var ids []string
		for _, j := range jobs {
			ids = append(ids, j.ID)
		}
		sched.Cancel(context.Background(), ids, scheduler.CancelOptions{})
	})
	return f
}

func TestLocalGrowPastLastGPUNamesHolders(t *testing.T) {
	t.Parallel()
	f := newLocalFixture(t, 2)
	ctx := context.Background()
	var up uStreams
	if err := runUp(ctx, up.io(false), f.app, upOptions{Name: "g1", Node: cluster.NodeSpec{GPUs: 1}, Backend: cluster.BackendLocal}); err != nil {
		t.Fatal(err)
	}
	dir := f.app.store.Cluster("g1")
	spec, err := dir.Spec()
	if err != nil {
		t.Fatal(err)
	}
	if spec.Backend != cluster.BackendLocal || spec.NodeIP != "127.0.0.1" || spec.DrainBeforeS != 0 {
		t.Errorf("local spec: backend %q, node IP %q, drain %d", spec.Backend, spec.NodeIP, spec.DrainBeforeS)
	}
	var grow uStreams
	if err := runGrow(ctx, grow.io(false), f.app, growOptions{Cluster: "g1", Count: 1}); err != nil {
		t.Fatal(err)
	}
	subs, _ := dir.Submissions()
	if len(subs) != 2 {
		t.Fatalf("submissions: %+v", subs)
	}
	head, worker := subs[0].JobID, subs[1].JobID
	if strings.TrimSpace(grow.out.String()) != worker {
		t.Errorf("grow printed %q, want the worker's job id %s", grow.out.String(), worker)
	}

	var last uStreams
	err = runGrow(ctx, last.io(false), f.app, growOptions{Cluster: "g1", Count: 1})
	if !errors.Is(err, local.ErrNoGPU) {
		t.Fatalf("grow past the last GPU: %v, want ErrNoGPU", err)
	}
	code := exitCode(last.io(false), "grow", err)
	msg := last.errOut.String()
	if code != exitFailure || strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "sraybatch grow: submit worker job: not enough free GPUs") {
		t.Errorf("exit %d, stderr %q: want exit 1 and one line", code, msg)
	}
	for _, want := range []string{
		"GPU 0 held by pid " + head, "cluster g1, job " + head,
		"GPU 1 held by pid " + worker, "cluster g1, job " + worker,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q: %s", want, msg)
		}
	}
	if subs, _ := dir.Submissions(); len(subs) != 2 {
		t.Errorf("the refused grow recorded a submission: %+v", subs)
	}

	// status: job ids are the processes' pids, running on this host.
	var st uStreams
	if err := runStatus(ctx, st.io(false), f.app, statusOptions{Cluster: "g1", Output: "json"}); err != nil {
		t.Fatal(err)
	}
	var status cluster.Status
	if err := json.Unmarshal(st.out.Bytes(), &status); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	for _, j := range status.Jobs {
		if _, err := os.Stat("/proc/" + j.JobID); err != nil || j.SlurmState != "RUNNING" || j.Node != host || j.GPUs != 1 {
			t.Errorf("job %s: %s on %q, %d GPUs; want a live pid RUNNING on %s with 1 GPU", j.JobID, j.SlurmState, j.Node, j.GPUs, host)
		}
	}

	// down frees the GPUs for the next grow of another cluster.
	if err := runDown(ctx, IOStreams{Out: &st.out, ErrOut: &st.errOut}, f.app, downOptions{Cluster: "g1", Timeout: time.Minute}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{head, worker} {
		if _, err := os.Stat("/proc/" + id + "/cmdline"); err == nil {
			if b, _ := os.ReadFile("/proc/" + id + "/stat"); !strings.Contains(string(b), ") Z ") {
				t.Errorf("job %s still runs after down", id)
			}
		}
	}
	if err := runUp(ctx, up.io(false), f.app, upOptions{Name: "g2", Node: cluster.NodeSpec{GPUs: 2}, Backend: cluster.BackendLocal}); err != nil {
		t.Errorf("up after down of the other cluster: %v", err)
	}
}

func TestLocalUpValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		o    upOptions
		want string
	}{
		{upOptions{Name: "a", Backend: cluster.BackendLocal, Node: cluster.NodeSpec{Partition: "gpu"}}, "--partition is a SLURM option"},
		{upOptions{Name: "a", Backend: cluster.BackendLocal, Node: cluster.NodeSpec{Time: "1:00:00"}}, "--time is a SLURM option"},
		{upOptions{Name: "a", Backend: cluster.BackendLocal, Node: cluster.NodeSpec{SbatchArgs: []string{"--exclusive"}}}, "--sbatch-arg is a SLURM option"},
		{upOptions{Name: "a", Backend: cluster.BackendSlurm, Foreground: true}, "--foreground is for --backend local"},
		{upOptions{Name: "a", Foreground: true}, "--foreground is for --backend local"},
		{upOptions{Name: "a", Backend: "k8s"}, `invalid --backend "k8s"`},
	}
	for _, tt := range tests {
		f := newUFixture(t)
		err := runUp(context.Background(), IOStreams{}, f.app, tt.o)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want a usage error containing %q", tt.o, err, tt.want)
		}
		if got := storeEntries(t, f.app.store); len(got) != 0 {
			t.Errorf("refused up created %v", got)
		}
	}
}

func TestLocalBackendIsTheDefaultWithoutSbatch(t *testing.T) {
	empty := t.TempDir()
	t.Setenv("PATH", empty)
	if got := defaultBackend(); got != cluster.BackendLocal {
		t.Errorf("without sbatch on PATH: %q, want local", got)
	}
	if err := os.WriteFile(filepath.Join(empty, "sbatch"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := defaultBackend(); got != cluster.BackendSlurm {
		t.Errorf("with sbatch on PATH: %q, want slurm", got)
	}
}

func TestLocalDryRunAnnouncesBackendOnce(t *testing.T) {
	t.Parallel()
	f := newLocalFixture(t, 0)
	var s uStreams
	o := upOptions{Name: "d1", Backend: cluster.BackendLocal, DryRun: true, announceBackend: true}
	if err := runUp(context.Background(), s.io(false), f.app, o); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(s.errOut.String(), "using the local backend"); n != 1 {
		t.Errorf("stderr %q: want the backend named once", s.errOut.String())
	}
	if !strings.Contains(s.out.String(), "# head job script") {
		t.Errorf("dry run printed no script: %s", s.out.String())
	}
}
