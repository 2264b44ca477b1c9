package fwdproxy_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nixlarder/larder/index"
	"github.com/nixlarder/larder/mirror/blob"
	"github.com/nixlarder/larder/mirror/urlcache"
	"github.com/nixlarder/larder/serve/fwdproxy"
)

type fixture struct {
	proxy   *httptest.Server
	origin  *httptest.Server
	fetches atomic.Int64
	ca      *x509.CertPool
	idx     *index.DB
	dir     string
}

// newFixture runs an HTTPS origin serving body and the proxy; tweak adjusts options.
func newFixture(t *testing.T, body []byte, tweak func(*urlcache.Config, *fwdproxy.Options)) *fixture {
	return newFixtureHandler(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(50 * time.Millisecond) // let concurrent clients pile up
		w.Header().Set("Content-Type", "application/x-tar")
		if r.URL.Path == "/private" {
			w.Header().Set("Cache-Control", "private")
		}
		w.Write(body)
	}, tweak)
}

func newFixtureHandler(t *testing.T, origin http.HandlerFunc, tweak func(*urlcache.Config, *fwdproxy.Options)) *fixture {
	f := &fixture{dir: t.TempDir()}
	f.origin = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.fetches.Add(1)
		origin(w, r)
	}))
	t.Cleanup(f.origin.Close)
	idx, err := index.Open(filepath.Join(f.dir, "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	f.idx = idx
	t.Cleanup(func() { idx.Close() })
	blobs, _ := blob.NewDisk(filepath.Join(f.dir, "store"))
	ca, err := fwdproxy.LoadOrCreateCA(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	f.ca = x509.NewCertPool()
	f.ca.AddCert(ca.Leaf)
	cfg := urlcache.Config{Index: idx, Blobs: blobs, Client: f.origin.Client(), MaxSize: 1 << 20}
	_, port, _ := net.SplitHostPort(f.origin.Listener.Addr().String())
	allow, _ := fwdproxy.ParseAllow(fwdproxy.DefaultAllow)
	opts := fwdproxy.Options{CA: ca, Allow: allow, ConnectPorts: []string{port}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if tweak != nil {
		tweak(&cfg, &opts)
	}
	f.proxy = httptest.NewServer(fwdproxy.New(urlcache.New(cfg), opts))
	t.Cleanup(f.proxy.Close)
	return f
}

// client goes through the proxy and trusts Larder's CA, like a Nix builder
// with https_proxy and NIX_SSL_CERT_FILE.
func (f *fixture) client() *http.Client {
	pu, _ := url.Parse(f.proxy.URL)
	return &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: f.ca},
		DisableKeepAlives: true}}
}

func (f *fixture) get(t *testing.T, path string, header ...string) (int, string) {
	req, _ := http.NewRequest("GET", f.origin.URL+path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := f.client().Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return -1, "body cut: " + err.Error() // a fetch that failed after the headers
	}
	return resp.StatusCode, string(b)
}

func TestConcurrentClientsOneOriginFetchThenOffline(t *testing.T) {
	body := strings.Repeat("source tarball ", 1000)
	f := newFixture(t, []byte(body), nil)
	var wg sync.WaitGroup
	var bad atomic.Int64
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code, got := f.get(t, "/src.tar"); code != 200 || got != body {
				bad.Add(1)
			}
		}()
	}
	wg.Wait()
	if bad.Load() != 0 || f.fetches.Load() != 1 {
		t.Fatalf("%d bad answers, %d origin fetches (want 0 and 1)", bad.Load(), f.fetches.Load())
	}
	f.origin.Close() // unreachable origin: the kept copy is replayed
	if code, got := f.get(t, "/src.tar"); code != 200 || got != body {
		t.Fatalf("replay with the origin down: %d", code)
	}
}

func TestNotKept(t *testing.T) {
	f := newFixture(t, []byte("secret"), nil)
	f.get(t, "/with-auth", "Authorization", "Bearer x")
	f.get(t, "/with-auth", "Authorization", "Bearer x")
	f.get(t, "/private")
	f.get(t, "/private")
	if f.fetches.Load() != 4 {
		t.Fatalf("credentialed or private responses were kept: %d origin fetches for 4 requests", f.fetches.Load())
	}
	for _, u := range []string{"/with-auth", "/private"} {
		if _, err := f.idx.URL(t.Context(), f.origin.URL+u); err == nil {
			t.Errorf("%s is in the index", u)
		}
	}
}

func TestOversizeIsCutAndNotKept(t *testing.T) {
	f := newFixture(t, []byte(strings.Repeat("x", 2<<20)), nil)
	if code, body := f.get(t, "/big"); code == 200 {
		t.Fatalf("an oversize response was delivered whole (%d bytes)", len(body))
	}
	if _, err := f.idx.URL(t.Context(), f.origin.URL+"/big"); err == nil {
		t.Fatal("an oversize response was kept")
	}
}

func TestRefusals(t *testing.T) {
	// A client outside the allowed networks.
	f := newFixture(t, []byte("x"), func(_ *urlcache.Config, o *fwdproxy.Options) {
		o.Allow, _ = fwdproxy.ParseAllow([]string{"10.0.0.0/8"})
	})
	if code, _ := f.get(t, "/x"); code == 200 {
		t.Fatal("a client outside --proxy-allow was served")
	}
	plain := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(mustURL(f.proxy.URL))}}
	if resp, err := plain.Get("http://example.invalid/x"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("plain HTTP from a disallowed client: %d", resp.StatusCode)
		}
	}
	// CONNECT to a port that is not allowed.
	g := newFixture(t, []byte("x"), func(_ *urlcache.Config, o *fwdproxy.Options) { o.ConnectPorts = []string{"443"} })
	if code, _ := g.get(t, "/x"); code == 200 || g.fetches.Load() != 0 {
		t.Fatalf("CONNECT to a disallowed port went through (%d, %d fetches)", code, g.fetches.Load())
	}
}

func TestOfflineMissIs504NamingTheURL(t *testing.T) {
	f := newFixture(t, []byte("x"), func(c *urlcache.Config, _ *fwdproxy.Options) { c.Offline = true })
	code, body := f.get(t, "/never-fetched.tar.gz")
	if code != http.StatusGatewayTimeout || !strings.Contains(body, "/never-fetched.tar.gz") || f.fetches.Load() != 0 {
		t.Fatalf("offline miss: %d %q", code, body)
	}
}

func mustURL(s string) *url.URL {
	u, _ := url.Parse(s)
	return u
}

// With --proxy-revalidate the origin is asked conditionally; a 304 serves
// the kept copy.
func TestRevalidateConditionally(t *testing.T) {
	var conditional atomic.Int64
	body := "tarball v1"
	f := newFixtureHandler(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("If-None-Match") == `"v1"` {
			conditional.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", `"v1"`)
		io.WriteString(w, body)
	}, func(c *urlcache.Config, _ *fwdproxy.Options) { c.Revalidate = true })
	for i := 0; i < 2; i++ {
		if code, got := f.get(t, "/t.tar"); code != 200 || got != body {
			t.Fatalf("request %d: %d %q", i, code, got)
		}
	}
	if f.fetches.Load() != 2 || conditional.Load() != 1 {
		t.Fatalf("%d origin requests, %d conditional (want 2 and 1)", f.fetches.Load(), conditional.Load())
	}
}

// The first bytes reach clients while the origin is still sending; a second
// client joins the same fetch; the whole body is then kept.
func TestBodiesStreamWhileFetched(t *testing.T) {
	half := strings.Repeat("a", 256<<10)
	release := make(chan struct{})
	f := newFixtureHandler(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(2*len(half)))
		io.WriteString(w, half)
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, half)
	}, nil)
	start := func() (*http.Response, error) {
		req, _ := http.NewRequest("GET", f.origin.URL+"/slow.tar", nil)
		return f.client().Do(req)
	}
	resp, err := start()
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, len(half))
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != half {
		t.Fatalf("first half before the origin finished: %v", err)
	}
	second, err := start() // joins the fetch in flight
	if err != nil {
		t.Fatal(err)
	}
	close(release)
	rest, _ := io.ReadAll(resp.Body)
	all, _ := io.ReadAll(second.Body)
	resp.Body.Close()
	second.Body.Close()
	if len(rest) != len(half) || len(all) != 2*len(half) || f.fetches.Load() != 1 {
		t.Fatalf("rest %d, second client %d bytes, %d origin fetches", len(rest), len(all), f.fetches.Load())
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if u, err := f.idx.URL(t.Context(), f.origin.URL+"/slow.tar"); err == nil && u.Size == int64(2*len(half)) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the streamed body was not kept")
}

// With --proxy-immutable-after, a kept copy older than that is fetched again.
func TestImmutableAfterExpires(t *testing.T) {
	f := newFixture(t, []byte("v"), func(c *urlcache.Config, _ *fwdproxy.Options) { c.ImmutableAfter = time.Nanosecond })
	for i := 0; i < 2; i++ {
		if code, _ := f.get(t, "/t.tar"); code != 200 {
			t.Fatalf("request %d: %d", i, code)
		}
	}
	if f.fetches.Load() != 2 {
		t.Fatalf("%d origin fetches, want 2 (the kept copy had expired)", f.fetches.Load())
	}
}
