package mirror

import (
	"sync"
	"time"
)

// negativeCache remembers that every upstream answered 404 for a hash, so a
// client asking again within the TTL is answered without a round trip.
// Transient failures never enter it.
type negativeCache struct {
	ttl time.Duration
	max int

	mu      sync.Mutex
	entries map[string]time.Time // hash → expiry
}

func newNegativeCache(ttl time.Duration, max int) *negativeCache {
	return &negativeCache{ttl: ttl, max: max, entries: map[string]time.Time{}}
}

func (n *negativeCache) has(hash string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	exp, ok := n.entries[hash]
	if ok && time.Now().After(exp) {
		delete(n.entries, hash)
		return false
	}
	return ok
}

func (n *negativeCache) add(hash string) {
	if n.ttl <= 0 {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.entries) >= n.max {
		n.sweep()
	}
	if len(n.entries) < n.max {
		n.entries[hash] = time.Now().Add(n.ttl)
	}
}

// sweep drops expired entries; called with mu held.
func (n *negativeCache) sweep() {
	now := time.Now()
	for h, exp := range n.entries {
		if now.After(exp) {
			delete(n.entries, h)
		}
	}
}

// forget drops an entry, e.g. when a path is pushed or imported.
func (n *negativeCache) forget(hash string) {
	n.mu.Lock()
	delete(n.entries, hash)
	n.mu.Unlock()
}
