package slurm

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/sraybatch/sraybatch/internal/scheduler"
)

// jobFormat is the squeue -o format ParseJobs reads. %i alone identifies
// array tasks ("7_0" with -r, "7_[2-3]" when folded); squeue's %A is each
// task's own job id and %a the account, so neither is asked for. Without a
// width squeue prints each field in full.
const jobFormat = "%i|%j|%u|%T|%r|%N|%b|%M|%L|%l"

const jobFields = 10

// maxArrayTasks bounds how many Jobs the folded array records of one squeue
// output may expand to, so that a corrupt "7_[0-999999999]" cannot exhaust
// memory. SLURM's default MaxArraySize is 1001.
const maxArrayTasks = 100000

// ParseJobs parses squeue -h output in jobFormat, one record per line; blank
// lines are skipped. Folded array records ("7_[2-3,5%4]", printed when -r is
// not given) expand to one Job per task. A line that does not have the
// format's fields, or whose id or times do not parse, is an error naming the
// line.
func ParseJobs(out []byte) ([]scheduler.Job, error) {
	var jobs []scheduler.Job
	budget := maxArrayTasks
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		js, err := parseJobLine(line, budget)
		if err != nil {
			return nil, fmt.Errorf("parse squeue line %q: %w", line, err)
		}
		if len(js) > 1 {
			budget -= len(js)
		}
		jobs = append(jobs, js...)
	}
	return jobs, nil
}

// parseJobLine parses one record; a folded array record may expand to at
// most budget tasks.
func parseJobLine(line string, budget int) ([]scheduler.Job, error) {
	f := strings.Split(line, "|")
	if len(f) < jobFields {
		return nil, fmt.Errorf("got %d fields, want %d", len(f), jobFields)
	}
	if extra := len(f) - jobFields; extra > 0 {
		// Only the job name is free text: any extra '|' belongs to it.
		name := strings.Join(f[1:2+extra], "|")
		f = append([]string{f[0], name}, f[2+extra:]...)
	}
	id, name, user, state, reason, node, gres, elapsed, left, limit :=
		f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9]

	st := strings.Fields(state)
	if len(st) == 0 {
		return nil, errors.New("empty state")
	}
	j := scheduler.Job{
		Name:  name,
		User:  user,
		State: scheduler.JobState(st[0]),
		Node:  node,
		GPUs:  ParseGPUs(gres),
	}
	if reason != "None" && reason != "(null)" {
		j.Reason = reason
	}

	var err error
	if j.Elapsed, _, err = ParseDuration(elapsed); err != nil {
		return nil, fmt.Errorf("elapsed: %w", err)
	}
	if j.TimeLimit, j.Unlimited, err = ParseDuration(limit); err != nil {
		return nil, fmt.Errorf("time limit: %w", err)
	}
	// A finite limit with time left "INVALID" means the job ran past its
	// limit and is about to be killed: 0 left is the truth.
	if j.TimeLeft, _, err = ParseDuration(left); err != nil {
		return nil, fmt.Errorf("time left: %w", err)
	}

	return withIDs(j, strings.TrimSpace(id), budget)
}

// withIDs is j under its job id, or, for a folded array record, one copy
// per task (at most budget).
func withIDs(j scheduler.Job, id string, budget int) ([]scheduler.Job, error) {
	arrayID, task, isArray := strings.Cut(id, "_")
	if !isArray {
		if id == "" {
			return nil, errors.New("empty job id")
		}
		j.ID = id
		return []scheduler.Job{j}, nil
	}
	if !isDigits(arrayID) {
		return nil, fmt.Errorf("bad array job id %q", id)
	}
	j.ArrayJobID = arrayID
	if isDigits(task) {
		j.ID, j.ArrayTaskID = id, task
		return []scheduler.Job{j}, nil
	}
	tasks, err := expandTasks(task, budget)
	if err != nil {
		return nil, fmt.Errorf("array job id %q: %w", id, err)
	}
	jobs := make([]scheduler.Job, len(tasks))
	for i, t := range tasks {
		jobs[i] = j
		jobs[i].ID = arrayID + "_" + t
		jobs[i].ArrayTaskID = t
	}
	return jobs, nil
}

// expandTasks expands a folded task list "[2-3,5,9-10%4]" (the "%4" is the
// array's concurrency limit) to at most limit task ids, in order.
func expandTasks(s string, limit int) ([]string, error) {
	inner, ok1 := strings.CutPrefix(s, "[")
	inner, ok2 := strings.CutSuffix(inner, "]")
	if !ok1 || !ok2 {
		return nil, errors.New("want a task id or [list]")
	}
	inner, _, _ = strings.Cut(inner, "%")
	var tasks []string
	for _, r := range strings.Split(inner, ",") {
		lo, hi, isRange := strings.Cut(r, "-")
		if !isRange {
			hi = lo
		}
		first, err1 := strconv.ParseUint(lo, 10, 32)
		last, err2 := strconv.ParseUint(hi, 10, 32)
		if err1 != nil || err2 != nil || last < first {
			return nil, fmt.Errorf("bad task range %q", r)
		}
		if last-first >= uint64(limit-len(tasks)) {
			return nil, fmt.Errorf("folded array records expand to more than %d tasks", maxArrayTasks)
		}
		for t := first; t <= last; t++ {
			tasks = append(tasks, strconv.FormatUint(t, 10))
		}
	}
	return tasks, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// ParseDuration parses a duration as squeue prints %M, %L and %l: "M:SS",
// "H:MM:SS" or "D-HH:MM:SS" (and the "D:HH:MM:SS" of old releases).
// unlimited reports a word that names no finite duration: "UNLIMITED", and
// also "NOT_SET", "INVALID" (squeue's word for a negative value or one over a
// year) and "N/A"; d is then 0.
func ParseDuration(s string) (d time.Duration, unlimited bool, err error) {
	s = strings.TrimSpace(s)
	switch s {
	case "UNLIMITED", "NOT_SET", "INVALID", "N/A":
		return 0, true, nil
	}
	days, clock, hasDays := strings.Cut(s, "-")
	if !hasDays {
		days, clock = "", s
	}
	parts := strings.Split(clock, ":")
	if !hasDays && len(parts) == 4 {
		days, parts, hasDays = parts[0], parts[1:], true
	}
	if len(parts) < 2 || len(parts) > 3 || (hasDays && len(parts) != 3) {
		return 0, false, fmt.Errorf("bad duration %q", s)
	}
	if hasDays {
		parts = append([]string{days}, parts...)
	}
	// Weigh the fields from the right: seconds, minutes, hours, days.
	weights := []int64{1, 60, 3600, 86400}
	var secs int64
	for i := range parts {
		p := parts[len(parts)-1-i]
		if !isDigits(p) {
			return 0, false, fmt.Errorf("bad duration %q", s)
		}
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil {
			return 0, false, fmt.Errorf("bad duration %q", s)
		}
		if n > (math.MaxInt64/int64(time.Second)-secs)/weights[i] {
			return 0, false, fmt.Errorf("duration %q out of range", s)
		}
		secs += n * weights[i]
	}
	return time.Duration(secs) * time.Second, false, nil
}

// ParseGPUs returns the GPUs in a GRES or TRES-per-node string as squeue %b
// and sinfo Gres/GresUsed print them: "gres:gpu:2" (22.05), "gres/gpu:2"
// (23.02 on), "gres/gpu:a100=2", "gpu:a100:4(S:0-1)", "gpu:2(IDX:0-1)". A
// comma list may name other GRES, which are ignored, and several GPU types,
// which are summed. A GPU entry without a count ("gpu", "gpu:a100") means
// one. GresUsed names the type of GPUs that gres.conf gave no Type as
// "(null)" ("gpu:(null):3(IDX:0-2)", gres.c printing a NULL type name); that
// is a type, not an annotation. "N/A", "(null)" and anything unreadable
// give 0.
func ParseGPUs(tres string) int {
	total := 0
	for _, item := range splitTopLevel(tres) {
		item = cutAnnotation(item)
		item = strings.TrimSpace(item)
		for _, p := range []string{"gres:", "gres/"} {
			item = strings.TrimPrefix(item, p)
		}
		fields := strings.FieldsFunc(item, func(r rune) bool { return r == ':' || r == '=' })
		if len(fields) == 0 || fields[0] != "gpu" {
			continue
		}
		n := 1
		if last := fields[len(fields)-1]; len(fields) > 1 && isDigits(last) {
			v, err := strconv.ParseInt(last, 10, 32)
			if err != nil {
				continue
			}
			n = int(v)
		}
		total += n
	}
	return total
}

// cutAnnotation drops a GRES entry's "(IDX:0-1)" or "(S:0-1)", which says
// where, not how many: everything from the first "(" that does not open a
// "(null)" type name.
func cutAnnotation(item string) string {
	for i := 0; i < len(item); i++ {
		if item[i] == '(' && !strings.HasPrefix(item[i:], "(null)") {
			return item[:i]
		}
	}
	return item
}

// splitTopLevel splits s on commas outside parentheses: "gpu:2(S:0,1),mps:100"
// holds two entries.
func splitTopLevel(s string) []string {
	var out []string
	depth, start := 0, 0
	for i, c := range s {
		switch c {
		case '(':
			depth++
		case ')':
			if depth > 0 {
				depth--
			}
		case ',':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}
