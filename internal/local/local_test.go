package local

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/proctree"
	"github.com/sraybatch/sraybatch/internal/scheduler"
	"github.com/sraybatch/sraybatch/internal/testci"
)

type fixture struct {
	sched  *Scheduler
	claims *Claims
	dir    string
}

func newFixture(t *testing.T, gpus int) *fixture {
	t.Helper()
	dir := t.TempDir()
	claims := &Claims{Base: filepath.Join(dir, "claims"), Inventory: fakeInventory(gpus, nil)}
	return &fixture{
		sched:  New(Config{Registry: filepath.Join(dir, "jobs"), Claims: claims, Launcher: []string{os.Args[0], "local-job"}}),
		claims: claims, dir: dir,
	}
}

// script writes a batch script with the given #SBATCH lines and body.
func (f *fixture) script(t *testing.T, directives []string, body string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("#!/bin/bash\n")
	for _, d := range directives {
		b.WriteString("#SBATCH " + d + "\n")
	}
	b.WriteString("#SBATCH --output=" + f.dir + "/out-%j.log\n\n" + body + "\n")
	path := filepath.Join(f.dir, "job-"+strconv.FormatInt(time.Now().UnixNano(), 36)+".sbatch")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (f *fixture) submit(t *testing.T, script string) string {
	t.Helper()
	id, err := f.sched.Submit(context.Background(), script)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.sched.Cancel(context.Background(), []string{id}, scheduler.CancelOptions{}) })
	return id
}

func (f *fixture) jobs(t *testing.T, q scheduler.Query) map[string]scheduler.Job {
	t.Helper()
	jobs, err := f.sched.Jobs(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]scheduler.Job{}
	for _, j := range jobs {
		out[j.ID] = j
	}
	return out
}

func (f *fixture) waitState(t *testing.T, key string, want scheduler.JobState) scheduler.Job {
	t.Helper()
	var j scheduler.Job
	testci.EventuallyErr(t, "job "+key+" "+string(want), 15*time.Second, 50*time.Millisecond, func() error {
		if j = f.jobs(t, scheduler.Query{JobIDs: []string{key}})[key]; j.State != want {
			return fmt.Errorf("job %s is %q, want %s", key, j.State, want)
		}
		return nil
	})
	return j
}

func waitFile(t *testing.T, path, want string) string {
	t.Helper()
	var b []byte
	testci.EventuallyErr(t, path+" holds "+want, 10*time.Second, 50*time.Millisecond, func() error {
		if b, _ = os.ReadFile(path); !strings.Contains(string(b), want) {
			return fmt.Errorf("%s: %q lacks %q", path, b, want)
		}
		return nil
	})
	return string(b)
}

func TestLocalSubmitRunsScriptWithSlurmLikeEnvironment(t *testing.T) {
	f := newFixture(t, 2)
	t.Setenv("SLURM_JOB_ID", "999") // an enclosing job's variables must not leak in
	t.Setenv("CUDA_VISIBLE_DEVICES", "7")
	id := f.submit(t, f.script(t, []string{"--job-name=sray-t1-head", "--gres=gpu:1", "--cpus-per-task=3", "--mem=2G"},
		`echo "job=$SLURM_JOB_ID cuda=$CUDA_VISIBLE_DEVICES gpus=$SLURM_JOB_GPUS cpus=$SLURM_CPUS_ON_NODE mem=$SLURM_MEM_PER_NODE node=${SLURMD_NODENAME-unset} sid=$(ps -o sid= $$ | tr -d ' ')"; echo ready; sleep 300`))
	log := waitFile(t, filepath.Join(f.dir, "out-"+id+".log"), "ready")
	want := "job=" + id + " cuda=GPU-fake-0 gpus=GPU-fake-0 cpus=3 mem=2048 node=unset sid=" + id
	if !strings.Contains(log, want) {
		t.Errorf("job output %q, want %q", log, want)
	}
	j := f.jobs(t, scheduler.Query{Names: []string{"sray-t1-head"}})[id]
	host, _ := os.Hostname()
	if j.State != scheduler.Running || j.Name != "sray-t1-head" || j.GPUs != 1 || j.Node != host || !j.Unlimited {
		t.Errorf("running job: %+v", j)
	}
	if got := f.jobs(t, scheduler.Query{Names: []string{"sray-other-head"}}); len(got) != 0 {
		t.Errorf("name filter selects %v", got)
	}
	gpus, _ := f.claims.State()
	if gpus[0].Holder == nil || strconv.Itoa(gpus[0].Holder.PID) != id || gpus[0].Holder.Cluster != "t1" || !gpus[1].Free() {
		t.Errorf("claims: GPU 0 %+v, GPU 1 free %v; want GPU 0 held by job %s", gpus[0].Holder, gpus[1].Free(), id)
	}

	pid, _ := strconv.Atoi(id)
	members := proctree.Session(pid)
	if err := f.sched.Cancel(context.Background(), []string{id}, scheduler.CancelOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitState(t, id, scheduler.Cancelled)
	for _, p := range members {
		if _, ok := proctree.ReadProcStat(p); ok && p != pid {
			t.Errorf("process %d of the job survives Cancel", p)
		}
	}
	if gpus, _ := f.claims.State(); !gpus[0].Free() {
		t.Errorf("GPU 0 still held after the job ended: %+v", gpus[0].Holder)
	}
}

func TestLocalJobsReportExitStatus(t *testing.T) {
	f := newFixture(t, 0)
	ok := f.submit(t, f.script(t, []string{"--job-name=sray-t2-worker"}, "exit 0"))
	bad := f.submit(t, f.script(t, []string{"--job-name=sray-t2-worker"}, "exit 3"))
	f.waitState(t, ok, scheduler.Completed)
	f.waitState(t, bad, scheduler.Failed)
	b, err := os.ReadFile(exitPath(f.sched.cfg.Registry, bad))
	if err != nil || !strings.Contains(string(b), `"exit_code": 3`) {
		t.Errorf("exit file %s (%v)", b, err)
	}
	if jobs := f.jobs(t, scheduler.Query{JobIDs: []string{"1"}}); len(jobs) != 0 {
		t.Errorf("unknown id selects %v", jobs)
	}
}

func TestLocalJobLeftoversAreKilled(t *testing.T) {
	f := newFixture(t, 0)
	pidFile := filepath.Join(f.dir, "bg.pid")
	// A process that leaves the job's session and outlives the script.
	id := f.submit(t, f.script(t, []string{"--job-name=sray-t3-worker"}, "setsid sleep 300 & echo $! > "+pidFile+"\nsleep 0.2"))
	f.waitState(t, id, scheduler.Completed)
	b, _ := os.ReadFile(pidFile)
	bg, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file: %q", b)
	}
	if st, ok := proctree.ReadProcStat(bg); ok && st.State != 'Z' {
		t.Errorf("background process %d of a finished job still runs", bg)
	}
}

func TestLocalArrayIsOneProcessPerTask(t *testing.T) {
	f := newFixture(t, 3)
	script := f.script(t, []string{"--job-name=sray-t4-worker", "--gres=gpu:1", "--array=0-2"},
		`echo "$SLURM_ARRAY_JOB_ID $SLURM_ARRAY_TASK_ID $SLURM_JOB_ID $CUDA_VISIBLE_DEVICES"; sleep 300`)
	// %j in an array's --output is each task's own id, as in SLURM.
	id := f.submit(t, script)
	jobs := f.jobs(t, scheduler.Query{JobIDs: []string{id}})
	if len(jobs) != 3 {
		t.Fatalf("array job %s: %v", id, jobs)
	}
	gpus := map[string]bool{}
	for i := 0; i < 3; i++ {
		key := id + "_" + strconv.Itoa(i)
		j, ok := jobs[key]
		if !ok || j.State != scheduler.Running || j.ArrayJobID != id || j.ArrayTaskID != strconv.Itoa(i) {
			t.Fatalf("task %s: %+v", key, j)
		}
	}
	var logs []string
	testci.Poll(10*time.Second, 50*time.Millisecond, func() bool {
		logs, _ = filepath.Glob(filepath.Join(f.dir, "out-*.log"))
		return len(logs) >= 3
	})
	for _, l := range logs {
		fields := strings.Fields(waitFile(t, l, " "))
		if len(fields) != 4 || fields[0] != id {
			t.Errorf("%s: %v", l, fields)
			continue
		}
		gpus[fields[3]] = true
	}
	if len(gpus) != 3 {
		t.Errorf("tasks got GPUs %v, want 3 distinct", gpus)
	}
	if _, err := f.sched.Submit(context.Background(), f.script(t, []string{"--job-name=sray-t4-worker", "--gres=gpu:1"}, "sleep 1")); err == nil || !strings.Contains(err.Error(), "GPU 2 held by pid") {
		t.Errorf("a fourth GPU job: %v", err)
	}
	if err := f.sched.Cancel(context.Background(), []string{id}, scheduler.CancelOptions{}); err != nil {
		t.Fatal(err)
	}
	for key, j := range f.jobs(t, scheduler.Query{JobIDs: []string{id}}) {
		if j.State != scheduler.Cancelled {
			t.Errorf("task %s after cancelling the array: %s", key, j.State)
		}
	}
}

func TestLocalKilledJobProcessIsFailedAndFreesItsGPU(t *testing.T) {
	f := newFixture(t, 1)
	// Like sraybatch's scripts, it execs the process that hears of the death.
	id := f.submit(t, f.script(t, []string{"--job-name=sray-t5-head", "--gres=gpu:1"}, "echo up; exec sleep 300"))
	waitFile(t, filepath.Join(f.dir, "out-"+id+".log"), "up")
	pid, _ := strconv.Atoi(id)
	syscall.Kill(pid, syscall.SIGKILL)
	f.waitState(t, id, scheduler.Failed)
	// Its script heard of the death (Pdeathsig) and ended too.
	testci.Poll(5*time.Second, 50*time.Millisecond, func() bool { return len(proctree.Session(pid)) == 0 })
	if left := proctree.Session(pid); len(left) > 0 {
		t.Errorf("processes of a killed job survive: %v", left)
	}
	if gpus, _ := f.claims.State(); !gpus[0].Free() {
		t.Errorf("GPU of a killed job still held: %+v", gpus[0].Holder)
	}
}

func TestLocalCancelEscalatesToSIGKILL(t *testing.T) {
	if testing.Short() && os.Getenv("CI") != "true" {
		t.Skip("waits the 10 s kill grace")
	}
	f := newFixture(t, 0)
	id := f.submit(t, f.script(t, []string{"--job-name=sray-t6-head"}, "trap '' TERM; echo up; while :; do sleep 0.1; done"))
	waitFile(t, filepath.Join(f.dir, "out-"+id+".log"), "up")
	start := time.Now()
	if err := f.sched.Cancel(context.Background(), []string{id}, scheduler.CancelOptions{}); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if took < killWait || took > killWait+5*time.Second {
		t.Errorf("cancel of a job ignoring SIGTERM took %s, want about %s", took, killWait)
	}
	pid, _ := strconv.Atoi(id)
	// SIGKILLed processes take a moment to leave the process table.
	testci.Poll(3*time.Second, 50*time.Millisecond, func() bool { return len(proctree.Session(pid)) == 0 })
	if left := proctree.Session(pid); len(left) > 0 {
		t.Errorf("processes survive SIGKILL: %v", left)
	}
	f.waitState(t, id, scheduler.Cancelled)
}

func TestLocalParseScript(t *testing.T) {
	d, err := parseScript([]byte("#!/bin/bash\n# comment\n#SBATCH --job-name=sray-a-worker\n#SBATCH --gres=gpu:a100:2\n#SBATCH --array=0-3\n#SBATCH --mem=512M\n#SBATCH --output=/l/%A_%a.out\n\necho\n#SBATCH --cpus-per-task=9\n"))
	if err != nil {
		t.Fatal(err)
	}
	if d.JobName != "sray-a-worker" || d.GPUs != 2 || d.Tasks != 4 || d.MemMB != 512 || d.CPUs != 0 || d.Output != "/l/%A_%a.out" {
		t.Errorf("parsed %+v", d)
	}
	if got := expandOutput(d.Output, "12", "10", "2", "n", "u", "h"); got != "/l/10_2.out" {
		t.Errorf("expandOutput = %q", got)
	}
	if _, err := parseScript([]byte("#SBATCH --array=1-3\n#SBATCH --output=x\n")); err == nil {
		t.Errorf("array 1-3 accepted")
	}
}
