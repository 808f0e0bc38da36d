package slurm_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/slurm"
)

// helperArg as os.Args[1] makes the test binary act as a fake SLURM program
// (the os/exec tests' re-exec pattern): ExecRunner is tested against a real
// child process without swapping any global.
const helperArg = "slurm-test-helper"

// inheritedVar is set for the whole test process so that a child can show
// whether it inherited it.
const inheritedVar = "SRAYBATCH_SLURM_TEST_INHERITED"

func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == helperArg {
		os.Exit(helper(os.Args[2], os.Args[3:]))
	}
	os.Setenv(inheritedVar, "yes")
	os.Exit(m.Run())
}

// helper acts out one fake program behaviour and returns its exit status.
func helper(mode string, args []string) int {
	switch mode {
	case "echo": // print the arguments
		fmt.Println(strings.Join(args, " "))
		return 0
	case "env": // print one environment variable, or <unset>
		v, ok := os.LookupEnv(args[0])
		if !ok {
			v = "<unset>"
		}
		fmt.Println(v)
		return 0
	case "fail": // print stdout and stderr, exit 1
		fmt.Print(args[0])
		fmt.Fprint(os.Stderr, args[1])
		return 1
	case "hang":
		time.Sleep(time.Minute)
		return 0
	}
	return 2
}

func helperArgv(t *testing.T, mode string, args ...string) []string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{exe, helperArg, mode}, args...)
}

func TestExecRunnerStdout(t *testing.T) {
	t.Parallel()
	out, err := slurm.ExecRunner{}.Run(context.Background(), helperArgv(t, "echo", "a b", "c|d"))
	if err != nil || string(out) != "a b c|d\n" {
		t.Errorf("Run = %q, %v", out, err)
	}
}

func TestExecRunnerUnset(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	out, err := slurm.ExecRunner{}.Run(ctx, helperArgv(t, "env", inheritedVar))
	if err != nil || string(out) != "yes\n" {
		t.Fatalf("without Unset: Run = %q, %v; want the variable inherited", out, err)
	}
	r := slurm.ExecRunner{Unset: []string{"SBATCH_JOB_NAME", inheritedVar}}
	out, err = r.Run(ctx, helperArgv(t, "env", inheritedVar))
	if err != nil || string(out) != "<unset>\n" {
		t.Errorf("with Unset: Run = %q, %v; want the variable removed", out, err)
	}
}

func TestExecRunnerFailure(t *testing.T) {
	t.Parallel()
	argv := helperArgv(t, "fail", "Slurmctld(primary) at vm is DOWN\n",
		"sbatch: error: Batch job submission failed:\n  Invalid partition name specified\n")
	out, err := slurm.ExecRunner{}.Run(context.Background(), argv)
	if string(out) != "Slurmctld(primary) at vm is DOWN\n" {
		t.Errorf("stdout of failed program = %q, want it returned", out)
	}
	var ce *slurm.CmdError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v is not a *CmdError", err)
	}
	prog := argv[0][strings.LastIndex(argv[0], "/")+1:]
	want := prog + " failed: sbatch: error: Batch job submission failed:; Invalid partition name specified"
	if err.Error() != want {
		t.Errorf("Error() = %q\nwant      %q", err, want)
	}
	if ce.Err == nil || ce.Err.Error() != "exit status 1" {
		t.Errorf("CmdError.Err = %v, want the exec exit error", ce.Err)
	}
	if wrapped := fmt.Errorf("submit: %w", err); !errors.As(wrapped, &ce) {
		t.Error("errors.As through %w wrapping failed")
	}
}

func TestExecRunnerNotFound(t *testing.T) {
	t.Parallel()
	_, err := slurm.ExecRunner{}.Run(context.Background(), []string{"/nonexistent/sbatch", "--parsable", "x"})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error %v does not unwrap to fs.ErrNotExist", err)
	}
	if err == nil || !strings.HasPrefix(err.Error(), "sbatch: ") {
		t.Errorf("error %q does not start with the program name", err)
	}
}

func TestExecRunnerContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := slurm.ExecRunner{}.Run(ctx, helperArgv(t, "hang"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v does not say the deadline passed", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Run returned after %v; the program was not killed", d)
	}
}

func TestExecRunnerEmptyArgv(t *testing.T) {
	t.Parallel()
	if _, err := (slurm.ExecRunner{}).Run(context.Background(), nil); err == nil {
		t.Error("Run(nil) succeeded")
	}
}

func TestCmdErrorWithoutStderr(t *testing.T) {
	t.Parallel()
	e := &slurm.CmdError{Args: []string{"/usr/bin/squeue", "-h"}, Err: errors.New("exit status 1")}
	if got, want := e.Error(), "squeue: exit status 1"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got, want := (&slurm.CmdError{Args: []string{"squeue"}}).Error(), "squeue failed"; got != want {
		t.Errorf("Error() with nothing to say = %q, want %q", got, want)
	}
}

func TestDefaultPrograms(t *testing.T) {
	// Not parallel: t.Setenv.
	t.Setenv("SRAYBATCH_SQUEUE", "/site/bin/squeue-wrapper")
	t.Setenv("SRAYBATCH_SINFO", "")
	want := slurm.Programs{
		Sbatch: "sbatch", Squeue: "/site/bin/squeue-wrapper", Scancel: "scancel", Scontrol: "scontrol", Sinfo: "sinfo",
	}
	if got := slurm.DefaultPrograms(); got != want {
		t.Errorf("DefaultPrograms() = %+v, want %+v", got, want)
	}
}

func TestLoginEnv(t *testing.T) {
	t.Parallel()
	inJob := []string{
		"PATH=/usr/bin", "HOME=/home/ana", "USER=ana", "LANG=C.UTF-8", "SRAYBATCH_HOME=/home/ana/.sraybatch",
		"SLURM_JOB_ID=41", "SLURM_JOB_GPUS=0", "SLURMD_NODENAME=node1", "SBATCH_PARTITION=gpu", "SRUN_DEBUG=3",
		"CUDA_VISIBLE_DEVICES=0", "GPU_DEVICE_ORDINAL=0", "ROCR_VISIBLE_DEVICES=0", "CUDA_DEVICE_ORDER=PCI_BUS_ID",
		"RAY_AUTH_MODE=token", "RAY_AUTH_TOKEN_PATH=/c/token", "TMPDIR=/tmp/job41", "ENVIRONMENT=BATCH",
		"MODULEPATH=/opt/modules", "SRAYBATCH_EVENTS=/c/events/9.jsonl", "SLURM_CONF=/etc/slurm/slurm.conf",
	}
	got := slurm.LoginEnv(append(inJob, "RAY_DEDUP_LOGS=0"), "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")
	want := []string{"PATH=/usr/bin", "HOME=/home/ana", "USER=ana", "LANG=C.UTF-8", "SRAYBATCH_HOME=/home/ana/.sraybatch",
		"SBATCH_PARTITION=gpu", "MODULEPATH=/opt/modules", "SRAYBATCH_EVENTS=/c/events/9.jsonl", "SLURM_CONF=/etc/slurm/slurm.conf", "RAY_DEDUP_LOGS=0"}
	if !slices.Equal(got, want) {
		t.Errorf("LoginEnv = %q\nwant %q", got, want)
	}
}
