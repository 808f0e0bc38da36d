package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/pflag"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/config"
	"github.com/sraybatch/sraybatch/internal/submit"
	"github.com/sraybatch/sraybatch/raynode"
	"github.com/sraybatch/sraybatch/slurm"
	"github.com/sraybatch/sraybatch/templates"
)

const upUsage = `Usage: sraybatch up --name NAME [flags]

Start a cluster: submit the Ray head job (GPU 0 of its allocation carries the
head), and with --workers K, K worker jobs that join it. With --wait it
returns once the whole cluster is up: the head healthy, then all K workers
joined Ray, within one --timeout. Ctrl+C stops the waiting, not the cluster
(exit 130); only with --foreground does Ctrl+C take the cluster down.

Examples:
  sraybatch up --name exp1 --gpus-per-node 1 --partition debug --time 2:00:00 --wait
  sraybatch up -f long.yaml --wait      # a cluster file: every flag has a key
  sraybatch up -f long.yaml --dry-run   # each setting, and where it came from
  sraybatch up --name exp1 --setup 'source ~/venvs/ray/bin/activate' --workers 2
  sraybatch up --name exp1 --sbatch-arg=--exclusive --dry-run
  sraybatch up --name dev --backend local --workers 1 --foreground   # this host's GPUs, no SLURM
  sraybatch up --name c --container /scratch/me/ray.sqfs --ray /opt/venv/bin/ray \
      --container-mount /scratch/me/data:/data --wait   # every Ray process in the image

With --backend local (the default where sbatch is not on PATH) every node is a
process of this host, on a GPU no other sraybatch node and no other program
uses (--gpus-per-node 0: CPU-only nodes); job ids are the processes' pids.

A cluster file (-f), the user's defaults ($XDG_CONFIG_HOME/sraybatch/config.yaml)
and the site's (/etc/sraybatch/config.yaml, or $SRAYBATCH_SITE_CONFIG) set
what the command line leaves out: flags > file > user > site. Each flag has a
key (--partition: head.partition, --min-workers: autoscale.min_workers; see
--dry-run). Its workers: are the worker types, in order, the first the
default; a type inherits what it leaves out from the head (its partition
from --worker-partition first), so --partition moves the head and every type
that names no partition of its own.`

type upOptions struct {
	// File is the cluster file (-f); "": none.
	File string
	Name string
	Node cluster.NodeSpec
	// WorkerPartition is the workers' partition when not the head's.
	WorkerPartition string
	Workers         int
	Setup           string
	Ray             string
	LogDir          string
	PortRange       string
	NodeIP          string
	Interface       string
	ObjectStoreMB   int
	DrainBefore     time.Duration
	Insecure        bool
	DryRun          bool
	Wait            waitOptions
	// Autoscale switches the head's autoscaler on, with Scaling's settings.
	Autoscale bool
	Scaling   autoscaleOptions
	// Backend is "" (slurm) or local; Foreground (local only) stays until Ctrl+C.
	Backend    cluster.Backend
	Foreground bool
	// announceBackend says which backend was chosen, when the user did not.
	announceBackend bool
	autoscaleSpec   cluster.AutoscaleSpec
	// MetricsSDDir gets a world-readable copy of the Prometheus targets.
	MetricsSDDir string
	Rollover     rolloverOptions
	Container    containerOptions
	// settings are the effective settings and their sources (applyFiles),
	// for --dry-run; typeDefs the worker types of the files.
	settings []setting
	typeDefs []config.TypeDef
}

type waitOptions struct {
	Wait    bool
	Timeout time.Duration
}

func (w *waitOptions) addFlags(fs interface {
	BoolVar(*bool, string, bool, string)
	DurationVar(*time.Duration, string, time.Duration, string)
}, what string) {
	fs.BoolVar(&w.Wait, "wait", false, "return only once "+what)
	fs.DurationVar(&w.Timeout, "timeout", 10*time.Minute, "give up waiting after this long (exit 3)")
}

func runUpCmd(ctx context.Context, io IOStreams, args []string) error {
	o, err := parseUp(io, args, os.Getenv)
	if err != nil {
		return err
	}
	a, err := newApp()
	if err != nil {
		return err
	}
	return runUp(ctx, io, a, o)
}

// parseUp reads up's flags, then the files for what they leave out.
func parseUp(io IOStreams, args []string, getenv func(string) string) (upOptions, error) {
	var o upOptions
	fs := upFlags(&o, io)
	if err := parseFlagsOnly(fs, args); err != nil {
		return o, err
	}
	if err := o.applyFiles(fs, getenv); err != nil {
		return o, err
	}
	if err := o.Rollover.validate(fs); err != nil {
		return o, o.fromFiles(err)
	}
	if err := o.Scaling.apply(&o.autoscaleSpec, func(string) bool { return true }); err != nil {
		return o, o.fromFiles(err)
	}
	o.autoscaleSpec.Enabled = o.Autoscale
	if err := validateAutoscale(o.autoscaleSpec); err != nil {
		return o, o.fromFiles(err)
	}
	if o.Backend == "" {
		o.Backend, o.announceBackend = defaultBackend(), true
	}
	return o, nil
}

// upFlags registers up's flags on a new flag set; upKeys gives each its key.
func upFlags(o *upOptions, io IOStreams) *pflag.FlagSet {
	fs := newFlagSet("up", upUsage, io)
	fs.StringVarP(&o.File, "file", "f", "", "cluster file (YAML): settings for what the flags leave out, and the worker types")
	fs.StringVar(&o.Name, "name", "", "cluster name: 1-40 of a-z, 0-9, '-' (required)")
	fs.IntVar(&o.Node.GPUs, "gpus-per-node", 1, "GPUs of each node job (0: CPU-only nodes)")
	fs.IntVar(&o.Node.CPUs, "cpus-per-node", 0, "CPUs of each node job (sbatch --cpus-per-task)")
	fs.StringVar(&o.Node.Mem, "mem", "", "memory of each node job (sbatch --mem, e.g. 64G)")
	fs.StringVar(&o.Node.Partition, "partition", "", "SLURM partition (of the head, and of workers without --worker-partition)")
	fs.StringVar(&o.WorkerPartition, "worker-partition", "", "SLURM partition of worker jobs (grow, --workers, the autoscaler), e.g. a preemptible one; the head stays on --partition")
	fs.StringVar(&o.Node.Account, "account", "", "SLURM account")
	fs.StringVar(&o.Node.QOS, "qos", "", "SLURM QOS")
	fs.StringVar(&o.Node.Time, "time", "", "time limit of the head (workers are capped at the head's time left)")
	fs.StringVar(&o.Node.Constraint, "constraint", "", "SLURM node features (sbatch --constraint)")
	fs.StringArrayVar(&o.Node.SbatchArgs, "sbatch-arg", nil, "extra sbatch option, one #SBATCH line each (repeatable)")
	fs.IntVarP(&o.Workers, "workers", "w", 0, "also submit this many worker jobs")
	fs.StringVar(&o.Setup, "setup", "", "shell lines run in each job before Ray starts (module load, source venv/bin/activate)")
	fs.StringVar(&o.Ray, "ray", "", "the ray executable (default: ray on PATH after --setup)")
	fs.StringVar(&o.LogDir, "log-dir", "", "where job output and Ray logs are kept (default: the cluster directory's logs/)")
	fs.StringVar(&o.PortRange, "port-range", "", "LO-HI: every port a Ray node listens on lies in it (default: free ports in "+raynode.DefaultPortRange.String()+")")
	fs.StringVar(&o.NodeIP, "node-ip", "", "address Ray nodes advertise (default: the node's address in SLURM)")
	fs.StringVar(&o.Interface, "interface", "", "advertise this network interface's address instead")
	fs.IntVar(&o.ObjectStoreMB, "object-store-mb", 0, "cap each node's Ray object store (MiB; default 30% of the job's memory)")
	fs.DurationVar(&o.DrainBefore, "drain-before", 2*time.Minute, "SLURM warns each job this long before its time limit: workers leave Ray cleanly, the head and drivers are warned (0: off)")
	fs.BoolVar(&o.Insecure, "insecure", false, "run without Ray token auth (for Ray < 2.52; anyone reaching the ports can run code as you)")
	fs.BoolVar(&o.DryRun, "dry-run", false, "print the rendered batch script(s); submit nothing")
	o.Wait.addFlags(fs, "the head is healthy and every worker (with --autoscale: --min-workers) has joined Ray")
	fs.BoolVar(&o.Autoscale, "autoscale", false, "follow Ray's demand: submit and release worker jobs from inside the head job (see sraybatch autoscale --help)")
	o.Scaling.addFlags(fs)
	fs.StringVar((*string)(&o.Backend), "backend", "", "slurm, or local: every node a process of this host, no SLURM (default: slurm when sbatch is on PATH, else local)")
	fs.StringVar(&o.MetricsSDDir, "metrics-sd-dir", "", "also write the cluster's Prometheus file_sd targets (0644, no token) into this directory, for a site's Prometheus")
	fs.BoolVar(&o.Foreground, "foreground", false, "local backend: print the dashboard URL and stay until Ctrl+C or SIGTERM, then take the cluster down")
	o.Rollover.addFlags(fs)
	o.Container.addFlags(fs)
	return fs
}

func (o upOptions) validate() error {
	if o.Name == "" {
		return usagef("--name is required, e.g. --name exp1")
	}
	if err := cluster.ValidateName(o.Name); err != nil {
		return usageError{err}
	}
	for flag, v := range map[string]string{
		"--ray": o.Ray, "--log-dir": o.LogDir, "--node-ip": o.NodeIP, "--interface": o.Interface,
		"--mem": o.Node.Mem, "--partition": o.Node.Partition, "--worker-partition": o.WorkerPartition, "--account": o.Node.Account,
		"--qos": o.Node.QOS, "--time": o.Node.Time, "--constraint": o.Node.Constraint, "--port-range": o.PortRange,
		"--metrics-sd-dir": o.MetricsSDDir, "--container": o.Container.Image,
	} {
		if err := templates.SingleLine(flag, v); err != nil {
			return usageError{err}
		}
	}
	if o.Node.GPUs < 0 || o.Node.CPUs < 0 || o.Workers < 0 || o.ObjectStoreMB < 0 || o.DrainBefore < 0 {
		return usagef("--gpus-per-node, --cpus-per-node, --workers, --object-store-mb and --drain-before must not be negative")
	}
	if o.Node.Time != "" {
		if _, _, err := slurm.ParseTimeLimit(o.Node.Time); err != nil {
			return usageError{err}
		}
	}
	if o.PortRange != "" {
		if _, err := raynode.ParsePortRange(o.PortRange); err != nil {
			return usageError{err}
		}
	}
	if o.Setup != "" && !validUTF8NoNUL(o.Setup) {
		return usagef("--setup contains NUL: give shell lines")
	}
	return o.validateBackend()
}

func validUTF8NoNUL(s string) bool {
	for _, r := range s {
		if r == 0 {
			return false
		}
	}
	return true
}

func runUp(ctx context.Context, io IOStreams, a *app, o upOptions) error {
	if err := o.validate(); err != nil {
		return o.fromFiles(err)
	}
	dir := a.store.Cluster(o.Name)
	spec, err := o.spec(dir, a.clock.Now())
	if err != nil {
		return o.fromFiles(err)
	}
	check := containerCheck{opts: o.Container, h: systemContainerHost(), clusterDir: dir.Path, ray: o.Ray, insecure: o.Insecure}
	if spec.Container, err = check.resolve(ctx, io.ErrOut); err != nil {
		return err
	}
	if o.Backend == cluster.BackendLocal {
		localSpec(&spec)
		if o.announceBackend {
			fmt.Fprintln(io.ErrOut, "no sbatch on PATH: using the local backend (every node a process of this host)")
		}
	}
	head := submit.NodeScript(dir, spec, cluster.RoleHead)
	head.Time = o.Node.Time
	if o.DryRun {
		if len(o.settings) > 0 {
			printSettings(io.Out, o.settings, spec.Workers, o.typeDefs)
			fmt.Fprintln(io.Out)
		}
		return dryRun(io.Out, dir, spec, head, o.Workers)
	}
	if err := renderAll(dir, spec, head, o.typeDefs); err != nil { // fail before anything is created
		return o.fromFiles(err)
	}
	if dir, err = a.store.Create(spec, o.Setup); err != nil {
		if errors.Is(err, cluster.ErrExists) {
			return usageError{err}
		}
		return err // an I/O error: not the user's input
	}
	jobID, err := a.submitHead(ctx, dir, spec, head)
	if err != nil {
		os.RemoveAll(dir.Path) // nothing was submitted: leave nothing behind
		return err
	}
	fmt.Fprintf(io.ErrOut, "cluster %s (%s): head job %s submitted\n", spec.Name, spec.ID, jobID)
	var workers []string // job keys
	if o.Workers > 0 {
		if workers, err = a.submitWorkers(ctx, dir, spec, submit.Request{Type: spec.DefaultType(), Head: jobID, Count: o.Workers, TimeLimit: o.Node.Time}); err != nil {
			err = fmt.Errorf("head job %s is submitted, but the workers are not: %w", jobID, err)
			if o.Foreground {
				return a.takeDown(ctx, io, spec, err)
			}
			return err
		}
		fmt.Fprintf(io.ErrOut, "worker jobs %v submitted\n", workers)
	}
	fmt.Fprintln(io.Out, spec.Name)
	if o.Foreground {
		return a.foreground(ctx, io, dir, spec, jobID, o.Wait.Timeout)
	}
	if !o.Wait.Wait {
		return nil
	}
	return a.waitUp(ctx, io, dir, spec, workers, o.Wait.Timeout)
}

// spec is the new cluster's spec, created now, with its directories made
// absolute (jobs run elsewhere); the local backend adapts it after.
func (o upOptions) spec(dir cluster.Dir, now time.Time) (cluster.Spec, error) {
	logDir := o.LogDir
	if logDir == "" {
		logDir = filepath.Join(dir.Path, "logs")
	}
	logDir, err := filepath.Abs(logDir)
	if err != nil {
		return cluster.Spec{}, usagef("--log-dir: %v", err)
	}
	sdDir := o.MetricsSDDir
	if sdDir != "" {
		if sdDir, err = filepath.Abs(sdDir); err != nil {
			return cluster.Spec{}, usagef("--metrics-sd-dir: %v", err)
		}
		if st, err := os.Stat(sdDir); err != nil || !st.IsDir() {
			return cluster.Spec{}, usagef("--metrics-sd-dir %s is not a directory: create it first (a site's Prometheus must be able to read it)", sdDir)
		}
	}
	types, err := config.Resolve(o.typeDefs, o.Node, o.WorkerPartition)
	if err != nil {
		return cluster.Spec{}, usageError{err}
	}
	return cluster.Spec{
		Workers: types, Name: o.Name, ID: uuid.NewString(), Backend: cluster.BackendSlurm, User: cluster.CurrentUser(),
		Created: now.UTC(), Insecure: o.Insecure, Node: o.Node, WorkerPartition: o.WorkerPartition, Ray: o.Ray, LogDir: logDir,
		PortRange: o.PortRange, NodeIP: o.NodeIP, Interface: o.Interface, ObjectStoreMB: o.ObjectStoreMB,
		DrainBeforeS: int(o.DrainBefore / time.Second), Autoscale: o.autoscaleSpec, MetricsSDDir: sdDir,
		Rollover: o.Rollover.spec(),
	}, nil
}

// waitUp is up --wait: the head healthy, then its workers joined (with
// --autoscale, --min-workers of them, or the types' min summed), all
// within one timeout.
func (a *app) waitUp(ctx context.Context, io IOStreams, dir cluster.Dir, spec cluster.Spec, workers []string, timeout time.Duration) error {
	b := a.newBudget(timeout)
	if err := waitForHead(ctx, io, a, dir, spec, b); err != nil {
		return err
	}
	if len(workers) > 0 {
		if err := waitForJobs(ctx, io, a, dir, spec, workers, b); err != nil {
			return err
		}
	}
	if n := spec.MinWorkers(); spec.Autoscale.Enabled && n > len(workers) {
		return waitForWorkerCount(ctx, io, a, dir, spec, n, b)
	}
	return nil
}

// dryRun prints the head's script and the workers': one of each type of a
// cluster file, or (without types) --workers' array.
func dryRun(out io.Writer, dir cluster.Dir, spec cluster.Spec, head templates.Script, workers int) error {
	script, err := templates.Render(head)
	if err != nil {
		return usageError{err}
	}
	fmt.Fprintf(out, "# head job script\n%s", script)
	for i, w := range workerScripts(dir, spec, head, workers) {
		script, err := templates.Render(w)
		if err != nil {
			return usageError{err}
		}
		what := "(the head's job id replaces 0 after submission)"
		if w.WorkerType != "" {
			what = fmt.Sprintf("of type %s %s", spec.Types()[i].Name, what)
		}
		fmt.Fprintf(out, "\n# worker job script %s\n%s", what, script)
	}
	return nil
}

// workerScripts are the worker scripts up may submit, for the dry run and
// to check before anything is created: one per type of a cluster file, or
// --workers' array of the implicit type.
func workerScripts(dir cluster.Dir, spec cluster.Spec, head templates.Script, workers int) []templates.Script {
	if len(spec.Workers) == 0 && workers == 0 {
		return nil
	}
	var scripts []templates.Script
	for i, t := range spec.Types() {
		w := submit.WorkerScript(dir, spec, t)
		// The head's job id is known only after submission; 0 stands in for it.
		w.HeadJob, w.Time, w.Binary = "0", head.Time, head.Binary
		if i == 0 {
			w.Tasks = submit.ArrayTasks(workers)
		}
		scripts = append(scripts, w)
	}
	return scripts
}

// renderAll renders every script up may submit, so bad input fails before
// anything is created.
func renderAll(dir cluster.Dir, spec cluster.Spec, head templates.Script, defs []config.TypeDef) error {
	if _, err := templates.Render(head); err != nil {
		return usageError{err}
	}
	for _, s := range workerScripts(dir, spec, head, 1) {
		if _, err := templates.Render(s); err != nil {
			return ofType(err, s.WorkerType, defs)
		}
	}
	return nil
}

// submitHead copies this binary into the cluster (jobs must not depend on
// PATH, nor change when sraybatch is upgraded mid-run) and submits the head.
func (a *app) submitHead(ctx context.Context, dir cluster.Dir, spec cluster.Spec, s templates.Script) (string, error) {
	if err := os.MkdirAll(spec.LogDir, 0o700); err != nil {
		return "", fmt.Errorf("create log dir: %w", err)
	}
	if err := copySelf(dir.BinaryPath()); err != nil {
		return "", err
	}
	s.Binary = dir.BinaryPath()
	return asUsage(submit.Script(ctx, a.sched(spec), dir, s, false))
}

func copySelf(dst string) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the sraybatch binary: %w", err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		return fmt.Errorf("copy the sraybatch binary: %w", err)
	}
	return cluster.WriteFileAtomic(dst, b, 0o700)
}
