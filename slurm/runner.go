package slurm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/sraybatch/sraybatch/internal/oneline"
)

// Runner executes one program given as an argv slice (never a shell string),
// so no job name, path or partition can be interpreted by a shell.
//
// Run returns the program's stdout. On failure it returns an error; when the
// program ran and exited non-zero the error is a *CmdError, and whatever the
// program printed on stdout is returned too (scontrol ping reports a down
// controller with a non-zero exit and its verdict on stdout).
type Runner interface {
	Run(ctx context.Context, argv []string) (stdout []byte, err error)
}

// ExecRunner runs real programs with os/exec; a non-zero exit becomes
// *CmdError with SLURM's stderr.
type ExecRunner struct {
	// Unset lists environment variables removed from the child's environment.
	// sbatch lets SBATCH_* variables override #SBATCH directives, so an
	// SBATCH_JOB_NAME or SBATCH_DEPENDENCY inherited from the user's shell (or
	// from an enclosing job) would silently rename or chain sraybatch's jobs.
	Unset []string
	// Env, when set, is the child's whole environment instead of this
	// process's (Unset still applies): the head job's autoscaler submits with
	// LoginEnv, so its workers do not inherit the head job's own variables.
	Env []string
}

var _ Runner = ExecRunner{}

// Run starts argv[0] with the remaining arguments and waits for it. Killing
// the program when ctx ends matters here: squeue and sbatch hang for seconds
// when the controller is unreachable.
func (r ExecRunner) Run(ctx context.Context, argv []string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, errors.New("run: empty argv")
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if r.Env != nil || len(r.Unset) > 0 {
		env := r.Env
		if env == nil {
			env = os.Environ()
		}
		cmd.Env = withoutVars(env, r.Unset)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			// "signal: killed" alone would hide why the program was killed.
			err = fmt.Errorf("%w (%w)", ctxErr, err)
		}
		return stdout.Bytes(), &CmdError{Args: argv, Stderr: stderr.String(), Err: err}
	}
	return stdout.Bytes(), nil
}

// withoutVars returns env minus the entries whose name is in names.
func withoutVars(env, names []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		drop := false
		for _, n := range names {
			if name == n {
				drop = true
				break
			}
		}
		if !drop {
			out = append(out, kv)
		}
	}
	return out
}

// CmdError carries the failed argv and the program's own stderr, so a
// rejected sbatch shows SLURM's reason ("Requested node configuration is not
// available") rather than "exit status 1". It unwraps to the exec error.
type CmdError struct {
	Args   []string
	Stderr string
	Err    error
}

// Error returns "<prog> failed: <stderr on one line>", or "<prog>: <err>"
// when the program printed nothing on stderr (for example when it could not
// be started at all).
func (e *CmdError) Error() string {
	prog := "command"
	if len(e.Args) > 0 {
		prog = filepath.Base(e.Args[0])
	}
	if msg := oneline.Lines(e.Stderr); msg != "" {
		return prog + " failed: " + msg
	}
	if e.Err == nil {
		return prog + " failed"
	}
	return prog + ": " + e.Err.Error()
}

func (e *CmdError) Unwrap() error { return e.Err }

// LoginEnv is env, taken inside a job, as a login shell would have had it:
// without the variables SLURM sets for the job (SLURM_*, SRUN_*, SALLOC_*),
// the GPUs it was given (CUDA_VISIBLE_DEVICES and kin), its TMPDIR, and the
// variables its batch script exported (scriptExports: the job's own Ray
// settings). sbatch copies the submitter's environment into the new job (its
// default --export=ALL), so a job submitted from inside another would
// otherwise start with the other job's GPUs, temp dir and Ray settings. What
// the user's shell exported (their RAY_* tuning, SRAYBATCH_HOME) stays, as a
// `grow` from that shell would pass it.
func LoginEnv(env []string, scriptExports ...string) []string {
	out := make([]string, 0, len(env))
next:
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if jobVar(name) {
			continue
		}
		for _, x := range scriptExports {
			if name == x {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

func jobVar(name string) bool {
	switch name {
	case "SLURM_CONF", "SLURM_CLUSTERS", "SLURM_TIME_FORMAT":
		return false // the clients' own settings: which SLURM to ask, and how
	}
	// SBATCH_* stay: they came from the user's shell, and a `grow` from the
	// login node honours them too (but for ExecRunner.Unset's).
	for _, p := range []string{"SLURM_", "SRUN_", "SALLOC_"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	switch name {
	case "CUDA_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES",
		"CUDA_DEVICE_ORDER", "SLURMD_NODENAME", "TMPDIR", "ENVIRONMENT":
		return true
	}
	return false
}
