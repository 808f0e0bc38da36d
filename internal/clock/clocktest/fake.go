// Package clocktest is a fake clock.Clock for tests of the in-job loops.
package clocktest

import (
	"sync"
	"time"
)

// Fake is a clock.Clock that moves only when the test advances it. calls
// counts After calls, so the test can tell that the supervisor is waiting
// again before it moves time on: no sleeps, no races with real time.
type Fake struct {
	mu      sync.Mutex
	cond    *sync.Cond
	now     time.Time
	calls   int
	waiters []timer
	closed  bool
}

type timer struct {
	at time.Time
	ch chan time.Time
}

// New is a fake clock at start.
func New(start time.Time) *Fake {
	c := &Fake{now: start}
	c.cond = sync.NewCond(&c.mu)
	return c
}

func (c *Fake) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *Fake) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
	} else {
		c.waiters = append(c.waiters, timer{at: c.now.Add(d), ch: ch})
	}
	c.calls++
	c.cond.Broadcast()
	return ch
}

// WaitAfterCalls blocks until After has been called more than n times (the
// supervisor waits again) and returns the count; -1 once the clock is closed.
func (c *Fake) WaitAfterCalls(n int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.calls <= n && !c.closed {
		c.cond.Wait()
	}
	if c.calls <= n {
		return -1
	}
	return c.calls
}

// Close releases WaitAfterCalls for good: the supervisor has returned.
func (c *Fake) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	c.cond.Broadcast()
}

func (c *Fake) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
}
