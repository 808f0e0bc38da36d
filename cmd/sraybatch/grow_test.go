package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

func TestGrowIsOneSbatchCall(t *testing.T) {
	t.Parallel()
	f := newUFixture(t)
	dir, _ := f.createCluster(t, "exp1", "41")
	// The head has 10 minutes left of its 2 hours: workers must not outlive it.
	f.expectHeadLookup("41", squeueLine("41", "sray-exp1-head", "RUNNING", "None", "gpu01", "1:50:00", "10:00", "2:00:00"))
	f.expectSbatch(cluster.RoleWorker, "42", "")

	var s uStreams
	if err := runGrow(context.Background(), s.io(false), f.app, growOptions{Cluster: "exp1", Count: 3}); err != nil {
		t.Fatal(err)
	}
	if s.out.String() != "42_0\n42_1\n42_2\n" {
		t.Errorf("stdout = %q, want the three job keys", s.out.String())
	}
	scripts := f.runner.submitted()
	if len(scripts) != 1 {
		t.Fatalf("%d sbatch calls, want exactly 1", len(scripts))
	}
	w := scripts[0].text
	for _, want := range []string{
		"#SBATCH --job-name=sray-exp1-worker\n",
		"#SBATCH --array=0-2\n",
		"#SBATCH --dependency=after:41\n",
		"#SBATCH --time=0-00:10:00\n",
		"#SBATCH --partition=gpu\n",
		"--head-job 41",
	} {
		if !strings.Contains(w, want) {
			t.Errorf("worker script lacks %q:\n%s", want, w)
		}
	}
	if strings.Contains(w, "--time=2:00:00") {
		t.Errorf("worker keeps the spec's time limit instead of the head's time left:\n%s", w)
	}
	subs, err := dir.Submissions()
	if err != nil {
		t.Fatal(err)
	}
	var workers []cluster.Submission
	for _, sub := range subs {
		if sub.Role == cluster.RoleWorker {
			workers = append(workers, sub)
		}
	}
	if len(workers) != 1 || workers[0].JobID != "42" || workers[0].Tasks != 3 || workers[0].Script != scripts[0].path {
		t.Errorf("worker submissions = %+v, want one for array 42 with Tasks=3", workers)
	}
}

func TestGrowOneWorkerIsAPlainJob(t *testing.T) {
	t.Parallel()
	f := newUFixture(t)
	f.createCluster(t, "exp1", "41")
	f.expectHeadLookup("41", squeueLine("41", "sray-exp1-head", "PENDING", "Resources", "", "0:00", "2:00:00", "2:00:00"))
	f.expectSbatch(cluster.RoleWorker, "42", "")
	var s uStreams
	if err := runGrow(context.Background(), s.io(false), f.app, growOptions{Count: 1}); err != nil {
		t.Fatal(err)
	}
	if s.out.String() != "42\n" {
		t.Errorf("stdout = %q, want 42", s.out.String())
	}
	w := f.runner.submitted()[0].text
	if strings.Contains(w, "--array") || !strings.Contains(w, "#SBATCH --time=2:00:00\n") {
		t.Errorf("single worker of a pending head: want no array and the spec's time:\n%s", w)
	}
}

func TestGrowErrors(t *testing.T) {
	t.Parallel()
	t.Run("count below one", func(t *testing.T) {
		t.Parallel()
		f := newUFixture(t)
		f.createCluster(t, "exp1", "41")
		err := runGrow(context.Background(), IOStreams{}, f.app, growOptions{Cluster: "exp1", Count: 0})
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "-n must be at least 1") {
			t.Errorf("runGrow -n 0 = %v, want a usage error", err)
		}
	})
	t.Run("cluster taken down", func(t *testing.T) {
		t.Parallel()
		f := newUFixture(t)
		dir, _ := f.createCluster(t, "exp1", "41")
		if err := dir.MarkDown(time.Now()); err != nil {
			t.Fatal(err)
		}
		err := runGrow(context.Background(), IOStreams{}, f.app, growOptions{Cluster: "exp1", Count: 1})
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "was taken down") {
			t.Errorf("runGrow on a downed cluster = %v, want a usage error", err)
		}
	})
	t.Run("no head recorded", func(t *testing.T) {
		t.Parallel()
		f := newUFixture(t)
		f.createCluster(t, "exp1", "")
		err := runGrow(context.Background(), IOStreams{}, f.app, growOptions{Cluster: "exp1", Count: 1})
		if err == nil || !strings.Contains(err.Error(), "no head job recorded") {
			t.Errorf("runGrow without a head = %v", err)
		}
	})
	t.Run("head ended", func(t *testing.T) {
		t.Parallel()
		f := newUFixture(t)
		f.createCluster(t, "exp1", "41")
		f.expectHeadLookup("41", squeueLine("41", "sray-exp1-head", "TIMEOUT", "TimeLimit", "gpu01", "2:00:00", "0:00", "2:00:00"))
		err := runGrow(context.Background(), IOStreams{}, f.app, growOptions{Cluster: "exp1", Count: 2})
		if err == nil || !strings.Contains(err.Error(), "head job 41 has ended (TIMEOUT)") {
			t.Errorf("runGrow with an ended head = %v", err)
		}
		if n := len(f.runner.submitted()); n != 0 {
			t.Errorf("%d workers submitted for an ended head", n)
		}
	})
	t.Run("sbatch refuses", func(t *testing.T) {
		t.Parallel()
		f := newUFixture(t)
		dir, _ := f.createCluster(t, "exp1", "41")
		f.expectHeadLookup("41", squeueLine("41", "sray-exp1-head", "RUNNING", "None", "gpu01", "10:00", "1:50:00", "2:00:00"))
		f.expectSbatch(cluster.RoleWorker, "", "sbatch: error: QOSMaxGRESPerUser\n")
		err := runGrow(context.Background(), IOStreams{}, f.app, growOptions{Cluster: "exp1", Count: 2})
		if err == nil || !strings.Contains(err.Error(), "submit worker job") || !strings.Contains(err.Error(), "QOSMaxGRESPerUser") {
			t.Errorf("runGrow = %v, want SLURM's reason", err)
		}
		if subs, _ := dir.Submissions(); len(subs) != 1 {
			t.Errorf("refused grow recorded a submission: %+v", subs)
		}
	})
}

func TestWorkerTimeLimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		specTime string
		line     string // squeue's answer for head 41; "" for none
		want     string
		wantErr  string
	}{
		{"capped at the head's time left", "2:00:00", squeueLine("41", "h", "RUNNING", "None", "n1", "1:50:00", "10:00", "2:00:00"), "0-00:10:00", ""},
		{"days left, no spec time", "", squeueLine("41", "h", "RUNNING", "None", "n1", "1:00:00", "1-02:03:04", "1-03:03:04"), "1-02:03:04", ""},
		{"more left than the spec asks", "1:00:00", squeueLine("41", "h", "RUNNING", "None", "n1", "0:10", "3:00:00", "3:00:10"), "1:00:00", ""},
		{"unlimited spec", "UNLIMITED", squeueLine("41", "h", "RUNNING", "None", "n1", "0:10", "30:00", "30:10"), "0-00:30:00", ""},
		{"unlimited head", "2:00:00", squeueLine("41", "h", "RUNNING", "None", "n1", "5:00", "UNLIMITED", "UNLIMITED"), "2:00:00", ""},
		{"pending head", "2:00:00", squeueLine("41", "h", "PENDING", "Priority", "", "0:00", "2:00:00", "2:00:00"), "2:00:00", ""},
		{"ended head", "2:00:00", squeueLine("41", "h", "CANCELLED", "None", "n1", "5:00", "0:00", "2:00:00"), "", "head job 41 has ended (CANCELLED)"},
		{"forgotten head", "2:00:00", "", "", "head job 41 is no longer known to SLURM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newUFixture(t)
			if tt.line == "" {
				f.expectHeadLookup("41")
			} else {
				f.expectHeadLookup("41", tt.line)
			}
			spec := uSpec("exp1")
			spec.Node.Time = tt.specTime
			got, err := f.app.workerTimeLimit(context.Background(), spec, "41")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("workerTimeLimit = %q, %v; want error %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("workerTimeLimit = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// grow --partition puts this call's workers on another partition than the
// head's (a preemptible one), without changing the cluster's spec.
func TestGrowOnAnotherPartition(t *testing.T) {
	t.Parallel()
	f := newUFixture(t)
	dir, _ := f.createCluster(t, "exp1", "41")
	f.expectHeadLookup("41", squeueLine("41", "sray-exp1-head", "RUNNING", "None", "gpu01", "1:50:00", "10:00", "2:00:00"))
	f.expectSbatch(cluster.RoleWorker, "42", "")
	var s uStreams
	if err := runGrow(context.Background(), s.io(false), f.app, growOptions{Cluster: "exp1", Count: 1, Partition: "scav"}); err != nil {
		t.Fatal(err)
	}
	if w := f.runner.submitted()[0].text; !strings.Contains(w, "#SBATCH --partition=scav\n") || strings.Contains(w, "--partition=gpu") {
		t.Errorf("worker script not on partition scav:\n%s", w)
	}
	if spec, _ := dir.Spec(); spec.WorkerPartition != "" || spec.Node.Partition != "gpu" {
		t.Errorf("spec changed: worker partition %q, partition %q", spec.WorkerPartition, spec.Node.Partition)
	}
}
