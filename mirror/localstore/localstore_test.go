package localstore_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixlarder/larder/mirror/localstore"
	"github.com/nixlarder/larder/mirror/mirrortest"
	"github.com/nixlarder/larder/mirror/nixfmt"
)

// storeWithPath builds a small path and copies it into a `local?root=DIR`
// store, returning DIR and the store path.
func storeWithPath(t *testing.T) (string, string) {
	t.Helper()
	if _, err := exec.LookPath("nix-build"); err != nil || os.Geteuid() != 0 {
		mirrortest.Unavailable(t, "needs nix-build and root")
	}
	dir := t.TempDir()
	expr := filepath.Join(dir, "p.nix")
	name := "larder-ls-" + strings.ReplaceAll(time.Now().Format("150405.000000000"), ".", "")
	os.WriteFile(expr, []byte(`derivation { name = "`+name+`"; system = builtins.currentSystem; builder = "/bin/sh";
  args = [ "-c" "/bin/mkdir -p $out/bin; echo hello > $out/greeting; echo '#!/bin/sh' > $out/bin/run; /bin/chmod +x $out/bin/run; /bin/ln -s greeting $out/link" ]; }`), 0o644)
	env := append(os.Environ(), "NIX_CONFIG=experimental-features = nix-command\nsandbox = false\nsubstituters =")
	run := func(args ...string) string {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = env
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	path := run("nix-build", "--no-out-link", expr)
	root := filepath.Join(dir, "root")
	run("nix", "copy", "--no-check-sigs", "--to", "local?root="+root, path)
	return root, path
}

func TestLocalStoreReadsNixDatabaseAndDumps(t *testing.T) {
	root, path := storeWithPath(t)
	s, err := localstore.Open(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	hash := nixfmt.BaseName(path)[:32]
	ni, err := s.NarInfo(ctx, hash)
	if err != nil || ni.StorePath != path {
		t.Fatalf("NarInfo: %+v %v", ni, err)
	}
	want, err := exec.Command("nix-store", "--dump", filepath.Join(root, path)).Output()
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := s.Dump(ctx, ni, &got); err != nil || !bytes.Equal(got.Bytes(), want) || uint64(len(want)) != ni.NarSize {
		t.Fatalf("Dump: %v; %d bytes, nix-store --dump %d, NarSize %d", err, got.Len(), len(want), ni.NarSize)
	}
	if p, err := s.PathOf(ctx, ni.NarHash); err != nil || p != path {
		t.Fatalf("PathOf: %q %v", p, err)
	}
	ls, err := s.Listing(ctx, hash)
	if err != nil || !strings.Contains(string(ls), `"link":{"target":"greeting","type":"symlink"}`) || !strings.Contains(string(ls), `"executable":true`) {
		t.Fatalf("Listing: %s %v", ls, err)
	}
	if _, err := s.NarInfo(ctx, strings.Repeat("0", 32)); !errors.Is(err, localstore.ErrNotFound) {
		t.Fatalf("unknown path: %v", err)
	}

	// A file changed on disk: Dump fails and holds the last byte back.
	greeting := filepath.Join(root, path, "greeting")
	os.Chmod(greeting, 0o644)
	os.WriteFile(greeting, []byte("hellO\n"), 0o644)
	got.Reset()
	if err := s.Dump(ctx, ni, &got); err == nil || uint64(got.Len()) != ni.NarSize-1 {
		t.Fatalf("changed path: err %v after %d of %d bytes", err, got.Len(), ni.NarSize)
	}
}

func TestLocalStoreExclude(t *testing.T) {
	root, path := storeWithPath(t)
	s, err := localstore.Open(root, []string{"larder-ls-*"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.NarInfo(context.Background(), nixfmt.BaseName(path)[:32]); !errors.Is(err, localstore.ErrNotFound) {
		t.Fatalf("an excluded path is visible: %v", err)
	}
	if _, err := localstore.Open(root, []string{"[bad"}); err == nil {
		t.Fatal("a malformed glob was accepted")
	}
}
