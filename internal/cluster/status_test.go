package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/scheduler"
)

var obsNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// baseObservation is a cluster with head job 6 and one worker job 7, neither
// started: the starting point each case below changes.
func baseObservation() Observation {
	return Observation{
		Dir: Dir{Path: "/home/ana/.sraybatch/clusters/exp1"},
		Spec: Spec{
			SchemaVersion: SchemaVersion, Name: "exp1", ID: "0b7c2a4e", Backend: BackendSlurm,
			User: "ana", Created: obsNow.Add(-time.Hour), Node: NodeSpec{GPUs: 1, Time: "2:00:00"},
		},
		Submissions: []Submission{
			{Role: RoleHead, JobID: "6", Submitted: obsNow.Add(-time.Hour)},
			{Role: RoleWorker, JobID: "7", Submitted: obsNow.Add(-50 * time.Minute)},
		},
		Records:    map[string]NodeRecord{},
		Membership: MembershipSnapshot{Nodes: map[string]*MemberNode{}},
		Slurm: map[string]scheduler.Job{
			"6": pendingJob("6", "Resources"),
			"7": pendingJob("7", "Dependency"),
		},
		Now: obsNow,
	}
}

func pendingJob(id, reason string) scheduler.Job {
	return scheduler.Job{ID: id, State: scheduler.Pending, Reason: reason, GPUs: 1, TimeLimit: 2 * time.Hour, TimeLeft: 2 * time.Hour}
}

func runningJob(id, node string, left time.Duration) scheduler.Job {
	return scheduler.Job{
		ID: id, State: scheduler.Running, Node: node, GPUs: 1,
		Elapsed: 2*time.Hour - left, TimeLimit: 2 * time.Hour, TimeLeft: left,
	}
}

// withHeadUp publishes the head and marks job 6 alive in a fresh snapshot.
func withHeadUp(o *Observation) {
	o.Slurm["6"] = runningJob("6", "gpu01", 90*time.Minute)
	o.Head = &HeadInfo{Job: "6", Address: "10.1.2.3:20000", NodeIP: "10.1.2.3", Dashboard: "http://127.0.0.1:20001", SlurmNode: "gpu01"}
	o.Records["6"] = NodeRecord{Job: "6", Role: RoleHead, Phase: PhaseRunning, SlurmNode: "gpu01", IP: "10.1.2.3", GPUs: 1}
	o.Membership.Updated = obsNow.Add(-3 * time.Second)
	o.Membership.Nodes["6"] = &MemberNode{NodeID: "aaaa6", IP: "10.1.2.3", GPUs: 1, Alive: true, FirstSeen: obsNow.Add(-40 * time.Minute), LastSeen: obsNow.Add(-3 * time.Second)}
}

// withWorkerJoined runs job 7 and marks it alive.
func withWorkerJoined(o *Observation) {
	o.Slurm["7"] = runningJob("7", "gpu02", 80*time.Minute)
	o.Records["7"] = NodeRecord{Job: "7", Role: RoleWorker, Phase: PhaseRunning, SlurmNode: "gpu02", IP: "10.1.2.4", GPUs: 1}
	o.Membership.Nodes["7"] = &MemberNode{NodeID: "bbbb7", IP: "10.1.2.4", GPUs: 1, Alive: true, FirstSeen: obsNow.Add(-30 * time.Minute), LastSeen: obsNow.Add(-3 * time.Second)}
}

// withWorkerGone has worker 7 joined, then gone from Ray in a fresh
// snapshot, with the head's drain notice for job noticed ("": none).
func withWorkerGone(o *Observation, noticed string) {
	withHeadUp(o)
	withWorkerJoined(o)
	o.Membership.Nodes["7"].Alive = false
	if noticed != "" {
		o.Drains = map[string]DrainNotice{noticed: {Job: noticed, Outcome: OutcomeDrainedIdle}}
	}
}

func jobByID(t *testing.T, st Status, id string) JobStatus {
	t.Helper()
	for _, j := range st.Jobs {
		if j.JobID == id {
			return j
		}
	}
	t.Fatalf("no job %s in status %+v", id, st.Jobs)
	return JobStatus{}
}

func TestStatusOf(t *testing.T) {
	t.Parallel()
	type want struct {
		state      State
		reason     string // substring of the cluster reason; "" means it must be empty
		slurmError string // substring; "" means it must be empty
		jobs       map[string]Membership
		// slurmStates / jobReasons are checked only for the keys given.
		slurmStates map[string]string
		jobReasons  map[string]string
	}
	tests := []struct {
		name   string
		mutate func(o *Observation)
		want   want
	}{
		{
			name:   "head pending in SLURM",
			mutate: func(o *Observation) {},
			want: want{
				state: StatePending, reason: "Resources",
				jobs:        map[string]Membership{"6": MembershipWaiting, "7": MembershipWaiting},
				slurmStates: map[string]string{"6": "PENDING", "7": "PENDING"},
				jobReasons:  map[string]string{"6": "Resources", "7": "Dependency"},
			},
		},
		{
			name:   "head published and alive, worker not yet in Ray",
			mutate: func(o *Observation) { withHeadUp(o); o.Slurm["7"] = runningJob("7", "gpu02", 2*time.Hour) },
			want: want{
				state: StateRunning,
				jobs:  map[string]Membership{"6": MembershipJoined, "7": MembershipWaiting},
			},
		},
		{
			name:   "head and worker joined",
			mutate: func(o *Observation) { withHeadUp(o); withWorkerJoined(o) },
			want: want{
				state:       StateRunning,
				jobs:        map[string]Membership{"6": MembershipJoined, "7": MembershipJoined},
				slurmStates: map[string]string{"6": "RUNNING", "7": "RUNNING"},
			},
		},
		{
			name: "head published, membership not refreshed yet",
			mutate: func(o *Observation) {
				withHeadUp(o)
				o.Membership = MembershipSnapshot{Nodes: map[string]*MemberNode{}}
			},
			want: want{state: StateRunning, jobs: map[string]Membership{"6": MembershipWaiting, "7": MembershipWaiting}},
		},
		{
			name: "worker was joined and is no longer alive",
			mutate: func(o *Observation) {
				withHeadUp(o)
				withWorkerJoined(o)
				o.Membership.Nodes["7"].Alive = false
			},
			want: want{
				state:       StateRunning,
				jobs:        map[string]Membership{"6": MembershipJoined, "7": MembershipLost},
				slurmStates: map[string]string{"7": "RUNNING"},
			},
		},
		{
			name: "worker was joined and SLURM ended it without a down",
			mutate: func(o *Observation) {
				withHeadUp(o)
				withWorkerJoined(o)
				j := o.Slurm["7"]
				j.State = scheduler.NodeFail
				o.Slurm["7"] = j
			},
			want: want{
				state:       StateRunning,
				jobs:        map[string]Membership{"6": MembershipJoined, "7": MembershipLost},
				slurmStates: map[string]string{"7": "NODE_FAIL"},
			},
		},
		{
			name: "down requested and jobs cancelled",
			mutate: func(o *Observation) {
				withHeadUp(o)
				withWorkerJoined(o)
				o.Down = &DownRequest{Requested: obsNow.Add(-time.Minute)}
				for _, id := range []string{"6", "7"} {
					j := o.Slurm[id]
					j.State = scheduler.Cancelled
					o.Slurm[id] = j
				}
			},
			want: want{
				state: StateEnded, reason: "down requested",
				jobs:        map[string]Membership{"6": MembershipEnded, "7": MembershipEnded},
				slurmStates: map[string]string{"6": "CANCELLED", "7": "CANCELLED"},
			},
		},
		{
			name: "down requested, pending worker cancelled before it started",
			mutate: func(o *Observation) {
				withHeadUp(o)
				o.Down = &DownRequest{Requested: obsNow.Add(-time.Minute)}
				o.Slurm["7"] = scheduler.Job{ID: "7", State: scheduler.Cancelled, Unlimited: false}
			},
			// The head is still being cancelled: it stays joined until it leaves.
			want: want{state: StateEnded, reason: "down requested", jobs: map[string]Membership{"6": MembershipJoined, "7": MembershipEnded}},
		},
		{
			name: "worker failed before joining",
			mutate: func(o *Observation) {
				withHeadUp(o)
				o.Slurm["7"] = runningJob("7", "gpu02", time.Hour)
				o.Records["7"] = NodeRecord{Job: "7", Role: RoleWorker, Phase: PhaseFailed, Reason: "find ray after --setup: not on PATH", SlurmNode: "gpu02"}
			},
			want: want{
				state:      StateRunning,
				jobs:       map[string]Membership{"6": MembershipJoined, "7": MembershipFailed},
				jobReasons: map[string]string{"7": "find ray after --setup: not on PATH"},
			},
		},
		{
			name: "worker gone from squeue without ever joining",
			mutate: func(o *Observation) {
				withHeadUp(o)
				delete(o.Slurm, "7")
			},
			want: want{
				state:       StateRunning,
				jobs:        map[string]Membership{"6": MembershipJoined, "7": MembershipFailed},
				slurmStates: map[string]string{"7": SlurmGone},
			},
		},
		{
			name: "squeue unavailable",
			mutate: func(o *Observation) {
				withHeadUp(o)
				o.Slurm = nil
				o.SlurmErr = errors.New("squeue failed: slurm_load_jobs error: Unable to contact slurm controller")
			},
			want: want{
				state: StateRunning, slurmError: "Unable to contact slurm controller",
				// Nothing is failed just because SLURM could not be asked.
				jobs:        map[string]Membership{"6": MembershipJoined, "7": MembershipWaiting},
				slurmStates: map[string]string{"6": "", "7": ""},
			},
		},
		{
			name: "squeue unavailable before the head published",
			mutate: func(o *Observation) {
				o.Slurm = nil
				o.SlurmErr = errors.New("SLURM did not answer within 2s")
			},
			want: want{
				state: StatePending, slurmError: "did not answer",
				jobs: map[string]Membership{"6": MembershipWaiting, "7": MembershipWaiting},
			},
		},
		{
			name: "draining while alive",
			mutate: func(o *Observation) {
				withHeadUp(o)
				withWorkerJoined(o)
				r := o.Records["7"]
				r.Phase, r.Reason = PhaseDraining, "time limit near"
				o.Records["7"] = r
			},
			want: want{
				state:      StateRunning,
				jobs:       map[string]Membership{"6": MembershipJoined, "7": MembershipDraining},
				jobReasons: map[string]string{"7": "time limit near"},
			},
		},
		{
			name: "drained and gone",
			mutate: func(o *Observation) {
				withHeadUp(o)
				withWorkerJoined(o)
				r := o.Records["7"]
				r.Phase, r.Outcome, r.Reason = PhaseEnded, OutcomeDrainedTimeLimit, ReasonDrained
				o.Records["7"] = r
				o.Membership.Nodes["7"].Alive = false
				j := o.Slurm["7"]
				j.State = scheduler.Completed
				o.Slurm["7"] = j
			},
			want: want{
				state:      StateRunning,
				jobs:       map[string]Membership{"6": MembershipJoined, "7": MembershipEnded},
				jobReasons: map[string]string{"7": ReasonDrained},
			},
		},
		{
			// Ray lets an idle node go at once; its supervisor records the
			// end a tick later. In between it has left in order, not been lost.
			name:   "drained for idleness, gone from Ray, end not recorded yet",
			mutate: func(o *Observation) { withWorkerGone(o, "7") },
			want:   want{state: StateRunning, jobs: map[string]Membership{"6": MembershipJoined, "7": MembershipEnded}},
		},
		{
			name: "draining, gone from Ray, end not recorded yet",
			mutate: func(o *Observation) {
				withWorkerGone(o, "")
				r := o.Records["7"]
				r.Phase = PhaseDraining
				o.Records["7"] = r
			},
			want: want{state: StateRunning, jobs: map[string]Membership{"6": MembershipJoined, "7": MembershipEnded}},
		},
		{
			// Its job ends preempted, lost until the requeue runs: never
			// ended first and lost after.
			name: "draining for a preemption, gone from Ray, end not recorded yet",
			mutate: func(o *Observation) {
				withWorkerGone(o, "")
				r := o.Records["7"]
				at := obsNow.Add(-2 * time.Second)
				r.Phase, r.PreemptedAt = PhaseDraining, &at
				o.Records["7"] = r
			},
			want: want{state: StateRunning, jobs: map[string]Membership{"6": MembershipJoined, "7": MembershipLost}},
		},
		{
			name: "drain notice, but SLURM ended the job without an orderly end",
			mutate: func(o *Observation) {
				withWorkerGone(o, "7")
				o.Slurm["7"] = scheduler.Job{ID: "7", State: scheduler.NodeFail}
			},
			want: want{state: StateRunning, jobs: map[string]Membership{"6": MembershipJoined, "7": MembershipLost}},
		},
		{
			name:   "drain notice of another job",
			mutate: func(o *Observation) { withWorkerGone(o, "8") },
			want:   want{state: StateRunning, jobs: map[string]Membership{"6": MembershipJoined, "7": MembershipLost}},
		},
		{
			name: "drained record wins over a membership entry still alive",
			mutate: func(o *Observation) {
				withHeadUp(o)
				withWorkerJoined(o)
				r := o.Records["7"]
				r.Phase, r.Outcome, r.Reason = PhaseEnded, OutcomeDrainedTimeLimit, ReasonDrained
				o.Records["7"] = r
			},
			want: want{state: StateRunning, jobs: map[string]Membership{"6": MembershipJoined, "7": MembershipEnded}},
		},
		{
			name: "head lost",
			mutate: func(o *Observation) {
				withHeadUp(o)
				withWorkerJoined(o)
				o.Membership.Nodes["6"].Alive = false
			},
			want: want{
				state: StateFailed, reason: "head job 6 lost",
				jobs: map[string]Membership{"6": MembershipLost, "7": MembershipJoined},
			},
		},
		{
			name: "head failed before publishing",
			mutate: func(o *Observation) {
				o.Slurm["6"] = scheduler.Job{ID: "6", State: scheduler.Failed}
				o.Records["6"] = NodeRecord{Job: "6", Role: RoleHead, Phase: PhaseFailed, Reason: "ray 2.40.0 found after --setup has no token auth"}
			},
			want: want{
				state: StateFailed, reason: "head job 6 failed: ray 2.40.0 found after --setup has no token auth",
				jobs: map[string]Membership{"6": MembershipFailed, "7": MembershipWaiting},
			},
		},
		{
			name: "head not submitted",
			mutate: func(o *Observation) {
				o.Submissions = nil
				o.Slurm = map[string]scheduler.Job{}
			},
			want: want{state: StatePending, reason: "head not submitted", jobs: map[string]Membership{}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := baseObservation()
			tt.mutate(&o)
			st := StatusOf(o)

			if st.Cluster.State != tt.want.state {
				t.Errorf("cluster state = %q, want %q (reason %q)", st.Cluster.State, tt.want.state, st.Cluster.Reason)
			}
			checkContains(t, "cluster reason", st.Cluster.Reason, tt.want.reason)
			checkContains(t, "slurm error", st.Cluster.SlurmError, tt.want.slurmError)
			if len(st.Jobs) != len(tt.want.jobs) {
				t.Errorf("got %d jobs, want %d: %+v", len(st.Jobs), len(tt.want.jobs), st.Jobs)
			}
			for id, m := range tt.want.jobs {
				if got := jobByID(t, st, id).Ray; got != m {
					t.Errorf("job %s ray = %q, want %q", id, got, m)
				}
			}
			for id, s := range tt.want.slurmStates {
				if got := jobByID(t, st, id).SlurmState; got != s {
					t.Errorf("job %s slurm state = %q, want %q", id, got, s)
				}
			}
			for id, r := range tt.want.jobReasons {
				if got := jobByID(t, st, id).Reason; got != r {
					t.Errorf("job %s reason = %q, want %q", id, got, r)
				}
			}
		})
	}
}

func checkContains(t *testing.T, what, got, want string) {
	t.Helper()
	if want == "" {
		if got != "" {
			t.Errorf("%s = %q, want empty", what, got)
		}
		return
	}
	if !strings.Contains(got, want) {
		t.Errorf("%s = %q, want it to contain %q", what, got, want)
	}
}

// A snapshot older than MembershipFreshFor vouches for nobody: the head that
// keeps it may be gone.
func TestObserveStaleMembershipIsNotJoined(t *testing.T) {
	t.Parallel()
	for _, age := range []time.Duration{MembershipFreshFor, MembershipFreshFor + time.Second, time.Hour} {
		o := baseObservation()
		withHeadUp(&o)
		withWorkerJoined(&o)
		o.Membership.Updated = obsNow.Add(-age)
		st := StatusOf(o)
		for _, j := range st.Jobs {
			if j.Ray == MembershipJoined || j.Ray == MembershipDraining {
				t.Errorf("snapshot %s old: job %s ray = %q, want not joined", age, j.JobID, j.Ray)
			}
		}
		if got := st.Cluster.MembershipAgeS; got == nil || *got != int64(age.Seconds()) {
			t.Errorf("membership_age_s = %v, want %d", got, int64(age.Seconds()))
		}
	}
	// Just inside the bound it is still believed.
	o := baseObservation()
	withHeadUp(&o)
	o.Membership.Updated = obsNow.Add(-MembershipFreshFor + time.Second)
	if got := jobByID(t, StatusOf(o), "6").Ray; got != MembershipJoined {
		t.Errorf("fresh snapshot: head ray = %q, want joined", got)
	}
	// Nor does a stale one say a drained worker left in order.
	o = baseObservation()
	withWorkerGone(&o, "7")
	o.Membership.Updated = obsNow.Add(-MembershipFreshFor)
	if got := jobByID(t, StatusOf(o), "7").Ray; got != MembershipLost {
		t.Errorf("stale snapshot: drained worker ray = %q, want lost", got)
	}
}

func TestObserveIsPure(t *testing.T) {
	t.Parallel()
	o := baseObservation()
	withHeadUp(&o)
	withWorkerJoined(&o)
	before := baseObservation()
	withHeadUp(&before)
	withWorkerJoined(&before)

	first := StatusOf(o)
	second := StatusOf(o)
	if !reflect.DeepEqual(first, second) {
		t.Errorf("StatusOf gave different answers for the same input:\n%+v\n%+v", first, second)
	}
	if !reflect.DeepEqual(o, before) {
		t.Errorf("StatusOf changed its input")
	}
}

func TestObserveJobColumns(t *testing.T) {
	t.Parallel()
	o := baseObservation()
	withHeadUp(&o)
	withWorkerJoined(&o)
	st := StatusOf(o)

	c := st.Cluster
	if c.Name != "exp1" || c.ID != "0b7c2a4e" || c.HeadAddress != "10.1.2.3:20000" ||
		c.Dashboard != "http://127.0.0.1:20001" || c.HeadNode != "gpu01" {
		t.Errorf("cluster line = %+v", c)
	}
	if c.AgeS != 3600 || c.MembershipAgeS == nil || *c.MembershipAgeS != 3 {
		t.Errorf("age_s = %d, membership_age_s = %v; want 3600, 3", c.AgeS, c.MembershipAgeS)
	}
	w := jobByID(t, st, "7")
	if w.Role != RoleWorker || w.Node != "gpu02" || w.GPUs != 1 || w.IP != "10.1.2.4" || w.RayNodeID != "bbbb7" {
		t.Errorf("worker row = %+v", w)
	}
	if w.ElapsedS != 40*60 || w.TimeLeftS == nil || *w.TimeLeftS != 80*60 {
		t.Errorf("worker elapsed_s = %d, time_left_s = %v; want 2400, 4800", w.ElapsedS, w.TimeLeftS)
	}

	// Without a membership snapshot its age is unknown: null in JSON.
	o = baseObservation()
	o.Membership = MembershipSnapshot{}
	if got := StatusOf(o).Cluster.MembershipAgeS; got != nil {
		t.Errorf("membership_age_s without a snapshot = %d, want nil", *got)
	}
	b, err := json.Marshal(StatusOf(o))
	if err != nil || !strings.Contains(string(b), `"membership_age_s":null`) || !strings.Contains(string(b), `"gpus_sampled_age_s":null`) || strings.Contains(string(b), ":-1") {
		t.Errorf("JSON without a snapshot or GPU samples = %s (%v), want nulls and no -1", b, err)
	}
}

func TestObserveRecordFillsColumnsSLURMForgot(t *testing.T) {
	t.Parallel()
	o := baseObservation()
	withHeadUp(&o)
	withWorkerJoined(&o)
	delete(o.Slurm, "7")
	r := o.Records["7"]
	r.Phase, r.Reason, r.GPUs = PhaseEnded, "ray exited (exit status 1): boom", 4
	o.Records["7"] = r
	o.Membership.Nodes["7"].Alive = false

	w := jobByID(t, StatusOf(o), "7")
	if w.SlurmState != SlurmGone || w.Node != "gpu02" || w.GPUs != 4 || w.Reason != "ray exited (exit status 1): boom" {
		t.Errorf("row of a job squeue forgot = %+v; want node, GPUs and reason from its record", w)
	}
	if w.Ray != MembershipLost {
		t.Errorf("ray = %q, want %q for a joined job that ended without a down", w.Ray, MembershipLost)
	}
	if w.TimeLeftS != nil {
		t.Errorf("time_left_s = %d, want null for a job SLURM no longer knows", *w.TimeLeftS)
	}
}

func TestObserveArrayExpandsToTaskKeys(t *testing.T) {
	t.Parallel()
	o := baseObservation()
	withHeadUp(&o)
	o.Submissions[1] = Submission{Role: RoleWorker, JobID: "7", Tasks: 4}
	delete(o.Slurm, "7")
	for i, st := range []scheduler.JobState{scheduler.Running, scheduler.Running, scheduler.Pending, scheduler.Pending} {
		key := fmt.Sprintf("7_%d", i)
		o.Slurm[key] = scheduler.Job{ID: key, ArrayJobID: "7", ArrayTaskID: key[2:], State: st, GPUs: 1, TimeLeft: time.Hour, TimeLimit: time.Hour}
	}
	o.Membership.Nodes["7_1"] = &MemberNode{NodeID: "cccc", Alive: true}

	st := StatusOf(o)
	var keys []string
	for _, j := range st.Jobs {
		keys = append(keys, j.JobID)
	}
	if want := []string{"6", "7_0", "7_1", "7_2", "7_3"}; !slices.Equal(keys, want) {
		t.Fatalf("job keys = %q, want %q", keys, want)
	}
	for key, m := range map[string]Membership{"7_0": MembershipWaiting, "7_1": MembershipJoined, "7_2": MembershipWaiting, "7_3": MembershipWaiting} {
		if got := jobByID(t, st, key); got.Ray != m || got.Role != RoleWorker {
			t.Errorf("%s = %s %s, want worker %s", key, got.Role, got.Ray, m)
		}
	}
	if got := jobByID(t, st, "7_2").SlurmState; got != "PENDING" {
		t.Errorf("7_2 slurm state = %q, want PENDING", got)
	}
}

func TestObserveTimeLeft(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		job  scheduler.Job
		want *int64
	}{
		{"limited and running", scheduler.Job{ID: "7", State: scheduler.Running, TimeLeft: 10 * time.Minute, TimeLimit: time.Hour}, ptr(int64(600))},
		{"limited and pending", scheduler.Job{ID: "7", State: scheduler.Pending, TimeLeft: time.Hour, TimeLimit: time.Hour}, ptr(int64(3600))},
		{"unlimited", scheduler.Job{ID: "7", State: scheduler.Running, Unlimited: true}, nil},
		{"ended", scheduler.Job{ID: "7", State: scheduler.Completed, TimeLimit: time.Hour}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := baseObservation()
			o.Slurm["7"] = tt.job
			got := jobByID(t, StatusOf(o), "7").TimeLeftS
			switch {
			case tt.want == nil && got != nil:
				t.Errorf("time_left_s = %d, want null", *got)
			case tt.want != nil && (got == nil || *got != *tt.want):
				t.Errorf("time_left_s = %v, want %d", got, *tt.want)
			}
			b, err := json.Marshal(StatusOf(o).Jobs[1])
			if err != nil {
				t.Fatal(err)
			}
			if tt.want == nil && !strings.Contains(string(b), `"time_left_s":null`) {
				t.Errorf("JSON %s does not say time_left_s null", b)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestStatusJSONFieldNames(t *testing.T) {
	t.Parallel()
	o := baseObservation()
	withHeadUp(&o)
	withWorkerJoined(&o)
	b, err := json.Marshal(StatusOf(o))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Cluster map[string]any   `json:"cluster"`
		Jobs    []map[string]any `json:"jobs"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	wantCluster := map[string]any{
		"name": "exp1", "id": "0b7c2a4e", "state": "running",
		"head_address": "10.1.2.3:20000", "dashboard": "http://127.0.0.1:20001",
	}
	for k, v := range wantCluster {
		if doc.Cluster[k] != v {
			t.Errorf("cluster.%s = %v, want %v (JSON %s)", k, doc.Cluster[k], v, b)
		}
	}
	for _, k := range []string{"created", "age_s", "insecure", "membership_age_s"} {
		if _, ok := doc.Cluster[k]; !ok {
			t.Errorf("cluster.%s missing from %s", k, b)
		}
	}
	if len(doc.Jobs) != 2 {
		t.Fatalf("jobs = %v, want 2", doc.Jobs)
	}
	w := doc.Jobs[1]
	wantJob := map[string]any{
		"role": "worker", "job_id": "7", "slurm_state": "RUNNING", "reason": "", "node": "gpu02",
		"gpus": 1.0, "ray": "joined", "ray_node_id": "bbbb7", "time_left_s": 4800.0,
	}
	for k, v := range wantJob {
		got, ok := w[k]
		if !ok || got != v {
			t.Errorf("jobs[1].%s = %v (present %v), want %v (JSON %s)", k, got, ok, v, b)
		}
	}
}

func TestObserveHeadTimeLimitWarning(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	limit := now.Add(90 * time.Second)
	o := Observation{
		Spec:        Spec{Name: "c", DrainBeforeS: 120, Created: now.Add(-time.Hour)},
		Submissions: []Submission{{Role: RoleHead, JobID: "5"}},
		Records:     map[string]NodeRecord{"5": {Job: "5", Role: RoleHead, Phase: PhaseRunning, TimeLimitAt: &limit}},
		Membership: MembershipSnapshot{Updated: now, Heartbeat: now, Nodes: map[string]*MemberNode{
			"5": {NodeID: "n5", Alive: true, FirstSeen: now, LastSeen: now},
		}},
		Head:  &HeadInfo{Address: "10.0.0.1:6379"},
		Slurm: map[string]scheduler.Job{"5": {ID: "5", State: scheduler.Running, TimeLeft: 95 * time.Second}},
		Now:   now,
	}
	st := StatusOf(o)
	if st.Cluster.State != StateRunning || !strings.Contains(st.Cluster.Warning, "1m30s") {
		t.Errorf("cluster %s, warning %q; want running with a warning naming 1m30s", st.Cluster.State, st.Cluster.Warning)
	}
	o.Records = nil // no SLURM warning yet: squeue's time left under --drain-before warns too
	if st := StatusOf(o); !strings.Contains(st.Cluster.Warning, "1m35s") {
		t.Errorf("warning from squeue's time left: %q", st.Cluster.Warning)
	}
	o.Slurm["5"] = scheduler.Job{ID: "5", State: scheduler.Running, TimeLeft: time.Hour}
	if st := StatusOf(o); st.Cluster.Warning != "" {
		t.Errorf("an hour left warns: %q", st.Cluster.Warning)
	}
}

func TestObserveFinishedDriverIsEnded(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	zero := 0
	o := Observation{
		Spec:        Spec{Name: "c", Created: now.Add(-time.Hour)},
		Submissions: []Submission{{Role: RoleHead, JobID: "5"}, {Role: RoleDriver, JobID: "6"}},
		Records: map[string]NodeRecord{
			"6": {Job: "6", Role: RoleDriver, Phase: PhaseEnded, Outcome: OutcomeCompleted, Reason: ReasonDriverFinished, ExitCode: &zero},
		},
		Membership: MembershipSnapshot{Updated: now, Heartbeat: now, Nodes: map[string]*MemberNode{
			"5": {NodeID: "n5", Alive: true, FirstSeen: now, LastSeen: now},
			"6": {NodeID: "n6", Alive: false, FirstSeen: now, LastSeen: now},
		}},
		Head:  &HeadInfo{Address: "10.0.0.1:6379"},
		Slurm: map[string]scheduler.Job{"5": {ID: "5", State: scheduler.Running}, "6": {ID: "6", State: scheduler.Completed}},
		Now:   now,
	}
	st := StatusOf(o)
	if d := st.Jobs[1]; d.Ray != MembershipEnded || d.ExitCode == nil || *d.ExitCode != 0 {
		t.Errorf("finished driver: %s exit %v, want ended with exit 0", d.Ray, d.ExitCode)
	}
	if st.Cluster.State != StateRunning {
		t.Errorf("cluster: %s", st.Cluster.State)
	}
}
