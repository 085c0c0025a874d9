// Package clock is pgwarden's time source: the wall clock, or a virtual
// clock that only moves when told to, so that a month of recorded or
// simulated traffic can be replayed against a live pgwarden in minutes,
// deterministically.
package clock

import (
	"errors"
	"sync"
	"time"
)

// Clock tells the time.
type Clock interface {
	Now() time.Time
}

// Wall is the system clock.
type Wall struct{}

// Now returns time.Now().
func (Wall) Now() time.Time { return time.Now() }

// Virtual is a clock that stands still until Set or Advance moves it, or
// that moves by a fixed step at every reading (SetStep). Safe for concurrent
// use.
type Virtual struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

// NewVirtual returns a virtual clock showing start.
func NewVirtual(start time.Time) *Virtual { return &Virtual{t: start} }

// Now returns the clock's time, first moving it by the step if one is set.
func (v *Virtual) Now() time.Time {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.t = v.t.Add(v.step)
	return v.t
}

// SetStep makes every later Now move the clock forward by d first, so that
// no two readings are equal (d > 0), or stops that (d == 0).
func (v *Virtual) SetStep(d time.Duration) error {
	if d < 0 {
		return ErrBackwards
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.step = d
	return nil
}

// ErrBackwards is returned when a virtual clock would go back in time:
// windows and norms assume time only moves forward.
var ErrBackwards = errors.New("clock: a virtual clock cannot go back in time")

// Set moves the clock to t, which must not be before its time.
func (v *Virtual) Set(t time.Time) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if t.Before(v.t) {
		return ErrBackwards
	}
	v.t = t
	return nil
}

// Advance moves the clock forward by d (d >= 0).
func (v *Virtual) Advance(d time.Duration) error {
	if d < 0 {
		return ErrBackwards
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.t = v.t.Add(d)
	return nil
}
