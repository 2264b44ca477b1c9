package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// throttledFileServer serves dir with each response body limited to
// bytesPerSec, so a test can catch downloads in the middle.
func throttledFileServer(t testing.TB, dir string, bytesPerSec int) string {
	return newCountingServer(t, dir, bytesPerSec).URL
}

// countingServer is a throttled file server that counts requests per path.
type countingServer struct {
	URL string
	mu  sync.Mutex
	n   map[string]int
}

func newCountingServer(t testing.TB, dir string, bytesPerSec int) *countingServer {
	c := &countingServer{n: map[string]int{}}
	fs := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.n[r.URL.Path]++
		c.mu.Unlock()
		fs.ServeHTTP(&throttled{ResponseWriter: w, rate: bytesPerSec}, r)
	}))
	t.Cleanup(srv.Close)
	c.URL = srv.URL
	return c
}

func (c *countingServer) counts() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.n {
		out[k] = v
	}
	return out
}

func (c *countingServer) narRequests() int {
	total := 0
	for p, n := range c.counts() {
		if strings.HasPrefix(p, "/nar/") {
			total += n
		}
	}
	return total
}

type throttled struct {
	http.ResponseWriter
	rate int
}

func (t *throttled) Write(p []byte) (int, error) {
	chunk := max(t.rate/20, 1) // 20 writes a second
	written := 0
	for written < len(p) {
		n, err := t.ResponseWriter.Write(p[written:min(written+chunk, len(p))])
		written += n
		if err != nil {
			return written, err
		}
		if f, ok := t.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		time.Sleep(50 * time.Millisecond)
	}
	return written, nil
}
