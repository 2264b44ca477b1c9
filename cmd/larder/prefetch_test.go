package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nixlarder/larder/cmd/larder/internal/nixtest"
	"github.com/nixlarder/larder/prefetch"
)

// run runs the larder binary and returns stdout, stderr and the exit code.
func run(t testing.TB, args ...string) (string, string, int) {
	t.Helper()
	return runIn(t, nil, args...)
}

// The offline story: prefetch a pinned closure through a running Larder,
// lose the upstream, and still check it complete and substitute it with the
// real Nix client. A NAR deleted behind Larder's back is named by check.
func TestPrefetchPinCheckOffline(t *testing.T) {
	nixtest.Require(t)
	e := nixtest.NewEnv(t)
	closure := nixtest.BuildClosure(t, e, nixtest.ClosureSpec{Paths: 24, FileBytes: 32 << 10})
	upKey, published := nixtest.SignedCache(t, e, "upstream-pf-1", "xz", closure.Root)
	up := nixtest.ServeDir(t, published, 5*time.Millisecond)
	dataDir := t.TempDir()
	l := startLarder(t, dataDir, "--upstream", up.URL, "--trusted-key", upKey.Public, "--prepull=false")

	out, errOut, code := run(t, "prefetch", "--server", l.URL, "--pin", "trip", closure.Root)
	if code != 0 || !strings.Contains(out, "24 paths: 0 already cached, 24 fetched") {
		t.Fatalf("prefetch: exit %d\n%s\n%s\nlarder log:\n%s", code, out, errOut, l.log)
	}
	up.Close()

	out, errOut, code = run(t, "check", "--data-dir", dataDir, "--pin", "trip")
	if code != 0 || !strings.Contains(out, "offline-ready: 24 paths") {
		t.Fatalf("check with the upstream down: exit %d\n%s%s", code, out, errOut)
	}
	out, _, code = run(t, "pins", "--data-dir", dataDir)
	if code != 0 || !strings.Contains(out, "trip") || !strings.Contains(out, "yes") {
		t.Fatalf("pins:\n%s", out)
	}
	var pins []prefetch.PinStatus
	resp, err := http.Get(l.URL + "/api/pins")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&pins)
	resp.Body.Close()
	if len(pins) != 1 || pins[0].Name != "trip" || pins[0].Paths != 24 || !pins[0].OfflineReady || pins[0].Roots[0] != closure.Root {
		t.Fatalf("/api/pins = %+v", pins)
	}
	// A re-run with the upstream gone finds everything cached.
	out, _, code = run(t, "prefetch", "--server", l.URL, "--pin", "trip", closure.Root)
	if code != 0 || !strings.Contains(out, "24 already cached, 0 fetched") {
		t.Fatalf("re-run: exit %d\n%s", code, out)
	}

	store, err := nixtest.CopyFrom(t, e, l.URL, []string{l.pubkey(t)}, closure.Root)
	if err != nil {
		t.Fatalf("offline substitution: %v\n%s", err, l.log)
	}
	for _, p := range closure.Paths {
		if _, err := os.Stat(filepath.Join(store, p)); err != nil {
			t.Fatalf("client store lacks %s", p)
		}
	}

	victim := closure.Paths[len(closure.Paths)/2]
	nar := narFileOf(t, l.URL, dataDir, victim)
	if err := os.Remove(nar); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = run(t, "check", "--data-dir", dataDir, "--pin", "trip")
	if code != 1 || !strings.Contains(out, victim) || !strings.Contains(errOut, "NOT offline-ready: 1 of 24") {
		t.Fatalf("check after deleting %s: exit %d\n%s%s", victim, code, out, errOut)
	}
}

// narFileOf finds the file on disk that holds a path's NAR.
func narFileOf(t testing.TB, base, dataDir, storePath string) string {
	t.Helper()
	u := narURLsOf(t, base, []string{storePath})[0]
	name := u[strings.LastIndex(u, "/")+1:]
	file := filepath.Join(dataDir, "store", "nar", name[:2], name)
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("NAR file of %s: %v", storePath, err)
	}
	return file
}

// Interrupted midway (Ctrl-C), a prefetch re-run completes without fetching
// any NAR a second time.
func TestPrefetchInterruptResumes(t *testing.T) {
	nixtest.Require(t)
	e := nixtest.NewEnv(t)
	closure := nixtest.BuildClosure(t, e, nixtest.ClosureSpec{Paths: 6, FileBytes: 512 << 10})
	upKey, published := nixtest.SignedCache(t, e, "upstream-int-1", "none", closure.Root)
	slow := newCountingServer(t, published, 1<<20)
	dataDir := t.TempDir()
	l := startLarder(t, dataDir, "--upstream", slow.URL, "--trusted-key", upKey.Public, "--prepull=false")

	cmd := exec.Command(larderBin, "prefetch", "--server", l.URL, "--jobs", "1", closure.Root)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for slow.narRequests() < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	if err == nil || !strings.Contains(out.String(), "interrupted") {
		t.Fatalf("interrupted prefetch: %v\n%s", err, out.String())
	}
	if slow.narRequests() >= len(closure.Paths) {
		t.Fatalf("the interrupt came too late: %d NARs requested", slow.narRequests())
	}
	stdout, errOut, code := run(t, "prefetch", "--server", l.URL, closure.Root)
	if code != 0 {
		t.Fatalf("resume: exit %d\n%s%s", code, stdout, errOut)
	}
	for path, n := range slow.counts() {
		if strings.HasPrefix(path, "/nar/") && n != 1 {
			t.Errorf("%s fetched %d times", path, n)
		}
	}
	if slow.narRequests() != len(closure.Paths) {
		t.Fatalf("%d NAR requests for %d paths", slow.narRequests(), len(closure.Paths))
	}
}

// Bad input is refused with the input named, and nothing is recorded.
func TestPrefetchBadInput(t *testing.T) {
	nixtest.Require(t)
	e := nixtest.NewEnv(t)
	closure := nixtest.BuildClosure(t, e, nixtest.ClosureSpec{Paths: 2, FileBytes: 1024})
	upKey, published := nixtest.SignedCache(t, e, "upstream-bad-1", "none", closure.Root)
	up := nixtest.ServeDir(t, published, 0)
	dataDir := t.TempDir()
	l := startLarder(t, dataDir, "--upstream", up.URL, "--trusted-key", upKey.Public)

	_, errOut, code := run(t, "prefetch", "--server", l.URL, "--pin", "x", "/etc/passwd")
	if code != 2 || !strings.Contains(errOut, "/etc/passwd") {
		t.Fatalf("not a store path: exit %d: %s", code, errOut)
	}
	list := filepath.Join(t.TempDir(), "paths")
	os.WriteFile(list, []byte(closure.Root+"\n# comment\n\nnot a path\n"), 0o644)
	_, errOut, code = run(t, "prefetch", "--server", l.URL, "--pin", "x", "-f", list)
	if code != 2 || !strings.Contains(errOut, list+":4:") {
		t.Fatalf("malformed line: exit %d: %s", code, errOut)
	}
	unknown := "/nix/store/" + strings.Repeat("1", 32) + "-never-built"
	_, errOut, code = run(t, "prefetch", "--server", l.URL, "--pin", "x", closure.Root, unknown)
	if code != 2 || !strings.Contains(errOut, unknown) || !strings.Contains(errOut, "no upstream has this path") {
		t.Fatalf("unknown path: exit %d: %s", code, errOut)
	}
	out, _, _ := run(t, "pins", "--data-dir", dataDir)
	if strings.Contains(out, "x ") || strings.Count(out, "\n") != 1 {
		t.Fatalf("a failed prefetch recorded a pin:\n%s", out)
	}
	_, errOut, code = run(t, "check", "--data-dir", dataDir, "--pin", "nope")
	if code != 2 || !strings.Contains(errOut, `no pin named "nope"`) {
		t.Fatalf("check of an unknown pin: exit %d: %s", code, errOut)
	}
}

// Without a server, --data-dir runs the engine in-process (here reading the
// list from stdin); with a server on the data dir it refuses to run, since
// two owners would delete each other's temp files. Pins can be removed.
func TestPrefetchInProcess(t *testing.T) {
	nixtest.Require(t)
	e := nixtest.NewEnv(t)
	closure := nixtest.BuildClosure(t, e, nixtest.ClosureSpec{Paths: 5, FileBytes: 8 << 10})
	upKey, published := nixtest.SignedCache(t, e, "upstream-inproc-1", "zstd", closure.Root)
	up := nixtest.ServeDir(t, published, 0)
	dataDir := t.TempDir()

	cmd := exec.Command(larderBin, "prefetch", "--data-dir", dataDir, "--upstream", up.URL,
		"--trusted-key", upKey.Public, "--pin", "local", "-f", "-")
	cmd.Stdin = strings.NewReader(closure.Root + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "5 paths: 0 already cached, 5 fetched") {
		t.Fatalf("in-process prefetch: %v\n%s", err, out)
	}
	stdout, errOut, code := run(t, "check", "--data-dir", dataDir, "--pin", "local")
	if code != 0 {
		t.Fatalf("check: exit %d\n%s%s", code, stdout, errOut)
	}

	l := startLarder(t, dataDir, "--upstream", up.URL, "--trusted-key", upKey.Public)
	_, errOut, code = run(t, "prefetch", "--data-dir", dataDir, "--upstream", up.URL, closure.Root)
	if code != 2 || !strings.Contains(errOut, "in use by another larder") {
		t.Fatalf("in-process prefetch beside a server: exit %d: %s", code, errOut)
	}
	if _, err := nixtest.CopyFrom(t, e, l.URL, []string{l.pubkey(t)}, closure.Root); err != nil {
		t.Fatalf("the server's store was disturbed: %v", err)
	}
	if stdout, _, code := run(t, "pins", "--data-dir", dataDir, "rm", "local"); code != 0 || !strings.Contains(stdout, "removed") {
		t.Fatalf("pins rm: %d %s", code, stdout)
	}
	if _, errOut, code := run(t, "pins", "--data-dir", dataDir, "rm", "local"); code != 2 || !strings.Contains(errOut, "no pin named") {
		t.Fatalf("pins rm of a missing pin: %d %s", code, errOut)
	}
}
