package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixlarder/larder/cmd/larder/internal/nixtest"
)

// A path built on the Larder host is substituted from `larder serve
// --local-store` by a fresh client that trusts only Larder's key, with the
// NarHash Nix itself records, in both compressions; excluded paths stay
// hidden.
func TestLocalStoreServesHostPaths(t *testing.T) {
	nixtest.Require(t)
	e := nixtest.NewEnv(t)
	closure := nixtest.BuildClosure(t, e, nixtest.ClosureSpec{Paths: 3, FileBytes: 64 << 10})
	host := nixtest.PathInfoOf(t, e, "local", closure.Root)[0]
	for _, compression := range []string{"zstd", "none"} {
		l := startLarder(t, t.TempDir(), "--offline", "--local-store", "--local-store-compression", compression)
		store, err := nixtest.CopyFrom(t, e, l.URL, []string{l.pubkey(t)}, closure.Root)
		if err != nil {
			t.Fatalf("%s: copy from the local store: %v\n%s", compression, err, l.log)
		}
		got := nixtest.PathInfoOf(t, e, "local?root="+store, closure.Root)[0]
		if got.NarHash != host.NarHash || got.NarSize != host.NarSize {
			t.Fatalf("%s: client has %s/%d, Nix on the host says %s/%d", compression, got.NarHash, got.NarSize, host.NarHash, host.NarSize)
		}
	}
	l := startLarder(t, t.TempDir(), "--offline", "--local-store")
	resp, err := http.Get(l.URL + "/" + filepath.Base(closure.Root)[:32] + ".ls")
	if err != nil {
		t.Fatal(err)
	}
	var listing struct {
		Root struct {
			Type    string                     `json:"type"`
			Entries map[string]json.RawMessage `json:"entries"`
		} `json:"root"`
	}
	json.NewDecoder(resp.Body).Decode(&listing)
	resp.Body.Close()
	if listing.Root.Type != "directory" || listing.Root.Entries["data"] == nil || listing.Root.Entries["refs"] == nil {
		t.Fatalf(".ls of a local path: %+v", listing)
	}
	l.stop()

	hidden := filepath.Base(closure.Root)[33:]
	l = startLarder(t, t.TempDir(), "--offline", "--local-store", "--local-store-exclude", hidden)
	urls := narURLsOf(t, l.URL, closure.Paths[1:2]) // another path is still there
	if len(urls) != 1 {
		t.Fatal("a path not excluded is missing")
	}
	if _, err := nixtest.CopyFrom(t, e, l.URL, []string{l.pubkey(t)}, closure.Root); err == nil {
		t.Fatal("an excluded path was served")
	}
}

// A path that changes on disk while Larder serves it from the local store
// gives a failed transfer, never a wrong NAR.
func TestLocalStorePathChangedOnDisk(t *testing.T) {
	nixtest.Require(t)
	e := nixtest.NewEnv(t)
	closure := nixtest.BuildClosure(t, e, nixtest.ClosureSpec{Paths: 1, FileBytes: 256 << 10})
	root := t.TempDir()
	e.Run(t, "", "nix", "copy", "--no-check-sigs", "--to", "local?root="+root, closure.Root)
	l := startLarder(t, t.TempDir(), "--offline", "--local-store", "--local-store-root", root, "--local-store-compression", "none")
	if _, err := nixtest.CopyFrom(t, e, l.URL, []string{l.pubkey(t)}, closure.Root); err != nil {
		t.Fatalf("copy from a local?root store: %v\n%s", err, l.log)
	}
	data := filepath.Join(root, closure.Root, "data")
	os.Chmod(data, 0o644)
	content, _ := os.ReadFile(data)
	content[len(content)-1] ^= 1 // the very last byte: the hold-back must catch it
	if err := os.WriteFile(data, content, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := nixtest.CopyFrom(t, e, l.URL, []string{l.pubkey(t)}, closure.Root); err == nil {
		t.Fatal("a path changed on disk was delivered")
	}
	if !strings.Contains(l.log.String(), "changed on disk") {
		t.Fatalf("Larder did not report the change:\n%s", l.log)
	}
}
