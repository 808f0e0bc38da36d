package raynode

import "time"

// Clock is the supervisor's time: its records' timestamps and every wait of
// its loops. Tests drive the supervisor on a fake clock, without sleeps.
type Clock interface {
	Now() time.Time
	// After delivers once d has passed, like time.After.
	After(d time.Duration) <-chan time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
