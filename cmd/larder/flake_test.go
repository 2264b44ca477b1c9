package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixlarder/larder/cmd/larder/internal/nixtest"
)

// runIn runs the larder binary with extra environment in a directory.
func runIn(t testing.TB, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(larderBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return stdout.String(), stderr.String(), exit.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), 0
}

func writeFile(t testing.TB, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A flake with a path input: --flake --flake-inputs mirrors its package
// from the upstream and adds the input's source from the local store, so a
// fresh client evaluates and builds it with the upstream stopped and the
// input's directory gone.
func TestPrefetchFlakeWithInputs(t *testing.T) {
	nixtest.Require(t)
	e := nixtest.NewEnv(t)
	root := t.TempDir()
	nonce := fmt.Sprint(time.Now().UnixNano())
	inputDir, flakeDir := filepath.Join(root, "input"), filepath.Join(root, "app")
	writeFile(t, filepath.Join(inputDir, "flake.nix"), `{ outputs = { self }: { msg = builtins.readFile ./msg.txt; }; }`)
	writeFile(t, filepath.Join(inputDir, "msg.txt"), "hello from a path input "+nonce)
	writeFile(t, filepath.Join(flakeDir, "flake.nix"), fmt.Sprintf(`{
  inputs.msg.url = "path:%s";
  outputs = { self, msg }: {
    packages.x86_64-linux.default = derivation {
      name = "larder-flake-%s"; system = "x86_64-linux"; builder = "/bin/sh";
      args = [ "-c" "echo '${msg.msg}' > $out" ];
    };
  };
}`, inputDir, nonce))
	e.Run(t, "", "nix", "flake", "lock", flakeDir)
	installable := flakeDir + "#default"
	e.Run(t, "", "nix", "build", "--no-link", installable)
	out := strings.TrimSpace(e.Run(t, "", "nix", "path-info", installable))

	upKey, published := nixtest.SignedCache(t, e, "upstream-flake-1", "zstd", out)
	up := nixtest.ServeDir(t, published, 0)
	l := startLarder(t, t.TempDir(), "--upstream", up.URL, "--trusted-key", upKey.Public)

	stdout, errOut, code := runIn(t, []string{"HOME=" + root}, "prefetch", "--server", l.URL, "--pin", "flake",
		"--flake", installable, "--flake-inputs")
	if code != 0 || !strings.Contains(stdout, "added from the local store") {
		t.Fatalf("prefetch --flake: exit %d\n%s%s\n%s", code, stdout, errOut, l.log)
	}
	up.Close()
	if err := os.Rename(inputDir, inputDir+".gone"); err != nil {
		t.Fatal(err)
	}

	client := t.TempDir()
	conf := "substituters = " + l.URL + "\ntrusted-public-keys = " + l.pubkey(t) + "\n"
	if _, err := e.Try(conf, "nix", "build", "--no-link", "--store", "local?root="+client, installable); err != nil {
		t.Fatalf("offline build of the flake in a fresh store: %v\n%s", err, l.log)
	}
	if _, err := os.Stat(filepath.Join(client, out)); err != nil {
		t.Fatalf("client store lacks %s: %v", out, err)
	}
}

// --build-deps: a fixed-output source no upstream has is fetched here,
// added to Larder, and a fresh client rebuilds the package offline.
func TestPrefetchBuildDepsFixedOutput(t *testing.T) {
	nixtest.Require(t)
	e := nixtest.NewEnv(t)
	nonce := fmt.Sprint(time.Now().UnixNano())
	source := "source code that only the origin server has " + nonce + "\n"
	sum := sha256.Sum256([]byte(source))
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(source))
	}))
	defer origin.Close()
	flakeDir := filepath.Join(t.TempDir(), "app")
	writeFile(t, filepath.Join(flakeDir, "flake.nix"), fmt.Sprintf(`{
  outputs = { self }: let
    src = derivation {
      name = "larder-src-%[1]s.txt"; system = "builtin"; builder = "builtin:fetchurl";
      url = "%[2]s/src.txt"; urls = [ "%[2]s/src.txt" ];
      outputHashAlgo = "sha256"; outputHash = "%[3]s"; outputHashMode = "flat";
      executable = false; unpack = false; preferLocalBuild = true;
    };
  in {
    packages.x86_64-linux.default = derivation {
      name = "larder-built-%[1]s"; system = "x86_64-linux"; builder = "/bin/sh";
      args = [ "-c" "/bin/cat ${src} > $out" ];
    };
  };
}`, nonce, origin.URL, hex.EncodeToString(sum[:])))
	e.Run(t, "", "nix", "flake", "lock", flakeDir)
	installable := flakeDir + "#default"

	empty := t.TempDir()
	writeFile(t, filepath.Join(empty, "nix-cache-info"), "StoreDir: /nix/store\n")
	up := nixtest.ServeDir(t, empty, 0)
	l := startLarder(t, t.TempDir(), "--upstream", up.URL)

	stdout, errOut, code := runIn(t, nil, "prefetch", "--server", l.URL, "--pin", "build",
		"--flake", installable, "--build-deps")
	if code != 0 || !strings.Contains(stdout, "will be built; inputs present") || !strings.Contains(stdout, "1 added from the local store") {
		t.Fatalf("prefetch --build-deps: exit %d\n%s%s\n%s", code, stdout, errOut, l.log)
	}
	origin.Close()

	client := t.TempDir()
	conf := "substituters = " + l.URL + "\ntrusted-public-keys = " + l.pubkey(t) +
		"\nsandbox = true\nsandbox-paths = /bin /usr /lib /lib64\n"
	if _, err := e.Try(conf, "nix", "build", "--no-link", "--store", "local?root="+client, installable); err != nil {
		t.Fatalf("offline rebuild in a fresh store: %v\n%s", err, l.log)
	}
	built, err := os.ReadDir(filepath.Join(client, "nix", "store"))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, b := range built {
		if strings.HasSuffix(b.Name(), "-larder-built-"+nonce) {
			data, _ := os.ReadFile(filepath.Join(client, "nix", "store", b.Name()))
			found = string(data) == source
		}
	}
	if !found {
		t.Fatal("the rebuilt package is missing or has the wrong contents")
	}
}

// An installable that fails to evaluate is named in the error, and no pin
// is recorded.
func TestPrefetchBadInstallable(t *testing.T) {
	nixtest.Require(t)
	dataDir := t.TempDir()
	l := startLarder(t, dataDir, "--offline")
	flakeDir := filepath.Join(t.TempDir(), "broken")
	writeFile(t, filepath.Join(flakeDir, "flake.nix"), `{ outputs = { self }: { packages.x86_64-linux.default = throw "broken on purpose"; }; }`)
	installable := flakeDir + "#default"
	_, errOut, code := runIn(t, nil, "prefetch", "--server", l.URL, "--pin", "broken", "--flake", installable)
	if code != 2 || !strings.Contains(errOut, installable) || !strings.Contains(errOut, "broken on purpose") {
		t.Fatalf("bad installable: exit %d: %s", code, errOut)
	}
	if out, _, _ := run(t, "pins", "--data-dir", dataDir); strings.Contains(out, "broken") {
		t.Fatalf("a pin was recorded:\n%s", out)
	}
}
