package testci

import (
	"errors"
	"testing"
	"time"
)

// errNotYet is the complaint of a plain boolean condition.
var errNotYet = errors.New("condition not met")

// Poll calls cond every tick until it holds or limit passes, and says whether
// it held. For a test that checks the outcome itself (t.Errorf with its own
// words) or goes on either way.
func Poll(limit, tick time.Duration, cond func() bool) bool {
	return poll(limit, tick, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	}) == nil
}

// poll is the one loop: cond's last complaint, or nil once it held. cond is
// asked once more after the limit, so a slow last call is not wasted.
func poll(limit, tick time.Duration, cond func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(tick)
	}
}

// Eventually polls cond every tick until it holds, and fails t when limit
// passes first. It logs how long the wait took, through t.Logf (the MEASURED
// lines of `go test -v`), and returns it.
func Eventually(t testing.TB, what string, limit, tick time.Duration, cond func() bool) time.Duration {
	t.Helper()
	return EventuallyErr(t, what, limit, tick, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
}

// EventuallyErr is Eventually for a condition that says why it does not hold
// yet: its last complaint goes into the failure.
func EventuallyErr(t testing.TB, what string, limit, tick time.Duration, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	if err := poll(limit, tick, cond); err != nil {
		if errors.Is(err, errNotYet) {
			t.Fatalf("%s: not within %s", what, limit)
		}
		t.Fatalf("%s: not within %s: %v", what, limit, err)
	}
	d := time.Since(start)
	t.Logf("MEASURED %s: %.1f s", what, d.Seconds())
	return d
}
