package cluster

import (
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/scheduler"
)

func TestJobOutcome(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		recorded Outcome
		state    scheduler.JobState
		want     Outcome
	}{
		{"still running", "", "", ""},
		{"no record: SLURM's word", "", scheduler.NodeFail, OutcomeNodeFail},
		{"no record: boot failure is a node failure", "", scheduler.BootFail, OutcomeNodeFail},
		{"no record: out of memory", "", scheduler.OutOfMemory, OutcomeOutOfMemory},
		{"no record: deadline is a time limit", "", scheduler.Deadline, OutcomeTimeLimit},
		{"no record, unknown state", "", "WEIRD", ""},
		{"the record knows more than COMPLETED", OutcomeDrainedTimeLimit, scheduler.Completed, OutcomeDrainedTimeLimit},
		{"idle drain", OutcomeDrainedIdle, scheduler.Completed, OutcomeDrainedIdle},
		{"head lost beats FAILED", OutcomeHeadLost, scheduler.Failed, OutcomeHeadLost},
		{"a SIGTERM at the time limit looks like a cancel to the node", OutcomeCancelled, scheduler.Timeout, OutcomeTimeLimit},
		{"preemption looks like a cancel too", OutcomeCancelled, scheduler.Preempted, OutcomePreempted},
		{"a real cancel", OutcomeCancelled, scheduler.Cancelled, OutcomeCancelled},
		{"cancel recorded, SLURM forgot the job", OutcomeCancelled, "", OutcomeCancelled},
		{"ray exited", OutcomeRayExited, scheduler.Failed, OutcomeRayExited},
	}
	for _, tt := range tests {
		if got := JobOutcome(tt.recorded, tt.state); got != tt.want {
			t.Errorf("%s: JobOutcome(%q, %q) = %q, want %q", tt.name, tt.recorded, tt.state, got, tt.want)
		}
	}
}

func TestOutcomeOrderly(t *testing.T) {
	t.Parallel()
	orderly := map[Outcome]bool{OutcomeCompleted: true, OutcomeDrainedIdle: true, OutcomeDrainedTimeLimit: true}
	for _, o := range []Outcome{OutcomeCompleted, OutcomeFailed, OutcomeCancelled, OutcomeTimeLimit, OutcomeNodeFail,
		OutcomePreempted, OutcomeOutOfMemory, OutcomeHeadLost, OutcomeSetupFailed, OutcomeJoinFailed, OutcomeRayExited,
		OutcomeDrainedIdle, OutcomeDrainedTimeLimit} {
		if o.Orderly() != orderly[o] {
			t.Errorf("%s.Orderly() = %v", o, o.Orderly())
		}
	}
}

// A node the head saw, whose job SLURM ended while its supervisor could not
// record why (SIGKILL after KillWait), shows SLURM's outcome and counts as
// lost unless that outcome is orderly.
func TestObserveOutcomeWithoutRecord(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		state scheduler.JobState
		want  Membership
	}{{scheduler.NodeFail, Lost}, {scheduler.Completed, Ended}, {scheduler.Cancelled, Lost}} {
		o := baseObservation()
		withHeadUp(&o)
		withWorkerJoined(&o)
		delete(o.Records, "7")
		o.Membership.Nodes["7"].Alive = false
		j := o.Slurm["7"]
		j.State = tt.state
		o.Slurm["7"] = j
		w := jobByID(t, Observe(o), "7")
		if w.Outcome != OutcomeOfState(tt.state) || w.Ray != tt.want {
			t.Errorf("SLURM %s, no record: outcome %q, ray %q; want %q, %q", tt.state, w.Outcome, w.Ray, OutcomeOfState(tt.state), tt.want)
		}
	}
}

func TestJobOfResources(t *testing.T) {
	t.Parallel()
	tests := []struct {
		res  map[string]float64
		want string
	}{
		{map[string]float64{"CPU": 4, "GPU": 1, "sraybatch_job_7_0": 1}, "7_0"},
		{map[string]float64{"sraybatch_job_12": 1, "memory": 1e9}, "12"},
		{map[string]float64{"CPU": 4, "node:127.0.0.1": 1}, ""},
		{nil, ""},
		{map[string]float64{"other_sraybatch_job_7": 1}, ""},
		// Placement groups derive resources from the job's; whatever the map
		// order, the job's own name wins.
		{map[string]float64{"sraybatch_job_7_0_group_0_ab": 0.001, "sraybatch_job_7_0_group_ab": 0.001, "sraybatch_job_7_0": 1}, "7_0"},
		{map[string]float64{"sraybatch_job_7_0_group_ab": 0.001}, ""},
	}
	for _, tt := range tests {
		for range 20 { // map order varies between iterations
			if got, ok := JobOfResources(tt.res); got != tt.want || ok != (tt.want != "") {
				t.Fatalf("JobOfResources(%v) = %q, %v; want %q", tt.res, got, ok, tt.want)
			}
		}
	}
}

func TestJobNameRoundTrip(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"a", "my-exp", "exp-worker", "x-head-1"} {
		for _, role := range []Role{RoleHead, RoleWorker, RoleDriver} {
			if got, ok := ClusterOfJobName(JobName(name, role)); !ok || got != name {
				t.Errorf("ClusterOfJobName(JobName(%q, %s)) = %q, %v", name, role, got, ok)
			}
		}
	}
	for _, bad := range []string{"", "sray--worker", "sray-Exp-worker", "other-exp-worker", "sray-exp-boss", "sray-exp"} {
		if got, ok := ClusterOfJobName(bad); ok {
			t.Errorf("ClusterOfJobName(%q) = %q, want none", bad, got)
		}
	}
}

func TestJobLogMatchesItsPattern(t *testing.T) {
	t.Parallel()
	if got, want := JobLog("/l", "exp", RoleWorker, "7_0"), "/l/sray-exp-worker-7_0.out"; got != want {
		t.Errorf("JobLog = %q, want %q", got, want)
	}
	for _, tt := range []struct {
		array bool
		key   string
	}{{false, "8"}, {true, "7_0"}} {
		pattern := JobLogPattern("/l", "exp", RoleWorker, tt.array)
		expanded := strings.NewReplacer("%j", "8", "%A", "7", "%a", "0").Replace(pattern)
		if expanded != JobLog("/l", "exp", RoleWorker, tt.key) {
			t.Errorf("pattern %q expands to %q, JobLog says %q", pattern, expanded, JobLog("/l", "exp", RoleWorker, tt.key))
		}
	}
}

// A head whose snapshot still looks fresh is lost once a job of the cluster
// recorded losing it after the head's last heartbeat: the jobs probe the
// head's GCS, status cannot.
func TestObserveHeadLostByItsJobs(t *testing.T) {
	t.Parallel()
	o := baseObservation()
	withHeadUp(&o)
	withWorkerJoined(&o)
	r := o.Records["7"]
	r.Phase, r.Outcome, r.Reason = PhaseEnded, OutcomeHeadLost, "head job 6 unresponsive (no heartbeat for 6s, and its GCS does not answer)"
	r.Updated = o.Membership.Heartbeat.Add(8 * time.Second)
	o.Records["7"] = r
	st := Observe(o)
	if st.Cluster.State != StateFailed || !strings.Contains(st.Cluster.Reason, "its GCS does not answer") {
		t.Errorf("cluster = %s (%s), want failed with the worker's reason", st.Cluster.State, st.Cluster.Reason)
	}
	// A record from before the head's last heartbeat is old news.
	r.Updated = o.Membership.Heartbeat.Add(-time.Second)
	o.Records["7"] = r
	if st := Observe(o); st.Cluster.State != StateRunning {
		t.Errorf("cluster = %s (%s), want running", st.Cluster.State, st.Cluster.Reason)
	}
}

// A job pending again after its run's final record was requeued: a run
// that drained for the preemption says preempted itself; one that took the
// preemption's SIGTERM for a cancel is preempted too. A plain pending job
// with no final record has no outcome yet.
func TestJobOutcomeOfARequeuedJob(t *testing.T) {
	t.Parallel()
	pending := scheduler.Job{ID: "8", State: scheduler.Pending, Reason: "BeginTime"}
	for _, tt := range []struct {
		name string
		rec  NodeRecord
		want Outcome
	}{
		{"drained for the preemption", NodeRecord{Phase: PhaseEnded, Outcome: OutcomePreempted}, OutcomePreempted},
		{"took the SIGTERM for a cancel", NodeRecord{Phase: PhaseEnded, Outcome: OutcomeCancelled}, OutcomePreempted},
		{"ray exited before the drain", NodeRecord{Phase: PhaseEnded, Outcome: OutcomeRayExited}, OutcomeRayExited},
		{"the rerun starting", NodeRecord{Phase: PhaseStarting}, ""},
	} {
		if got := jobOutcome(tt.rec, true, pending, true); got != tt.want {
			t.Errorf("%s: jobOutcome = %q, want %q", tt.name, got, tt.want)
		}
	}
}
