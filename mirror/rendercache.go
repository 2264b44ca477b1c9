package mirror

import (
	"sync"
	"sync/atomic"
	"time"
)

// Rendering a narinfo costs an index lookup, a look at the NAR file on disk
// and an ed25519 signature; hits are most of a LAN's traffic. Rendered
// narinfos whose NAR is on disk are kept here for renderTTL, and dropped at
// once when this process changes any stored NAR (generation). The TTL bounds
// staleness after changes made by another process (larder gc, verify).
const (
	renderTTL = 30 * time.Second
	renderMax = 200_000
)

type rendered struct {
	body []byte
	gen  uint64
	at   time.Time
}

type renderCache struct {
	gen atomic.Uint64
	mu  sync.RWMutex
	m   map[string]rendered
}

func (c *renderCache) get(hash string) ([]byte, bool) {
	c.mu.RLock()
	r, ok := c.m[hash]
	c.mu.RUnlock()
	if !ok || r.gen != c.gen.Load() || time.Since(r.at) > renderTTL {
		return nil, false
	}
	return r.body, true
}

func (c *renderCache) put(hash string, body []byte, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= renderMax {
		c.m = make(map[string]rendered)
	}
	c.m[hash] = rendered{body: body, gen: gen, at: time.Now()}
}

// invalidate forgets every rendered narinfo (a stored NAR changed).
func (c *renderCache) invalidate() { c.gen.Add(1) }
