package slurmtest_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/sraybatch/sraybatch/slurm"
	"github.com/sraybatch/sraybatch/slurm/slurmtest"
)

// recorder is a testing.TB that records failures instead of failing, so the
// stub's own failure reports can be checked.
type recorder struct {
	testing.TB
	errs     []string
	cleanups []func()
}

func (r *recorder) Helper()          {}
func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Errorf(format string, a ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, a...))
}

func (r *recorder) runCleanups() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

func TestRunnerAnswersInOrder(t *testing.T) {
	t.Parallel()
	r := slurmtest.NewRunner(t)
	argv := []string{"squeue", "-h"}
	r.Register(argv, "first", nil)
	r.Register(argv, "second", nil)
	r.Fail([]string{"sbatch", "x"}, "sbatch: error: no")

	for _, want := range []string{"first", "second"} {
		out, err := r.Run(context.Background(), argv)
		if err != nil || string(out) != want {
			t.Fatalf("Run = %q, %v; want %q, nil", out, err, want)
		}
	}
	_, err := r.Run(context.Background(), []string{"sbatch", "x"})
	var ce *slurm.CmdError
	if !errors.As(err, &ce) || ce.Stderr != "sbatch: error: no" {
		t.Fatalf("Fail stub returned %v, want *CmdError with its stderr", err)
	}
}

func TestRunnerUnexpectedCallFails(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	r := slurmtest.NewRunner(rec)
	if _, err := r.Run(context.Background(), []string{"scancel", "7"}); err == nil {
		t.Error("unregistered call returned no error")
	}
	rec.runCleanups()
	if len(rec.errs) != 1 || !strings.Contains(rec.errs[0], `unexpected call ["scancel" "7"]`) {
		t.Errorf("failures = %q, want one naming the unexpected call", rec.errs)
	}
}

func TestRunnerUnusedStubFails(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	r := slurmtest.NewRunner(rec)
	r.Register([]string{"scontrol", "ping"}, "", nil)
	rec.runCleanups()
	if len(rec.errs) != 1 || !strings.Contains(rec.errs[0], `never made: ["scontrol" "ping"]`) {
		t.Errorf("failures = %q, want one naming the unused stub", rec.errs)
	}
}
