package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jedib0t/go-pretty/v6/table"

	"github.com/sraybatch/sraybatch/internal/events"
	"github.com/sraybatch/sraybatch/internal/timeline"
)

const eventsUsage = `Usage: sraybatch events [--cluster NAME] [--follow] [--output table|tsv|json]

One timeline of the cluster, oldest first, merged from everything it
records: jobs submitted, started and ended (with how), time-limit warnings,
the head's view of each job's SLURM state and Ray membership (job_state)
and of its GPUs (cluster_sample), the drivers' events (node_joined,
actor_*, step_done, checkpoint_written, driver_stopping, …), the
autoscaler's decisions, and a rollover cluster's head generations (a head_up
each, with how its head came) and handovers (a handover each: old head job,
successor, how, reason, seconds to the seal and to the next publication, and
the driver's gap and steps lost; --follow prints it once these are in).

A styled table on a terminal, TSV when piped, one JSON object per line with
--output json ({"ts", "time", "event", "job", "role", "source", "fields"}).
--follow prints new events as they come until the cluster has ended (every
job it submitted has ended), or Ctrl+C.

Examples:
  sraybatch events -c exp1
  sraybatch events -c exp1 -f
  sraybatch events -c exp1 -o json | jq 'select(.event=="step_done") | .fields.step'`

type eventsOptions struct {
	Cluster string
	Follow  bool
	Output  string
}

// eventsEvery is how often events --follow looks for new events.
const eventsEvery = time.Second

func runEventsCmd(ctx context.Context, io IOStreams, args []string) error {
	var o eventsOptions
	fs := newFlagSet("events", eventsUsage, io)
	addClusterFlag(fs, &o.Cluster)
	fs.BoolVarP(&o.Follow, "follow", "f", false, "keep printing new events until the cluster has ended")
	addOutputFlag(fs, &o.Output)
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	a, err := newApp()
	if err != nil {
		return err
	}
	return runEvents(ctx, io, a, o)
}

func runEvents(ctx context.Context, io IOStreams, a *app, o eventsOptions) error {
	format, err := outputFormat(o.Output, io.OutIsTTY)
	if err != nil {
		return err
	}
	dir, spec, err := a.resolveCluster(o.Cluster)
	if err != nil {
		return err
	}
	f := timeline.NewFollower(dir, spec)
	p := eventPrinter{w: io.Out, format: format, loc: time.Local}
	if !o.Follow {
		evs, err := f.Last()
		if err != nil {
			return err
		}
		return p.print(evs)
	}
	err = a.followEvery(ctx, eventsEvery, func() (bool, error) {
		// Whether it has ended is asked first: the events read after it
		// include the last ones written before the end.
		st, err := a.clusterStatus(ctx, dir, spec)
		if err != nil {
			return false, err
		}
		over := clusterOver(st)
		next := f.Next
		if over {
			next = f.Last // a handover that never settled, with what is known
		}
		evs, err := next()
		if err != nil {
			return false, err
		}
		return over, p.print(evs)
	})
	if errors.Is(err, context.Canceled) || (err != nil && ctx.Err() != nil) {
		return interruptedError{fmt.Errorf("stopped following: cluster %s keeps running; see `sraybatch status -c %s`", spec.Name, spec.Name)}
	}
	return err
}

// eventPrinter writes timeline events: on a terminal a borderless table
// whose columns keep their widths from one batch to the next (--follow
// prints each batch as it comes, the header once), TSV lines with one
// header, or JSON lines.
type eventPrinter struct {
	w      io.Writer
	format string
	loc    *time.Location
	// printed counts the batches written, so the header comes once.
	printed int
}

var eventColumns = table.Row{"TIME", "JOB", "ROLE", "EVENT", "DETAILS"}

// eventWidths are the table's least column widths, so that batches line up.
var eventWidths = []int{len("2006-01-02 15:04:05.000"), 8, 6, len(events.NameTimeLimitWarning)}

func (p *eventPrinter) print(evs []timeline.Event) error {
	if len(evs) == 0 && (p.printed > 0 || p.format != "table") {
		return nil
	}
	defer func() { p.printed++ }()
	if p.format == "json" {
		enc := json.NewEncoder(p.w)
		for _, e := range evs {
			if err := enc.Encode(e); err != nil {
				return err
			}
		}
		return nil
	}
	t := table.NewWriter()
	if p.printed == 0 {
		t.AppendHeader(eventColumns)
	}
	for _, e := range evs {
		t.AppendRow(table.Row{e.Time.In(p.loc).Format("2006-01-02 15:04:05.000"), dash(e.Job), dash(string(e.Role)), e.Name, e.Details()})
	}
	if p.format == "tsv" {
		_, err := fmt.Fprintln(p.w, t.RenderTSV())
		return err
	}
	style := table.StyleLight
	style.Options.DrawBorder = false
	t.SetStyle(style)
	configs := make([]table.ColumnConfig, len(eventWidths))
	for i, w := range eventWidths {
		configs[i] = table.ColumnConfig{Number: i + 1, WidthMin: w}
	}
	t.SetColumnConfigs(configs)
	// The last column is padded to its widest cell, which differs from one
	// batch to the next: no trailing blanks.
	for _, l := range strings.Split(t.Render(), "\n") {
		if _, err := fmt.Fprintln(p.w, strings.TrimRight(l, " ")); err != nil {
			return err
		}
	}
	return nil
}
