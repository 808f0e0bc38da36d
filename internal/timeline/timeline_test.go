package timeline

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/events"
	"github.com/sraybatch/sraybatch/internal/sharedstate"
)

var t0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

// fileEvents parses event-file lines as an event file's reader does.
func fileEvents(t *testing.T, lines ...string) []events.Event {
	t.Helper()
	path := filepath.Join(t.TempDir(), "e.jsonl")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	evs, err := events.ReadAll(path)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func line(ts time.Time, name string, fields string) string {
	s := `{"ts": ` + jsonNum(events.TS(ts)) + `, "event": "` + name + `"`
	if fields != "" {
		s += ", " + fields
	}
	return s + "}"
}

func jsonNum(f float64) string { b, _ := json.Marshal(f); return string(b) }

// row is an event as the tests compare it: when (seconds after t0), what,
// whose, and its details.
type row struct {
	at      float64
	name    string
	job     string
	role    cluster.Role
	details string
}

func rows(evs []Event) []row {
	out := make([]row, len(evs))
	for i, e := range evs {
		out[i] = row{e.Time.Sub(t0).Round(time.Millisecond).Seconds(), e.Name, e.Job, e.Role, e.Details()}
	}
	return out
}

func TestMerge(t *testing.T) {
	t.Parallel()
	limit := at(700)
	exit0 := 0
	tests := []struct {
		name string
		src  func(t *testing.T) Sources
		want []row
	}{
		{"nothing recorded", func(*testing.T) Sources { return Sources{} }, []row{}},
		{
			"an array submission is one event per job key, a plain one its job",
			func(*testing.T) Sources {
				return Sources{Submissions: []cluster.Submission{
					{Role: cluster.RoleHead, JobID: "7", Submitted: at(0)},
					{Role: cluster.RoleWorker, JobID: "8", Tasks: 2, Submitted: at(5), Autoscaled: true},
				}}
			},
			[]row{
				{0, events.NameSubmitted, "7", cluster.RoleHead, "job_id=7"},
				{5, events.NameSubmitted, "8_0", cluster.RoleWorker, "autoscaled=true, job_id=8, tasks=2"},
				{5, events.NameSubmitted, "8_1", cluster.RoleWorker, "autoscaled=true, job_id=8, tasks=2"},
			},
		},
		{
			"a record: started, warned --drain-before ahead of its limit, ended with its outcome",
			func(*testing.T) Sources {
				return Sources{DrainBefore: 120 * time.Second, Records: map[string]cluster.NodeRecord{
					"9": {Job: "9", Role: cluster.RoleDriver, Phase: cluster.PhaseEnded, Outcome: cluster.OutcomeCompleted,
						Reason: "driver finished", SlurmNode: "node2", ExitCode: &exit0, Started: at(10), Updated: at(600), TimeLimitAt: &limit},
					"8_0": {Job: "8_0", Role: cluster.RoleWorker, Phase: cluster.PhaseRunning, SlurmNode: "node3", Started: at(11), Updated: at(500)},
				}}
			},
			[]row{
				{10, events.NameJobStarted, "9", cluster.RoleDriver, "node=node2"},
				{11, events.NameJobStarted, "8_0", cluster.RoleWorker, "node=node3"},
				{580, events.NameTimeLimitWarning, "9", cluster.RoleDriver, "time_limit_at=2026-11-29T12:11:40Z"},
				{600, events.NameJobEnded, "9", cluster.RoleDriver, "exit_code=0, outcome=completed, phase=ended, reason=driver finished"},
			},
		},
		{
			"head up and stopping, down requested",
			func(*testing.T) Sources {
				return Sources{
					Head:       &cluster.HeadInfo{Job: "7", Address: "10.0.0.1:20000", SlurmNode: "node1", RayVersion: "2.60.0", Published: at(3)},
					HeadEnding: &cluster.HeadEnding{Job: "7", Reason: "cancelled (terminated)", At: at(41)},
					Down:       &cluster.DownRequest{Requested: at(40)},
				}
			},
			[]row{
				{3, events.NameHeadUp, "7", cluster.RoleHead, "address=10.0.0.1:20000, node=node1, ray_version=2.60.0"},
				{40, events.NameDownRequested, "", "", ""},
				{41, events.NameHeadStopping, "7", cluster.RoleHead, "reason=cancelled (terminated)"},
			},
		},
		{
			"the head's events carry their job and role; a sample is the cluster's",
			func(t *testing.T) Sources {
				return Sources{Cluster: fileEvents(t,
					line(at(2), events.NameJobState, `"job": "7", "role": "head", "slurm_state": "RUNNING", "membership": "joined", "gpus": 1`),
					line(at(2), events.NameClusterSample, `"gpus_requested": 3, "gpus_joined": 1, "gpus_allocated": 0.5, "jobs": 2`),
				)}
			},
			[]row{
				{2, events.NameJobState, "7", cluster.RoleHead, "gpus=1, membership=joined, slurm_state=RUNNING"},
				{2, events.NameClusterSample, "", "", "gpus_allocated=0.5, gpus_joined=1, gpus_requested=3, jobs=2"},
			},
		},
		{
			"a driver's event is about the job it names (role from the submissions), else the driver's own",
			func(t *testing.T) Sources {
				return Sources{
					Submissions: []cluster.Submission{{Role: cluster.RoleWorker, JobID: "8", Submitted: at(0)}, {Role: cluster.RoleDriver, JobID: "9", Submitted: at(0)}},
					Drivers: map[string][]events.Event{"9": fileEvents(t,
						line(at(20), "node_joined", `"node_id": "85477a93c0ffee0123456789abcdef", "job": "8", "gpus": 1`),
						line(at(21.25), "step_done", `"step": 3, "actors": 2, "mean_duration_s": 0.123456, "losses": [1.0, 2.5]`),
						line(at(22), "step_done", `"step": 4, "actors": 5, "mean_duration_s": 0.1, "losses": [1, 2, 3, 4, 5]`),
					)},
				}
			},
			[]row{
				{0, events.NameSubmitted, "8", cluster.RoleWorker, "job_id=8"},
				{0, events.NameSubmitted, "9", cluster.RoleDriver, "job_id=9"},
				{20, events.NameNodeJoined, "8", cluster.RoleWorker, "gpus=1, node_id=85477a93, by driver 9"},
				{21.25, events.NameStepDone, "9", cluster.RoleDriver, "actors=2, losses=[1,2.5], mean_duration_s=0.123, step=3"},
				{22, events.NameStepDone, "9", cluster.RoleDriver, "actors=5, losses=[5 items], mean_duration_s=0.1, step=4"},
			},
		},
		{
			"the autoscaler's decisions; same-time events keep the sources' order",
			func(t *testing.T) Sources {
				return Sources{
					Submissions: []cluster.Submission{{Role: cluster.RoleWorker, JobID: "12", Submitted: at(30), Autoscaled: true}},
					Autoscaler:  fileEvents(t, line(at(30), "autoscaler_decision", `"submitted": ["12"], "cancelled": [], "drained": [], "reason": "demand GPU:1"`)),
					Cluster:     fileEvents(t, line(at(30), events.NameJobState, `"job": "12", "role": "worker", "slurm_state": "PENDING", "membership": "waiting", "gpus": 1`)),
				}
			},
			[]row{
				{30, events.NameSubmitted, "12", cluster.RoleWorker, "autoscaled=true, job_id=12"},
				{30, events.NameJobState, "12", cluster.RoleWorker, "gpus=1, membership=waiting, slurm_state=PENDING"},
				{30, events.NameAutoscalerDecision, "", "", "cancelled=[], drained=[], reason=demand GPU:1, submitted=[12]"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := rows(Merge(tt.src(t)))
			if len(got) != len(tt.want) {
				t.Fatalf("got %d events, want %d:\n%v", len(got), len(tt.want), got)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("event %d:\n got %+v\nwant %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

// The shared schema's own example streams merge into one timeline: every
// line kept, in time order, each driver event credited to the node it names.
func TestMergeSharedStateExamples(t *testing.T) {
	t.Parallel()
	shared := sharedstate.Load(t)
	src := Sources{
		Cluster: fileEvents(t, shared.ClusterEventLines...),
		Drivers: map[string][]events.Event{"99": fileEvents(t, shared.EventStream.Lines...)},
	}
	got := Merge(src)
	if want := len(shared.ClusterEventLines) + len(shared.EventStream.Lines); len(got) != want {
		t.Fatalf("merged %d events, want %d", len(got), want)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Time.Before(got[i-1].Time) {
			t.Errorf("event %d (%s at %v) before event %d (%s at %v)", i, got[i].Name, got[i].Time, i-1, got[i-1].Name, got[i-1].Time)
		}
	}
	// The driver's stream starts at ts 1.0 and the head's at 10.0.
	if got[0].Name != events.NameNodeJoined || got[0].Job != "7_0" || got[0].Source != DriverSource("99") {
		t.Errorf("first event %+v, want the driver's node_joined of job 7_0", got[0])
	}
	for _, e := range got {
		if e.Name == events.NameStepDone && e.Job != "99" {
			t.Errorf("step_done credited to job %q, want the driver 99", e.Job)
		}
		if e.Name == events.NameJobState && (e.Job == "" || e.Role == "") {
			t.Errorf("job_state without its job and role: %+v", e)
		}
	}
}

func TestEventJSON(t *testing.T) {
	t.Parallel()
	ev := Merge(Sources{Cluster: fileEvents(t, line(at(1.5), events.NameJobState,
		`"job": "7", "role": "head", "slurm_state": "RUNNING", "membership": "joined", "gpus": 1`))})[0]
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"ts":1795953601.5,"time":"2026-11-29T12:00:01.5Z","event":"job_state","job":"7","role":"head","source":"cluster",` +
		`"fields":{"gpus":1,"membership":"joined","slurm_state":"RUNNING"}}`
	if string(b) != want {
		t.Errorf("JSON\n got %s\nwant %s", b, want)
	}
}

// A handover is a head event at its start, with how long its head took to
// seal and the next generation to be published, and what the driver's
// steps paid; each generation's publication is a head_up with how it came.
func TestMergeHandover(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	sealed := start.Add(4 * time.Second)
	published := start.Add(5 * time.Second)
	s := Sources{
		Generations: []cluster.Generation{
			{HeadInfo: cluster.HeadInfo{Job: "7", Published: start.Add(-time.Hour), Generation: 1}, How: cluster.GenerationFirst},
			{HeadInfo: cluster.HeadInfo{Job: "8", Published: published, Generation: 2}, How: cluster.GenerationPromoted, PreviousHeadJob: "7"},
		},
		Handovers: []cluster.Handover{{Generation: 1, HeadJob: "7", Started: start, Sealed: &sealed, How: cluster.GenerationPromoted, Successor: "8", Why: "time left"}},
		Crossings: map[int][]cluster.Crossing{2: {{
			Before: &cluster.StepMark{Step: 40, At: start.Add(-time.Second)},
			After:  &cluster.StepMark{Step: 39, At: published.Add(7 * time.Second)}}}},
	}
	evs := Merge(s)
	var names []string
	for _, e := range evs {
		names = append(names, e.Name+"/"+e.Job)
	}
	if want := []string{"head_up/7", "handover/7", "head_up/8"}; !slices.Equal(names, want) {
		t.Fatalf("Merge = %v, want %v", names, want)
	}
	var got events.Handover
	if err := evs[1].Decode(&got); err != nil || !evs[1].Time.Equal(start) || evs[1].unsettled {
		t.Fatalf("handover %+v (%v), want settled at its start", evs[1], err)
	}
	if got.Successor != "8" || got.How != "promoted" || *got.SealedS != 4 || *got.PublishedS != 5 || *got.GapS != 13 || *got.StepsLost != 2 {
		t.Errorf("handover fields %s", evs[1].Details())
	}
	var up events.HeadUp
	if err := evs[2].Decode(&up); err != nil || up.Generation != 2 || up.How != "promoted" || up.PreviousHead != "7" {
		t.Errorf("head_up of generation 2 = %+v (%v)", up, err)
	}
}

// A handover is settled once its generation is sealed, the next published,
// and every driver that stepped before the publication stepped after it.
func TestHandoverSettled(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	sealed := at.Add(time.Second)
	next := &cluster.Generation{HeadInfo: cluster.HeadInfo{Job: "8", Generation: 2, Published: at.Add(2 * time.Second)}}
	before := &cluster.StepMark{Step: 3, At: at}
	after := &cluster.StepMark{Step: 4, At: at.Add(9 * time.Second)}
	for _, c := range []struct {
		name      string
		sealed    *time.Time
		next      *cluster.Generation
		crossings []cluster.Crossing
		want      bool
	}{
		{"started only", nil, nil, nil, false},
		{"sealed, not published", &sealed, nil, nil, false},
		{"published, no driver", &sealed, next, nil, true},
		{"driver not stepped again yet", &sealed, next, []cluster.Crossing{{Before: before}}, false},
		{"driver stepped again", &sealed, next, []cluster.Crossing{{Before: before, After: after}}, true},
		{"driver only after", &sealed, next, []cluster.Crossing{{After: after}}, true},
	} {
		h := cluster.Handover{Generation: 1, Started: at, Sealed: c.sealed}
		if got := handoverSettled(h, c.next, c.crossings); got != c.want {
			t.Errorf("%s: settled = %v, want %v", c.name, got, c.want)
		}
	}
}
