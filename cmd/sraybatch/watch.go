package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jedib0t/go-pretty/v6/table"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/scheduler"
)

// followEvery calls tick at once and then every interval, until tick says
// what it follows is over (nil) or fails, or ctx ends (ctx's error). Every
// follower (status --watch, events -f, logs -f) and every wait (poll) waits
// on the app's clock.
func (a *app) followEvery(ctx context.Context, interval time.Duration, tick func() (over bool, err error)) error {
	for {
		over, err := tick()
		if over || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-a.clock.After(interval):
		}
	}
}

// jobOver reports whether a job has ended for good: SLURM no longer runs or
// queues it (or has forgotten it), or, when SLURM did not answer, its
// supervisor recorded how it ended.
func jobOver(j cluster.JobStatus) bool {
	if j.SlurmState != "" {
		return !scheduler.JobState(j.SlurmState).Active()
	}
	return j.Outcome != ""
}

// clusterOver reports whether a cluster has ended: every job it submitted
// has (jobOver); a cluster that never submitted one has ended once taken down.
func clusterOver(st cluster.Status) bool {
	if len(st.Jobs) == 0 {
		return st.Cluster.State == cluster.StateEnded
	}
	for _, j := range st.Jobs {
		if !jobOver(j) {
			return false
		}
	}
	return true
}

// ANSI sequences of the in-place redraw: the first frame clears the screen,
// later ones go home and overwrite, each line erasing what is left of the
// old one, and the rest of the old frame is erased below the new one, so a
// shorter frame leaves no stale lines and nothing flickers.
const (
	ansiClear     = "\x1b[H\x1b[2J"
	ansiHome      = "\x1b[H"
	ansiEraseLine = "\x1b[K"
	ansiEraseDown = "\x1b[J"
)

// watchPrinter writes the frames of status --watch.
type watchPrinter struct {
	io     IOStreams
	o      statusOptions
	format string
	// redraw is a terminal showing the table: frames replace each other.
	redraw bool
	frames int
}

// runStatusWatch observes the cluster every o.Interval and prints each
// observation until the cluster ends (exit 0) or Ctrl+C (exit 130).
func runStatusWatch(ctx context.Context, io IOStreams, a *app, o statusOptions) error {
	format, err := outputFormat(o.Output, io.OutIsTTY)
	if err != nil {
		return err
	}
	switch {
	case o.All:
		return usagef("--watch follows one cluster: drop --all and name it with --cluster")
	case o.Interval <= 0:
		return usagef("invalid --interval %s: use a positive duration such as 2s", o.Interval)
	case o.GPUs && format != "table":
		return usagef("--watch --gpus needs the table output: drop --gpus or --output %s", format)
	}
	dir, spec, err := a.resolveCluster(o.Cluster)
	if err != nil {
		return err
	}
	p := &watchPrinter{io: io, o: o, format: format, redraw: io.OutIsTTY && format == "table"}
	err = a.followEvery(ctx, o.Interval, func() (bool, error) {
		st, err := a.clusterStatus(ctx, dir, spec)
		if err != nil {
			return false, err
		}
		over := clusterOver(st)
		return over, p.print(a.clock.Now(), st, over)
	})
	if errors.Is(err, context.Canceled) || (err != nil && ctx.Err() != nil) {
		return interruptedError{fmt.Errorf("stopped watching: cluster %s keeps running; see `sraybatch status -c %s`", spec.Name, spec.Name)}
	}
	if err == nil {
		fmt.Fprintf(io.ErrOut, "cluster %s has ended\n", spec.Name)
	}
	return err
}

// print writes one observation: a frame redrawn in place on a terminal,
// else appended rows that say which tick they belong to.
func (p *watchPrinter) print(now time.Time, st cluster.Status, over bool) error {
	defer func() { p.frames++ }()
	switch {
	case p.format == "json":
		return json.NewEncoder(p.io.Out).Encode(struct {
			Time time.Time `json:"time"`
			cluster.Status
		}{now.UTC(), st})
	case p.format == "tsv":
		if st.Cluster.SlurmError != "" {
			fmt.Fprintf(p.io.ErrOut, "warning: cluster %s: %s\n", st.Cluster.Name, st.Cluster.SlurmError)
		}
		writeStatusTSV(p.io.Out, st, table.Row{"TIME"}, table.Row{now.Format(time.RFC3339)}, p.frames == 0)
		return nil
	}
	var frame bytes.Buffer
	state := "every " + p.o.Interval.String() + ", Ctrl+C to stop"
	if over {
		state = "the cluster has ended"
	}
	fmt.Fprintf(&frame, "%s  sraybatch status --watch (%s)\n", now.Format(time.TimeOnly), state)
	if st.Cluster.SlurmError != "" {
		fmt.Fprintf(&frame, "warning: %s\n", st.Cluster.SlurmError)
	}
	frameIO := p.io
	frameIO.Out = &frame
	if err := renderStatus(frameIO, p.o, "table", []cluster.Status{st}); err != nil {
		return err
	}
	if !p.redraw {
		if p.frames > 0 {
			fmt.Fprintln(p.io.Out)
		}
		_, err := p.io.Out.Write(frame.Bytes())
		return err
	}
	var out bytes.Buffer
	if p.frames == 0 {
		out.WriteString(ansiClear)
	} else {
		out.WriteString(ansiHome)
	}
	sc := bufio.NewScanner(&frame)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		out.Write(sc.Bytes())
		out.WriteString(ansiEraseLine + "\n")
	}
	out.WriteString(ansiEraseDown)
	_, err := p.io.Out.Write(out.Bytes()) // one write: the terminal never shows half a frame
	return err
}
