package upstream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestResolveKeepsToTheUpstream(t *testing.T) {
	c, err := New("https://cache.example.org/sub", DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	good := map[string]string{
		"nar/abc.nar.xz": "https://cache.example.org/sub/nar/abc.nar.xz",
		"/nar/abc.nar":   "https://cache.example.org/nar/abc.nar",
		"https://cache.example.org/sub/nar/x.nar.zst?v=1": "https://cache.example.org/sub/nar/x.nar.zst?v=1",
	}
	for in, want := range good {
		if got, err := c.Resolve(in); err != nil || got != want {
			t.Errorf("Resolve(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"//evil.example/nar/x", "http://cache.example.org/sub/nar/x",
		"https://evil.example/nar/x", "nar/../../etc/passwd", "file:///etc/passwd", "https://cache.example.org@evil.example/x"} {
		if got, err := c.Resolve(bad); err == nil {
			t.Errorf("Resolve(%q) = %q, want refusal", bad, got)
		}
	}
	if _, err := New("ftp://x", DefaultOptions()); err == nil {
		t.Error("an ftp upstream was accepted")
	}
}

func fastOptions() Options {
	o := DefaultOptions()
	o.StallTimeout = 200 * time.Millisecond
	o.HeaderTimeout = 300 * time.Millisecond
	return o
}

func TestGetRetriesTransientOnly(t *testing.T) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		switch {
		case r.URL.Path == "/missing":
			http.NotFound(w, r)
		case n == 1:
			http.Error(w, "busy", http.StatusServiceUnavailable)
		default:
			io.WriteString(w, "ok")
		}
	}))
	defer srv.Close()
	c, _ := New(srv.URL, fastOptions())
	resp, err := c.Get(context.Background(), srv.URL+"/x")
	if err != nil {
		t.Fatalf("a 503 then 200 should succeed after a retry: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok" || calls.Load() != 2 {
		t.Fatalf("body %q after %d calls", body, calls.Load())
	}
	calls.Store(10)
	if _, err := c.Get(context.Background(), srv.URL+"/missing"); !errors.Is(err, ErrNotFound) || calls.Load() != 11 {
		t.Fatalf("404: %v after %d calls; want ErrNotFound, not retried", err, calls.Load()-10)
	}
	if Transient(err) {
		t.Fatal("404 must not be transient")
	}
}

func TestStalledBodyFails(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.Write([]byte("start"))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()
	c, _ := New(srv.URL, fastOptions())
	resp, err := c.Get(context.Background(), srv.URL+"/nar")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	start := time.Now()
	_, err = io.ReadAll(resp.Body)
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("stalled body: err %v after %v", err, time.Since(start))
	}
}

func TestBreakerOpensAndProbes(t *testing.T) {
	now := time.Unix(0, 0)
	b := NewBreaker(2, time.Minute)
	b.now = func() time.Time { return now }
	b.Failure()
	if !b.Allow() {
		t.Fatal("opened before the threshold")
	}
	b.Failure()
	if b.Allow() || b.Healthy() {
		t.Fatal("still closed at the threshold")
	}
	now = now.Add(time.Minute + time.Second)
	if !b.Allow() {
		t.Fatal("no probe after the cooldown")
	}
	if b.Allow() {
		t.Fatal("a second request got through while the probe runs")
	}
	b.Success()
	if !b.Allow() || !b.Healthy() {
		t.Fatal("a successful probe did not close the breaker")
	}
}
