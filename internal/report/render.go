package report

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// CSP is the page's Content-Security-Policy: nothing may be fetched,
// scripts do not run; only its own inline styles and inline SVG (which is
// markup, not a fetch) are allowed, and data: images.
const CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

//go:embed page.html.tmpl
var pageTemplate string

// page is parsed on first use, not at start: every command runs the
// package's initialisers, and only report draws a page.
var page = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("page").Parse(pageTemplate))
})

// Render writes the model as one self-contained HTML page. Every value from
// the cluster's files is escaped by html/template.
func Render(w io.Writer, m Model) error {
	if err := page().Execute(w, newView(m)); err != nil {
		return fmt.Errorf("render report: %w", err)
	}
	return nil
}

// Geometry of the drawings, in SVG user units (the page scales them).
const (
	svgWidth   = 960
	labelWidth = 150
	rightPad   = 20
	plotWidth  = svgWidth - labelWidth - rightPad
	rowHeight  = 22
	barHeight  = 14
	axisHeight = 26
	chartPlot  = 160 // height of a chart's plot area
	chartTop   = 10
)

// Counts that pick the time axis' tick spacing and the step-rate window
// from the candidates below.
const (
	axisTicks       = 8
	stepRateWindows = 60
)

var niceDurations = []time.Duration{
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour,
	24 * time.Hour, 48 * time.Hour, 7 * 24 * time.Hour, 14 * 24 * time.Hour, 28 * 24 * time.Hour,
}

// niceStep is the smallest round duration that cuts span into at most n pieces.
func niceStep(span time.Duration, n int) time.Duration {
	for _, d := range niceDurations {
		if span <= d*time.Duration(n) {
			return d
		}
	}
	last := niceDurations[len(niceDurations)-1]
	return last * time.Duration(math.Ceil(float64(span)/float64(last*time.Duration(n))))
}

type view struct {
	CSP, Cluster, ClusterID, State string
	Generated, Start, End, Span    string
	Width                          int
	Timeline                       timelineView
	GPUChart                       chartView
	StepChart                      *chartView
	Jobs                           []jobRow
	Figures, Ratios                []figure
	Steps                          []stepRow
	Missing                        []string
	JoinedSource                   string
	Handovers                      []handoverRow
}

// Left and Right bound the plot area of a drawing.
type frame struct{ Width, Left, Right int }

var plotFrame = frame{Width: svgWidth, Left: labelWidth, Right: labelWidth + plotWidth}

type timelineView struct {
	frame
	Height, AxisY, AxisTextY int
	Rows                     []rowView
	Ticks                    []tick
	Legend                   []State
	// Types is a typed cluster's legend of worker types; none without types.
	Types []typeSwatch
	// Generations is a rollover cluster's band row above the jobs' (at
	// GenerationsY), GenerationEdges each later generation's publication.
	Generations                     []generationBand
	GenerationEdges                 []string
	GenerationsLabelX, GenerationsY string
}

type rowView struct {
	Job, Role    string
	Y, TextY     int
	Bars         []bar
	LabelX, Last string
	// Type is a typed cluster's worker's type, TypeMark the stripe in its
	// type's colour left of the plot.
	Type     string
	TypeMark *bar
}

// typeSwatch is a worker type's entry in the legend; Class gives its colour.
type typeSwatch struct{ Name, Class string }

// typeColours are the legend's worker types, the spec's in its order, then
// any other a job names (a type the spec no longer has), each with its
// colour class; nil for a cluster without types.
func typeColours(m Model) []typeSwatch {
	if len(m.Types) == 0 {
		return nil
	}
	names := slices.Clone(m.Types)
	for _, j := range m.Jobs {
		if j.Type != "" && !slices.Contains(names, j.Type) {
			names = append(names, j.Type)
		}
	}
	out := make([]typeSwatch, len(names))
	for i, n := range names {
		out[i] = typeSwatch{Name: n, Class: fmt.Sprintf("wtype wtype-%d", i%typePalette)}
	}
	return out
}

// typePalette is how many colours page.html.tmpl defines for worker types.
const typePalette = 6

// typeMark is the stripe that colours a worker's row by its type.
func typeMark(types []typeSwatch, j Job, y int) *bar {
	for _, t := range types {
		if t.Name == j.Type {
			return &bar{Class: t.Class, X: coord(labelWidth - 5), Y: strconv.Itoa(y), W: "4", H: strconv.Itoa(barHeight),
				Title: fmt.Sprintf("%s %s: worker type %s", j.Role, j.Job, j.Type)}
		}
	}
	return nil
}

type bar struct {
	Class, X, Y, W, H, Title string
}

type tick struct {
	X, Y, Label string
}

type chartView struct {
	frame
	ID, Caption              string
	Height, AxisY, AxisTextY int
	PlotTop, PlotBottom      int
	Lines                    []line
	XTicks, YTicks           []tick
}

type line struct {
	Class, Name, Points string
}

type jobRow struct {
	Type, Job, Role, GPUs, Submitted, Waited, Ran, InRay, Ended, Outcome, Reason, Last string
	SlurmGPUHours, SlurmGPUSeconds, JoinedGPUHours, JoinedGPUSeconds                   string
}

type figure struct {
	ID, Label, Text, Data, Explain string
}

type stepRow struct {
	Job, Steps, First, Last, MeanRate string
}

func newView(m Model) view {
	v := view{
		CSP: CSP, Cluster: m.Cluster, ClusterID: m.ClusterID,
		Generated: m.Generated.Format(time.RFC3339), Start: m.Start.Format(time.RFC3339), End: m.End.Format(time.RFC3339),
		Span: formatDuration(m.End.Sub(m.Start)), Width: svgWidth, Missing: m.Missing,
	}
	switch {
	case m.Down != nil:
		v.State = "ended: down asked for at " + clock(*m.Down)
	case m.Live:
		v.State = "running: open intervals end at " + clock(m.Generated)
	default:
		v.State = "ended"
	}
	x := xScale(m.Start, m.End)
	v.Timeline = timelineOf(m, x)
	v.GPUChart = gpuChart(m, x)
	switch {
	case m.JoinedFromSamples:
		v.JoinedSource = "the head's cluster samples"
	case m.JoinedGPUs != nil:
		v.JoinedSource = "the sum of the jobs' joined intervals"
	}
	if len(m.Steps) > 0 {
		c := stepChart(m, x)
		v.StepChart = &c
	}
	for _, j := range m.Jobs {
		v.Jobs = append(v.Jobs, jobRowOf(j, m.Summary.JoinedGPUSeconds != nil))
	}
	for _, h := range m.Handovers {
		v.Handovers = append(v.Handovers, handoverRowOf(h))
	}
	for _, s := range m.Steps {
		v.Steps = append(v.Steps, stepRow{
			Job: s.Job, Steps: strconv.Itoa(s.Steps), First: clock(s.First), Last: clock(s.Last),
			MeanRate: strconv.FormatFloat(s.MeanRate(), 'f', 2, 64),
		})
	}
	slurm := m.Summary.SlurmGPUSeconds
	v.Figures = []figure{
		gpuHours("gpu-hours-slurm", "allocated by SLURM", &slurm, "each job's GPUs × the time SLURM ran it"),
		gpuHours("gpu-hours-joined", "joined to Ray", m.Summary.JoinedGPUSeconds, "each job's GPUs × the time its node was in Ray"),
		gpuHours("gpu-hours-ray-allocated", "allocated by Ray", m.Summary.RayAllocatedGPUSeconds, "the GPUs Ray handed to tasks and actors, over time"),
	}
	v.Ratios = []figure{
		ratio("ratio-joined-slurm", "joined / SLURM", Ratio(m.Summary.JoinedGPUSeconds, &slurm), "of what SLURM allocated, the share that was in Ray"),
		ratio("ratio-ray-slurm", "Ray allocated / SLURM", Ratio(m.Summary.RayAllocatedGPUSeconds, &slurm), "of what SLURM allocated, the share Ray put to work: the efficiency an elastic cluster exists to raise"),
		ratio("ratio-ray-joined", "Ray allocated / joined", Ratio(m.Summary.RayAllocatedGPUSeconds, m.Summary.JoinedGPUSeconds), "of what was in Ray, the share Ray put to work"),
	}
	return v
}

// xScale maps a time onto the plot's x axis, clamped to it.
func xScale(start, end time.Time) func(time.Time) float64 {
	span := end.Sub(start).Seconds()
	return func(t time.Time) float64 {
		f := t.Sub(start).Seconds() / span
		return labelWidth + math.Max(0, math.Min(1, f))*plotWidth
	}
}

func coord(f float64) string { return strconv.FormatFloat(math.Round(f*10)/10, 'f', -1, 64) }

func timelineOf(m Model, x func(time.Time) float64) timelineView {
	tv := timelineView{frame: plotFrame, Legend: []State{StatePending, StateRunning, StateJoined, StateDraining, StateEnded}, Types: typeColours(m)}
	top := chartTop
	if len(m.Generations) > 0 {
		tv.Generations, tv.GenerationEdges = generationRow(m.Generations, x, top)
		tv.GenerationsLabelX, tv.GenerationsY = coord(labelWidth-8), strconv.Itoa(top+barHeight-2)
		top += rowHeight
	}
	for i, j := range m.Jobs {
		y := top + i*rowHeight
		r := rowView{Job: j.Job, Role: string(j.Role), Y: y, TextY: y + barHeight - 2, LabelX: coord(labelWidth - 8),
			Type: j.Type, TypeMark: typeMark(tv.Types, j, y)}
		for _, iv := range j.Intervals {
			if iv.State == StateEnded && !iv.To.After(iv.From) {
				continue
			}
			class := "iv " + string(iv.State)
			title := fmt.Sprintf("%s %s: %s %s–%s (%s)", j.Role, j.Job, iv.State, clock(iv.From), clock(iv.To), formatDuration(iv.Duration()))
			if iv.Open {
				class += " open"
				title += ", still " + string(iv.State)
			}
			if iv.State == StateEnded {
				title = fmt.Sprintf("%s %s: ended %s", j.Role, j.Job, clock(iv.From))
				if j.Outcome != "" {
					title += " (" + string(j.Outcome) + ")"
				}
			}
			x0, x1 := x(iv.From), x(iv.To)
			r.Bars = append(r.Bars, bar{Class: class, X: coord(x0), Y: strconv.Itoa(y), W: coord(math.Max(x1-x0, 0.5)), H: strconv.Itoa(barHeight), Title: title})
			r.Last = string(iv.State)
		}
		tv.Rows = append(tv.Rows, r)
	}
	tv.AxisY = top + len(m.Jobs)*rowHeight + 4
	tv.AxisTextY = tv.AxisY + 16
	tv.Height = tv.AxisY + axisHeight
	tv.Ticks = timeTicks(m.Start, m.End, x, tv.AxisTextY)
	return tv
}

// timeTicks labels the time axis with offsets from its start at round steps.
func timeTicks(start, end time.Time, x func(time.Time) float64, y int) []tick {
	step := niceStep(end.Sub(start), axisTicks)
	var ticks []tick
	for d := time.Duration(0); !start.Add(d).After(end); d += step {
		ticks = append(ticks, tick{X: coord(x(start.Add(d))), Y: strconv.Itoa(y), Label: "+" + formatDuration(d)})
	}
	return ticks
}

// stepPoints draws a step function from its first sample until until.
func stepPoints(samples []Sample, until time.Time, x func(time.Time) float64, y func(float64) float64) string {
	var b strings.Builder
	for i, s := range samples {
		if !s.At.Before(until) {
			break
		}
		to := until
		if i+1 < len(samples) && samples[i+1].At.Before(until) {
			to = samples[i+1].At
		}
		fmt.Fprintf(&b, "%s,%s %s,%s ", coord(x(s.At)), coord(y(s.Value)), coord(x(to)), coord(y(s.Value)))
	}
	return strings.TrimSpace(b.String())
}

func maxValue(series ...[]Sample) float64 {
	top := 0.0
	for _, s := range series {
		for _, p := range s {
			top = math.Max(top, p.Value)
		}
	}
	return top
}

// niceCeil is the smallest of 1, 2, 2.5, 5 × 10^k at or above v (1 for v ≤ 1).
func niceCeil(v float64) float64 {
	if v <= 1 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func chartFrame(id, caption string, start, end time.Time, x func(time.Time) float64, top float64) (chartView, func(float64) float64) {
	c := chartView{frame: plotFrame, ID: id, Caption: caption, PlotTop: chartTop, PlotBottom: chartTop + chartPlot}
	c.AxisY = c.PlotBottom
	c.AxisTextY = c.PlotBottom + 16
	c.Height = c.PlotBottom + axisHeight
	yMax := niceCeil(top)
	y := func(v float64) float64 { return float64(c.PlotBottom) - v/yMax*chartPlot }
	for k := 0; k <= 4; k++ {
		v := yMax * float64(k) / 4
		c.YTicks = append(c.YTicks, tick{X: coord(labelWidth - 6), Y: coord(y(v)), Label: strconv.FormatFloat(v, 'g', 4, 64)})
	}
	c.XTicks = timeTicks(start, end, x, c.AxisTextY)
	return c, y
}

func gpuChart(m Model, x func(time.Time) float64) chartView {
	c, y := chartFrame("chart-gpus", "GPUs over time", m.Start, m.End, x, maxValue(m.SlurmGPUs, m.JoinedGPUs, m.RayAllocatedGPUs))
	c.Lines = append(c.Lines, line{Class: "series slurm", Name: "allocated by SLURM", Points: stepPoints(m.SlurmGPUs, m.End, x, y)})
	if m.JoinedGPUs != nil {
		until := m.End
		if m.JoinedFromSamples {
			until = m.SamplesUntil
		}
		c.Lines = append(c.Lines, line{Class: "series joined", Name: "joined to Ray", Points: stepPoints(m.JoinedGPUs, until, x, y)})
	}
	if m.RayAllocatedGPUs != nil {
		c.Lines = append(c.Lines, line{Class: "series ray-allocated", Name: "allocated by Ray", Points: stepPoints(m.RayAllocatedGPUs, m.SamplesUntil, x, y)})
	}
	return c
}

func stepChart(m Model, x func(time.Time) float64) chartView {
	var all [][]Sample
	for _, s := range m.Steps {
		all = append(all, s.Rate)
	}
	caption := fmt.Sprintf("driver steps per second (per %s)", formatDuration(m.Steps[0].Window))
	c, y := chartFrame("chart-step-rate", caption, m.Start, m.End, x, maxValue(all...))
	for i, s := range m.Steps {
		c.Lines = append(c.Lines, line{Class: fmt.Sprintf("series steps steps-%d", i%4), Name: "driver " + s.Job, Points: stepPoints(s.Rate, m.End, x, y)})
	}
	return c
}

// jobRowOf is a job's table row; rayKnown says whether anything recorded
// which jobs joined Ray (else the time in Ray is unknown, not zero).
func jobRowOf(j Job, rayKnown bool) jobRow {
	r := jobRow{
		Type: j.Type, Job: j.Job, Role: string(j.Role), GPUs: strconv.Itoa(j.GPUs), Submitted: clock(j.Submitted),
		Waited: formatDuration(Held(j.Intervals, StatePending)), Ran: formatDuration(Held(j.Intervals, slurmStates...)),
		InRay: formatDuration(Held(j.Intervals, joinedStates...)), Ended: "—",
		Outcome: string(j.Outcome), Reason: j.Reason,
		SlurmGPUHours: formatGPUHours(j.SlurmGPUSeconds), SlurmGPUSeconds: gpuSeconds(j.SlurmGPUSeconds),
		JoinedGPUHours: formatGPUHours(j.JoinedGPUSeconds), JoinedGPUSeconds: gpuSeconds(j.JoinedGPUSeconds),
	}
	if end, ok := j.EndedAt(); ok {
		r.Ended = clock(end)
	}
	if !rayKnown {
		r.InRay, r.JoinedGPUHours, r.JoinedGPUSeconds = "unknown", "unknown", ""
	}
	for _, iv := range j.Intervals {
		r.Last = string(iv.State)
		if iv.Open {
			r.Last += " (open)"
		}
	}
	if r.Outcome == "" {
		r.Outcome = "—"
	}
	return r
}

func gpuHours(id, label string, seconds *float64, explain string) figure {
	f := figure{ID: id, Label: label, Text: "unknown", Explain: explain}
	if seconds != nil {
		f.Text, f.Data = formatGPUHours(*seconds), gpuSeconds(*seconds)
	}
	return f
}

func ratio(id, label string, r *float64, explain string) figure {
	f := figure{ID: id, Label: label, Text: "unknown", Explain: explain}
	if r != nil {
		f.Text, f.Data = strconv.FormatFloat(*r*100, 'f', 1, 64)+" %", strconv.FormatFloat(*r, 'f', 4, 64)
	}
	return f
}

// gpuSeconds is a figure as the page's data attributes carry it, for tests
// and scripts: GPU-seconds to the millisecond.
func gpuSeconds(s float64) string { return strconv.FormatFloat(s, 'f', 3, 64) }

// formatGPUHours shows GPU-hours with the digits that matter at their size.
func formatGPUHours(seconds float64) string {
	h := seconds / 3600
	switch {
	case h == 0:
		return "0"
	case h >= 100:
		return strconv.FormatFloat(h, 'f', 0, 64)
	case h >= 10:
		return strconv.FormatFloat(h, 'f', 1, 64)
	case h >= 0.1:
		return strconv.FormatFloat(h, 'f', 2, 64)
	}
	return strconv.FormatFloat(h, 'f', 4, 64)
}

// formatDuration is a duration to the second, without zero tails: 0s, 45s,
// 2m, 2m5s, 1h, 1h30m.
func formatDuration(d time.Duration) string {
	d = d.Round(time.Second)
	if d == 0 {
		return "0s"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// clock is a time of day in UTC, the zone every record is written in.
func clock(t time.Time) string { return t.UTC().Format("15:04:05") }
