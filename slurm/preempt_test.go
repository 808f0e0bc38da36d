package slurm_test

import (
	"context"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/scheduler"
	"github.com/sraybatch/sraybatch/slurm"
)

// preempter is the cliScheduler's preemption check.
type preempter interface {
	Preemption(ctx context.Context, job string) (scheduler.Preemption, error)
}

// scontrol's lines of a scav job on the dev SLURM (22.05), trimmed: running,
// then at the SIGTERM of its preemption (PreemptMode=REQUEUE: requeued
// already, Restarts=1, COMPLETING, no PreemptTime), and a job in a grace
// time (PreemptTime set, EndTime moved to PreemptTime+GraceTime).
const (
	scontrolRunning   = "JobId=6773 JobName=scav.sh UserId=root(0) JobState=RUNNING Reason=None Requeue=1 Restarts=0 BatchFlag=1 RunTime=00:00:03 TimeLimit=UNLIMITED StartTime=2026-12-06T19:13:18 EndTime=2027-12-06T19:13:18 PreemptEligibleTime=2026-12-06T19:13:18 PreemptTime=None Partition=scav NodeList=node3\n"
	scontrolRequeued  = "JobId=6773 JobName=scav.sh UserId=root(0) JobState=COMPLETING Reason=None Requeue=1 Restarts=1 BatchFlag=1 RunTime=00:00:00 TimeLimit=UNLIMITED StartTime=2026-12-06T19:13:42 EndTime=Unknown Partition=scav NodeList=node3\n"
	scontrolGraceTime = "JobId=812 JobName=w UserId=srbuser1(1001) JobState=RUNNING Reason=None Requeue=1 Restarts=0 EndTime=2026-12-06T19:00:55 PreemptTime=2026-12-06T19:00:40 Partition=scav\n"
	scontrolConfig    = "Configuration data as of 2026-12-06T19:13:41\nJobRequeue              = 1\nKillWait                = 10 sec\nMinJobAge               = 300 sec\n"
)

func TestPreemption(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, r := newScheduler(t)
	local := func(h, m, sec int) time.Time { return time.Date(2026, 12, 6, h, m, sec, 0, time.Local) }
	for _, tt := range []struct {
		name, out string
		want      scheduler.Preemption
	}{
		{"running", scontrolRunning, scheduler.Preemption{State: scheduler.Running, End: time.Date(2027, 12, 6, 19, 13, 18, 0, time.Local), KillWait: 10 * time.Second}},
		{"requeued by its preemption", scontrolRequeued, scheduler.Preemption{State: scheduler.Completing, Restarts: 1, KillWait: 10 * time.Second}},
		{"in a grace time", scontrolGraceTime, scheduler.Preemption{State: scheduler.Running, At: local(19, 0, 40), End: local(19, 0, 55), KillWait: 10 * time.Second}},
	} {
		r.Register([]string{"sctl", "show", "job", "-o", "6773"}, tt.out, nil)
		r.Register([]string{"sctl", "show", "config"}, scontrolConfig, nil)
		p, err := s.(preempter).Preemption(ctx, "6773")
		if err != nil || p != tt.want {
			t.Errorf("%s: Preemption = %+v, %v; want %+v", tt.name, p, err, tt.want)
		}
	}
	r.Fail([]string{"sctl", "show", "job", "-o", "9"}, "slurm_load_jobs error: Invalid job id specified\n")
	if _, err := s.(preempter).Preemption(ctx, "9"); err == nil {
		t.Error("unknown job: want an error")
	}
}

func TestParseKillWait(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		out  string
		want time.Duration
		ok   bool
	}{
		{"KillWait                = 30 sec\n", 30 * time.Second, true},
		{"KillOnBadExit = 0\nKillWait = 0 sec\n", 0, true},
		{"MinJobAge = 300 sec\n", 0, false},
		{"KillWait = soon\n", 0, false},
	} {
		got, err := slurm.ParseKillWait([]byte(tt.out))
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("ParseKillWait(%q) = %s, %v; want %s, ok %v", tt.out, got, err, tt.want, tt.ok)
		}
	}
	if _, err := slurm.ParsePreemption([]byte("slurm_load_jobs error"), time.UTC); err == nil {
		t.Error("ParsePreemption of no job line: want an error")
	}
}
