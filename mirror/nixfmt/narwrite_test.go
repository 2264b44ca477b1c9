package nixfmt_test

import (
	"bytes"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixlarder/larder/mirror/mirrortest"
	"github.com/nixlarder/larder/mirror/nixfmt"
)

// DumpPath must give exactly the bytes of `nix-store --dump` (when Nix is
// installed) for a tree with files, an executable, a symlink, nested and
// empty directories, and names that sort differently by byte and by locale.
func TestDumpPathMatchesNix(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tree")
	for name, body := range map[string]string{"a.txt": "hello\n", "B": "upper", "sub/deep/x": strings.Repeat("x", 1000), "empty": ""} {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644)
	}
	os.WriteFile(filepath.Join(dir, "run.sh"), []byte("#!/bin/sh\n"), 0o755)
	os.Symlink("sub/deep/x", filepath.Join(dir, "link"))
	os.Mkdir(filepath.Join(dir, "void"), 0o755)

	var got bytes.Buffer
	if err := nixfmt.DumpPath(&got, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("nix-store"); err != nil {
		mirrortest.Unavailable(t, "nix-store not installed: cannot compare with Nix")
	}
	want, err := exec.Command("nix-store", "--dump", dir).Output()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("NAR differs from nix-store --dump: %x vs %x", sha256.Sum256(got.Bytes()), sha256.Sum256(want))
	}
	// A single file, as flat paths are.
	got.Reset()
	nixfmt.DumpPath(&got, filepath.Join(dir, "a.txt"))
	if h, err := nixfmt.HashFlatNAR(&got, "sha256"); err != nil || h.Base16() != "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03" {
		t.Fatalf("single-file NAR: %v %v", h, err)
	}
}
