package slurm_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/scheduler"
	"github.com/sraybatch/sraybatch/slurm"
	"github.com/sraybatch/sraybatch/slurm/slurmtest"
)

// progs differ from the defaults so tests prove the configured names are used.
var progs = slurm.Programs{
	Sbatch: "/opt/slurm/bin/sbatch", Squeue: "sq", Scancel: "sc", Scontrol: "sctl", Sinfo: "si",
}

const jobFormat = "%i|%j|%u|%T|%r|%N|%b|%M|%L|%l"

func newScheduler(t *testing.T) (scheduler.Scheduler, *slurmtest.Runner) {
	r := slurmtest.NewRunner(t)
	return slurm.New(r, progs), r
}

func TestSubmit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, r := newScheduler(t)
	argv := []string{"/opt/slurm/bin/sbatch", "--parsable", "/tmp/c/head.sbatch"}
	r.Register(argv, "7\n", nil)
	r.Register(argv, "8;cluster2\n", nil)
	r.Register(argv, "Submitted batch job 9\n", nil)

	for _, want := range []string{"7", "8"} {
		if id, err := s.Submit(ctx, "/tmp/c/head.sbatch"); err != nil || id != want {
			t.Errorf("Submit = %q, %v; want %q, nil", id, err, want)
		}
	}
	if id, err := s.Submit(ctx, "/tmp/c/head.sbatch"); err == nil {
		t.Errorf("Submit with non-parsable output = %q, want error", id)
	}
}

func TestSubmitFailureShowsSLURMStderr(t *testing.T) {
	t.Parallel()
	s, r := newScheduler(t)
	argv := []string{"/opt/slurm/bin/sbatch", "--parsable", "w.sbatch"}
	r.Fail(argv, "sbatch: error: Batch job submission failed: Requested node configuration is not available\n")

	_, err := s.Submit(context.Background(), "w.sbatch")
	// What a caller would add on top.
	err = fmt.Errorf("start worker: %w", err)
	want := "start worker: submit w.sbatch: sbatch failed: sbatch: error: Batch job submission failed: " +
		"Requested node configuration is not available"
	if err.Error() != want {
		t.Errorf("error = %q\nwant    %q", err, want)
	}
	var ce *slurm.CmdError
	if !errors.As(err, &ce) || !reflect.DeepEqual(ce.Args, argv) {
		t.Fatalf("errors.As(*CmdError) failed or wrong Args: %#v", err)
	}
}

func TestJobsArgv(t *testing.T) {
	t.Parallel()
	tests := []struct {
		q    scheduler.Query
		tail []string
	}{
		{scheduler.Query{}, nil},
		{scheduler.Query{User: "alice"}, []string{"-u", "alice"}},
		{scheduler.Query{User: "alice", Names: []string{"sraybatch-c1-head", "sraybatch-c1-worker"}},
			[]string{"-u", "alice", "-n", "sraybatch-c1-head,sraybatch-c1-worker"}},
		{scheduler.Query{JobIDs: []string{"7", "8_1"}}, []string{"-j", "7,8_1"}},
	}
	for _, tt := range tests {
		s, r := newScheduler(t)
		argv := append([]string{"sq", "-h", "-r", "--states=all", "-o", jobFormat}, tt.tail...)
		r.Register(argv, "8_1|w|alice|RUNNING|None|node1|gres:gpu:1|0:10|9:50|10:00\n", nil)
		jobs, err := s.Jobs(context.Background(), tt.q)
		if err != nil || len(jobs) != 1 || jobs[0].ID != "8_1" {
			t.Errorf("Jobs(%+v) = %+v, %v", tt.q, jobs, err)
		}
	}
}

func TestJobsPurgedIDIsEmpty(t *testing.T) {
	t.Parallel()
	s, r := newScheduler(t)
	r.Fail([]string{"sq", "-h", "-r", "--states=all", "-o", jobFormat, "-j", "99999"},
		"slurm_load_jobs error: Invalid job id specified\n")
	jobs, err := s.Jobs(context.Background(), scheduler.Query{JobIDs: []string{"99999"}})
	if err != nil || len(jobs) != 0 {
		t.Errorf("Jobs(purged id) = %+v, %v; want empty, nil", jobs, err)
	}
}

func TestJobsErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, r := newScheduler(t)
	base := []string{"sq", "-h", "-r", "--states=all", "-o", jobFormat}

	r.Fail(append(base, "-u", "nobody2"), "squeue: error: Invalid user: nobody2\n")
	_, err := s.Jobs(ctx, scheduler.Query{User: "nobody2"})
	var ce *slurm.CmdError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "squeue: error: Invalid user: nobody2") {
		t.Errorf("Jobs(bad user) error = %v, want squeue's stderr", err)
	}

	r.Register(base, "garbage\n", nil)
	if _, err := s.Jobs(ctx, scheduler.Query{}); err == nil || !strings.Contains(err.Error(), `"garbage"`) {
		t.Errorf("Jobs(garbage) error = %v, want one naming the line", err)
	}

	for _, q := range []scheduler.Query{{Names: []string{"a,b"}}, {JobIDs: []string{""}}} {
		if _, err := s.Jobs(ctx, q); err == nil {
			t.Errorf("Jobs(%+v) ran squeue with a list it would split wrongly", q)
		}
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, r := newScheduler(t)
	r.Register([]string{"sc", "7", "8_1"}, "", nil)
	r.Register([]string{"sc", "--signal=TERM", "--batch", "7"}, "", nil)
	r.Register([]string{"sc", "--signal=B:USR1", "--full", "9"}, "", nil)

	if err := s.Cancel(ctx, []string{"7", "8_1"}, scheduler.CancelOptions{}); err != nil {
		t.Error(err)
	}
	if err := s.Cancel(ctx, []string{"7"}, scheduler.CancelOptions{Signal: "TERM", Batch: true}); err != nil {
		t.Error(err)
	}
	if err := s.Cancel(ctx, []string{"9"}, scheduler.CancelOptions{Signal: "B:USR1", Full: true}); err != nil {
		t.Error(err)
	}
	// Nothing to cancel runs nothing: an unexpected call would fail the test.
	if err := s.Cancel(ctx, nil, scheduler.CancelOptions{}); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{"", "--full", "-1"} {
		if err := s.Cancel(ctx, []string{"7", bad}, scheduler.CancelOptions{}); err == nil {
			t.Errorf("Cancel passed id %q to scancel", bad)
		}
	}
}

func TestCancelFailure(t *testing.T) {
	t.Parallel()
	s, r := newScheduler(t)
	r.Fail([]string{"sc", "7"}, "scancel: error: Kill job error on job id 7: Access/permission denied\n")
	err := s.Cancel(context.Background(), []string{"7"}, scheduler.CancelOptions{})
	want := "cancel 7: sc failed: scancel: error: Kill job error on job id 7: Access/permission denied"
	if err == nil || err.Error() != want {
		t.Errorf("Cancel error = %v, want %q", err, want)
	}
}

func TestPing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	argv := []string{"sctl", "ping"}
	exit1 := &slurm.CmdError{Args: argv, Err: errors.New("exit status 1")}
	tests := []struct {
		name   string
		stdout string
		err    error
		ok     bool
	}{
		{"up", "Slurmctld(primary) at vm is UP\n", nil, true},
		{"primary down, backup up", "Slurmctld(primary) at a is DOWN\nSlurmctld(backup) at b is UP\n", exit1, true},
		{"down", "Slurmctld(primary) at vm is DOWN\n", exit1, false},
		{"no config", "", &slurm.CmdError{Args: argv, Stderr: "scontrol: fatal: Could not establish a configuration source\n",
			Err: errors.New("exit status 1")}, false},
		{"down, exit 0", "Slurmctld(primary) at vm is DOWN\n", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, r := newScheduler(t)
			r.Register(argv, tt.stdout, tt.err)
			err := s.Ping(ctx)
			if (err == nil) != tt.ok {
				t.Errorf("Ping = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestNodeAddr(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, r := newScheduler(t)
	r.Register([]string{"sctl", "show", "node", "-o", "node2"},
		"NodeName=node2 Arch=x86_64 Gres=gpu:2 NodeAddr=127.0.0.12 NodeHostName=vm Port=17002\n", nil)
	r.Fail([]string{"sctl", "show", "node", "-o", "nodeX"}, "Node nodeX not found\n")

	if addr, err := s.NodeAddr(ctx, "node2"); err != nil || addr != "127.0.0.12" {
		t.Errorf("NodeAddr(node2) = %q, %v", addr, err)
	}
	_, err := s.NodeAddr(ctx, "nodeX")
	if want := "node nodeX address: sctl failed: Node nodeX not found"; err == nil || err.Error() != want {
		t.Errorf("NodeAddr(nodeX) error = %v, want %q", err, want)
	}
}

func TestFreeGPUs(t *testing.T) {
	t.Parallel()
	s, r := newScheduler(t)
	format := "NodeList:0|,Partition:0|,StateLong:0|,Gres:0|,GresUsed:0"
	r.Register([]string{"si", "-h", "-N", "-O", format}, "node1|debug*|mixed|gpu:2|gpu:1\n", nil)
	r.Register([]string{"si", "-h", "-N", "-O", format, "-p", "gpu"}, "g1|gpu|idle|gpu:a100:4|gpu:a100:0\n", nil)

	nodes, err := s.FreeGPUs(context.Background(), "")
	if want := []scheduler.NodeGPUs{{Node: "node1", Partition: "debug", State: "mixed", Total: 2, Used: 1}}; err != nil ||
		!reflect.DeepEqual(nodes, want) {
		t.Errorf("FreeGPUs(\"\") = %+v, %v; want %+v", nodes, err, want)
	}
	nodes, err = s.FreeGPUs(context.Background(), "gpu")
	if err != nil || len(nodes) != 1 || nodes[0].Free() != 4 {
		t.Errorf("FreeGPUs(gpu) = %+v, %v; want g1 with 4 free", nodes, err)
	}
}

func TestParsePartitionMaxTime(t *testing.T) {
	t.Parallel()
	out := []byte("debug*|30:00\ngpu|2-00:00:00\nlong|infinite\n")
	for _, tt := range []struct {
		partition string
		want      time.Duration
		unlimited bool
		err       bool
	}{
		{"", 30 * time.Minute, false, false},
		{"gpu", 48 * time.Hour, false, false},
		{"long", 0, true, false},
		{"nope", 0, false, true},
	} {
		d, unlimited, err := slurm.ParsePartitionMaxTime(out, tt.partition)
		if d != tt.want || unlimited != tt.unlimited || (err != nil) != tt.err {
			t.Errorf("ParsePartitionMaxTime(%q) = %v, %v, %v", tt.partition, d, unlimited, err)
		}
	}
	if _, _, err := slurm.ParsePartitionMaxTime([]byte("gpu|1:00:00\n"), ""); err == nil {
		t.Error("no default partition accepted")
	}
}

func TestParseMaxArrayTasks(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		out  string
		want int
	}{
		{"MaxArraySize            = 1001\nSchedulerParameters     = bf_interval=1\n", 1001},
		{"MaxArraySize = 1001\nSchedulerParameters = bf_interval=1,max_array_tasks=200\n", 200},
		{"SchedulerParameters = max_array_tasks=5000\nMaxArraySize = 1001\n", 1001},
	} {
		if got, err := slurm.ParseMaxArrayTasks([]byte(tt.out)); err != nil || got != tt.want {
			t.Errorf("ParseMaxArrayTasks(%q) = %d, %v; want %d", tt.out, got, err, tt.want)
		}
	}
	if _, err := slurm.ParseMaxArrayTasks([]byte("SlurmctldPort = 6817\n")); err == nil {
		t.Error("no MaxArraySize accepted")
	}
}
