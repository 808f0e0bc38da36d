// Package slurmtest provides a stub slurm.Runner, so tests drive the real
// scheduler.Scheduler (argv building and parsing included) without SLURM.
//
// Every expected call is registered with its exact argv and its answer. A
// call nobody registered fails the test, and so does a registration no call
// used: stubs cannot pile up and drift away from what the code runs. Each
// Runner belongs to one test, so tests using it may run in parallel.
package slurmtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/sraybatch/sraybatch/slurm"
)

// Runner is a slurm.Runner answering registered calls.
type Runner struct {
	t     testing.TB
	mu    sync.Mutex
	stubs []*stub
}

type stub struct {
	argv   []string
	stdout []byte
	err    error
	used   bool
}

var _ slurm.Runner = (*Runner)(nil)

// NewRunner returns a Runner that checks at t's cleanup that every
// registered call was made.
func NewRunner(t testing.TB) *Runner {
	r := &Runner{t: t}
	t.Cleanup(r.verify)
	return r
}

// Register expects one call with exactly argv and answers it with stdout and
// err. Registering the same argv twice expects two calls, answered in order.
func (r *Runner) Register(argv []string, stdout string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stubs = append(r.stubs, &stub{argv: slices.Clone(argv), stdout: []byte(stdout), err: err})
}

// Fail expects one call with argv and answers it as slurm.ExecRunner does
// for a program that printed stderr and exited with status 1.
func (r *Runner) Fail(argv []string, stderr string) {
	r.Register(argv, "", &slurm.CmdError{Args: slices.Clone(argv), Stderr: stderr, Err: errExit1})
}

var errExit1 = errors.New("exit status 1")

// Run answers argv with the first unused registration for it.
func (r *Runner) Run(_ context.Context, argv []string) ([]byte, error) {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.stubs {
		if !s.used && slices.Equal(s.argv, argv) {
			s.used = true
			return slices.Clone(s.stdout), s.err
		}
	}
	// Errorf, not Fatalf: Run may be called off the test's goroutine.
	r.t.Errorf("slurmtest: unexpected call %q", argv)
	return nil, fmt.Errorf("slurmtest: no stub for %q", argv)
}

func (r *Runner) verify() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.stubs {
		if !s.used {
			r.t.Errorf("slurmtest: registered call never made: %q", s.argv)
		}
	}
}
