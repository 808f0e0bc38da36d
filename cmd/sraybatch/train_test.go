package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

func TestDriverOver(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		js      cluster.JobStatus
		settled bool
		want    bool
	}{
		{"running", cluster.JobStatus{SlurmState: "RUNNING", Ray: cluster.MembershipJoined}, false, false},
		{"pending", cluster.JobStatus{SlurmState: "PENDING", Ray: cluster.MembershipWaiting}, false, false},
		{"SLURM ended it", cluster.JobStatus{SlurmState: "CANCELLED", Ray: cluster.MembershipLost, Outcome: cluster.OutcomeCancelled}, false, true},
		{"SLURM forgot it, no record", cluster.JobStatus{SlurmState: cluster.SlurmGone, Ray: cluster.MembershipFailed}, false, true},
		// A head that vanished makes a running driver look lost: not its end.
		{"lost in Ray but still running", cluster.JobStatus{SlurmState: "RUNNING", Ray: cluster.MembershipLost}, false, false},
		{"SLURM unreachable, no outcome", cluster.JobStatus{Ray: cluster.MembershipLost}, false, false},
		{"recorded, SLURM unreachable", cluster.JobStatus{Ray: cluster.MembershipLost, Outcome: cluster.OutcomeHeadLost}, false, true},
		// SLURM's final word may name a time limit the record calls a cancel.
		{"recorded, still completing", cluster.JobStatus{SlurmState: "COMPLETING", Ray: cluster.MembershipLost, Outcome: cluster.OutcomeCancelled}, false, false},
		{"recorded, completing too long", cluster.JobStatus{SlurmState: "COMPLETING", Ray: cluster.MembershipLost, Outcome: cluster.OutcomeCancelled}, true, true},
	}
	for _, tt := range tests {
		if got := driverOver(tt.js, tt.settled); got != tt.want {
			t.Errorf("%s: driverOver = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestDriverResult(t *testing.T) {
	t.Parallel()
	code := func(c int) *int { return &c }
	tests := []struct {
		name string
		js   cluster.JobStatus
		want string // the error; "" for success
	}{
		{"completed", cluster.JobStatus{Outcome: cluster.OutcomeCompleted, ExitCode: code(0)}, ""},
		{"completed, exit code not recorded", cluster.JobStatus{Outcome: cluster.OutcomeCompleted}, ""},
		{"command failed", cluster.JobStatus{Outcome: cluster.OutcomeFailed, ExitCode: code(2), Reason: "driver exited with code 2"},
			"driver job 161: its command exited with code 2 (log L)"},
		{"cancelled", cluster.JobStatus{Outcome: cluster.OutcomeCancelled, Reason: "cancelled (SIGTERM)"},
			"driver job 161 cancelled: cancelled (SIGTERM) (log L)"},
		{"time limit", cluster.JobStatus{Outcome: cluster.OutcomeTimeLimit}, "driver job 161 hit its time limit: no reason recorded (log L)"},
		{"cancelled, its command killed", cluster.JobStatus{Outcome: cluster.OutcomeCancelled, ExitCode: code(143), Reason: "cancelled (terminated)"},
			"driver job 161 cancelled: cancelled (terminated) (log L)"},
		{"head lost", cluster.JobStatus{Outcome: cluster.OutcomeHeadLost, Reason: "head job 160 ended"},
			"driver job 161 lost its head: head job 160 ended (log L)"},
		{"node failed", cluster.JobStatus{Outcome: cluster.OutcomeNodeFail}, "driver job 161 lost its node: no reason recorded (log L)"},
		{"gone without a trace", cluster.JobStatus{SlurmState: cluster.SlurmGone, Ray: cluster.MembershipFailed},
			"driver job 161 ended without recording how (SLURM: GONE): see its log L"},
	}
	for _, tt := range tests {
		tt.js.JobID, tt.js.Role = "161", cluster.RoleDriver
		err := driverResult(tt.js, "L")
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: driverResult = %v, want success", tt.name, err)
		case tt.want != "" && (err == nil || err.Error() != tt.want):
			t.Errorf("%s: driverResult = %v, want %q", tt.name, err, tt.want)
		}
	}
}

// train --follow used to exit 0 when the driver was scancelled: only a
// non-zero exit code or a failed phase counted.
func TestFollowDriverExitStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		rec   cluster.NodeRecord
		slurm string // squeue's state of the driver
		code  int
		msg   string
	}{
		{"scancelled", cluster.NodeRecord{Phase: cluster.PhaseEnded, Outcome: cluster.OutcomeCancelled, Reason: "cancelled (SIGTERM)"},
			"CANCELLED", exitFailure, "driver job 50 cancelled: cancelled (SIGTERM)"},
		{"time limit recorded as a cancel", cluster.NodeRecord{Phase: cluster.PhaseEnded, Outcome: cluster.OutcomeCancelled},
			"TIMEOUT", exitFailure, "driver job 50 hit its time limit"},
		{"head lost", cluster.NodeRecord{Phase: cluster.PhaseFailed, Outcome: cluster.OutcomeHeadLost, Reason: "head job 41 ended"},
			"FAILED", exitFailure, "driver job 50 lost its head: head job 41 ended"},
		{"completed", cluster.NodeRecord{Phase: cluster.PhaseEnded, Outcome: cluster.OutcomeCompleted, ExitCode: new(0), Reason: cluster.ReasonDriverFinished},
			"COMPLETED", exitOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newUFixture(t)
			dir, spec := f.createCluster(t, "exp1", "41")
			if err := dir.AddSubmission(cluster.Submission{Role: cluster.RoleDriver, JobID: "50", Submitted: time.Now().UTC()}); err != nil {
				t.Fatal(err)
			}
			tt.rec.Job, tt.rec.Role = "50", cluster.RoleDriver
			if err := dir.WriteNode(tt.rec); err != nil {
				t.Fatal(err)
			}
			f.expectClusterJobs(spec,
				squeueLine("41", "sray-exp1-head", "RUNNING", "None", "gpu01", "1:00:00", "1:00:00", "2:00:00"),
				squeueLine("50", "sray-exp1-driver", tt.slurm, "None", "cpu01", "5:00", "0:00", "1:00:00"))
			var s uStreams
			err := followDriver(context.Background(), s.io(false), f.app, dir, spec, "50")
			if code := exitCode(s.io(false), "train", err); code != tt.code {
				t.Errorf("followDriver = %v: exit %d, want %d", err, code, tt.code)
			}
			if msg := s.errOut.String(); !strings.Contains(msg, tt.msg) || strings.Count(msg, "\n") > 1 {
				t.Errorf("stderr = %q, want one line containing %q", msg, tt.msg)
			}
		})
	}
}

// A rollover cluster's driver job that handed the run over is followed
// into its successor, whose end decides.
func TestFollowDriverSuccessor(t *testing.T) {
	t.Parallel()
	f := newUFixture(t)
	dir, spec := f.createCluster(t, "exp1", "41")
	for _, rec := range []cluster.NodeRecord{
		{Job: "50", Role: cluster.RoleDriver, Phase: cluster.PhaseEnded, Outcome: cluster.OutcomeHandedOver, Successor: "51", Reason: "handed over to driver job 51 (...)"},
		{Job: "51", Role: cluster.RoleDriver, Phase: cluster.PhaseEnded, Outcome: cluster.OutcomeFailed, ExitCode: new(3)},
	} {
		if err := dir.AddSubmission(cluster.Submission{Role: cluster.RoleDriver, JobID: rec.Job, Submitted: time.Now().UTC()}); err != nil {
			t.Fatal(err)
		}
		if err := dir.WriteNode(rec); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 { // one poll per driver job
		f.expectClusterJobs(spec,
			squeueLine("41", "sray-exp1-head", "RUNNING", "None", "gpu01", "1:00:00", "1:00:00", "2:00:00"),
			squeueLine("50", "sray-exp1-driver", "COMPLETED", "None", "cpu01", "5:00", "0:00", "1:00:00"),
			squeueLine("51", "sray-exp1-driver", "FAILED", "None", "cpu01", "5:00", "0:00", "1:00:00"))
	}
	var s uStreams
	err := followDriver(context.Background(), s.io(false), f.app, dir, spec, "50")
	if err == nil || !strings.Contains(err.Error(), "driver job 51: its command exited with code 3") {
		t.Errorf("followDriver = %v, want the successor's failure", err)
	}
	if !strings.Contains(s.errOut.String(), "driver job 50 handed the run over to driver job 51; following it") {
		t.Errorf("stderr = %q, want the handover named", s.errOut.String())
	}
}

func TestFollowDriverInterrupted(t *testing.T) {
	t.Parallel()
	f := newUFixture(t)
	dir, spec := f.createCluster(t, "exp1", "41")
	if err := dir.AddSubmission(cluster.Submission{Role: cluster.RoleDriver, JobID: "50", Submitted: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	f.expectClusterJobs(spec, squeueLine("50", "sray-exp1-driver", "RUNNING", "None", "cpu01", "5:00", "55:00", "1:00:00"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // Ctrl+C
	var s uStreams
	err := followDriver(ctx, s.io(false), f.app, dir, spec, "50")
	var ie interruptedError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "driver job 50 keeps running") {
		t.Errorf("followDriver after Ctrl+C = %v, want an interruptedError saying the driver keeps running", err)
	}
}

// --gpus-per-actor unset is nil (the cluster's default), not a sentinel.
func TestGPUsPerActorFlag(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args []string
		want string // "" for nil
	}{
		{nil, ""},
		{[]string{"--gpus-per-actor", "0"}, "0"},
		{[]string{"--gpus-per-actor=0.5"}, "0.5"},
	} {
		var p *float64
		fs := pflag.NewFlagSet("train", pflag.ContinueOnError)
		fs.Var(optionalFloat{&p}, "gpus-per-actor", "")
		if err := fs.Parse(tt.args); err != nil {
			t.Fatal(err)
		}
		if got := (optionalFloat{&p}).String(); got != tt.want || (p == nil) != (tt.want == "") {
			t.Errorf("%q: value %q (nil %v), want %q", tt.args, got, p == nil, tt.want)
		}
	}
}

// A driver partition that would break the job script's line is refused
// before anything is read or submitted.
func TestTrainRefusesAMultiLinePartition(t *testing.T) {
	t.Parallel()
	var ue usageError
	err := runTrain(context.Background(), IOStreams{}, nil, trainOptions{Cluster: "exp1", Steps: 1, StepSeconds: 1, CPUs: 1, Partition: "debug\n#SBATCH --x"})
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--partition") {
		t.Errorf("runTrain with a two-line --partition = %v, want a usage error naming --partition", err)
	}
}
