package raynode

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

// The decisions of a head handover (`up --rollover`), each a pure function
// of what the supervisor observed and of the time, like those of decide.go:
// when a head starts handing over, to whom, whether a worker follows the
// cluster into the next generation, and when the next head may publish.

// DefaultRolloverBefore is `up --rollover-before`'s default: a handover by
// promotion must fit in it with room to spare. Its parts: the driver's
// checkpoint and exit (driverCheckpointWait, 60 s), the old head's stop
// (autoscaler, then Ray: about 10 s), the promoted worker leaving its
// generation and starting `ray start --head` (15-30 s measured on the dev
// SLURM), and the time-left check's own lag (rolloverCheckInterval, 20 s):
// about 2 min, doubled for a slow shared filesystem and a busy controller.
// It is longer than --drain-before's default (2 min) so that a head that
// rolls over starts before SLURM's warning would.
const DefaultRolloverBefore = 4 * time.Minute

// DefaultHeadWait is `up --head-wait`'s default: how long a worker keeps its
// GPUs without a head. A promotion takes well under a minute; a submitted
// successor may wait in the queue longer, but idle GPUs cost more than a
// worker resubmitted later.
const DefaultHeadWait = 5 * time.Minute

// DefaultMaxRestarts is `train --max-restarts`'s default: a driver runs
// again after at most this many head handovers (a 24 h partition gives a
// week-long run 7).
const DefaultMaxRestarts = 10

const (
	// rolloverCheckInterval spaces the head's squeue calls for its own time
	// left: SLURM's current word, which `scontrol update TimeLimit=` changes.
	rolloverCheckInterval = 20 * time.Second
	// promoteMargin is what a promoted worker must have left beyond
	// rollover-before: it should serve a while before handing over again.
	promoteMargin = 10 * time.Minute
	// headOverheadMB is the memory a head needs beside a worker's object
	// store: the GCS, the dashboard and its agents, the autoscaler and the
	// supervisor (about 1.5 GB measured with Ray 2.60, with room to grow).
	headOverheadMB = 3 * 1024
	// successorLead multiplies the queue wait seen so far: a successor head
	// job is submitted that many queue waits before the head must hand over.
	successorLead = 2
	// driverCheckpointWait bounds how long the old head waits for drivers
	// to checkpoint and exit before it stops its Ray.
	driverCheckpointWait = time.Minute
)

// rolloverSignals is what the head (or a rollover cluster's driver job:
// driverjob.go) knows of its own job's end at one moment.
type rolloverSignals struct {
	// Job names whose end it is in the why: "head" (the zero value) or "driver".
	Job string
	// Generation is the head's; MaxGenerations bounds them (0: no bound, and
	// always for a driver job, whose end is no generation's).
	Generation, MaxGenerations int
	// TimeLeft is SLURM's last word on the head job's time left; Known is
	// false before the first answer, and for a job without a limit.
	TimeLeft time.Duration
	Known    bool
	// Before is the spec's rollover-before.
	Before time.Duration
	// Warned: SLURM's time-limit warning (SIGUSR1) reached the head.
	Warned bool
	// Preempted: SLURM's preemption reached the head (its SIGTERM).
	Preempted bool
	// Started: a handover is already under way.
	Started bool
}

// rolloverDue decides whether the head starts handing over now, and why;
// a why without a start says that this head will never hand over.
func rolloverDue(s rolloverSignals) (start bool, why string) {
	switch {
	case s.Started:
		return false, ""
	case lastGeneration(s.Generation, s.MaxGenerations) != "":
		return false, lastGeneration(s.Generation, s.MaxGenerations)
	case s.Preempted:
		return true, fmt.Sprintf("the %s job is preempted", s.job())
	case s.Warned:
		return true, fmt.Sprintf("SLURM's time-limit warning reached the %s", s.job())
	case s.Known && s.TimeLeft < s.Before:
		return true, fmt.Sprintf("the %s job has %s left, less than --rollover-before %s", s.job(), s.TimeLeft.Round(time.Second), s.Before)
	}
	return false, ""
}

func (s rolloverSignals) job() string { return orDefault(s.Job, "head") }

// handoverDeadline is when the head handing over at now must be gone:
// SLURM's kill of a preempted head (killAt, KillWait after its SIGTERM:
// seconds, so it waits for no driver), else its time limit by SLURM's last
// word (timeLeft given at timeLeftAt), else rollover-before from now.
func handoverDeadline(now, timeLeftAt time.Time, timeLeft, before time.Duration, killAt time.Time) time.Time {
	end := now.Add(before)
	if !timeLeftAt.IsZero() {
		end = timeLeftAt.Add(timeLeft)
	}
	if !killAt.IsZero() && killAt.Before(end) {
		return killAt
	}
	return end
}

// lastGeneration says why generation g of at most maxGens (0: no bound)
// hands over to none; "" when it may.
func lastGeneration(g, maxGens int) string {
	if maxGens > 0 && g >= maxGens {
		return fmt.Sprintf("generation %d is the last (--max-generations %d): the run ends with this head", g, maxGens)
	}
	return ""
}

// checkTimeLeft reports whether the head asks SLURM for its time left again,
// lastAsked being when it last did (zero: never).
func checkTimeLeft(lastAsked, now time.Time) bool {
	return lastAsked.IsZero() || now.Sub(lastAsked) >= rolloverCheckInterval
}

// candidate is a worker job the head could promote.
type candidate struct {
	Job string
	// TimeLeft is SLURM's word on the job; Unlimited when it has no limit.
	TimeLeft  time.Duration
	Unlimited bool
	// Joined: its Ray node is alive in the head's generation.
	Joined bool
	// Leaving: draining, preempted, or told to leave.
	Leaving bool
	// MemMB is the job's memory, ObjectStoreMB its Ray object store's
	// (0: unknown, which does not rule it out).
	MemMB, ObjectStoreMB int
}

// successorPlan is who becomes the next generation's head.
type successorPlan struct {
	How cluster.GenerationHow
	// Job is the worker to promote (How promoted); "" to submit.
	Job string
	Why string
}

// pickSuccessor picks the worker with the most time left among those that
// can take the head (promotable), else says a successor head job must be
// submitted. Ties go to the smallest job key, so the choice never depends
// on the order candidates were listed in. headMemMB is the head job's own
// memory (0: unknown).
func pickSuccessor(cands []candidate, before time.Duration, headMemMB int) successorPlan {
	var ok []candidate
	var why []string
	for _, c := range cands {
		if reason := promotable(c, before, headMemMB); reason != "" {
			why = append(why, c.Job+": "+reason)
			continue
		}
		ok = append(ok, c)
	}
	if len(ok) == 0 {
		if len(why) == 0 {
			return successorPlan{How: cluster.GenerationSubmitted, Why: "no worker to promote"}
		}
		return successorPlan{How: cluster.GenerationSubmitted, Why: fmt.Sprintf("no worker can take the head (%s)", strings.Join(why, "; "))}
	}
	best := slices.MinFunc(ok, func(a, b candidate) int {
		if c := cmp.Compare(timeLeftOrder(b), timeLeftOrder(a)); c != 0 {
			return c
		}
		return cmp.Compare(a.Job, b.Job)
	})
	return successorPlan{How: cluster.GenerationPromoted, Job: best.Job, Why: fmt.Sprintf("worker %s has the most time left", best.Job)}
}

// promotable returns why c cannot take the head, or "" when it can.
func promotable(c candidate, before time.Duration, headMemMB int) string {
	switch {
	case !c.Joined:
		return "not in Ray"
	case c.Leaving:
		return "leaving"
	case !c.Unlimited && c.TimeLeft < before+promoteMargin:
		return fmt.Sprintf("%s left", c.TimeLeft.Round(time.Second))
	case lacksHeadMemory(c, headMemMB):
		return fmt.Sprintf("%d MB beside its object store (less than the head job's %d MB), a head needs %d", c.MemMB-c.ObjectStoreMB, headMemMB, headOverheadMB)
	}
	return ""
}

// lacksHeadMemory reports a worker whose memory is known to be too small
// for a head: less than the head job that serves now has (0: unknown),
// and too little beside its object store for headOverheadMB. A worker with
// the head's own memory can run what that head runs, whatever
// headOverheadMB estimates: sites size small heads (the dev SLURM's jobs
// get 1000 MB).
func lacksHeadMemory(c candidate, headMemMB int) bool {
	if c.MemMB <= 0 || (headMemMB > 0 && c.MemMB >= headMemMB) {
		return false
	}
	return c.MemMB-c.ObjectStoreMB < headOverheadMB
}

func timeLeftOrder(c candidate) time.Duration {
	if c.Unlimited {
		return time.Duration(1<<63 - 1)
	}
	return c.TimeLeft
}

// submitSuccessorDue reports whether a head that has no worker to promote
// submits its successor head job now: once its time left no longer covers
// rollover-before plus successorLead times the longest queue wait its
// cluster's jobs have seen, so the successor runs before the head must go.
func submitSuccessorDue(timeLeft time.Duration, known bool, before, queueWait time.Duration) bool {
	return known && timeLeft < before+successorLead*queueWait
}

// rejoinSignals is what a worker knows when its head hands over.
type rejoinSignals struct {
	// TimeLeft is SLURM's word on the worker's job; Unlimited: no limit.
	TimeLeft  time.Duration
	Unlimited bool
	// Before is the spec's rollover-before: a worker with less left would
	// have to leave again at once.
	Before time.Duration
	// Leaving: the worker is draining or preempted already.
	Leaving bool
}

// rejoin decides whether a worker moves into the next generation in its own
// job, keeping its GPUs, or ends with its generation; why says it.
func rejoin(s rejoinSignals) (follow bool, why string) {
	switch {
	case s.Leaving:
		return false, "already leaving"
	case s.Unlimited || s.TimeLeft >= s.Before:
		return true, "time left for the next generation"
	}
	return false, fmt.Sprintf("%s left, less than --rollover-before %s", s.TimeLeft.Round(time.Second), s.Before)
}

// sealSignals is what the next head knows of the generation it takes over.
type sealSignals struct {
	// Handover is the old head's record; nil when it wrote none.
	Handover *cluster.Handover
	// OldHeadGone is headVerdict's word on the old head ("" while it serves).
	OldHeadGone string
}

// mayPublish decides whether the next generation may be published: only
// once the old generation is sealed (its autoscaler and Ray stopped) or its
// head is known gone, so that two heads never both accept nodes.
func mayPublish(s sealSignals) (ok bool, why string) {
	switch {
	case s.Handover != nil && s.Handover.Sealed != nil:
		return true, fmt.Sprintf("generation %d sealed", s.Handover.Generation)
	case s.OldHeadGone != "":
		return true, "the old head is " + s.OldHeadGone
	}
	return false, "waiting for the old head to seal its generation"
}

// headWaitOver reports whether a worker without a head has waited long
// enough to give its GPUs back: --head-wait after its head went.
func headWaitOver(headGoneAt, now time.Time, wait time.Duration) bool {
	return !headGoneAt.IsZero() && now.Sub(headGoneAt) >= wait
}
