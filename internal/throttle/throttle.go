// Package throttle keeps a log line that an event repeats (a refused
// connection, a failing accept, an unreachable provider) to one per
// interval, with how many times it happened since the last: a peer that
// repeats the event without end must not flood the log.
package throttle

import (
	"sync"
	"time"
)

// Throttle counts events and lets one through per interval. The zero
// value lets every event through; Every sets the interval. Safe for
// concurrent use. Its clock is the monotonic one: a wall-clock step (NTP
// on a board without an RTC battery) neither silences nor floods it.
type Throttle struct {
	mu    sync.Mutex
	every time.Duration
	last  time.Time // of the event let through; zero: none yet
	n     int
}

// Every makes a Throttle letting one event through per d.
func Every(d time.Duration) *Throttle { return &Throttle{every: d} }

// Event counts one event and reports whether it is let through, with the
// number of events since the last one let through, this one included.
func (t *Throttle) Event() (n int, through bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n++
	now := time.Now()
	if !t.last.IsZero() && now.Sub(t.last) < t.every {
		return t.n, false
	}
	n, t.last, t.n = t.n, now, 0
	return n, true
}
