package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/report"
	"github.com/sraybatch/sraybatch/internal/timeline"
	"github.com/sraybatch/sraybatch/templates"
)

const reportUsage = `Usage: sraybatch report [--cluster NAME] --output FILE

Write one self-contained HTML page of a cluster's life, read from its
records and event files (no SLURM or Ray call):
  - a timeline row per job: pending, running, joined, draining, ended;
  - the GPUs allocated by SLURM, joined to Ray and allocated by Ray over time;
  - each driver's step rate;
  - the GPU-hours allocated by SLURM, joined to Ray and allocated by Ray, and
    their ratios: the efficiency an elastic cluster exists to improve.
The page loads nothing (its Content-Security-Policy is default-src 'none':
only its inline styles and SVG), so it opens offline and can be mailed.
On a live cluster, what has not ended yet ends "now"; after down, at the
down. The file is replaced atomically: a failed run leaves no partial page.
--cluster may be left out when exactly one cluster is live.

Examples:
  sraybatch report -c exp1 -o exp1.html
  sraybatch report --cluster exp1 --output /shared/www/exp1.html`

type reportOptions struct {
	Cluster, Output string
}

func runReportCmd(ctx context.Context, io IOStreams, args []string) error {
	var o reportOptions
	fs := newFlagSet("report", reportUsage, io)
	addClusterFlag(fs, &o.Cluster)
	fs.StringVarP(&o.Output, "output", "o", "", "the HTML file to write (required)")
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	a, err := newApp()
	if err != nil {
		return err
	}
	return runReport(io, a, o)
}

func runReport(io IOStreams, a *app, o reportOptions) error {
	if err := templates.SingleLine("--cluster", o.Cluster); err != nil {
		return usageError{err}
	}
	out, err := reportPath(o.Output)
	if err != nil {
		return err
	}
	dir, spec, err := a.resolveCluster(o.Cluster)
	var ue usageError
	switch {
	case errors.Is(err, cluster.ErrNotFound):
		return usageError{err}
	case o.Cluster == "" && errors.As(err, &ue):
		// A report is as much for a cluster taken down as for a live one.
		if names, nerr := a.store.Names(); nerr == nil && len(names) > 0 {
			return usagef("%v; or name one that was taken down with --cluster (%s)", err, strings.Join(names, ", "))
		}
		return err
	case err != nil:
		return err
	}
	events, err := timeline.Load(dir, spec)
	if err != nil {
		return fmt.Errorf("read cluster %s: %w", spec.Name, err)
	}
	// What is still open ends now.
	m := report.Build(spec, events, a.clock.Now())
	var page bytes.Buffer
	if err := report.Render(&page, m); err != nil {
		return err
	}
	// 0644: a page is made to be shared; it holds no token and no path
	// that status does not print.
	if err := cluster.WriteFileAtomic(out, page.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	fmt.Fprintln(io.Out, out)
	fmt.Fprintf(io.ErrOut, "cluster %s: report of %d jobs written to %s\n", spec.Name, len(m.Jobs), out)
	return nil
}

// reportPath checks --output before anything is read: it must name a file
// in a directory that exists.
func reportPath(output string) (string, error) {
	if output == "" {
		return "", usagef("give --output FILE, the page to write (e.g. -o report.html)")
	}
	if err := templates.SingleLine("--output", output); err != nil {
		return "", usageError{err}
	}
	abs, err := filepath.Abs(output)
	if err != nil {
		return "", usagef("invalid --output %q: %v", output, err)
	}
	if st, err := os.Stat(abs); err == nil && st.IsDir() {
		return "", usagef("--output %s is a directory: name the file to write in it (e.g. %s)", output, filepath.Join(output, "report.html"))
	}
	parent := filepath.Dir(abs)
	if st, err := os.Stat(parent); err != nil || !st.IsDir() {
		return "", usagef("--output %s: directory %s does not exist: create it or choose another --output", output, parent)
	}
	return abs, nil
}
