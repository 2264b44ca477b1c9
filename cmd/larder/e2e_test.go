package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nixlarder/larder/cmd/larder/internal/nixtest"
)

var larderBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "larder-bin-")
	if err != nil {
		panic(err)
	}
	larderBin = filepath.Join(dir, "larder")
	build := exec.Command("go", "build", "-o", larderBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building larder:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// larder is a running `larder serve` process.
type larder struct {
	URL     string
	DataDir string
	cmd     *exec.Cmd
	log     *bytes.Buffer
}

func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startLarder runs the real binary on dataDir and waits until it answers.
func startLarder(t testing.TB, dataDir string, args ...string) *larder {
	t.Helper()
	return startLarderEnv(t, nil, dataDir, args...)
}

// startLarderEnv is startLarder with extra environment.
func startLarderEnv(t testing.TB, env []string, dataDir string, args ...string) *larder {
	t.Helper()
	addr := freeAddr(t)
	l := &larder{URL: "http://" + addr, DataDir: dataDir, log: &bytes.Buffer{}}
	l.cmd = exec.Command(larderBin, append([]string{"serve", "--listen", addr, "--data-dir", dataDir}, args...)...)
	l.cmd.Stdout, l.cmd.Stderr = l.log, l.log
	l.cmd.Env = append(os.Environ(), env...)
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.stop() })
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(l.URL + "/nix-cache-info")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return l
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("larder did not start:\n%s", l.log)
	return nil
}

func (l *larder) stop() {
	if l.cmd.ProcessState == nil {
		l.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { l.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			l.cmd.Process.Kill()
			<-done
		}
	}
}

func (l *larder) kill9() {
	l.cmd.Process.Signal(syscall.SIGKILL)
	l.cmd.Wait()
}

func (l *larder) pubkey(t testing.TB) string {
	t.Helper()
	resp, err := http.Get(l.URL + "/pubkey")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// The whole story with the real Nix client: a closure Nix built and
// published is pulled through Larder by a client that trusts only Larder's
// key; with the upstream gone, a fresh client still gets it from Larder, and
// an unknown path is a fast 404.
func TestEndToEndPullThroughWithRealNix(t *testing.T) {
	nixtest.Require(t)
	e := nixtest.NewEnv(t)
	closure := nixtest.BuildClosure(t, e, nixtest.ClosureSpec{Paths: 8, FileBytes: 64 << 10})
	upKey, published := nixtest.SignedCache(t, e, "upstream-e2e-1", "xz", closure.Root)
	up := nixtest.ServeDir(t, published, 0)

	// Larder signs with a key made by Nix's own tool: keys are interchangeable.
	larderKey := nixtest.GenKey(t, e, "larder-e2e-1")
	l := startLarder(t, t.TempDir(), "--upstream", up.URL, "--trusted-key", upKey.Public,
		"--secret-key-file", larderKey.SecretFile)
	if got := l.pubkey(t); got != larderKey.Public {
		t.Fatalf("/pubkey = %q, want %q", got, larderKey.Public)
	}

	store1, err := nixtest.CopyFrom(t, e, l.URL, []string{larderKey.Public}, closure.Root)
	if err != nil {
		t.Fatalf("nix copy through larder: %v\nlarder log:\n%s", err, l.log)
	}
	for _, p := range closure.Paths {
		if _, err := os.Stat(filepath.Join(store1, p)); err != nil {
			t.Fatalf("client store lacks %s: %v", p, err)
		}
	}
	// Trusting only the upstream's key must fail: Larder's URL rewrite is
	// fine, but the client must not need the upstream's key... it needs ours.
	if _, err := nixtest.CopyFrom(t, e, l.URL, []string{"other-1:" + strings.Repeat("A", 43) + "="}, closure.Root); err == nil {
		t.Fatal("a client trusting an unrelated key accepted Larder's paths")
	}

	up.Close()
	store2, err := nixtest.CopyFrom(t, e, l.URL, []string{larderKey.Public}, closure.Root)
	if err != nil {
		t.Fatalf("offline copy from larder: %v\nlarder log:\n%s", err, l.log)
	}
	if _, err := os.Stat(filepath.Join(store2, closure.Root)); err != nil {
		t.Fatalf("offline client store lacks the root: %v", err)
	}
	infos := nixtest.PathInfoOf(t, e, l.URL, closure.Root)
	if len(infos) != 1 || !hasSig(infos[0].Signatures, "larder-e2e-1:") || !hasSig(infos[0].Signatures, "upstream-e2e-1:") {
		t.Fatalf("path-info via larder: %+v", infos)
	}

	start := time.Now()
	resp, err := http.Get(l.URL + "/" + strings.Repeat("0", 32) + ".narinfo")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	took := time.Since(start)
	if resp.StatusCode != 404 || took > 50*time.Millisecond {
		t.Fatalf("unknown path with upstream down: %d in %v, want 404 under 50ms", resp.StatusCode, took)
	}
}

func hasSig(sigs []string, prefix string) bool {
	for _, s := range sigs {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

// kill -9 while NARs are downloading: after a restart nothing partial is
// served, temp files are gone, and the paths download again correctly.
func TestKill9DuringDownloads(t *testing.T) {
	nixtest.Require(t)
	e := nixtest.NewEnv(t)
	closure := nixtest.BuildClosure(t, e, nixtest.ClosureSpec{Paths: 4, FileBytes: 2 << 20})
	upKey, cacheDir := nixtest.SignedCache(t, e, "upstream-kill-1", "none", closure.Root)
	// A slow upstream: every request waits, so downloads are mid-flight at the kill.
	slow := throttledFileServer(t, cacheDir, 256<<10)

	dataDir := t.TempDir()
	l := startLarder(t, dataDir, "--upstream", slow, "--trusted-key", upKey.Public)
	narURLs := narURLsOf(t, l.URL, closure.Paths)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, u := range narURLs {
		go func() {
			req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	waitForTempFiles(t, dataDir)
	l.kill9()
	cancel()

	l2 := startLarder(t, dataDir, "--upstream", slow, "--trusted-key", upKey.Public)
	if left, _ := os.ReadDir(filepath.Join(dataDir, "store", "tmp")); len(left) != 0 {
		t.Fatalf("temp files survived the restart: %d", len(left))
	}
	store, err := nixtest.CopyFrom(t, e, l2.URL, []string{l2.pubkey(t)}, closure.Root)
	if err != nil {
		t.Fatalf("copy after crash: %v\n%s", err, l2.log)
	}
	if _, err := os.Stat(filepath.Join(store, closure.Root)); err != nil {
		t.Fatal(err)
	}
}

// narURLsOf asks Larder for each narinfo and returns the NAR URLs.
func narURLsOf(t testing.TB, base string, paths []string) []string {
	var out []string
	for _, p := range paths {
		hash := filepath.Base(p)[:32]
		resp, err := http.Get(base + "/" + hash + ".narinfo")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(body), "\n") {
			if u, ok := strings.CutPrefix(line, "URL: "); ok {
				out = append(out, base+"/"+u)
			}
		}
	}
	if len(out) != len(paths) {
		t.Fatalf("got %d NAR URLs for %d paths", len(out), len(paths))
	}
	return out
}

func waitForTempFiles(t testing.TB, dataDir string) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		entries, _ := os.ReadDir(filepath.Join(dataDir, "store", "tmp"))
		for _, e := range entries {
			if info, err := e.Info(); err == nil && info.Size() > 0 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no download started")
}

// Keys made by `larder keygen` work in Nix: Nix signs with Larder's secret
// key file and verifies with Larder's public key file.
func TestKeygenKeysWorkInNix(t *testing.T) {
	nixtest.Require(t)
	e := nixtest.NewEnv(t)
	dir := t.TempDir()
	sec, pub := filepath.Join(dir, "k.sec"), filepath.Join(dir, "k.pub")
	if out, err := exec.Command(larderBin, "keygen", "larder-keygen-1", sec, pub).CombinedOutput(); err != nil {
		t.Fatalf("larder keygen: %v\n%s", err, out)
	}
	if out, err := exec.Command(larderBin, "keygen", "larder-keygen-1", sec, pub).CombinedOutput(); err == nil {
		t.Fatalf("keygen overwrote an existing key:\n%s", out)
	}
	closure := nixtest.BuildClosure(t, e, nixtest.ClosureSpec{Paths: 1, FileBytes: 1024})
	e.Run(t, "", "nix", "store", "sign", "--key-file", sec, closure.Root)
	public, _ := os.ReadFile(pub)
	if _, err := e.Try("trusted-public-keys = "+string(public)+"\n", "nix", "store", "verify", "--sigs-needed", "1", closure.Root); err != nil {
		t.Fatalf("Nix rejects a signature made with Larder's key: %v", err)
	}
	if _, err := e.Try("trusted-public-keys = other-1:"+strings.Repeat("A", 43)+"=\n", "nix", "store", "verify", "--sigs-needed", "1", closure.Root); err == nil {
		t.Fatal("nix store verify passed without the right key: the check above proves nothing")
	}
}
