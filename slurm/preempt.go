package slurm

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sraybatch/sraybatch/internal/scheduler"
)

// Preemption tells what SLURM says of a job that got a SIGTERM: one
// `scontrol show job -o` (its state, requeues, PreemptTime, EndTime) and
// one `scontrol show config` (KillWait). A job's own supervisor asks this
// when a SIGTERM arrives, to tell a preemption from scancel or `down`.
func (s *cliScheduler) Preemption(ctx context.Context, job string) (scheduler.Preemption, error) {
	out, err := s.run.Run(ctx, []string{s.progs.Scontrol, "show", "job", "-o", job})
	if err != nil {
		return scheduler.Preemption{}, fmt.Errorf("job %s preemption: %w", job, err)
	}
	p, err := ParsePreemption(out, time.Local)
	if err != nil {
		return p, fmt.Errorf("job %s preemption: %w", job, err)
	}
	if out, err = s.run.Run(ctx, []string{s.progs.Scontrol, "show", "config"}); err == nil {
		p.KillWait, _ = ParseKillWait(out)
	}
	return p, nil
}

// ParsePreemption reads JobState=, Restarts=, PreemptTime= and EndTime=
// from `scontrol show job -o` output (the first job's line); SLURM prints
// its times in the controller's local zone, loc, and None or Unknown for
// none. Values with spaces (Comment=, Reason=) come after these fields in
// every release, or are not among them.
func ParsePreemption(out []byte, loc *time.Location) (scheduler.Preemption, error) {
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if !strings.HasPrefix(line, "JobId=") {
		return scheduler.Preemption{}, fmt.Errorf("no JobId= in scontrol output %q", line)
	}
	var p scheduler.Preemption
	for _, w := range strings.Fields(line) {
		key, value, _ := strings.Cut(w, "=")
		switch key {
		case "JobState":
			p.State = scheduler.JobState(value)
		case "Restarts":
			p.Restarts, _ = strconv.Atoi(value)
		case "PreemptTime":
			p.At = parseSlurmTime(value, loc)
		case "EndTime":
			p.End = parseSlurmTime(value, loc)
		}
	}
	return p, nil
}

// parseSlurmTime reads one of scontrol's times; zero for None or Unknown.
func parseSlurmTime(value string, loc *time.Location) time.Time {
	t, err := time.ParseInLocation("2006-01-02T15:04:05", value, loc)
	if err != nil {
		return time.Time{}
	}
	return t
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
