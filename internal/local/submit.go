package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

// Submit claims the script's GPUs, starts one process per task, records them
// and returns the job id (the array job id for an array).
//
// Every task's process is started first; each waits on its stdin for the
// go-ahead, which carries what only its pid decides (job id, log file). A
// task that gets no go-ahead exits without running anything, so a failed
// submission leaves no job behind.
func (s *Scheduler) Submit(ctx context.Context, scriptPath string) (string, error) {
	d, err := s.prepare(scriptPath)
	if err != nil {
		return "", err
	}
	cwd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("submit: %w", err)
	}
	me, err := Self()
	if err != nil {
		return "", fmt.Errorf("submit: %w", err)
	}
	clusterName, _ := cluster.ClusterOfJobName(d.JobName)
	claimed, err := s.claimGPUs(d, HolderFor(me, clusterName, "submitting"))
	if err != nil {
		return "", err
	}
	started, err := s.startTasks(cwd, max(d.Tasks, 1))
	if err == nil {
		sub := submission{script: scriptPath, d: d, cwd: cwd, cluster: clusterName}
		err = s.goAhead(sub, started, claimed)
	}
	if err != nil {
		abandon(started)
		if s.cfg.Claims != nil {
			s.cfg.Claims.Release(claimed, me)
		}
		return "", err
	}
	for _, t := range started {
		t.stdin.Close()
		go t.cmd.Wait() // reap it if it ends while this process still runs
	}
	return strconv.Itoa(started[0].proc.PID), nil
}

// prepare reads the batch script's directives and readies the registry.
func (s *Scheduler) prepare(scriptPath string) (directives, error) {
	script, err := os.ReadFile(scriptPath)
	if err != nil {
		return directives{}, fmt.Errorf("submit %s: %w", scriptPath, err)
	}
	d, err := parseScript(script)
	if err != nil {
		return directives{}, fmt.Errorf("submit %s: %w", scriptPath, err)
	}
	if len(s.cfg.Launcher) == 0 {
		return directives{}, errors.New("submit: the local backend has no launcher")
	}
	if err := os.MkdirAll(s.cfg.Registry, 0o700); err != nil {
		return directives{}, fmt.Errorf("create the local job registry: %w", err)
	}
	s.prune()
	return d, nil
}

// claimGPUs claims the GPUs of every task of the job for h, all or none.
func (s *Scheduler) claimGPUs(d directives, h Holder) ([]Claimed, error) {
	if d.GPUs <= 0 {
		return nil, nil
	}
	if s.cfg.Claims == nil {
		return nil, errors.New("submit: the local backend has no GPU claims")
	}
	return s.cfg.Claims.Acquire(d.GPUs*max(d.Tasks, 1), h)
}

// task is one started process of a submission, waiting for its go-ahead.
type task struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	proc  Proc
}

// startTasks starts n processes of the launcher in cwd, each leading a
// session of its own. On error it also returns those it started, to abandon.
func (s *Scheduler) startTasks(cwd string, n int) ([]*task, error) {
	var started []*task
	for range n {
		cmd := exec.Command(s.cfg.Launcher[0], s.cfg.Launcher[1:]...)
		cmd.Dir = cwd
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return started, fmt.Errorf("submit: %w", err)
		}
		if err := cmd.Start(); err != nil {
			return started, fmt.Errorf("submit: start %s: %w", s.cfg.Launcher[0], err)
		}
		t := &task{cmd: cmd, stdin: stdin}
		started = append(started, t)
		if t.proc, err = procOf(cmd.Process.Pid); err != nil {
			return started, fmt.Errorf("submit: job process exited at once: %w", err)
		}
	}
	return started, nil
}

// abandon closes each started task's stdin without a go-ahead, so its
// wrapper exits without running anything, and reaps it.
func abandon(started []*task) {
	for _, t := range started {
		t.stdin.Close()
		t.cmd.Wait()
	}
}

// submission is what the tasks of one Submit share.
type submission struct {
	script  string // the batch script's path
	d       directives
	cwd     string
	cluster string
	// user, host and now fill in the records once the tasks are started.
	user, host string
	now        time.Time
}

// goAhead names the started tasks, then hands each its GPUs, records it and
// sends it the go-ahead.
func (s *Scheduler) goAhead(sub submission, started []*task, claimed []Claimed) error {
	sub.host, _ = os.Hostname()
	sub.user = cluster.CurrentUser()
	sub.now = time.Now().UTC()
	pids := make([]int, len(started))
	for i, t := range started {
		pids[i] = t.proc.PID
	}
	names := nameTasks(pids, sub.d.Tasks > 0)
	gpus := claimsPerTask(claimed, len(started), sub.d.GPUs)
	for i, t := range started {
		if err := s.startTask(sub, t, names[i], gpus[i]); err != nil {
			return err
		}
	}
	return nil
}

// startTask hands one task its GPUs, records it and sends it the go-ahead.
func (s *Scheduler) startTask(sub submission, t *task, name taskName, gpus []Claimed) error {
	if s.cfg.Claims != nil {
		if err := s.cfg.Claims.Hand(gpus, HolderFor(t.proc, sub.cluster, name.Key)); err != nil {
			return err
		}
	}
	rec := sub.record(name, t.proc, claimedIDs(gpus))
	os.Remove(exitPath(s.cfg.Registry, name.Key)) // a recycled pid's leftovers
	os.Remove(cancelPath(s.cfg.Registry, name.Key))
	if err := cluster.WriteJSON(s.recordPath(name.Key), rec); err != nil {
		return fmt.Errorf("submit: record job %s: %w", name.Key, err)
	}
	start := jobStart{
		Script: sub.script, Dir: sub.cwd, Log: rec.Log,
		Env:      jobEnv(s.baseEnv(), sub.d, rec, rec.GPUs),
		ExitPath: exitPath(s.cfg.Registry, name.Key),
		Claims:   gpus, Self: t.proc,
	}
	if s.cfg.Claims != nil {
		start.ClaimsDir = s.cfg.Claims.base()
	}
	b, err := json.Marshal(start)
	if err != nil {
		return err
	}
	if _, err := t.stdin.Write(b); err != nil {
		return fmt.Errorf("submit: start job %s: %w", name.Key, err)
	}
	return nil
}

// taskName is how a task is known in the registry and to squeue's filters.
type taskName struct {
	// Key is the task's job id: its pid, or "<array job id>_<task id>".
	Key         string
	ArrayJobID  string
	ArrayTaskID string
}

// nameTasks names the tasks whose processes have pids, as SLURM would: a
// plain job is its pid; an array's job id is its first task's pid, and
// task i of it is "<array job id>_i".
func nameTasks(pids []int, array bool) []taskName {
	names := make([]taskName, len(pids))
	for i, pid := range pids {
		names[i].Key = strconv.Itoa(pid)
		if array {
			names[i].ArrayJobID = strconv.Itoa(pids[0])
			names[i].ArrayTaskID = strconv.Itoa(i)
			names[i].Key = names[i].ArrayJobID + "_" + names[i].ArrayTaskID
		}
	}
	return names
}

// claimsPerTask splits what n tasks of perTask GPUs each claimed together
// into each task's share, in order.
func claimsPerTask(claimed []Claimed, n, perTask int) [][]Claimed {
	shares := make([][]Claimed, n)
	if perTask <= 0 {
		return shares
	}
	for i := range shares {
		shares[i] = claimed[i*perTask : (i+1)*perTask]
	}
	return shares
}

// record is the registry's record of one started task of the submission.
func (sub submission) record(name taskName, p Proc, gpus []string) jobRecord {
	return jobRecord{
		SchemaVersion: cluster.SchemaVersion, Key: name.Key, ArrayJobID: name.ArrayJobID, ArrayTaskID: name.ArrayTaskID,
		Proc: p, Name: sub.d.JobName, User: sub.user, GPUs: gpus,
		Log:    expandOutput(sub.d.Output, strconv.Itoa(p.PID), name.ArrayJobID, name.ArrayTaskID, sub.d.JobName, sub.user, sub.host),
		Script: sub.script, Submitted: sub.now,
	}
}

func claimedIDs(cs []Claimed) []string {
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.ID
	}
	return ids
}

// jobEnv is the environment of a job's batch script: the submitter's, as
// sbatch passes it, with SLURM's job variables for this host.
func jobEnv(base []string, d directives, rec jobRecord, gpus []string) []string {
	env := make([]string, 0, len(base)+12)
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "SLURM_"), strings.HasPrefix(k, "SBATCH_"), strings.HasPrefix(k, "SRUN_"),
			k == "CUDA_VISIBLE_DEVICES", k == "GPU_DEVICE_ORDINAL", k == "SLURMD_NODENAME":
			continue
		}
		env = append(env, kv)
	}
	cpus := d.CPUs
	if cpus <= 0 {
		cpus = runtime.NumCPU()
	}
	id := strconv.Itoa(rec.PID)
	env = append(env,
		"SLURM_JOB_ID="+id, "SLURM_JOBID="+id, "SLURM_JOB_NAME="+rec.Name,
		"SLURM_CPUS_ON_NODE="+strconv.Itoa(cpus), "SLURM_JOB_NUM_NODES=1", "SLURM_NNODES=1",
	)
	if cwd, err := os.Getwd(); err == nil {
		env = append(env, "SLURM_SUBMIT_DIR="+cwd)
	}
	if d.MemMB > 0 {
		env = append(env, "SLURM_MEM_PER_NODE="+strconv.FormatInt(d.MemMB, 10))
	}
	if rec.ArrayJobID != "" {
		env = append(env, "SLURM_ARRAY_JOB_ID="+rec.ArrayJobID, "SLURM_ARRAY_TASK_ID="+rec.ArrayTaskID)
	}
	if len(gpus) > 0 {
		v := strings.Join(gpus, ",")
		env = append(env, "CUDA_VISIBLE_DEVICES="+v, "SLURM_JOB_GPUS="+v)
	} else {
		// SLURM's spelling of "no GPU": CUDA, Ray and sraybatch all read it as none,
		// where an unset variable would let a node see every GPU of the host.
		env = append(env, "CUDA_VISIBLE_DEVICES=NoDevFiles")
	}
	return env
}
