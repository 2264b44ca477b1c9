package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/nixlarder/larder/cmd/larder/internal/nixtest"
)

// The flake, package and NixOS module parse (building needs nixpkgs, which
// these machines cannot fetch).
func TestNixFilesParse(t *testing.T) {
	nixtest.Require(t)
	for _, f := range []string{"flake.nix", "nix/package.nix", "nix/module.nix"} {
		if out, err := exec.Command("nix-instantiate", "--parse", filepath.Join("..", "..", f)).CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", f, err, out)
		}
	}
}

// configs/larder.yaml documents every setting of larder serve.
func TestExampleConfigDocumentsEverySetting(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "configs", "larder.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	serveFlags("serve").VisitAll(func(f *pflag.Flag) {
		if f.Name == "config" {
			return
		}
		if !regexp.MustCompile(`(?m)^#? ?` + regexp.QuoteMeta(f.Name) + `:`).Match(data) {
			t.Errorf("configs/larder.yaml does not document %q", f.Name)
		}
	})
	if !regexp.MustCompile(`(?m)^# upstreams:`).Match(data) {
		t.Error("configs/larder.yaml does not document the upstreams list")
	}
}

// nix/package.nix's vendorHash is the hash of `go mod vendor` of this
// go.mod/go.sum, as buildGoModule computes it; it must follow go.sum.
func TestVendorHashIsCurrent(t *testing.T) {
	nixtest.Require(t)
	vendor := filepath.Join(t.TempDir(), "vendor")
	cmd := exec.Command("go", "mod", "vendor", "-o", vendor)
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go mod vendor: %v\n%s", err, out)
	}
	hash := exec.Command("nix", "--extra-experimental-features", "nix-command", "hash", "path", vendor)
	out, err := hash.Output()
	if err != nil {
		t.Fatal(err)
	}
	pkg, _ := os.ReadFile(filepath.Join("..", "..", "nix", "package.nix"))
	want := `vendorHash = "` + strings.TrimSpace(string(out)) + `";`
	if !strings.Contains(string(pkg), want) {
		t.Fatalf("nix/package.nix is stale: want %s", want)
	}
}
