package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/follow"
	"github.com/sraybatch/sraybatch/raynode"
)

const logsUsage = `Usage: sraybatch logs [--cluster NAME] [JOB | --role head|worker|driver] [--follow] [--ray] [--lines N]

Show a job's output: the file SLURM writes it to (the supervisor's lines,
--setup's output, a driver's own output). JOB is a job key as status shows
it (161, or 162_0 for an array task; 162 means every task of the array);
--role shows every job of that role, each after a "==> ... <==" header.

--ray shows the job's Ray logs instead: the head's GCS (gcs_server.out/err),
every node's raylet (raylet.out/err), a driver's core-driver log. Ray writes
them on the compute node, in the job's private temp dir: while the job runs,
its supervisor copies the newest 256 KiB of each into the cluster's log
folder every 10 s, and the tail of every Ray log once the job ends (the
headers name the folder).

--follow keeps printing what is new until the jobs have ended, or Ctrl+C.

Examples:
  sraybatch logs -c exp1 161
  sraybatch logs -c exp1 --role worker --lines 20
  sraybatch logs -c exp1 --role head --ray -f`

type logsOptions struct {
	Cluster string
	// Job is a job key, or an array's id (every task); Role every job of a role.
	Job    string
	Role   string
	Follow bool
	Ray    bool
	// Lines is how many of the last lines to show first; 0: all.
	Lines int
}

// logsEvery is how often logs --follow looks for new output.
const logsEvery = time.Second

func runLogsCmd(ctx context.Context, io IOStreams, args []string) error {
	var o logsOptions
	fs := newFlagSet("logs", logsUsage, io)
	addClusterFlag(fs, &o.Cluster)
	fs.StringVar(&o.Role, "role", "", "show every job of this role: head, worker or driver")
	fs.BoolVarP(&o.Follow, "follow", "f", false, "keep printing new output until the jobs have ended")
	fs.BoolVar(&o.Ray, "ray", false, "show the jobs' Ray logs (GCS, raylet, core driver) instead of their output")
	fs.IntVarP(&o.Lines, "lines", "n", 0, "show only the last N lines of each file first (0: all)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch fs.NArg() {
	case 0:
	case 1:
		o.Job = fs.Arg(0)
	default:
		return usagef("one JOB at a time, got %q (see --help)", fs.Args())
	}
	a, err := newApp()
	if err != nil {
		return err
	}
	return runLogs(ctx, io, a, o)
}

// logTarget is one job whose logs are shown.
type logTarget struct {
	key  string
	role cluster.Role
}

// selectLogJobs picks the jobs of a cluster's submissions that a JOB or a
// --role names; bad input is a usage error that lists the jobs there are.
func selectLogJobs(subs []cluster.Submission, job, role string) ([]logTarget, error) {
	var all []logTarget
	for _, s := range subs {
		for _, k := range s.JobKeys() {
			all = append(all, logTarget{k, s.Role})
		}
	}
	switch {
	case job != "" && role != "":
		return nil, usagef("give a JOB or --role, not both")
	case job == "" && role == "":
		return nil, usagef("name a JOB or a --role head|worker|driver; the cluster's jobs: %s", describeTargets(all))
	case role != "":
		r := cluster.Role(role)
		if r != cluster.RoleHead && r != cluster.RoleWorker && r != cluster.RoleDriver {
			return nil, usagef("invalid --role %q: use head, worker or driver", role)
		}
		var out []logTarget
		for _, t := range all {
			if t.role == r {
				out = append(out, t)
			}
		}
		if len(out) == 0 {
			return nil, usagef("the cluster has no %s job; its jobs: %s", role, describeTargets(all))
		}
		return out, nil
	}
	var out []logTarget
	for _, s := range subs {
		for _, k := range s.JobKeys() {
			if k == job || (s.Tasks > 0 && s.JobID == job) {
				out = append(out, logTarget{k, s.Role})
			}
		}
	}
	if len(out) == 0 {
		return nil, usagef("the cluster has no job %q; its jobs: %s", job, describeTargets(all))
	}
	return out, nil
}

// describeTargets lists jobs as "160 head, 161 driver, …" (the first ten).
func describeTargets(ts []logTarget) string {
	if len(ts) == 0 {
		return "none yet"
	}
	var parts []string
	for i, t := range ts {
		if i == 10 {
			parts = append(parts, fmt.Sprintf("and %d more", len(ts)-i))
			break
		}
		parts = append(parts, t.key+" "+string(t.role))
	}
	return strings.Join(parts, ", ")
}

// logFile is one file shown, with the header that names it.
type logFile struct {
	path, header string
}

// logFiles are the files shown for a job: its output file, or with ray
// the copies of its main Ray logs that exist now, one head generation after
// the other (a rollover cluster's job restarts its Ray node in each; a
// promoted worker's later ones are a head's, with its GCS logs).
func logFiles(spec cluster.Spec, t logTarget, ray bool) []logFile {
	if !ray {
		path := cluster.JobLog(spec.LogDir, spec.Name, t.role, t.key)
		return []logFile{{path, fmt.Sprintf("%s %s: %s", t.role, t.key, path)}}
	}
	patterns := raynode.RayLogFiles(t.role)
	if t.role == cluster.RoleWorker {
		patterns = raynode.RayLogFiles(cluster.RoleHead)
	}
	var out []logFile
	for _, dir := range raynode.RayLogDirs(spec.LogDir, t.key) {
		for _, pattern := range patterns {
			matches, _ := filepath.Glob(filepath.Join(dir, pattern))
			sort.Strings(matches)
			for _, m := range matches {
				out = append(out, logFile{m, fmt.Sprintf("%s %s: %s", t.role, t.key, m)})
			}
		}
	}
	return out
}

func runLogs(ctx context.Context, io IOStreams, a *app, o logsOptions) error {
	if o.Lines < 0 {
		return usagef("invalid --lines %d: use a count, or 0 for all", o.Lines)
	}
	if o.Job != "" && o.Role != "" { // before the cluster is looked up: nothing else matters
		return usagef("give a JOB or --role, not both")
	}
	dir, spec, err := a.resolveCluster(o.Cluster)
	if err != nil {
		return err
	}
	subs, err := dir.Submissions()
	if err != nil {
		return err
	}
	targets, err := selectLogJobs(subs, o.Job, o.Role)
	if err != nil {
		return err
	}
	p := &logPrinter{out: io.Out, followed: map[string]*follow.File{}}
	files := func() []logFile {
		var fs []logFile
		for _, t := range targets {
			fs = append(fs, logFiles(spec, t, o.Ray)...)
		}
		return fs
	}
	shown := files()
	p.headers = len(shown) > 1 || len(targets) > 1
	for _, f := range shown {
		if err := p.first(f, o.Lines); err != nil {
			return err
		}
		if _, err := os.Stat(f.path); errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(io.ErrOut, "no output yet from %s (a pending job has none)\n", f.header)
		}
	}
	if len(shown) == 0 {
		fmt.Fprintf(io.ErrOut, "no Ray logs copied yet for %s: a running job's supervisor copies them every 10 s\n", describeTargets(targets))
	}
	if !o.Follow {
		return nil
	}
	return a.followLogs(ctx, dir, spec, targets, p, files)
}

// followLogs prints what is new in the targets' files (files lists them
// now: Ray log copies appear as the jobs run) every logsEvery until the
// jobs have ended, or Ctrl+C.
func (a *app) followLogs(ctx context.Context, dir cluster.Dir, spec cluster.Spec, targets []logTarget, p *logPrinter, files func() []logFile) error {
	overBefore := false
	err := a.followEvery(ctx, logsEvery, func() (bool, error) {
		st, err := a.clusterStatus(ctx, dir, spec)
		if err != nil {
			return false, err
		}
		over := true
		for _, t := range targets {
			if j := findJob(st, t.key); j != nil && !jobOver(*j) {
				over = false
			}
		}
		fs := files()
		p.headers = p.headers || len(fs) > 1
		for _, f := range fs {
			if err := p.more(f); err != nil {
				return false, err
			}
		}
		// Once more after the end: the last lines may reach a shared
		// filesystem after SLURM has ended the job.
		done := over && overBefore
		overBefore = over
		return done, nil
	})
	if errors.Is(err, context.Canceled) || (err != nil && ctx.Err() != nil) {
		return interruptedError{fmt.Errorf("stopped following: %s keep running; see `sraybatch status -c %s`", describeTargets(targets), spec.Name)}
	}
	return err
}

// logPrinter writes files, and what is new in them, to out; with headers
// each stretch of a file's lines comes after "==> role key: path <==".
type logPrinter struct {
	out      io.Writer
	headers  bool
	last     string // the file whose lines were written last
	followed map[string]*follow.File
}

func (p *logPrinter) write(f logFile, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	if p.headers && p.last != f.path {
		if p.last != "" {
			fmt.Fprintln(p.out)
		}
		fmt.Fprintf(p.out, "==> %s <==\n", f.header)
	}
	p.last = f.path
	_, err := p.out.Write(data)
	return err
}

// first writes a file as it is now, its last lines only when asked.
func (p *logPrinter) first(f logFile, lines int) error {
	data, err := p.follow(f.path).Next()
	if err != nil {
		return err
	}
	return p.write(f, lastLines(data, lines))
}

// more writes what is new in a file since it was last read.
func (p *logPrinter) more(f logFile) error {
	data, err := p.follow(f.path).Next()
	if err != nil {
		return err
	}
	return p.write(f, data)
}

// follow is the follower of a file, made on its first read.
func (p *logPrinter) follow(path string) *follow.File {
	ff := p.followed[path]
	if ff == nil {
		ff = follow.New(path)
		p.followed[path] = ff
	}
	return ff
}

// lastLines is the last n lines of data; all of it when n is 0.
func lastLines(data []byte, n int) []byte {
	if n <= 0 {
		return data
	}
	end := len(data)
	if end > 0 && data[end-1] == '\n' {
		end--
	}
	for i := end - 1; i >= 0; i-- {
		if data[i] == '\n' {
			n--
			if n == 0 {
				return data[i+1:]
			}
		}
	}
	return data
}
