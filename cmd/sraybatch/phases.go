package main

import (
	"context"
	"encoding/json"
	"os"
	"sync"
	"time"

	"github.com/sraybatch/sraybatch/internal/scheduler"
)

// benchPhasesEnv names a file that scripts/bench sets to see where a
// command's own milliseconds go: on the way out the command appends one JSON
// line of its timed steps there ("a/b" is step b inside step a). The bench
// computes the process's start and exit as its wall time less the time main
// ran. Unset (everywhere but the bench) every step is a no-op on a nil
// *phases, and nothing is written.
const benchPhasesEnv = "SRAYBATCH_BENCH_PHASES"

// phases sums the time spent in each named step of one command. It reads
// the real clock, not app.clock: it times this process for the bench and
// decides nothing.
type phases struct {
	path  string
	start time.Time

	mu    sync.Mutex // steps run concurrently (status's squeue and file reads)
	order []string
	spent map[string]time.Duration
}

// newPhases starts timing at start (main's entry) when path is set.
func newPhases(path string, start time.Time) *phases {
	if path == "" {
		return nil
	}
	return &phases{path: path, start: start, spent: map[string]time.Duration{}}
}

type phasesKey struct{}

func withPhases(ctx context.Context, p *phases) context.Context {
	if p == nil {
		return ctx
	}
	return context.WithValue(ctx, phasesKey{}, p)
}

func phasesOf(ctx context.Context) *phases {
	p, _ := ctx.Value(phasesKey{}).(*phases)
	return p
}

// step starts timing the named step of ctx's command; call the returned
// func when it ends.
func step(ctx context.Context, name string) func() {
	p := phasesOf(ctx)
	if p == nil {
		return func() {}
	}
	t := time.Now()
	return func() { p.add(name, time.Since(t)) }
}

func (p *phases) add(name string, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.spent[name]; !ok {
		p.order = append(p.order, name)
	}
	p.spent[name] += d
}

// write appends {"main_ms": …, "steps": [[name, ms], …]} to the file. The
// bench reads it; a failure to write only loses the split, so it is ignored.
func (p *phases) write() {
	if p == nil {
		return
	}
	p.mu.Lock()
	steps := make([][2]any, 0, len(p.order))
	for _, n := range p.order {
		steps = append(steps, [2]any{n, ms(p.spent[n])})
	}
	p.mu.Unlock()
	line, _ := json.Marshal(map[string]any{"main_ms": ms(time.Since(p.start)), "steps": steps})
	f, err := os.OpenFile(p.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return
	}
	f.Write(append(line, '\n'))
	f.Close()
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// timedSubmit times the scheduler's Submit (sbatch) as its own step, so the
// bench can tell the scheduler's call from the script and record writes
// around it. Without phases it is the scheduler itself.
func timedSubmit(ctx context.Context, s scheduler.Scheduler) scheduler.Scheduler {
	if phasesOf(ctx) == nil {
		return s
	}
	return submitTimer{s}
}

type submitTimer struct{ scheduler.Scheduler }

func (t submitTimer) Submit(ctx context.Context, script string) (string, error) {
	defer step(ctx, "script+sbatch+record/sbatch")()
	return t.Scheduler.Submit(ctx, script)
}
