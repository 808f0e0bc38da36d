package slurm

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sraybatch/sraybatch/internal/scheduler"
)

// Preemption asks SLURM whether job is being preempted: one `scontrol show
// job -o`, and only when it is, one `scontrol show config` for KillWait. A
// job's own supervisor asks this when a SIGTERM arrives, to tell a
// preemption (PreemptTime set) from scancel or `down` (PreemptTime=None).
func (s *cliScheduler) Preemption(ctx context.Context, job string) (scheduler.Preemption, error) {
	out, err := s.run.Run(ctx, []string{s.progs.Scontrol, "show", "job", "-o", job})
	if err != nil {
		return scheduler.Preemption{}, fmt.Errorf("job %s preemption: %w", job, err)
	}
	p, err := ParsePreemption(out, time.Local)
	if err != nil || !p.Preempted() {
		return p, err
	}
	if out, err = s.run.Run(ctx, []string{s.progs.Scontrol, "show", "config"}); err == nil {
		p.KillWait, _ = ParseKillWait(out)
	}
	return p, nil
}

// ParsePreemption reads PreemptTime= and EndTime= from `scontrol show job
// -o` output (the first job's line); SLURM prints its times in the
// controller's local zone, loc. PreemptTime=None (or Unknown) is no
// preemption.
func ParsePreemption(out []byte, loc *time.Location) (scheduler.Preemption, error) {
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if !strings.HasPrefix(line, "JobId=") {
		return scheduler.Preemption{}, fmt.Errorf("no JobId= in scontrol output %q", line)
	}
	var p scheduler.Preemption
	for _, w := range strings.Fields(line) {
		key, value, ok := strings.Cut(w, "=")
		if !ok || (key != "PreemptTime" && key != "EndTime") {
			continue
		}
		t, err := time.ParseInLocation("2006-01-02T15:04:05", value, loc)
		if err != nil {
			continue // None, Unknown
		}
		if key == "PreemptTime" {
			p.At = t
		} else {
			p.End = t
		}
	}
	return p, nil
}

// ParseKillWait reads `KillWait = 10 sec` from `scontrol show config`.
func ParseKillWait(out []byte) (time.Duration, error) {
	for _, line := range strings.Split(string(out), "\n") {
		key, value, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(key) != "KillWait" {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(value), " sec"))
		if err != nil {
			return 0, fmt.Errorf("KillWait %q: %w", value, err)
		}
		return time.Duration(n) * time.Second, nil
	}
	return 0, fmt.Errorf("no KillWait in scontrol show config")
}
