package serve_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixlarder/larder/index"
	"github.com/nixlarder/larder/mirror"
	"github.com/nixlarder/larder/mirror/blob"
	"github.com/nixlarder/larder/mirror/mirrortest"
	"github.com/nixlarder/larder/mirror/nixfmt"
	"github.com/nixlarder/larder/mirror/upstream"
	"github.com/nixlarder/larder/serve"
)

type fixture struct {
	srv   *httptest.Server
	up    *mirrortest.Upstream
	upKey nixfmt.SecretKey
	key   nixfmt.SecretKey
}

func newFixture(t testing.TB) *fixture {
	return newFixtureWith(t, func(*serve.Options, *mirror.Mirror) {})
}

// newFixtureWith lets a test adjust the server options (push settings).
func newFixtureWith(t testing.TB, tweak func(*serve.Options, *mirror.Mirror)) *fixture {
	t.Helper()
	f := &fixture{up: mirrortest.NewUpstream(t)}
	f.upKey, _ = nixfmt.GenerateKey("up-1")
	f.key, _ = nixfmt.GenerateKey("larder-1")
	dir := t.TempDir()
	idx, err := index.Open(filepath.Join(dir, "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idx.Close() })
	blobs, err := blob.NewDisk(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	opts := upstream.DefaultOptions()
	opts.Retries = 0
	c, err := upstream.New(f.up.URL, opts)
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := mirror.New(mirror.Config{Index: idx, Blobs: blobs, Upstreams: []mirror.Upstream{c},
		TrustedKeys: []nixfmt.PublicKey{f.upKey.Public()}, Key: f.key, Log: quiet})
	t.Cleanup(m.Close)
	sopts := serve.Options{Priority: 30, Log: quiet}
	tweak(&sopts, m)
	f.srv = httptest.NewServer(serve.New(m, sopts))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) get(t testing.TB, method, path string, header ...string) (*http.Response, []byte, error) {
	t.Helper()
	req, _ := http.NewRequest(method, f.srv.URL+path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

// narURL fetches p's narinfo through Larder and returns the NAR path it names.
func (f *fixture) narURL(t testing.TB, p *mirrortest.Path) string {
	t.Helper()
	resp, body, err := f.get(t, "GET", "/"+p.Info.HashPart()+".narinfo")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("narinfo: %v %v", resp, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/x-nix-narinfo" {
		t.Fatalf("narinfo Content-Type %q", ct)
	}
	ni, err := nixfmt.ParseNarInfo(body)
	if err != nil {
		t.Fatal(err)
	}
	return "/" + ni.URL
}

func TestCacheInfoAndPubkey(t *testing.T) {
	f := newFixture(t)
	resp, body, _ := f.get(t, "GET", "/nix-cache-info")
	if resp.StatusCode != 200 || string(body) != "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n" {
		t.Fatalf("nix-cache-info: %d %q", resp.StatusCode, body)
	}
	_, body, _ = f.get(t, "GET", "/pubkey")
	if string(body) != f.key.Public().String() {
		t.Fatalf("pubkey %q", body)
	}
}

func TestHostilePathsAre400(t *testing.T) {
	f := newFixture(t)
	for _, p := range []string{
		"/../../etc/passwd.narinfo",
		"/nar/../index.db",
		"/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee.narinfo", // 'e' is not in the nix32 alphabet
		"/short.narinfo",
		"/nar/" + strings.Repeat("0", 52) + ".nar.exe",
		"/nar/" + strings.Repeat("u", 52) + ".nar",
		"/nar/%2e%2e%2fetc",
		"/" + strings.Repeat("a", 600) + ".narinfo",
		"/log/../../secret",
	} {
		resp, _, err := f.get(t, "GET", p)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", p, resp.StatusCode)
		}
	}
	if f.up.Count("/nix-cache-info")+f.up.Count("/etc/passwd") != 0 {
		t.Fatal("a hostile request reached the upstream")
	}
	resp, _, _ := f.get(t, "DELETE", "/nix-cache-info")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("DELETE without a token: %d, want 401", resp.StatusCode)
	}
	resp, _, _ = f.get(t, "POST", "/nix-cache-info")
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", resp.StatusCode)
	}
}

func TestNarRangeHeadAndNoContentEncoding(t *testing.T) {
	f := newFixture(t)
	p := mirrortest.MakePath(t, f.upKey, "ranged", mirrortest.Payload(100_000), "xz")
	f.up.Add(p)
	nar := f.narURL(t, p)
	resp, body, err := f.get(t, "GET", nar)
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, p.File) {
		t.Fatalf("first GET: %v %d bytes", err, len(body))
	}
	if resp.Header.Get("Content-Encoding") != "" || resp.Header.Get("Content-Type") != "application/x-nix-nar" {
		t.Fatalf("headers %v", resp.Header)
	}
	resp, body, _ = f.get(t, "GET", nar, "Range", "bytes=10-19")
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, p.File[10:20]) {
		t.Fatalf("Range: %d %q", resp.StatusCode, body)
	}
	resp, body, _ = f.get(t, "HEAD", nar)
	if resp.StatusCode != 200 || len(body) != 0 || resp.ContentLength != int64(len(p.File)) || resp.Header.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("HEAD: %d len %d %v", resp.StatusCode, resp.ContentLength, resp.Header)
	}
}

// A NAR that fails verification while streaming must reach the client as a
// broken transfer, never as a clean 200.
func TestCorruptNarCutsConnection(t *testing.T) {
	f := newFixture(t)
	p := mirrortest.MakePath(t, f.upKey, "corrupt", mirrortest.Payload(200_000), "zstd")
	f.up.Add(p)
	f.up.SetFault(mirrortest.NarPath(p), mirrortest.CorruptByte)
	nar := f.narURL(t, p)
	resp, body, err := f.get(t, "GET", nar)
	if err == nil && resp.StatusCode == 200 {
		t.Fatalf("corrupt NAR delivered as a clean 200 of %d bytes", len(body))
	}
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !strings.Contains(err.Error(), "EOF") && !strings.Contains(err.Error(), "reset") {
		t.Logf("client error: %v", err)
	}
	// Nothing bad was kept: the next request goes upstream again and, with
	// the fault gone, gets the right bytes.
	f.up.SetFault(mirrortest.NarPath(p), mirrortest.OK)
	resp, body, err = f.get(t, "GET", nar)
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, p.File) {
		t.Fatalf("after fault: %v %d", err, len(body))
	}
	// At least 2: Go's client may itself retry a GET whose reused
	// connection was cut before any response byte.
	if n := f.up.Count(mirrortest.NarPath(p)); n < 2 {
		t.Fatalf("upstream NAR requests %d: the good bytes did not come from upstream", n)
	}
}

func TestUnknownPathIs404Fast(t *testing.T) {
	f := newFixture(t)
	start := time.Now()
	resp, _, _ := f.get(t, "GET", fmt.Sprintf("/%s.narinfo", strings.Repeat("1", 32)))
	if resp.StatusCode != 404 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("404 took %v", d)
	}
}

// A wrong method gets 405 with the methods the route takes.
func TestMethodNotAllowedNamesAllowed(t *testing.T) {
	f := newFixtureWith(t, func(o *serve.Options, m *mirror.Mirror) { o.Tools = fakeTools{} })
	for path, want := range map[string]string{"/nix-cache-info": "GET, HEAD", "/api/prefetch": "POST", "/api/pins": "GET, HEAD"} {
		method := "POST"
		if want == "POST" {
			method = "GET"
		}
		resp, _, _ := f.get(t, method, path)
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != want {
			t.Errorf("%s %s: %d Allow %q, want 405 %q", method, path, resp.StatusCode, resp.Header.Get("Allow"), want)
		}
	}
}

// fakeTools satisfies serve.Tools for routing tests; nothing is called.
type fakeTools struct{ serve.Tools }
