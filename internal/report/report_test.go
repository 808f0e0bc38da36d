package report

import (
	"bytes"
	"math"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/clock/clocktest"
	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/events"
	"github.com/sraybatch/sraybatch/internal/goldentest"
	"github.com/sraybatch/sraybatch/internal/timeline"
)

var t0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

// span is an interval as the table tests write it: state, from and to in
// seconds after t0, and whether it is open.
type span struct {
	state    State
	from, to float64
	open     bool
}

func spans(ivs []Interval) []span {
	out := []span{}
	for _, iv := range ivs {
		out = append(out, span{iv.State, iv.From.Sub(t0).Seconds(), iv.To.Sub(t0).Seconds(), iv.Open})
	}
	return out
}

func TestIntervals(t *testing.T) {
	t.Parallel()
	now := at(100)
	tests := []struct {
		name string
		life Life
		want []span
	}{
		{"still pending", Life{Submitted: at(10)}, []span{{StatePending, 10, 100, true}}},
		{"cancelled while pending", Life{Submitted: at(10), Ended: at(40)}, []span{{StatePending, 10, 40, false}, {StateEnded, 40, 40, false}}},
		{"running, not in Ray yet", Life{Submitted: at(10), Started: at(15)}, []span{{StatePending, 10, 15, false}, {StateRunning, 15, 100, true}}},
		{"joined and still in Ray", Life{Submitted: at(10), Started: at(15), Joined: at(20)},
			[]span{{StatePending, 10, 15, false}, {StateRunning, 15, 20, false}, {StateJoined, 20, 100, true}}},
		{"a whole life: drained before its time limit", Life{Submitted: at(10), Started: at(15), Joined: at(20), Draining: at(60), Left: at(70), Ended: at(72)},
			[]span{{StatePending, 10, 15, false}, {StateRunning, 15, 20, false}, {StateJoined, 20, 60, false}, {StateDraining, 60, 70, false}, {StateRunning, 70, 72, false}, {StateEnded, 72, 72, false}}},
		{"lost from Ray while SLURM still runs it", Life{Submitted: at(10), Started: at(15), Joined: at(20), Left: at(50)},
			[]span{{StatePending, 10, 15, false}, {StateRunning, 15, 20, false}, {StateJoined, 20, 50, false}, {StateRunning, 50, 100, true}}},
		{"draining, still open", Life{Submitted: at(10), Started: at(15), Joined: at(20), Draining: at(90)},
			[]span{{StatePending, 10, 15, false}, {StateRunning, 15, 20, false}, {StateJoined, 20, 90, false}, {StateDraining, 90, 100, true}}},
		{"seen leaving Ray after the job's own end: the end wins", Life{Submitted: at(10), Started: at(15), Joined: at(20), Left: at(80), Ended: at(75)},
			[]span{{StatePending, 10, 15, false}, {StateRunning, 15, 20, false}, {StateJoined, 20, 75, false}, {StateEnded, 75, 75, false}}},
		{"joined seen, start not recorded: it ran from the join", Life{Submitted: at(10), Joined: at(30), Ended: at(50)},
			[]span{{StatePending, 10, 30, false}, {StateJoined, 30, 50, false}, {StateEnded, 50, 50, false}}},
		{"a start recorded before the submission (another node's clock) is clamped", Life{Submitted: at(10), Started: at(8), Ended: at(20)},
			[]span{{StateRunning, 10, 20, false}, {StateEnded, 20, 20, false}}},
		{"a drain warning before the join starts draining at the join", Life{Submitted: at(10), Started: at(15), Joined: at(20), Draining: at(18), Ended: at(30)},
			[]span{{StatePending, 10, 15, false}, {StateRunning, 15, 20, false}, {StateDraining, 20, 30, false}, {StateEnded, 30, 30, false}}},
		{"a drain warning after the end draws no draining", Life{Submitted: at(10), Started: at(15), Joined: at(20), Draining: at(90), Ended: at(30)},
			[]span{{StatePending, 10, 15, false}, {StateRunning, 15, 20, false}, {StateJoined, 20, 30, false}, {StateEnded, 30, 30, false}}},
		{"submitted after now (a clock ahead): nothing but its submission", Life{Submitted: at(120)}, []span{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := spans(Intervals(tt.life, now))
			if !equalSpans(got, tt.want) {
				t.Errorf("Intervals =\n %v\nwant\n %v", got, tt.want)
			}
		})
	}
}

func equalSpans(a, b []span) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].state != b[i].state || math.Abs(a[i].from-b[i].from) > 1e-6 || math.Abs(a[i].to-b[i].to) > 1e-6 || a[i].open != b[i].open {
			return false
		}
	}
	return true
}

func TestStepIntegral(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		samples []Sample
		until   float64
		want    float64
	}{
		{"no samples", nil, 100, 0},
		{"one sample holds until the end", []Sample{{at(10), 2}}, 100, 180},
		{"steps", []Sample{{at(0), 1}, {at(10), 3}, {at(20), 0.5}}, 30, 1*10 + 3*10 + 0.5*10},
		{"samples after until count nothing", []Sample{{at(0), 1}, {at(10), 3}, {at(50), 7}}, 20, 1*10 + 3*10},
		{"until before the first sample", []Sample{{at(10), 4}}, 5, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := StepIntegral(tt.samples, at(tt.until)); math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("StepIntegral = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestOccupancy(t *testing.T) {
	t.Parallel()
	jobs := []Job{
		{Job: "1", GPUs: 2, Intervals: Intervals(Life{Submitted: at(0), Started: at(10), Joined: at(12), Ended: at(50)}, at(100))},
		{Job: "2", GPUs: 1, Intervals: Intervals(Life{Submitted: at(0), Started: at(50), Joined: at(55)}, at(100))},
		{Job: "driver", GPUs: 0, Intervals: Intervals(Life{Submitted: at(0), Started: at(5)}, at(100))},
	}
	got := Occupancy(jobs, slurmStates...)
	// Job 1 holds 2 GPUs from 10 to 50, job 2 one from 50 on: the hand-over
	// at 50 is one step, from 2 to 1.
	want := []Sample{{at(10), 2}, {at(50), 1}, {at(100), 0}}
	if len(got) != len(want) {
		t.Fatalf("Occupancy = %v, want %v", got, want)
	}
	for i := range want {
		if !got[i].At.Equal(want[i].At) || got[i].Value != want[i].Value {
			t.Errorf("sample %d = %v, want %v", i, got[i], want[i])
		}
	}
	var byJob float64
	for _, j := range jobs {
		byJob += float64(j.GPUs) * Held(j.Intervals, slurmStates...).Seconds()
	}
	if area := StepIntegral(got, at(100)); area != byJob {
		t.Errorf("the occupancy's area %v differs from the jobs' GPU-seconds %v", area, byJob)
	}
}

func TestStepRate(t *testing.T) {
	t.Parallel()
	steps := []time.Time{at(0), at(1), at(2), at(3), at(10.5), at(11), at(29.9), at(31)}
	got := StepRate(steps, at(0), at(30), 10*time.Second)
	want := []float64{0.4, 0.2, 0.1} // 4, 2 and 1 steps per 10 s window; the one at 31 s is past the end
	if len(got) != len(want) {
		t.Fatalf("StepRate = %v, want rates %v", got, want)
	}
	for i, w := range want {
		if !got[i].At.Equal(at(float64(10*i))) || math.Abs(got[i].Value-w) > 1e-9 {
			t.Errorf("window %d = %v, want %v at %v s", i, got[i], w, 10*i)
		}
	}
	if StepRate(steps, at(10), at(10), time.Second) != nil {
		t.Errorf("an empty span has no windows")
	}
}

func TestNiceStep(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		span time.Duration
		n    int
		want time.Duration
	}{
		{0, 8, time.Second},
		{8 * time.Second, 8, time.Second},
		{9 * time.Second, 8, 2 * time.Second},
		{602 * time.Second, 60, 15 * time.Second},
		{10 * time.Minute, 8, 2 * time.Minute},
		{90 * 24 * time.Hour, 8, 14 * 24 * time.Hour},
		{400 * 24 * time.Hour, 8, 56 * 24 * time.Hour}, // past the largest candidate: its multiples
	} {
		if got := niceStep(tt.span, tt.n); got != tt.want {
			t.Errorf("niceStep(%v, %d) = %v, want %v", tt.span, tt.n, got, tt.want)
		}
	}
}

// load reads a fixture cluster directory the way the CLI does.
func load(t *testing.T, name string) (cluster.Spec, []timeline.Event) {
	t.Helper()
	dir := cluster.Dir{Path: filepath.Join("testdata", name)}
	spec, err := dir.Spec()
	if err != nil {
		t.Fatal(err)
	}
	events, err := timeline.Load(dir, spec)
	if err != nil {
		t.Fatal(err)
	}
	return spec, events
}

// The fixture "ended" (testdata/ended) is a cluster taken down at 12:10:00:
// head 100 ran 12:00:05–12:10:02 and published its address (joined) at
// 12:00:07, a second before its own observer saw it joined; worker 101_0 ran 12:00:40–12:07:30,
// joined at 12:00:45 (the head's job_state; the driver saw it at 12:00:52)
// and drained from its time-limit warning at 12:09:00 − 120 s; worker
// 101_1 ran 12:00:41–12:05:01 and joined at 12:00:46; the driver 102 has no
// GPUs; worker 103 was cancelled while pending. One GPU each.
func TestBuildEndedCluster(t *testing.T) {
	t.Parallel()
	spec, events := load(t, "ended")
	m := Build(spec, events, at(3600))
	if m.Live || m.Down == nil || !m.Down.Equal(at(600)) {
		t.Errorf("live %v, down %v: want an ended cluster, down at 12:10:00", m.Live, m.Down)
	}
	if !m.Start.Equal(t0) || !m.End.Equal(at(602)) {
		t.Errorf("axis %v–%v, want from the spec's creation to the head's end", m.Start, m.End)
	}
	var keys []string
	for _, j := range m.Jobs {
		keys = append(keys, j.Job)
	}
	if got := strings.Join(keys, " "); got != "100 102 101_0 101_1 103" {
		t.Errorf("rows %q, want one per job in submission order", got)
	}
	slurm := 597.0 + 410 + 260
	joined := 595.0 + (375 + 30) + 255
	// Ray's allocation, from the head's samples: 1 GPU 12:00:35–50, 3 until
	// 12:05:02, 2 until 12:07:02, 1 until 12:09:02, then 0.
	allocated := 1.0*15 + 3*252 + 2*120 + 1*120
	s := m.Summary
	if s.SlurmGPUSeconds != slurm || s.JoinedGPUSeconds == nil || *s.JoinedGPUSeconds != joined ||
		s.RayAllocatedGPUSeconds == nil || math.Abs(*s.RayAllocatedGPUSeconds-allocated) > 1e-6 {
		t.Errorf("summary %v / %v / %v GPU-s, want %v / %v / %v", s.SlurmGPUSeconds, deref(s.JoinedGPUSeconds), deref(s.RayAllocatedGPUSeconds), slurm, joined, allocated)
	}
	if r := Ratio(s.RayAllocatedGPUSeconds, &slurm); r == nil || math.Abs(*r-allocated/slurm) > 1e-9 {
		t.Errorf("Ray/SLURM ratio %v, want %v", r, allocated/slurm)
	}
	for _, j := range m.Jobs {
		if j.Job == "101_0" {
			if got := spans(j.Intervals); !equalSpans(got, []span{{StatePending, 30, 40, false}, {StateRunning, 40, 45, false}, {StateJoined, 45, 420, false}, {StateDraining, 420, 450, false}, {StateEnded, 450, 602, false}}) {
				t.Errorf("101_0: %v", got)
			}
			if j.Outcome != cluster.OutcomeDrainedTimeLimit {
				t.Errorf("101_0 outcome %q", j.Outcome)
			}
		}
		if j.Job == "103" {
			if got := spans(j.Intervals); !equalSpans(got, []span{{StatePending, 120, 601, false}, {StateEnded, 601, 602, false}}) || j.Outcome != cluster.OutcomeCancelled {
				t.Errorf("103 (cancelled while pending, seen by the head): %v, outcome %q", got, j.Outcome)
			}
		}
	}
	if len(m.Steps) != 1 || m.Steps[0].Job != "102" || m.Steps[0].Steps != 185 {
		t.Errorf("steps %+v, want driver 102's 185 whole step_done lines (the torn last one skipped)", m.Steps)
	}
	if len(m.Missing) != 0 {
		t.Errorf("nothing is missing from this fixture, got %q", m.Missing)
	}
}

func deref(f *float64) any {
	if f == nil {
		return nil
	}
	return *f
}

// The fixture "running" has records only (no events): head 200 started at
// 12:00:05, worker 201_0 at 12:00:40, worker 201_1 still pending.
func TestBuildLiveClusterFromRecordsOnly(t *testing.T) {
	t.Parallel()
	spec, events := load(t, "running")
	clk := clocktest.New(at(300))
	m := Build(spec, events, clk.Now())
	if !m.Live || !m.End.Equal(at(300)) {
		t.Errorf("live %v, axis end %v: open intervals end now", m.Live, m.End)
	}
	if len(m.Jobs) != 3 {
		t.Fatalf("want a row per submitted job, from records alone: %+v", m.Jobs)
	}
	if want := 1.0 * ((300 - 5) + (300 - 40)); m.Summary.SlurmGPUSeconds != want {
		t.Errorf("SLURM GPU-s %v, want %v (both running jobs until now)", m.Summary.SlurmGPUSeconds, want)
	}
	if m.Summary.JoinedGPUSeconds != nil || m.Summary.RayAllocatedGPUSeconds != nil || len(m.Missing) != 3 {
		t.Errorf("without events, joined and Ray-allocated are unknown and said so: %+v %q", m.Summary, m.Missing)
	}
	clk.Advance(time.Minute)
	later := Build(spec, events, clk.Now())
	if d := later.Summary.SlurmGPUSeconds - m.Summary.SlurmGPUSeconds; d != 120 {
		t.Errorf("a minute later the two running jobs add %v GPU-s, want 120", d)
	}
}

// The fixture "rollover" (testdata/rollover) is a cluster of three head
// generations: head 300 (first, published 12:00:07) handed over at 12:04:00
// to worker 301 by promotion (published 12:04:05), which handed over at
// 12:08:00 to the submitted head job 305 (published 12:08:04); down at
// 12:12:00. Driver 302 stepped every 10 s: its last step on generation 1
// (19, at 12:03:50) came again first on generation 2 at 12:04:17.5 (one
// step lost); on generation 3 it went on from where it stopped.
func TestBuildRolloverCluster(t *testing.T) {
	t.Parallel()
	spec, events := load(t, "rollover")
	m := Build(spec, events, at(3600))
	want := []Generation{
		{1, "300", "first", at(7), at(245)},
		{2, "301", "promoted", at(245), at(484)},
		{3, "305", "submitted", at(484), m.End},
	}
	if !slices.Equal(m.Generations, want) {
		t.Errorf("generations\n got %+v\nwant %+v", m.Generations, want)
	}
	if len(m.Handovers) != 2 {
		t.Fatalf("handovers %+v, want 2", m.Handovers)
	}
	h1, h2 := m.Handovers[0], m.Handovers[1]
	if h1.OldHead != "300" || h1.NewHead != "301" || h1.How != "promoted" || *h1.SealedS != 3 || *h1.PublishedS != 5 || *h1.GapS != 27.5 || *h1.StepsLost != 1 {
		t.Errorf("first handover %+v", h1)
	}
	if h2.OldHead != "301" || h2.NewHead != "305" || h2.How != "submitted" || *h2.GapS != 19.5 || *h2.StepsLost != 0 {
		t.Errorf("second handover %+v", h2)
	}
}

func TestGolden(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		fixture string
		now     time.Time
	}{
		{"ended", at(3600)},
		{"running", at(300)},
		{"rollover", at(3600)},
		{"typed", at(3600)},
	} {
		t.Run(tt.fixture, func(t *testing.T) {
			spec, events := load(t, tt.fixture)
			var b bytes.Buffer
			if err := Render(&b, Build(spec, events, tt.now)); err != nil {
				t.Fatal(err)
			}
			goldentest.Check(t, filepath.Join("testdata", tt.fixture+".golden.html"), b.Bytes())
		})
	}
}

var (
	fetching = regexp.MustCompile(`(?i)<(script|link|iframe|object|embed|img|image|use|base|form)\b|\b(src|href|xlink:href|action|srcset)\s*=|url\(|@import|https?://`)
	cspMeta  = `<meta http-equiv="Content-Security-Policy" content="default-src &#39;none&#39;; style-src &#39;unsafe-inline&#39;; img-src data:">`
)

// The page must load nothing: no element or attribute that fetches, the
// CSP first in <head>, and what came from the files escaped.
// The fixture "typed" is "ended" on a cluster with worker types gpu (the
// default, 1 GPU) and cpu (none): 101's workers are of the default type
// (their submission names none), 103 is a cpu worker; the head and the
// driver have no type. Rows are coloured by type, and a cpu worker counts
// no GPUs even where its job_state says none either.
func TestBuildTypedCluster(t *testing.T) {
	t.Parallel()
	spec, evs := load(t, "typed")
	m := Build(spec, evs, at(3600))
	if !slices.Equal(m.Types, []string{"gpu", "cpu"}) {
		t.Errorf("types %v, want the spec's in order", m.Types)
	}
	want := map[string]struct {
		typ  string
		gpus int
	}{"100": {"", 1}, "102": {"", 0}, "101_0": {"gpu", 1}, "101_1": {"gpu", 1}, "103": {"cpu", 0}}
	for _, j := range m.Jobs {
		if w := want[j.Job]; j.Type != w.typ || j.GPUs != w.gpus {
			t.Errorf("job %s: type %q, %d GPUs; want %q, %d", j.Job, j.Type, j.GPUs, w.typ, w.gpus)
		}
	}
	var b bytes.Buffer
	if err := Render(&b, m); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, s := range []string{`id="worker-types"`, `<span data-type="gpu"><span class="swatch wtype wtype-0">`,
		`<span data-type="cpu"><span class="swatch wtype wtype-1">`, `data-job="103" data-role="worker" data-type="cpu"`,
		`<rect class="wtype wtype-1"`} {
		if !strings.Contains(page, s) {
			t.Errorf("the page lacks %s", s)
		}
	}
	if strings.Contains(page, `data-job="100" data-role="head" data-type`) {
		t.Error("the head's row has a worker type")
	}
}

// A job whose submission names a type the spec no longer has keeps its own
// colour, after the spec's types; a cluster without types has no legend.
func TestTypeColours(t *testing.T) {
	t.Parallel()
	m := Model{Types: []string{"gpu", "cpu"}, Jobs: []Job{{Job: "1"}, {Job: "2", Type: "old"}, {Job: "3", Type: "cpu"}}}
	got := typeColours(m)
	want := []typeSwatch{{"gpu", "wtype wtype-0"}, {"cpu", "wtype wtype-1"}, {"old", "wtype wtype-2"}}
	if !slices.Equal(got, want) {
		t.Errorf("colours %v, want %v", got, want)
	}
	if typeMark(got, m.Jobs[0], 0) != nil {
		t.Error("a job without a type has a stripe")
	}
	if typeColours(Model{Jobs: m.Jobs}) != nil {
		t.Error("a cluster without types has a type legend")
	}
}

func TestPageFetchesNothingAndEscapes(t *testing.T) {
	t.Parallel()
	spec, events := load(t, "ended")
	var b bytes.Buffer
	if err := Render(&b, Build(spec, events, at(3600))); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	if m := fetching.FindString(page); m != "" {
		t.Errorf("the page holds %q, which could fetch", m)
	}
	if i := strings.Index(page, "<head>\n"); i < 0 || !strings.HasPrefix(page[i+len("<head>\n"):], cspMeta) {
		t.Errorf("the CSP meta must open <head>:\n%.400s", page)
	}
	if strings.Contains(page, "<b>by</b>") || !strings.Contains(page, "cancelled &lt;b&gt;by&lt;/b&gt; &#34;scancel&#34; &amp; &lt;script&gt;") {
		t.Errorf("worker 101_1's reason is not escaped")
	}
	for _, id := range []string{`id="gpu-hours-slurm" data-gpu-seconds="1267.000"`, `id="gpu-hours-joined" data-gpu-seconds="1255.000"`,
		`id="gpu-hours-ray-allocated" data-gpu-seconds="1131.000"`, `<tr data-job="101_1" data-role="worker">`, `<g class="job-row" data-job="103" data-role="worker">`} {
		if !strings.Contains(page, id) {
			t.Errorf("the page lacks %s", id)
		}
	}
}

// A job key is markup nowhere: not in the SVG's attributes and titles, not
// in the table.
func TestJobKeysAreEscaped(t *testing.T) {
	t.Parallel()
	key := `7"><script>x</script>`
	events := []timeline.Event{
		{Time: at(0), Name: events.NameSubmitted, Job: key, Role: cluster.RoleWorker},
		{Time: at(5), Name: events.NameJobStarted, Job: key, Role: cluster.RoleWorker},
	}
	var b bytes.Buffer
	if err := Render(&b, Build(cluster.Spec{Name: "x", Created: t0, Node: cluster.NodeSpec{GPUs: 1}}, events, at(60))); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	if strings.Contains(page, "<script") {
		t.Errorf("a job key became markup:\n%s", page)
	}
	for _, want := range []string{`<g class="job-row" data-job="7&#34;&gt;&lt;script&gt;x&lt;/script&gt;"`, `<tr data-job="7&#34;&gt;&lt;script&gt;x&lt;/script&gt;"`,
		`<title>worker 7&#34;&gt;&lt;script&gt;x&lt;/script&gt;: running`} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
}
