package upstream

import (
	"sync"
	"time"
)

// Breaker stops Larder from paying a timeout per miss while an upstream is
// down: after Threshold consecutive transient failures it opens for Cooldown,
// then lets one probe through; the probe's outcome closes or reopens it.
type Breaker struct {
	Threshold int
	Cooldown  time.Duration

	mu        sync.Mutex
	failures  int
	openUntil time.Time
	probing   bool
	now       func() time.Time
}

// NewBreaker returns a closed breaker.
func NewBreaker(threshold int, cooldown time.Duration) *Breaker {
	return &Breaker{Threshold: threshold, Cooldown: cooldown, now: time.Now}
}

// Allow reports whether a request may go to the upstream now.
func (b *Breaker) Allow() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failures < b.Threshold {
		return true
	}
	if b.now().Before(b.openUntil) || b.probing {
		return false
	}
	b.probing = true // half-open: exactly one probe
	return true
}

// Success closes the breaker.
func (b *Breaker) Success() {
	b.mu.Lock()
	b.failures, b.probing = 0, false
	b.mu.Unlock()
}

// Failure counts a transient failure and opens the breaker at the threshold.
func (b *Breaker) Failure() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures++
	b.probing = false
	if b.failures >= b.Threshold {
		b.openUntil = b.now().Add(b.Cooldown)
	}
}

// State is "closed", "open" or "half-open", for logs and metrics.
func (b *Breaker) State() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.failures < b.Threshold:
		return "closed"
	case b.probing || !b.now().Before(b.openUntil):
		return "half-open"
	}
	return "open"
}

// Healthy reports whether the breaker is closed: used to decide whether a NAR
// that is not on disk can be promised to a client.
func (b *Breaker) Healthy() bool { return b.State() != "open" }
