// Package slurm implements scheduler.Scheduler over SLURM's command-line
// clients (sbatch, squeue, scancel, scontrol, sinfo). Only this package
// knows their argv layouts and output formats.
//
// A failed program surfaces as a *CmdError carrying SLURM's own stderr, so
// callers can wrap it ("submit worker job: %w") and still show the user why
// SLURM refused. The pure parsers are exported for tests and fuzzing.
package slurm

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sraybatch/sraybatch/internal/oneline"
	"github.com/sraybatch/sraybatch/internal/scheduler"
)

// New returns a Scheduler that runs p's programs through r.
func New(r Runner, p Programs) scheduler.Scheduler {
	return &cliScheduler{run: r, progs: p}
}

type cliScheduler struct {
	run   Runner
	progs Programs
}

var _ scheduler.Scheduler = (*cliScheduler)(nil)

func (s *cliScheduler) Submit(ctx context.Context, scriptPath string) (string, error) {
	out, err := s.run.Run(ctx, []string{s.progs.Sbatch, "--parsable", scriptPath})
	if err != nil {
		var ce *CmdError
		if errors.As(err, &ce) && strings.Contains(ce.Stderr, "Invalid job array specification") {
			err = fmt.Errorf("%w: %w", scheduler.ErrArrayTooLarge, err)
		}
		return "", fmt.Errorf("submit %s: %w", scriptPath, err)
	}
	id, _, _ := strings.Cut(strings.TrimSpace(string(out)), ";")
	if !isDigits(id) {
		return "", fmt.Errorf("submit %s: sbatch printed %q, want a job id", scriptPath, out)
	}
	return id, nil
}

func (s *cliScheduler) Jobs(ctx context.Context, q scheduler.Query) ([]scheduler.Job, error) {
	argv := []string{s.progs.Squeue, "-h", "-r", "--states=all", "-o", jobFormat}
	if q.User != "" {
		argv = append(argv, "-u", q.User)
	}
	for _, f := range []struct {
		flag string
		list []string
	}{{"-n", q.Names}, {"-j", q.JobIDs}} {
		if len(f.list) == 0 {
			continue
		}
		for _, v := range f.list {
			// squeue splits these lists on commas; an empty element would
			// select nothing or, worse, be ignored.
			if v == "" || strings.Contains(v, ",") {
				return nil, fmt.Errorf("list jobs: bad %s value %q", f.flag, v)
			}
		}
		argv = append(argv, f.flag, strings.Join(f.list, ","))
	}
	out, err := s.run.Run(ctx, argv)
	if err != nil {
		var ce *CmdError
		if errors.As(err, &ce) && strings.Contains(ce.Stderr, "Invalid job id specified") {
			return nil, nil
		}
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	return ParseJobs(out)
}

func (s *cliScheduler) Cancel(ctx context.Context, ids []string, opts scheduler.CancelOptions) error {
	if len(ids) == 0 {
		return nil
	}
	argv := []string{s.progs.Scancel}
	if opts.Signal != "" {
		argv = append(argv, "--signal="+opts.Signal)
	}
	if opts.Batch {
		argv = append(argv, "--batch")
	}
	if opts.Full {
		argv = append(argv, "--full")
	}
	for _, id := range ids {
		// scancel would take an id starting with '-' for an option: a
		// corrupt id must not become a signal or --full.
		if id == "" || strings.HasPrefix(id, "-") {
			return fmt.Errorf("cancel: bad job id %q", id)
		}
	}
	argv = append(argv, ids...)
	if _, err := s.run.Run(ctx, argv); err != nil {
		return fmt.Errorf("cancel %s: %w", strings.Join(ids, " "), err)
	}
	return nil
}

func (s *cliScheduler) Ping(ctx context.Context) error {
	// scontrol ping exits non-zero when any controller (a backup, say) is
	// down, so its stdout decides, not its exit status.
	out, err := s.run.Run(ctx, []string{s.progs.Scontrol, "ping"})
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasSuffix(strings.TrimSpace(line), " is UP") {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("ping slurm controller: %w", err)
	}
	return fmt.Errorf("ping slurm controller: no controller is up: %s", oneline.Lines(string(out)))
}

func (s *cliScheduler) NodeAddr(ctx context.Context, node string) (string, error) {
	out, err := s.run.Run(ctx, []string{s.progs.Scontrol, "show", "node", "-o", node})
	if err != nil {
		return "", fmt.Errorf("node %s address: %w", node, err)
	}
	addr, err := ParseNodeAddr(out, node)
	if err != nil {
		return "", fmt.Errorf("node %s address: %w", node, err)
	}
	return addr, nil
}

// ParseNodeAddr returns NodeAddr= from node's line of `scontrol show node -o`
// output. Some values (OS=, Reason=) hold spaces, but they come after
// NodeAddr=, so the first word starting "NodeAddr=" is the field.
func ParseNodeAddr(out []byte, node string) (string, error) {
	for _, line := range strings.Split(string(out), "\n") {
		words := strings.Fields(line)
		if len(words) == 0 || words[0] != "NodeName="+node {
			continue
		}
		for _, w := range words[1:] {
			if addr, ok := strings.CutPrefix(w, "NodeAddr="); ok && addr != "" {
				return addr, nil
			}
		}
		return "", fmt.Errorf("no NodeAddr in %q", line)
	}
	return "", fmt.Errorf("no NodeName=%s in scontrol output %q", node, out)
}

func (s *cliScheduler) FreeGPUs(ctx context.Context, partition string) ([]scheduler.NodeGPUs, error) {
	argv := []string{s.progs.Sinfo, "-h", "-N", "-O", nodeFormat}
	if partition != "" {
		argv = append(argv, "-p", partition)
	}
	out, err := s.run.Run(ctx, argv)
	if err != nil {
		return nil, fmt.Errorf("list node gpus: %w", err)
	}
	return ParseNodeGPUs(out)
}

func (s *cliScheduler) MaxTime(ctx context.Context, partition string) (time.Duration, bool, error) {
	argv := []string{s.progs.Sinfo, "-h", "-o", "%P|%l"}
	if partition != "" {
		argv = append(argv, "-p", partition)
	}
	out, err := s.run.Run(ctx, argv)
	if err != nil {
		return 0, false, fmt.Errorf("partition time limit: %w", err)
	}
	return ParsePartitionMaxTime(out, partition)
}

// ParsePartitionMaxTime reads `sinfo -h -o %P|%l`: the line of partition, or
// of the default partition (its name ends in "*") when partition is empty.
func ParsePartitionMaxTime(out []byte, partition string) (time.Duration, bool, error) {
	for _, line := range strings.Split(string(out), "\n") {
		name, limit, ok := strings.Cut(strings.TrimSpace(line), "|")
		if !ok {
			continue
		}
		isDefault := strings.HasSuffix(name, "*")
		name = strings.TrimSuffix(name, "*")
		if (partition == "" && isDefault) || (partition != "" && name == partition) {
			d, unlimited, err := ParseTimeLimit(limit)
			if err != nil {
				return 0, false, fmt.Errorf("partition %s: time limit %q: %w", name, limit, err)
			}
			return d, unlimited, nil
		}
	}
	if partition == "" {
		return 0, false, fmt.Errorf("partition time limit: sinfo names no default partition")
	}
	return 0, false, fmt.Errorf("partition time limit: no partition %q", partition)
}

func (s *cliScheduler) MaxArrayTasks(ctx context.Context) (int, error) {
	out, err := s.run.Run(ctx, []string{s.progs.Scontrol, "show", "config"})
	if err != nil {
		return 0, fmt.Errorf("read MaxArraySize: %w", err)
	}
	return ParseMaxArrayTasks(out)
}

// ParseMaxArrayTasks reads `scontrol show config`: MaxArraySize (array
// indices run 0..MaxArraySize-1, so it is also the most tasks), lowered by
// SchedulerParameters' max_array_tasks when that is smaller.
func ParseMaxArrayTasks(out []byte) (int, error) {
	limit := -1
	for _, line := range strings.Split(string(out), "\n") {
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		switch key {
		case "MaxArraySize":
			n, err := strconv.Atoi(value)
			if err != nil {
				return 0, fmt.Errorf("MaxArraySize %q: %w", value, err)
			}
			if limit < 0 || n < limit {
				limit = n
			}
		case "SchedulerParameters":
			for _, p := range strings.Split(value, ",") {
				if v, ok := strings.CutPrefix(p, "max_array_tasks="); ok {
					if n, err := strconv.Atoi(v); err == nil && (limit < 0 || n < limit) {
						limit = n
					}
				}
			}
		}
	}
	if limit < 0 {
		return 0, errors.New("scontrol show config names no MaxArraySize")
	}
	return limit, nil
}
