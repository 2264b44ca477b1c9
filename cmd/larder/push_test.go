package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixlarder/larder/cmd/larder/internal/nixtest"
)

// nix copy --to http://larder with a netrc token pushes a closure that a
// fresh client then substitutes; without the token, or with a wrong one,
// the copy fails and nothing is stored.
func TestPushWithNixCopy(t *testing.T) {
	nixtest.Require(t)
	e := nixtest.NewEnv(t)
	closure := nixtest.BuildClosure(t, e, nixtest.ClosureSpec{Paths: 4, FileBytes: 32 << 10})
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	writeFile(t, tokens, "# CI\nci-token-1\n")
	l := startLarder(t, t.TempDir(), "--offline", "--push-token-file", tokens)
	host := strings.TrimPrefix(l.URL, "http://")
	hostOnly := host[:strings.LastIndex(host, ":")]

	for name, password := range map[string]string{"wrong token": "nope", "no token": ""} {
		netrc := filepath.Join(dir, "netrc-"+strings.ReplaceAll(name, " ", "-"))
		if password != "" {
			writeFile(t, netrc, "machine "+hostOnly+" login nix password "+password+"\n")
		} else {
			writeFile(t, netrc, "")
		}
		if _, err := e.Try("netrc-file = "+netrc+"\n", "nix", "copy", "--to", l.URL, closure.Root); err == nil {
			t.Fatalf("%s: push succeeded", name)
		}
		for _, p := range closure.Paths {
			resp, err := http.Get(l.URL + "/" + filepath.Base(p)[:32] + ".narinfo")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 404 {
				t.Fatalf("%s: %s stored after a refused push (%d)", name, p, resp.StatusCode)
			}
		}
	}

	netrc := filepath.Join(dir, "netrc")
	writeFile(t, netrc, "machine "+hostOnly+" login nix password ci-token-1\n")
	if _, err := e.Try("netrc-file = "+netrc+"\n", "nix", "copy", "--to", l.URL, closure.Root); err != nil {
		t.Fatalf("push with the token: %v\n%s", err, l.log)
	}
	store, err := nixtest.CopyFrom(t, e, l.URL, []string{l.pubkey(t)}, closure.Root)
	if err != nil {
		t.Fatalf("substituting pushed paths: %v", err)
	}
	for _, p := range closure.Paths {
		if _, err := os.Stat(filepath.Join(store, p)); err != nil {
			t.Fatalf("client lacks pushed %s", p)
		}
	}
}

// Two Larders chained: B's upstream is A. A client of B gets a path only A
// has (A pulled it from its own upstream); with A down, B still serves what
// it holds.
func TestChainedLarders(t *testing.T) {
	nixtest.Require(t)
	e := nixtest.NewEnv(t)
	closure := nixtest.BuildClosure(t, e, nixtest.ClosureSpec{Paths: 5, FileBytes: 16 << 10})
	upKey, published := nixtest.SignedCache(t, e, "upstream-chain-1", "xz", closure.Root)
	up := nixtest.ServeDir(t, published, 0)
	a := startLarder(t, t.TempDir(), "--upstream", up.URL, "--trusted-key", upKey.Public)
	b := startLarder(t, t.TempDir(), "--upstream", a.URL, "--trusted-key", a.pubkey(t))
	if _, err := nixtest.CopyFrom(t, e, b.URL, []string{b.pubkey(t)}, closure.Root); err != nil {
		t.Fatalf("client of B: %v\nA:\n%s\nB:\n%s", err, a.log, b.log)
	}
	a.stop()
	up.Close()
	if _, err := nixtest.CopyFrom(t, e, b.URL, []string{b.pubkey(t)}, closure.Root); err != nil {
		t.Fatalf("client of B with A down: %v\n%s", err, b.log)
	}
}

// Per-upstream settings from the config file: each upstream's keys are
// trusted for that upstream only, and priority orders them.
func TestPerUpstreamKeysFromConfig(t *testing.T) {
	nixtest.Require(t)
	e := nixtest.NewEnv(t)
	x := nixtest.BuildClosure(t, e, nixtest.ClosureSpec{Paths: 2, FileBytes: 4 << 10})
	y := nixtest.BuildClosure(t, e, nixtest.ClosureSpec{Paths: 2, FileBytes: 4 << 10})
	k1, k2 := nixtest.GenKey(t, e, "lan-cache-1"), nixtest.GenKey(t, e, "other-cache-1")
	nixtest.Sign(t, e, k1, x.Root)
	nixtest.Sign(t, e, k2, y.Root)
	lan := nixtest.ServeDir(t, nixtest.Publish(t, e, "zstd", x.Root), 0)
	other := nixtest.ServeDir(t, nixtest.Publish(t, e, "zstd", x.Root, y.Root), 0)
	config := filepath.Join(t.TempDir(), "larder.yaml")
	writeFile(t, config, `upstreams:
  - url: `+other.URL+`
    trusted-keys: ["`+k2.Public+`"]
    priority: 20
  - url: `+lan.URL+`
    trusted-keys: ["`+k1.Public+`"]
    priority: 10
    header-timeout: 3s
`)
	l := startLarder(t, t.TempDir(), "--config", config)
	for _, root := range []string{x.Root, y.Root} {
		if _, err := nixtest.CopyFrom(t, e, l.URL, []string{l.pubkey(t)}, root); err != nil {
			t.Fatalf("%s: %v\n%s", root, err, l.log)
		}
	}
	if lan.Requests() == 0 {
		t.Fatal("the higher-priority LAN upstream was never asked")
	}
	// Without the LAN cache, x is only on the other upstream, signed by a
	// key trusted for the LAN cache alone: refused.
	lan.Close()
	fresh := startLarder(t, t.TempDir(), "--config", config)
	if _, err := nixtest.CopyFrom(t, e, fresh.URL, []string{fresh.pubkey(t)}, x.Root); err == nil {
		t.Fatal("a key trusted for one upstream was accepted from another")
	}
}
