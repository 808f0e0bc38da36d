// Package local is sraybatch's backend for one machine without SLURM. It
// implements scheduler.Scheduler, so up, grow, train, status, down and the node
// supervisor run the same code path as on SLURM:
//
//   - Submit runs the rendered batch script with bash as a detached process
//     in a session of its own, with the environment a SLURM batch script
//     gets (SLURM_JOB_ID, SLURM_CPUS_ON_NODE, CUDA_VISIBLE_DEVICES and
//     SLURM_JOB_GPUS naming the GPUs it claimed; no SLURMD_NODENAME), its
//     output in the file its #SBATCH --output line names. The job id is the
//     pid of the job's process (a small sraybatch wrapper, RunJob, around
//     bash). An array of K tasks is K processes; the array job id is the
//     first task's pid, and each task gets SLURM_ARRAY_JOB_ID/TASK_ID, so
//     job keys ("7_0") mean what they mean on SLURM.
//   - Jobs reports a job RUNNING while its process (pid and start time)
//     lives, then COMPLETED, FAILED or CANCELLED from the exit file its
//     wrapper writes and the mark Cancel leaves.
//   - Cancel sends SIGTERM to the job's process group, and SIGKILL to its
//     whole session after 10 s (SLURM's KillWait).
//   - GPUs are claimed per host (Claims), never twice across clusters or users.
//
// Jobs are recorded in a registry directory ($SRAYBATCH_HOME/local/jobs), one
// file per job written once by the submitter, one exit file written by the
// job's wrapper, one cancel mark written by Cancel.
package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/scheduler"
)

// killWait is how long a cancelled job has to end before it is killed.
const killWait = 10 * time.Second

// retention is how long the records of ended jobs are kept (SLURM's MinJobAge).
const retention = 24 * time.Hour

// Partition is what FreeGPUs names the host's one partition.
const Partition = "local"

// Config is what a local Scheduler needs.
type Config struct {
	// Registry is the directory of job records (RegistryDir).
	Registry string
	// Claims hands out GPUs; nil when no job asks for any (the supervisor's
	// head checks only read the registry).
	Claims *Claims
	// Launcher is the command that becomes each job's process and calls
	// RunJob: the sraybatch binary and its hidden local-job command.
	Launcher []string
	// Env is what a job's environment starts from; nil: this process's.
	Env []string
}

// RegistryDir is the job registry of the sraybatch home directory (the
// directory above the store's clusters/).
func RegistryDir(home string) string { return filepath.Join(home, "local", "jobs") }

// Scheduler runs a cluster's jobs as processes of this host.
type Scheduler struct {
	cfg Config
}

var _ scheduler.Scheduler = (*Scheduler)(nil)

// New returns the local backend.
func New(cfg Config) *Scheduler { return &Scheduler{cfg: cfg} }

// jobRecord is a job as Submit recorded it.
type jobRecord struct {
	SchemaVersion int    `json:"schema_version"`
	Key           string `json:"key"`
	ArrayJobID    string `json:"array_job_id,omitempty"`
	ArrayTaskID   string `json:"array_task_id,omitempty"`
	Proc
	Name      string    `json:"name"`
	User      string    `json:"user"`
	GPUs      []string  `json:"gpus,omitempty"`
	Log       string    `json:"log"`
	Script    string    `json:"script"`
	Submitted time.Time `json:"submitted"`
}

// exitRecord is how a job's process ended, written by its wrapper.
type exitRecord struct {
	SchemaVersion int       `json:"schema_version"`
	ExitCode      int       `json:"exit_code"`
	Signal        string    `json:"signal,omitempty"`
	Error         string    `json:"error,omitempty"`
	Ended         time.Time `json:"ended"`
}

func (s *Scheduler) recordPath(key string) string { return filepath.Join(s.cfg.Registry, key+".json") }
func exitPath(registry, key string) string        { return filepath.Join(registry, key+".exit") }
func cancelPath(registry, key string) string      { return filepath.Join(registry, key+".cancel") }

func (s *Scheduler) baseEnv() []string {
	if s.cfg.Env != nil {
		return s.cfg.Env
	}
	return os.Environ()
}

// Jobs lists the recorded jobs q selects.
func (s *Scheduler) Jobs(ctx context.Context, q scheduler.Query) ([]scheduler.Job, error) {
	recs, err := s.records()
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	var jobs []scheduler.Job
	for _, r := range recs {
		if !selects(q, r) {
			continue
		}
		jobs = append(jobs, s.jobOf(r, host))
	}
	return jobs, nil
}

func (s *Scheduler) jobOf(r jobRecord, host string) scheduler.Job {
	j := scheduler.Job{
		ID: r.Key, ArrayJobID: r.ArrayJobID, ArrayTaskID: r.ArrayTaskID, Name: r.Name, User: r.User,
		Node: host, GPUs: len(r.GPUs), Unlimited: true,
	}
	if r.Alive() {
		j.State, j.Elapsed = scheduler.Running, time.Since(r.Submitted).Truncate(time.Second)
		return j
	}
	var ex exitRecord
	exitErr := cluster.ReadJSON(exitPath(s.cfg.Registry, r.Key), &ex)
	_, cancelErr := os.Stat(cancelPath(s.cfg.Registry, r.Key))
	switch {
	case cancelErr == nil:
		j.State = scheduler.Cancelled
	case exitErr == nil && ex.ExitCode == 0:
		j.State = scheduler.Completed
	default: // a non-zero exit, or killed before its wrapper could tell
		j.State = scheduler.Failed
	}
	if exitErr == nil {
		j.Elapsed = ex.Ended.Sub(r.Submitted).Truncate(time.Second)
	}
	return j
}

// selects reports whether q selects a job, as squeue's filters would.
func selects(q scheduler.Query, r jobRecord) bool {
	if q.User != "" && q.User != r.User {
		return false
	}
	if len(q.Names) > 0 && !slices.Contains(q.Names, r.Name) {
		return false
	}
	if len(q.JobIDs) == 0 {
		return true
	}
	for _, id := range q.JobIDs {
		if id == r.Key || (r.ArrayJobID != "" && id == r.ArrayJobID) {
			return true
		}
	}
	return false
}

// records reads every job record; a missing registry holds none.
func (s *Scheduler) records() ([]jobRecord, error) {
	recs, err := cluster.ReadJSONDir[jobRecord](s.cfg.Registry)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list local jobs: %w", err)
	}
	return recs, nil
}

// prune forgets jobs that ended more than retention ago, as SLURM forgets
// them after MinJobAge; the cluster's own node records keep their outcome.
func (s *Scheduler) prune() {
	recs, err := s.records()
	if err != nil {
		return
	}
	for _, r := range recs {
		if r.Alive() {
			continue
		}
		ended := r.Submitted
		if st, err := os.Stat(exitPath(s.cfg.Registry, r.Key)); err == nil {
			ended = st.ModTime()
		}
		if time.Since(ended) > retention {
			os.Remove(s.recordPath(r.Key))
			os.Remove(exitPath(s.cfg.Registry, r.Key))
			os.Remove(cancelPath(s.cfg.Registry, r.Key))
		}
	}
}

// Cancel ends the jobs ids name (an array job id names all its tasks): SIGTERM
// to each job's process group, then, for a job still running after 10 s,
// SIGKILL to every process of its session. With opts.Signal it only sends
// that signal (to the job's process alone with opts.Batch).
func (s *Scheduler) Cancel(ctx context.Context, ids []string, opts scheduler.CancelOptions) error {
	if len(ids) == 0 {
		return nil
	}
	for _, id := range ids {
		if id == "" || strings.HasPrefix(id, "-") {
			return fmt.Errorf("cancel: bad job id %q", id)
		}
	}
	sig := syscall.SIGTERM
	if opts.Signal != "" {
		var err error
		if sig, err = parseSignal(opts.Signal); err != nil {
			return fmt.Errorf("cancel: %w", err)
		}
	}
	recs, err := s.records()
	if err != nil {
		return fmt.Errorf("cancel %s: %w", strings.Join(ids, " "), err)
	}
	var targets []jobRecord
	for _, r := range recs {
		if selects(scheduler.Query{JobIDs: ids}, r) && r.Alive() {
			targets = append(targets, r)
		}
	}
	for _, r := range targets {
		if opts.Signal == "" {
			if err := cluster.WriteFileAtomic(cancelPath(s.cfg.Registry, r.Key), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o600); err != nil {
				return fmt.Errorf("cancel %s: %w", r.Key, err)
			}
		}
		if opts.Batch {
			syscall.Kill(r.PID, sig)
		} else {
			syscall.Kill(-r.PID, sig) // the job's process leads its own group and session
		}
	}
	if opts.Signal != "" {
		return nil
	}
	if waitGone(targets, killWait) {
		return nil
	}
	for _, r := range targets {
		if r.Alive() {
			signalSession(r.PID, syscall.SIGKILL)
		}
	}
	waitGone(targets, 5*time.Second)
	return nil
}

// waitGone waits until no target runs; false when some still does at the limit.
func waitGone(targets []jobRecord, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for {
		alive := false
		for _, r := range targets {
			alive = alive || r.Alive()
		}
		if !alive {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func parseSignal(name string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(name); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	switch strings.TrimPrefix(strings.ToUpper(name), "SIG") {
	case "TERM":
		return syscall.SIGTERM, nil
	case "KILL":
		return syscall.SIGKILL, nil
	case "INT":
		return syscall.SIGINT, nil
	case "HUP":
		return syscall.SIGHUP, nil
	case "USR1":
		return syscall.SIGUSR1, nil
	case "USR2":
		return syscall.SIGUSR2, nil
	case "CONT":
		return syscall.SIGCONT, nil
	case "STOP":
		return syscall.SIGSTOP, nil
	}
	return 0, fmt.Errorf("unknown signal %q", name)
}

// Ping succeeds: the local backend is always there.
func (s *Scheduler) Ping(ctx context.Context) error { return nil }

// NodeAddr is not known locally: local clusters advertise 127.0.0.1, or the
// address of --node-ip/--interface.
func (s *Scheduler) NodeAddr(ctx context.Context, node string) (string, error) {
	return "", errors.New("the local backend has no node addresses: give --node-ip or --interface")
}

// FreeGPUs reports this host as one node of partition "local".
func (s *Scheduler) FreeGPUs(ctx context.Context, partition string) ([]scheduler.NodeGPUs, error) {
	if partition != "" && partition != Partition {
		return nil, nil
	}
	host, _ := os.Hostname()
	n := scheduler.NodeGPUs{Node: host, Partition: Partition, State: "idle"}
	if s.cfg.Claims == nil {
		return []scheduler.NodeGPUs{n}, nil
	}
	gpus, err := s.cfg.Claims.State()
	if err != nil {
		return nil, fmt.Errorf("list node gpus: %w", err)
	}
	n.Total = len(gpus)
	for _, g := range gpus {
		if !g.Free() {
			n.Used++
		}
	}
	if n.Used > 0 {
		n.State = "mixed"
	}
	return []scheduler.NodeGPUs{n}, nil
}

// MaxTime: the local backend has no partitions and no time limits.
func (s *Scheduler) MaxTime(ctx context.Context, partition string) (time.Duration, bool, error) {
	return 0, true, nil
}

// MaxArrayTasks: the local backend starts any number of tasks (its GPUs limit them).
func (s *Scheduler) MaxArrayTasks(ctx context.Context) (int, error) { return 0, nil }
