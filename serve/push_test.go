package serve_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/nixlarder/larder/mirror"
	"github.com/nixlarder/larder/mirror/mirrortest"
	"github.com/nixlarder/larder/mirror/nixfmt"
	"github.com/nixlarder/larder/serve"
)

const token = "s3cret-token"

func pushFixture(t *testing.T, maxSize int64) *fixture {
	return newFixtureWith(t, func(o *serve.Options, m *mirror.Mirror) {
		o.Push, o.PushTokens, o.PushMaxSize = m, []string{token}, maxSize
	})
}

func (f *fixture) put(t *testing.T, path string, body []byte, auth string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, f.srv.URL+path, bytes.NewReader(body))
	if auth != "" {
		req.SetBasicAuth("nix", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(msg)
}

// upload pushes a path the way nix copy does: NAR file, then narinfo.
func (f *fixture) upload(t *testing.T, p *mirrortest.Path, info []byte, auth string) (int, string) {
	if code, msg := f.put(t, "/"+p.Info.URL, p.File, auth); code != http.StatusNoContent {
		return code, msg
	}
	return f.put(t, "/"+p.Info.HashPart()+".narinfo", info, auth)
}

func TestPushAcceptsVerifiedUploads(t *testing.T) {
	f := pushFixture(t, 1<<30)
	p := mirrortest.MakePath(t, f.upKey, "pushed", mirrortest.Payload(100_000), "xz")
	if code, msg := f.upload(t, p, p.Info.Bytes(), token); code != http.StatusNoContent {
		t.Fatalf("push: %d %s", code, msg)
	}
	resp, body, _ := f.get(t, "GET", "/"+p.Info.HashPart()+".narinfo")
	ni, err := nixfmt.ParseNarInfo(body)
	if resp.StatusCode != 200 || err != nil || !nixfmt.VerifyNarInfo(ni, []nixfmt.PublicKey{f.key.Public()}) ||
		!nixfmt.VerifyNarInfo(ni, []nixfmt.PublicKey{f.upKey.Public()}) {
		t.Fatalf("pushed narinfo must keep its Sig and get Larder's: %d\n%s", resp.StatusCode, body)
	}
	resp, nar, _ := f.get(t, "GET", "/"+ni.URL)
	if resp.StatusCode != 200 || !bytes.Equal(nar, p.File) {
		t.Fatalf("pushed NAR: %d, %d bytes", resp.StatusCode, len(nar))
	}
	listing := []byte(`{"version":1,"root":{"type":"regular","size":3}}`)
	logText := []byte("building...\ndone\n")
	drvLog := "/log/" + strings.Repeat("1", 32) + "-pushed.drv"
	if code, _ := f.put(t, "/"+p.Info.HashPart()+".ls", listing, token); code != http.StatusNoContent {
		t.Fatalf("PUT .ls: %d", code)
	}
	if code, _ := f.put(t, drvLog, logText, token); code != http.StatusNoContent {
		t.Fatalf("PUT log: %d", code)
	}
	if _, got, _ := f.get(t, "GET", "/"+p.Info.HashPart()+".ls"); !bytes.Equal(got, listing) {
		t.Fatalf("pushed .ls served as %q", got)
	}
	if _, got, _ := f.get(t, "GET", drvLog); !bytes.Equal(got, logText) {
		t.Fatalf("pushed log served as %q", got)
	}
	if f.up.Total() != 0 {
		t.Fatal("a push consulted the upstream")
	}
}

func TestPushRefuses(t *testing.T) {
	f := pushFixture(t, 300_000)
	mk := func(name string, size int) *mirrortest.Path {
		return mirrortest.MakePath(t, f.upKey, name, mirrortest.Payload(size), "zstd")
	}
	a, b := mk("a", 50_000), mk("b", 50_000)

	for _, auth := range []string{"", "wrong"} {
		if code, _ := f.upload(t, a, a.Info.Bytes(), auth); code != http.StatusUnauthorized {
			t.Errorf("auth %q: %d, want 401", auth, code)
		}
	}
	// b's narinfo naming a's uploaded NAR: the bytes do not match.
	f.put(t, "/"+a.Info.URL, a.File, token)
	swapped := *b.Info
	swapped.URL = a.Info.URL
	if code, msg := f.put(t, "/"+b.Info.HashPart()+".narinfo", swapped.Bytes(), token); code != 400 || !strings.Contains(msg, b.Info.StorePath) {
		t.Errorf("mismatching NAR: %d %s", code, msg)
	}
	// A narinfo whose NAR was never uploaded.
	c := mk("c", 1000)
	if code, msg := f.put(t, "/"+c.Info.HashPart()+".narinfo", c.Info.Bytes(), token); code != 400 || !strings.Contains(msg, "not uploaded") {
		t.Errorf("missing NAR: %d %s", code, msg)
	}
	// A reference that is not present.
	d := mirrortest.MakePath(t, f.upKey, "d", mirrortest.Payload(1000), "zstd", c.Basename())
	if code, msg := f.upload(t, d, d.Info.Bytes(), token); code != 400 || !strings.Contains(msg, "reference") {
		t.Errorf("absent reference: %d %s", code, msg)
	}
	// Traversal and nonsense targets.
	for _, path := range []string{"/nar/../../etc/passwd", "/" + strings.Repeat("e", 32) + ".narinfo", "/etc/passwd", "/nar/x.nar"} {
		if code, _ := f.put(t, path, []byte("x"), token); code != 400 {
			t.Errorf("PUT %s: %d, want 400", path, code)
		}
	}
	// Over the size limit, whether announced or streamed.
	big := mk("big", 1_000_000)
	if code, _ := f.put(t, "/"+big.Info.URL, mirrortest.Payload(400_000), token); code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversize upload: %d, want 413", code)
	}
	req, _ := http.NewRequest(http.MethodPut, f.srv.URL+"/"+big.Info.URL, io.NopCloser(bytes.NewReader(mirrortest.Payload(400_000))))
	req.SetBasicAuth("nix", token)
	req.ContentLength = -1 // chunked: the limit must hold while reading
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("oversize chunked upload: %v %v", resp, err)
	}
	if resp, _, _ := f.get(t, "HEAD", "/"+big.Info.URL); resp.StatusCode != 404 {
		t.Errorf("something of the oversize upload was kept: HEAD %d", resp.StatusCode)
	}
	for _, p := range []*mirrortest.Path{a, b, c, d} {
		if resp, _, _ := f.get(t, "GET", "/"+p.Info.HashPart()+".narinfo"); resp.StatusCode != 404 {
			t.Errorf("%s is served after a refused push: %d", p.Info.StorePath, resp.StatusCode)
		}
	}
}
