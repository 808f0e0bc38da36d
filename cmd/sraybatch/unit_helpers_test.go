package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/backend"
	"github.com/sraybatch/sraybatch/internal/clock"
	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/slurm"
	"github.com/sraybatch/sraybatch/slurm/slurmtest"
)

// uProgs are fixed program names, so no SRAYBATCH_SBATCH etc. in the
// environment can change what the stubs must match.
var uProgs = slurm.Programs{Sbatch: "sbatch", Squeue: "squeue", Scancel: "scancel", Scontrol: "scontrol", Sinfo: "sinfo"}

// uSqueueFormat is the -o format scheduler.Scheduler.Jobs asks squeue for.
const uSqueueFormat = "%i|%j|%u|%T|%r|%N|%b|%M|%L|%l"

// scriptRunner passes every call to a slurmtest.Runner, except that the path
// of a submitted script, random per submission, becomes "SCRIPT:<role>" so
// that stubs can name it; it keeps each script's text as sbatch would have read it.
type scriptRunner struct {
	stub *slurmtest.Runner

	mu      sync.Mutex
	scripts []submittedScript
}

type submittedScript struct{ path, text string }

func (r *scriptRunner) Run(ctx context.Context, argv []string) ([]byte, error) {
	if len(argv) == 3 && argv[0] == uProgs.Sbatch && argv[1] == "--parsable" {
		b, err := os.ReadFile(argv[2])
		if err != nil {
			return nil, err
		}
		r.mu.Lock()
		r.scripts = append(r.scripts, submittedScript{path: argv[2], text: string(b)})
		r.mu.Unlock()
		role, _, _ := strings.Cut(filepath.Base(argv[2]), "-")
		argv = []string{argv[0], argv[1], "SCRIPT:" + role}
	}
	return r.stub.Run(ctx, argv)
}

func (r *scriptRunner) submitted() []submittedScript {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]submittedScript(nil), r.scripts...)
}

// uFixture is one test's app: its own store and stubbed SLURM.
type uFixture struct {
	app    *app
	stub   *slurmtest.Runner
	runner *scriptRunner
}

func newUFixture(t *testing.T) *uFixture {
	t.Helper()
	stub := slurmtest.NewRunner(t)
	r := &scriptRunner{stub: stub}
	return &uFixture{
		app:    &app{store: cluster.Store{Root: filepath.Join(t.TempDir(), "clusters")}, backends: backend.Schedulers{Slurm: slurm.New(r, uProgs)}, clock: clock.System{}},
		stub:   stub,
		runner: r,
	}
}

// expectSbatch expects one submission of a role's script, answered with id
// (or failing with SLURM's stderr when id is "").
func (f *uFixture) expectSbatch(role cluster.Role, id, stderr string) {
	argv := []string{uProgs.Sbatch, "--parsable", "SCRIPT:" + string(role)}
	if id == "" {
		f.stub.Fail(argv, stderr)
		return
	}
	f.stub.Register(argv, id+"\n", nil)
}

// expectHeadLookup expects grow's squeue for the head job.
func (f *uFixture) expectHeadLookup(head string, lines ...string) {
	f.stub.Register([]string{uProgs.Squeue, "-h", "-r", "--states=all", "-o", uSqueueFormat, "-j", head}, uLines(lines), nil)
}

// clusterSqueue is status's squeue for a cluster's jobs.
func clusterSqueue(spec cluster.Spec) []string {
	names := []string{
		cluster.JobName(spec.Name, cluster.RoleHead),
		cluster.JobName(spec.Name, cluster.RoleWorker),
		cluster.JobName(spec.Name, cluster.RoleDriver),
	}
	return []string{uProgs.Squeue, "-h", "-r", "--states=all", "-o", uSqueueFormat, "-u", spec.User, "-n", strings.Join(names, ",")}
}

func (f *uFixture) expectClusterJobs(spec cluster.Spec, lines ...string) {
	f.stub.Register(clusterSqueue(spec), uLines(lines), nil)
}

func uLines(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}

// squeueLine is one record as squeue prints uSqueueFormat.
func squeueLine(id, name, state, reason, node, elapsed, left, limit string) string {
	return strings.Join([]string{id, name, "ana", state, reason, node, "gres/gpu:1", elapsed, left, limit}, "|")
}

func uSpec(name string) cluster.Spec {
	return cluster.Spec{
		Name: name, ID: "id-" + name, Backend: cluster.BackendSlurm, User: "ana",
		Created: time.Now().UTC().Add(-time.Hour), Node: cluster.NodeSpec{GPUs: 1, Partition: "gpu", Time: "2:00:00"},
	}
}

// createCluster makes a cluster as `up` would have, with head job head
// submitted (none when head is "").
func (f *uFixture) createCluster(t *testing.T, name, head string) (cluster.Dir, cluster.Spec) {
	t.Helper()
	spec := uSpec(name)
	spec.LogDir = filepath.Join(f.app.store.Root, name, "logs")
	dir, err := f.app.store.Create(spec, "")
	if err != nil {
		t.Fatal(err)
	}
	if head != "" {
		if err := dir.AddSubmission(cluster.Submission{Role: cluster.RoleHead, JobID: head, Submitted: time.Now().UTC().Add(-time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	spec, err = dir.Spec()
	if err != nil {
		t.Fatal(err)
	}
	return dir, spec
}

type uStreams struct{ out, errOut bytes.Buffer }

func (s *uStreams) io(tty bool) IOStreams {
	return IOStreams{Out: &s.out, ErrOut: &s.errOut, OutIsTTY: tty}
}

// storeEntries lists what is in the store's root (none when it does not exist).
func storeEntries(t *testing.T, s cluster.Store) []string {
	t.Helper()
	entries, err := os.ReadDir(s.Root)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
