package main

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/backend"
	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/slurm"
)

// afterSbatch runs hook after each sbatch call reaches the stubs, with the
// submitted script's role: it stands in for what the submitted job does.
type afterSbatch struct {
	next slurm.Runner
	hook func(role string)
}

func (r afterSbatch) Run(ctx context.Context, argv []string) ([]byte, error) {
	out, err := r.next.Run(ctx, argv)
	if err == nil && argv[0] == uProgs.Sbatch {
		role, _, _ := strings.Cut(filepath.Base(argv[len(argv)-1]), "-")
		r.hook(role)
	}
	return out, err
}

// up --workers K --wait used to return once the head was healthy, with the
// workers still joining.
func TestUpWaitsForEveryWorker(t *testing.T) {
	t.Parallel()
	for _, joined := range []bool{false, true} {
		t.Run(map[bool]string{false: "a worker still pending", true: "every worker joined"}[joined], func(t *testing.T) {
			t.Parallel()
			f := newUFixture(t)
			// Once the workers are submitted, the head is up and 42_0 has
			// joined; 42_1 has joined too only in the second case.
			f.app.backends = backend.Schedulers{Slurm: slurm.New(afterSbatch{next: f.runner, hook: func(role string) {
				if role != string(cluster.RoleWorker) {
					return
				}
				dir := f.app.store.Cluster("exp1")
				now := time.Now().UTC()
				alive := map[string]*cluster.MemberNode{
					"41":   {NodeID: "aaaa", Alive: true, FirstSeen: now, LastSeen: now},
					"42_0": {NodeID: "bbbb", Alive: true, FirstSeen: now, LastSeen: now},
				}
				if joined {
					alive["42_1"] = &cluster.MemberNode{NodeID: "cccc", Alive: true, FirstSeen: now, LastSeen: now}
				}
				for _, err := range []error{
					dir.WriteHead(cluster.HeadInfo{Job: "41", Address: "10.1.2.3:20000", SlurmNode: "gpu01"}),
					dir.WriteNode(cluster.NodeRecord{Job: "41", Role: cluster.RoleHead, Phase: cluster.PhaseRunning}),
					dir.WriteMembership(cluster.MembershipSnapshot{Updated: now, Nodes: alive}),
				} {
					if err != nil {
						t.Error(err)
					}
				}
			}}, uProgs)}
			f.expectSbatch(cluster.RoleHead, "41", "")
			f.expectSbatch(cluster.RoleWorker, "42", "")
			spec := cluster.Spec{Name: "exp1", User: cluster.CurrentUser()}
			jobs := []string{
				squeueLine("41", "sray-exp1-head", "RUNNING", "None", "gpu01", "1:00", "59:00", "1:00:00"),
				squeueLine("42_0", "sray-exp1-worker", "RUNNING", "None", "gpu02", "1:00", "59:00", "1:00:00"),
				squeueLine("42_1", "sray-exp1-worker", "RUNNING", "None", "gpu03", "0:10", "59:50", "1:00:00"),
			}
			if !joined {
				jobs[2] = squeueLine("42_1", "sray-exp1-worker", "PENDING", "Resources", "", "0:00", "1:00:00", "1:00:00")
			}
			f.expectClusterJobs(spec, jobs...) // the head's wait
			f.expectClusterJobs(spec, jobs...) // the workers' wait
			var s uStreams
			// No time left after the first look: the wait must judge the workers at once.
			o := upOptions{Name: "exp1", Node: cluster.NodeSpec{GPUs: 1, Time: "1:00:00"}, Workers: 2, Wait: waitOptions{Wait: true, Timeout: 0}}
			err := runUp(context.Background(), s.io(false), f.app, o)
			if joined {
				if err != nil || !strings.Contains(s.errOut.String(), "all 2 new workers joined cluster exp1") {
					t.Errorf("runUp = %v, stderr %q; want success once both workers joined", err, s.errOut.String())
				}
				return
			}
			var te timeoutError
			if !errors.As(err, &te) || !strings.Contains(err.Error(), "1 of 2 workers joined") || !strings.Contains(err.Error(), "42_1 PENDING Resources") {
				t.Errorf("runUp with a worker pending = %v, want a timeoutError naming 42_1", err)
			}
		})
	}
}

// Ctrl+C during --wait used to print "context canceled" and exit 1.
func TestWaitInterruptedSaysWhatKeepsRunning(t *testing.T) {
	t.Parallel()
	f := newUFixture(t)
	spec := runningCluster(t, f) // head 41 and 42_0 joined, 42_1 pending
	expectRunningJobs(f, spec)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var s uStreams
	err := waitForJobs(ctx, s.io(false), f.app, f.app.store.Cluster("exp1"), spec, []string{"42_0", "42_1"}, f.app.newBudget(time.Minute))
	s.errOut.Reset() // the progress lines
	if code := exitCode(s.io(false), "grow", err); code != exitInterrupted {
		t.Errorf("exitCode(%v) = %d, want %d", err, code, exitInterrupted)
	}
	want := "sraybatch grow: interrupted: cluster exp1 keeps running (head job 41, 1 worker joined, 1 worker waiting); see `sraybatch status -c exp1`, or `sraybatch down -c exp1`\n"
	if got := s.errOut.String(); got != want {
		t.Errorf("stderr = %q\nwant     %q", got, want)
	}
}

// Any command that Ctrl+C ends exits 130, whatever error it returned.
func TestRunMapsInterruptionTo130(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want string
	}{
		{context.Canceled, "sraybatch up: interrupted\n"},
		{errors.New("look up head job 41: context canceled"), "sraybatch up: interrupted: look up head job 41: context canceled\n"},
		{interruptedError{errors.New("interrupted: cluster exp1 keeps running")}, "sraybatch up: interrupted: cluster exp1 keeps running\n"},
	}
	for _, tt := range tests {
		var s uStreams
		if code := exitCode(s.io(false), "up", interrupted(tt.err)); code != exitInterrupted || s.errOut.String() != tt.want {
			t.Errorf("interrupted(%v): exit %d, stderr %q; want %d, %q", tt.err, code, s.errOut.String(), exitInterrupted, tt.want)
		}
	}
}

func TestLiveJobs(t *testing.T) {
	t.Parallel()
	job := func(role cluster.Role, id string, m cluster.Membership) cluster.JobStatus {
		return cluster.JobStatus{Role: role, JobID: id, Ray: m}
	}
	tests := []struct {
		jobs []cluster.JobStatus
		want string
	}{
		{nil, ""},
		{[]cluster.JobStatus{job(cluster.RoleHead, "160", cluster.MembershipWaiting), job(cluster.RoleWorker, "161_0", cluster.MembershipWaiting), job(cluster.RoleWorker, "161_1", cluster.MembershipWaiting)},
			"head job 160, 2 workers waiting"},
		{[]cluster.JobStatus{job(cluster.RoleHead, "160", cluster.MembershipJoined), job(cluster.RoleWorker, "161", cluster.MembershipJoined), job(cluster.RoleWorker, "162", cluster.MembershipFailed),
			job(cluster.RoleWorker, "163", cluster.MembershipDraining), job(cluster.RoleDriver, "170", cluster.MembershipJoined)},
			"head job 160, 1 worker joined, 1 worker draining, 1 driver joined"},
		{[]cluster.JobStatus{job(cluster.RoleHead, "160", cluster.MembershipLost), job(cluster.RoleWorker, "161", cluster.MembershipLost)}, ""},
	}
	for _, tt := range tests {
		if got := liveJobs(cluster.Status{Jobs: tt.jobs}); got != tt.want {
			t.Errorf("liveJobs(%v) = %q, want %q", tt.jobs, got, tt.want)
		}
	}
}
