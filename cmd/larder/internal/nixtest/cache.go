package nixtest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// Upstream serves a directory Nix wrote as an HTTP binary cache.
type Upstream struct {
	URL      string
	srv      *httptest.Server
	requests atomic.Int64
	bytes    atomic.Int64
}

// ServeDir serves dir over HTTP, waiting latency before each answer (a WAN
// round trip).
func ServeDir(t testing.TB, dir string, latency time.Duration) *Upstream {
	return ServeDirThrottled(t, dir, latency, 0)
}

// ServeDirThrottled is ServeDir behind a link of bytesPerSec shared by all
// responses (0 = unlimited).
func ServeDirThrottled(t testing.TB, dir string, latency time.Duration, bytesPerSec int) *Upstream {
	u := &Upstream{}
	var link *rate.Limiter
	if bytesPerSec > 0 {
		link = rate.NewLimiter(rate.Limit(bytesPerSec), 64<<10)
	}
	files := http.FileServer(http.Dir(dir))
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.requests.Add(1)
		time.Sleep(latency)
		files.ServeHTTP(&countingWriter{w, &u.bytes, link}, r)
	}))
	u.URL = u.srv.URL
	t.Cleanup(u.srv.Close)
	return u
}

// Close stops the upstream: later requests find nothing listening.
func (u *Upstream) Close() { u.srv.Close() }

// Requests is how many requests the upstream answered.
func (u *Upstream) Requests() int64 { return u.requests.Load() }

// Bytes is how many body bytes the upstream sent.
func (u *Upstream) Bytes() int64 { return u.bytes.Load() }

type countingWriter struct {
	http.ResponseWriter
	n    *atomic.Int64
	link *rate.Limiter
}

func (c *countingWriter) Write(p []byte) (int, error) {
	written := 0
	for written < len(p) {
		chunk := p[written:]
		if c.link != nil {
			chunk = chunk[:min(len(chunk), c.link.Burst())]
			c.link.WaitN(context.Background(), len(chunk))
		}
		n, err := c.ResponseWriter.Write(chunk)
		written += n
		c.n.Add(int64(n))
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

// PathInfo is one entry of `nix path-info --json` (Nix 2.8 prints an array).
type PathInfo struct {
	Path       string   `json:"path"`
	NarHash    string   `json:"narHash"`
	NarSize    int64    `json:"narSize"`
	References []string `json:"references"`
	Signatures []string `json:"signatures"`
	CA         string   `json:"ca"`
}

// PathInfoOf asks Nix what a store (a URL or "local?root=…") says of paths.
func PathInfoOf(t testing.TB, e *Env, store string, paths ...string) []PathInfo {
	t.Helper()
	out := e.Run(t, "", "nix", append([]string{"path-info", "--json", "--store", store}, paths...)...)
	var infos []PathInfo
	if err := json.Unmarshal([]byte(out), &infos); err != nil {
		t.Fatalf("nix path-info --json: %v\n%s", err, out)
	}
	return infos
}
