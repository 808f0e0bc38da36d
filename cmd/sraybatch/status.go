package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jedib0t/go-pretty/v6/table"
	"github.com/jedib0t/go-pretty/v6/text"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

const statusUsage = `Usage: sraybatch status [--cluster NAME | --all] [--output table|tsv|json] [--watch [--interval 2s]]

Show a cluster: one line for the cluster, one row per job merging its SLURM
state with its Ray membership (waiting, joined, draining, lost, failed, ended).
A styled table on a terminal (coloured unless NO_COLOR is set), TSV when
piped; --output json for scripts.

--watch shows the cluster live until it ends (every job it submitted has
ended): on a terminal the table is redrawn in place; piped, each tick's rows
are appended with a TIME column (JSON: one object per tick and line). It
exits 0 when the cluster has ended, 130 on Ctrl+C.

Examples:
  sraybatch status --cluster exp1
  sraybatch status --all
  sraybatch status -c exp1 -o json | jq '.jobs[] | select(.ray=="joined")'
  sraybatch status -c exp1 --watch
  sraybatch status -c exp1 --watch --interval 10s >> exp1-status.tsv`

type statusOptions struct {
	Cluster string
	All     bool
	Output  string
	// GPUs adds each node's GPU use (model, memory, utilization) as sampled by its job.
	GPUs bool
	// Watch redraws (or, piped, appends) the status every Interval until the cluster ends.
	Watch    bool
	Interval time.Duration
}

func runStatusCmd(ctx context.Context, io IOStreams, args []string) error {
	var o statusOptions
	fs := newFlagSet("status", statusUsage, io)
	addClusterFlag(fs, &o.Cluster)
	fs.BoolVar(&o.All, "all", false, "show every cluster in $SRAYBATCH_HOME, ended ones included")
	addOutputFlag(fs, &o.Output)
	fs.BoolVar(&o.GPUs, "gpus", false, "also show each node's GPUs: model, memory used/total, utilization (sampled every 30 s)")
	fs.BoolVarP(&o.Watch, "watch", "w", false, "show the cluster live until it ends: redrawn on a terminal, appended when piped")
	fs.DurationVar(&o.Interval, "interval", 2*time.Second, "how often --watch looks again")
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	a, err := newApp()
	if err != nil {
		return err
	}
	if o.Watch {
		return runStatusWatch(ctx, io, a, o)
	}
	return runStatus(ctx, io, a, o)
}

func runStatus(ctx context.Context, io IOStreams, a *app, o statusOptions) error {
	format, err := outputFormat(o.Output, io.OutIsTTY)
	if err != nil {
		return err
	}
	all, err := a.statuses(ctx, o)
	if err != nil {
		return err
	}
	for _, st := range all {
		if st.Cluster.SlurmError != "" {
			fmt.Fprintf(io.ErrOut, "warning: cluster %s: %s\n", st.Cluster.Name, st.Cluster.SlurmError)
		}
	}
	defer step(ctx, "render")()
	return renderStatus(io, o, format, all)
}

// statuses observes the cluster that o names, or every cluster with --all.
func (a *app) statuses(ctx context.Context, o statusOptions) ([]cluster.Status, error) {
	if !o.All {
		// resolveCluster reads the spec: reading it again cost every status a
		// file read and a JSON decode.
		done := step(ctx, "read spec")
		dir, spec, err := a.resolveCluster(o.Cluster)
		done()
		if err != nil {
			return nil, err
		}
		st, err := a.clusterStatus(ctx, dir, spec)
		return []cluster.Status{st}, err
	}
	names, err := a.store.Names()
	if err != nil {
		return nil, err
	}
	var all []cluster.Status
	for _, n := range names {
		d := a.store.Cluster(n)
		spec, err := d.Spec()
		if err != nil {
			return nil, err
		}
		st, err := a.clusterStatus(ctx, d, spec)
		if err != nil {
			return nil, err
		}
		all = append(all, st)
	}
	return all, nil
}

// renderStatus prints observed statuses in the chosen format; status and
// each frame of status --watch print the same way.
func renderStatus(io IOStreams, o statusOptions, format string, all []cluster.Status) error {
	switch format {
	case "json":
		if o.All {
			return writeIndentedJSON(io.Out, all, "  ")
		}
		return writeIndentedJSON(io.Out, all[0], "  ")
	case "tsv":
		for _, st := range all {
			printStatusTSV(io.Out, st)
			if o.GPUs {
				fmt.Fprintln(io.Out)
				printClusterGPUs(io.Out, st, false)
			}
		}
	default:
		for i, st := range all {
			if i > 0 {
				fmt.Fprintln(io.Out)
			}
			printStatusTable(io.Out, st, io.Color)
			if o.GPUs {
				printClusterGPUs(io.Out, st, true)
			}
		}
	}
	return nil
}

var jobColumns = table.Row{"ROLE", "JOB", "SLURM", "REASON", "NODE", "GPUS", "RAY", "RAY NODE", "ACTORS", "ELAPSED", "TIME LEFT"}

func jobRow(j cluster.JobStatus) table.Row {
	actors := strconv.Itoa(j.Actors)
	if j.Role == cluster.RoleDriver {
		if j.LastStep != nil {
			actors += " (step " + strconv.Itoa(*j.LastStep) + ")"
		}
		if j.ExitCode != nil {
			actors += " exit " + strconv.Itoa(*j.ExitCode)
		}
		if j.Training != nil && j.Training.ActorRestarts > 0 {
			actors += fmt.Sprintf(", %d restarts", j.Training.ActorRestarts)
		}
	}
	reason := j.Reason
	if j.Excluded != "" {
		reason = "left out of training (GPUs held): " + j.Excluded
	}
	role := string(j.Role)
	if j.Type != "" { // a cluster with worker types: the rows come grouped by type
		role += "/" + j.Type
	}
	return table.Row{role, j.JobID, dash(j.SlurmState), dash(reason), dash(j.Node), j.GPUs, j.Ray,
		dash(shortID(j.RayNodeID)), actors, formatSeconds(&j.ElapsedS), formatSeconds(j.TimeLeftS)}
}

func clusterLine(c cluster.ClusterStatus) string {
	parts := []string{
		"cluster " + c.Name, "id " + c.ID, "state " + string(c.State),
		"head " + dash(c.HeadAddress), "dashboard " + dash(c.Dashboard) + " (on " + dash(c.HeadNode) + ")",
		"age " + formatSeconds(&c.AgeS),
	}
	if c.Generation > 0 {
		parts = append(parts, generationPart(c))
	}
	if c.Reason != "" {
		parts = append(parts, "reason "+c.Reason)
	}
	if c.Warning != "" {
		parts = append(parts, "WARNING "+c.Warning)
	}
	if c.Insecure {
		parts = append(parts, "INSECURE (no Ray auth)")
	}
	return strings.Join(parts, "  ")
}

// generationPart is a rollover cluster's current generation on the
// cluster line: "generation 3 (head job 12, promoted from head job 9)".
func generationPart(c cluster.ClusterStatus) string {
	how := string(c.GenerationHow)
	if c.PreviousHeadJob != "" {
		how += " from head job " + c.PreviousHeadJob
	}
	if how == "" {
		return fmt.Sprintf("generation %d (head job %s)", c.Generation, dash(c.HeadJob))
	}
	return fmt.Sprintf("generation %d (head job %s, %s)", c.Generation, dash(c.HeadJob), how)
}

// handoverLines are the "handovers" section under the cluster line, one
// line per handover, oldest first; none for a cluster without any.
func handoverLines(hs []cluster.HandoverStatus) []string {
	if len(hs) == 0 {
		return nil
	}
	lines := []string{"handovers:"}
	for _, h := range hs {
		lost := "-"
		if h.StepsLost != nil {
			lost = strconv.Itoa(*h.StepsLost)
		}
		lines = append(lines, fmt.Sprintf("  %d→%d  head job %s → %s, %s (%s) at %s  sealed after %s  published after %s  gap %s  steps lost %s",
			h.Generation, h.NextGeneration, h.OldHeadJob, dash(h.NewHeadJob), h.How, h.Why, h.Started.Local().Format(time.DateTime),
			secondsText(h.SealedAfterS), secondsText(h.PublishedAfterS), secondsText(h.GapS), lost))
	}
	return lines
}

// secondsText is a handover's figure in seconds for people ("-": unknown).
func secondsText(s *float64) string {
	if s == nil {
		return "-"
	}
	return strconv.FormatFloat(*s, 'f', 1, 64) + "s"
}

// printStatusTable is a pure function of the status; color only when
// IOStreams.Color allows it (a terminal, no NO_COLOR).
func printStatusTable(w io.Writer, st cluster.Status, color bool) {
	fmt.Fprintln(w, clusterLine(st.Cluster))
	for _, l := range handoverLines(st.Cluster.Handovers) {
		fmt.Fprintln(w, l)
	}
	if st.Autoscaler != nil {
		fmt.Fprintln(w, autoscaleLine(*st.Autoscaler))
	}
	for _, ts := range st.Types {
		fmt.Fprintln(w, typeLine(ts))
	}
	t := table.NewWriter()
	t.SetOutputMirror(w)
	t.SetStyle(table.StyleLight)
	t.AppendHeader(jobColumns)
	for _, j := range st.Jobs {
		t.AppendRow(jobRow(j))
	}
	if color {
		t.SetColumnConfigs([]table.ColumnConfig{{Number: 7, Transformer: func(v any) string {
			return colorMembership(fmt.Sprint(v))
		}}})
	}
	t.Render()
}

func colorMembership(m string) string {
	switch cluster.Membership(m) {
	case cluster.MembershipJoined:
		return text.FgGreen.Sprint(m)
	case cluster.MembershipWaiting, cluster.MembershipDraining:
		return text.FgYellow.Sprint(m)
	case cluster.MembershipLost, cluster.MembershipFailed:
		return text.FgRed.Sprint(m)
	}
	return m
}

// printStatusTSV writes one header line and one line per job, each job line
// prefixed with the cluster's name and state so lines stand alone in pipes.
func printStatusTSV(w io.Writer, st cluster.Status) { writeStatusTSV(w, st, nil, nil, true) }

// writeStatusTSV writes printStatusTSV's lines, each led by the lead
// columns (status --watch: the tick's time) named leadHeader, the header
// line only when asked (once per stream).
func writeStatusTSV(w io.Writer, st cluster.Status, leadHeader, lead table.Row, header bool) {
	t := table.NewWriter()
	t.SetOutputMirror(w)
	if header {
		t.AppendHeader(append(append(leadHeader[:len(leadHeader):len(leadHeader)], "CLUSTER", "STATE"), jobColumns...))
	}
	for _, j := range st.Jobs {
		t.AppendRow(append(append(lead[:len(lead):len(lead)], st.Cluster.Name, st.Cluster.State), jobRow(j)...))
	}
	t.RenderTSV()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

func formatSeconds(s *int64) string {
	if s == nil {
		return "-"
	}
	d := time.Duration(*s) * time.Second
	if d >= 24*time.Hour {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d" + (d % (24 * time.Hour)).Truncate(time.Minute).String()
	}
	return d.String()
}

// printClusterGPUs lists every sampled GPU of the cluster's live jobs, with the
// sample's age: a job samples its GPUs every 30 s.
func printClusterGPUs(w io.Writer, st cluster.Status, styled bool) {
	t := table.NewWriter()
	t.SetOutputMirror(w)
	t.AppendHeader(table.Row{"JOB", "NODE", "GPU", "MODEL", "MEM USED", "MEM TOTAL", "UTIL", "PROCS", "SAMPLED"})
	for _, j := range st.Jobs {
		if j.Ray != cluster.MembershipJoined && j.Ray != cluster.MembershipDraining {
			continue
		}
		if len(j.GPUSamples) == 0 && j.GPUs > 0 {
			t.AppendRow(table.Row{j.JobID, dash(j.Node), "-", "no NVML data", "-", "-", "-", "-", "-"})
		}
		for _, g := range j.GPUSamples {
			t.AppendRow(table.Row{j.JobID, dash(j.Node), shortID(g.ID), dash(g.Name), mib(g.MemoryUsedMiB), mib(g.MemoryTotalMiB),
				percent(g.UtilizationPct), g.Processes, formatSeconds(j.GPUsSampledAgeS) + " ago"})
		}
	}
	renderTable(t, styled)
}

func mib(v *int64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatInt(*v, 10) + " MiB"
}

func percent(v *int) string {
	if v == nil {
		return "-"
	}
	return strconv.Itoa(*v) + "%"
}

// autoscaleLine is the autoscaler in one line: its range, what Ray waits
// for, what is on its way, the last thing it did and why, and what it
// cannot serve.
func autoscaleLine(a cluster.AutoscalerStatus) string {
	if !a.Enabled {
		return "autoscale off"
	}
	parts := []string{fmt.Sprintf("autoscale %d–%d", a.MinWorkers, a.MaxWorkers)}
	if len(a.Demand) == 0 {
		parts = append(parts, "demand none")
	} else {
		shapes := make([]string, 0, len(a.Demand))
		for shape, n := range a.Demand {
			shapes = append(shapes, fmt.Sprintf("%d×{%s}", n, shape))
		}
		sort.Strings(shapes)
		parts = append(parts, fmt.Sprintf("demand GPU:%s (%s)", strconv.FormatFloat(a.DemandGPUs, 'f', -1, 64), strings.Join(shapes, " ")))
	}
	parts = append(parts, fmt.Sprintf("supply %d pending", a.PendingWorkers))
	if d := a.LastDecision; d != nil {
		var did []string
		if n := len(d.Submitted); n > 0 {
			did = append(did, fmt.Sprintf("+%d workers", n))
		}
		if n := len(d.Cancelled); n > 0 {
			did = append(did, fmt.Sprintf("-%d pending", n))
		}
		if n := len(d.Drained); n > 0 {
			did = append(did, fmt.Sprintf("drained %d", n))
		}
		parts = append(parts, fmt.Sprintf("last %s %s (%s)", strings.Join(did, ", "), d.At.Local().Format(time.TimeOnly), d.Why))
	}
	if a.Reason != "" && (a.LastDecision == nil || a.Reason != a.LastDecision.Why) {
		parts = append(parts, "now: "+a.Reason)
	}
	for _, x := range a.Infeasible {
		parts = append(parts, fmt.Sprintf("infeasible {%s}: %s", x.Shape, x.Why))
	}
	if a.Error != "" {
		parts = append(parts, "error: "+a.Error)
	}
	return strings.Join(parts, " · ")
}

// typeLine is one worker type in one line: its bounds and its workers.
func typeLine(t cluster.TypeStatus) string {
	return fmt.Sprintf("type %s %d–%d · demand %d · pending %d · joined %d", t.Name, t.Min, t.Max, t.Demand, t.Pending, t.Joined)
}
