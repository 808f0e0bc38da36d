package testci

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// recorder is a testing.TB that keeps what Eventually logs and fails with;
// Fatalf ends only the goroutine, as the testing package's does.
type recorder struct {
	testing.TB
	logs, fatal []string
}

func (r *recorder) Helper() {}
func (r *recorder) Logf(format string, args ...any) {
	r.logs = append(r.logs, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.fatal = append(r.fatal, fmt.Sprintf(format, args...))
	panic(r)
}

// run calls f with r and returns once f returned or failed.
func (r *recorder) run(f func(testing.TB)) {
	defer func() {
		if p := recover(); p != nil && p != r {
			panic(p)
		}
	}()
	f(r)
}

func TestEventuallyWaitsUntilTheConditionHolds(t *testing.T) {
	t.Parallel()
	r := &recorder{TB: t}
	calls := 0
	var took time.Duration
	r.run(func(tb testing.TB) {
		took = Eventually(tb, "third call", time.Second, time.Millisecond, func() bool { calls++; return calls == 3 })
	})
	if calls != 3 || len(r.fatal) != 0 || took <= 0 {
		t.Errorf("calls %d, failures %v, took %v; want 3 calls and no failure", calls, r.fatal, took)
	}
	if len(r.logs) != 1 || !strings.HasPrefix(r.logs[0], "MEASURED") {
		t.Errorf("logs %q, want one MEASURED line through Logf", r.logs)
	}
}

func TestEventuallyErrFailsWithTheLastComplaint(t *testing.T) {
	t.Parallel()
	r := &recorder{TB: t}
	start := time.Now()
	r.run(func(tb testing.TB) {
		EventuallyErr(tb, "never", 30*time.Millisecond, time.Millisecond, func() error { return errors.New("still 2 left") })
	})
	if len(r.fatal) != 1 || !strings.Contains(r.fatal[0], "never: not within 30ms: still 2 left") || time.Since(start) < 30*time.Millisecond {
		t.Errorf("failures %q after %v, want one naming the last complaint after the limit", r.fatal, time.Since(start))
	}
}

func TestPollSaysWhetherItHeld(t *testing.T) {
	t.Parallel()
	if Poll(20*time.Millisecond, time.Millisecond, func() bool { return false }) {
		t.Error("Poll of a condition that never holds returned true")
	}
	n := 0
	if !Poll(time.Second, time.Millisecond, func() bool { n++; return n > 1 }) || n != 2 {
		t.Errorf("Poll returned after %d calls, want true after 2", n)
	}
}
