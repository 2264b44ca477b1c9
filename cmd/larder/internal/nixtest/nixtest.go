// Package nixtest drives the real Nix client (Nix 2.8, as root, no sandbox)
// for end-to-end tests: it builds closures into the machine's store,
// publishes them with `nix copy --to file://…`, and copies them into
// throwaway client stores.
package nixtest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixlarder/larder/mirror/mirrortest"
)

// Require skips the test when Nix cannot be driven here, and fails it
// instead when the environment says end-to-end tests must run (CI).
func Require(t testing.TB) {
	t.Helper()
	reason := ""
	if _, err := exec.LookPath("nix-build"); err != nil {
		reason = "nix-build not found (apt-get install nix-bin)"
	} else if os.Geteuid() != 0 {
		reason = "Nix tests need root (single-user store in /nix)"
	}
	if reason == "" {
		return
	}
	mirrortest.Unavailable(t, reason)
}

// Env is one test's Nix environment: its own HOME and cache directory, so
// narinfo caches never leak between tests.
type Env struct {
	home  string
	extra []string // more environment, e.g. https_proxy for fixed-output fetches
}

// WithEnv returns a copy of e whose commands also get env.
func (e *Env) WithEnv(env ...string) *Env {
	return &Env{home: e.home, extra: append(append([]string(nil), e.extra...), env...)}
}

// NewEnv makes an environment that lives as long as the test.
func NewEnv(t testing.TB) *Env {
	return &Env{home: t.TempDir()}
}

const baseConfig = `experimental-features = nix-command flakes
sandbox = false
substituters =
narinfo-cache-negative-ttl = 0
narinfo-cache-positive-ttl = 0
`

// Try runs a Nix command with extra nix.conf lines and returns its stdout.
func (e *Env) Try(extraConfig, name string, args ...string) (string, error) {
	out, _, err := e.TryTimed(extraConfig, name, args...)
	return out, err
}

// TryTimed is Try that also reports the CPU time (user + system) the
// command used, for client-side cost figures.
func (e *Env) TryTimed(extraConfig, name string, args ...string) (string, time.Duration, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "HOME="+e.home, "XDG_CACHE_HOME="+filepath.Join(e.home, ".cache"),
		"NIX_CONFIG="+baseConfig+extraConfig)
	cmd.Env = append(cmd.Env, e.extra...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var cpu time.Duration
	if cmd.ProcessState != nil {
		cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if err != nil {
		return stdout.String(), cpu, fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, lastLines(stderr.String(), 30))
	}
	return stdout.String(), cpu, nil
}

// Run is Try that fails the test on error.
func (e *Env) Run(t testing.TB, extraConfig, name string, args ...string) string {
	t.Helper()
	out, err := e.Try(extraConfig, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Key is a binary cache key pair made by nix-store --generate-binary-cache-key.
type Key struct {
	Name, SecretFile, PublicFile, Public string
}

// GenKey makes a key pair with Nix's own tool.
func GenKey(t testing.TB, e *Env, name string) Key {
	t.Helper()
	dir := t.TempDir()
	k := Key{Name: name, SecretFile: filepath.Join(dir, name+".sec"), PublicFile: filepath.Join(dir, name+".pub")}
	e.Run(t, "", "nix-store", "--generate-binary-cache-key", name, k.SecretFile, k.PublicFile)
	pub, err := os.ReadFile(k.PublicFile)
	if err != nil {
		t.Fatal(err)
	}
	k.Public = strings.TrimSpace(string(pub))
	return k
}

// Sign signs the closures of paths in the machine's store with k.
func Sign(t testing.TB, e *Env, k Key, paths ...string) {
	t.Helper()
	e.Run(t, "", "nix", append([]string{"store", "sign", "--key-file", k.SecretFile, "-r"}, paths...)...)
}

// Publish writes the closures of paths as a file:// binary cache, as Nix
// writes it, and returns its directory.
func Publish(t testing.TB, e *Env, compression string, paths ...string) string {
	t.Helper()
	dir := t.TempDir()
	e.Run(t, "", "nix", append([]string{"copy", "--to", "file://" + dir + "?compression=" + compression}, paths...)...)
	return dir
}

// CopyFrom copies the closures of paths from a binary cache into a fresh
// client store, trusting only the given keys, and returns the store's root.
func CopyFrom(t testing.TB, e *Env, url string, trusted []string, paths ...string) (string, error) {
	t.Helper()
	root := t.TempDir()
	conf := "require-sigs = true\ntrusted-public-keys = " + strings.Join(trusted, " ") + "\n"
	_, err := e.Try(conf, "nix", append([]string{"copy", "--from", url, "--to", "local?root=" + root}, paths...)...)
	return root, err
}

// SignedCache makes a key named keyName with Nix's tool, signs the closures
// of paths with it, and publishes them as a file:// cache: an upstream as
// Nix writes one. It returns the key and the cache directory.
func SignedCache(t testing.TB, e *Env, keyName, compression string, paths ...string) (Key, string) {
	t.Helper()
	k := GenKey(t, e, keyName)
	Sign(t, e, k, paths...)
	return k, Publish(t, e, compression, paths...)
}
