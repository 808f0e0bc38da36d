// Package clock is time as the in-job loops see it: their timestamps and
// every wait. Tests drive the loops on a fake clock, without sleeps.
package clock

import "time"

// Clock tells the time and waits.
type Clock interface {
	Now() time.Time
	// After delivers once d has passed, like time.After.
	After(d time.Duration) <-chan time.Time
}

// System is the real clock.
type System struct{}

func (System) Now() time.Time                         { return time.Now() }
func (System) After(d time.Duration) <-chan time.Time { return time.After(d) }
