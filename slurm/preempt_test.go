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
// then preempted by an owner job (PreemptTime set, EndTime moved to
// PreemptTime+GraceTime).
const (
	scontrolRunning   = "JobId=812 JobName=sray-pre-worker UserId=srbuser1(1001) JobState=RUNNING Reason=None Requeue=1 Restarts=0 RunTime=00:00:31 TimeLimit=UNLIMITED StartTime=2026-12-06T19:00:00 EndTime=Unknown PreemptEligibleTime=2026-12-06T19:00:00 PreemptTime=None Partition=scav NodeList=node3\n"
	scontrolPreempted = "JobId=812 JobName=sray-pre-worker UserId=srbuser1(1001) JobState=RUNNING Reason=None Requeue=1 Restarts=0 RunTime=00:00:40 TimeLimit=UNLIMITED StartTime=2026-12-06T19:00:00 EndTime=2026-12-06T19:00:55 PreemptEligibleTime=2026-12-06T19:00:00 PreemptTime=2026-12-06T19:00:40 Partition=scav NodeList=node3\n"
)

func TestPreemption(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, r := newScheduler(t)
	r.Register([]string{"sctl", "show", "job", "-o", "812"}, scontrolRunning, nil)
	p, err := s.(preempter).Preemption(ctx, "812")
	if err != nil || p.Preempted() {
		t.Errorf("running job: Preemption = %+v, %v; want none (and no scontrol show config)", p, err)
	}
	r.Register([]string{"sctl", "show", "job", "-o", "812"}, scontrolPreempted, nil)
	r.Register([]string{"sctl", "show", "config"}, "Configuration data as of 2026-12-06T19:00:41\nJobRequeue              = 1\nKillWait                = 10 sec\nMinJobAge               = 300 sec\n", nil)
	p, err = s.(preempter).Preemption(ctx, "812")
	at := time.Date(2026, 12, 6, 19, 0, 40, 0, time.Local)
	if err != nil || !p.At.Equal(at) || !p.End.Equal(at.Add(15*time.Second)) || p.KillWait != 10*time.Second {
		t.Errorf("preempted job: Preemption = %+v, %v; want At %s, End 15 s later, KillWait 10 s", p, err, at)
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
