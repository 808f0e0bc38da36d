package cluster

import (
	"time"
)

// What a user sees of a rollover cluster's handovers: for each, who handed
// to whom and how, how long the old head took to seal and the next to
// publish, and what the training paid (the gap, the steps lost). `status`,
// `events` and the report all take these figures from here.
//
// The training's side comes from a driver's step_done events. A driver
// writes no generation into them, so a handover is placed among them by
// time: the next generation's publication splits a driver's steps into
// those on the old generation (before it: the old GCS was sealed, so no
// step can finish between the seal and the publication) and those on the
// new one (after it).

// StepMark is one step_done of a driver: its step and when it was written.
type StepMark struct {
	Step int
	At   time.Time
}

// Crossing is a driver's steps around one generation's publication: its
// last step before and its first after (nil: none, or not known).
type Crossing struct {
	Before, After *StepMark
}

// StepCrossings folds a driver's steps, in the order they were written,
// into their crossing of each generation's publication, so that a reader of
// a long event file keeps two steps per handover rather than every step.
// A publication must be made known (Published) before the steps after it
// are folded: readers list the generations before they read the events.
type StepCrossings struct {
	bounds  map[int]time.Time // publication times by generation
	crossed map[int]Crossing
	last    *StepMark
}

// Published makes generation g's publication at known; again is a no-op.
// Published after the fold has passed it, its crossing is unknown.
func (c *StepCrossings) Published(g int, at time.Time) {
	if c.bounds == nil {
		c.bounds, c.crossed = map[int]time.Time{}, map[int]Crossing{}
	}
	if _, ok := c.bounds[g]; ok {
		return
	}
	c.bounds[g] = at
	if c.last != nil && !c.last.At.Before(at) {
		c.crossed[g] = Crossing{}
	}
}

// Step folds one step_done.
func (c *StepCrossings) Step(m StepMark) {
	for g, at := range c.bounds {
		if _, done := c.crossed[g]; !done && !m.At.Before(at) {
			after := m
			c.crossed[g] = Crossing{Before: c.last, After: &after}
		}
	}
	c.last = &m
}

// Reset forgets the steps (their file was truncated or replaced) and keeps
// the publications.
func (c *StepCrossings) Reset() {
	c.last, c.crossed = nil, map[int]Crossing{}
}

// Of is the crossing of generation g's publication so far: Before alone
// while no step came after it.
func (c *StepCrossings) Of(g int) Crossing {
	if x, ok := c.crossed[g]; ok {
		return x
	}
	if at, ok := c.bounds[g]; ok && c.last != nil && c.last.At.Before(at) {
		last := *c.last
		return Crossing{Before: &last}
	}
	return Crossing{}
}

// Known reports whether any publication was made known.
func (c *StepCrossings) Known() bool { return len(c.bounds) > 0 }

// All is every known publication's crossing so far, by generation.
func (c *StepCrossings) All() map[int]Crossing {
	all := make(map[int]Crossing, len(c.bounds))
	for g := range c.bounds {
		all[g] = c.Of(g)
	}
	return all
}

// HandoverCost is what a handover cost the training, from a driver's
// crossing of the next generation's publication: the gap from its last step
// on the old generation to its first on the new one, and the steps lost,
// the last step reached on the old generation minus the step the driver
// resumed from (its checkpoint: the first step on the new generation is
// the one after it), 0 when none were. Both are nil when a side is missing.
func HandoverCost(c Crossing) (gap *time.Duration, stepsLost *int) {
	if c.Before == nil || c.After == nil {
		return nil, nil
	}
	d := c.After.At.Sub(c.Before.At)
	lost := max(c.Before.Step-(c.After.Step-1), 0)
	return &d, &lost
}

// HandoverStatus is one handover as `status` shows it; a figure not known
// (yet) is null.
type HandoverStatus struct {
	// Generation handed over to NextGeneration.
	Generation     int `json:"generation"`
	NextGeneration int `json:"next_generation"`
	// OldHeadJob handed over to NewHeadJob, How: promoted or submitted.
	OldHeadJob string        `json:"old_head_job"`
	NewHeadJob string        `json:"new_head_job"`
	How        GenerationHow `json:"how"`
	Why        string        `json:"why"`
	Started    time.Time     `json:"started"`
	// SealedAfterS is from the start to the old generation's seal,
	// PublishedAfterS to the next generation's publication.
	SealedAfterS    *float64 `json:"sealed_after_s"`
	PublishedAfterS *float64 `json:"published_after_s"`
	// GapS and StepsLost are HandoverCost's, from the driver whose gap was
	// the longest; null without a driver's steps on both sides.
	GapS      *float64 `json:"gap_s"`
	StepsLost *int     `json:"steps_lost"`
}

// HandoverStatusOf is handover h as status shows it: next is the
// generation it handed to (nil: not published yet), crossings the drivers'
// crossings of next's publication.
func HandoverStatusOf(h Handover, next *Generation, crossings []Crossing) HandoverStatus {
	hs := HandoverStatus{Generation: h.Generation, NextGeneration: h.Generation + 1, OldHeadJob: h.HeadJob,
		NewHeadJob: h.Successor, How: h.How, Why: h.Why, Started: h.Started}
	if h.Sealed != nil {
		hs.SealedAfterS = secondsPtr(h.Sealed.Sub(h.Started))
	}
	if next == nil {
		return hs
	}
	if next.Job != "" {
		hs.NewHeadJob = next.Job
	}
	if next.How != "" {
		hs.How = next.How
	}
	hs.PublishedAfterS = secondsPtr(next.Published.Sub(h.Started))
	for _, c := range crossings {
		gap, lost := HandoverCost(c)
		if gap != nil && (hs.GapS == nil || gap.Seconds() > *hs.GapS) {
			hs.GapS, hs.StepsLost = secondsPtr(*gap), lost
		}
	}
	return hs
}

// secondsPtr is d in seconds, to the millisecond.
func secondsPtr(d time.Duration) *float64 {
	s := d.Round(time.Millisecond).Seconds()
	return &s
}
