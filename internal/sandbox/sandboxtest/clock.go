// Package sandboxtest holds test doubles for code that uses package sandbox:
// a manual clock that fires sandbox deadlines when a test says so.
package sandboxtest

import (
	"slices"
	"sync"
	"time"

	"github.com/sandpit-dev/sandpit/internal/sandbox"
)

// Clock is a manual sandbox.Clock. Time moves only by Advance, which runs
// the callbacks that fall due synchronously, in deadline order, before it
// returns, so a test sees their effects at once.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*timer
}

var _ sandbox.Clock = (*Clock)(nil)

// NewClock returns a Clock reading start.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

type timer struct {
	c       *Clock
	at      time.Time
	f       func()
	stopped bool
}

// Now implements sandbox.Clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc implements sandbox.Clock.
func (c *Clock) AfterFunc(d time.Duration, f func()) sandbox.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &timer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

// Stop implements sandbox.Timer.
func (t *timer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.stopped {
		return false
	}
	t.stopped = true
	t.c.timers = slices.DeleteFunc(t.c.timers, func(x *timer) bool { return x == t })
	return true
}

// Advance moves the clock forward by d and runs every callback that falls
// due, including ones that those callbacks schedule within d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	target := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		var next *timer
		for _, t := range c.timers {
			if !t.at.After(target) && (next == nil || t.at.Before(next.at)) {
				next = t
			}
		}
		if next == nil {
			c.now = target
			c.mu.Unlock()
			return
		}
		if next.at.After(c.now) {
			c.now = next.at
		}
		next.stopped = true
		c.timers = slices.DeleteFunc(c.timers, func(x *timer) bool { return x == next })
		c.mu.Unlock()
		next.f()
	}
}

// Pending returns how many callbacks are scheduled and not stopped.
func (c *Clock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}
