package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nixlarder/larder/cmd/larder/internal/nixtest"
	"github.com/nixlarder/larder/mirror/nixfmt"
)

// The air gap: Larder A prefetches and exports a pin; Larder B, which has no
// upstream, imports it and serves the closure to a fresh Nix client; plain
// `nix copy --from file://` reads the bundle too. A second, larger export
// with --exclude of B's inventory carries only the new paths.
func TestExportImportAirGap(t *testing.T) {
	nixtest.Require(t)
	e := nixtest.NewEnv(t)
	first := nixtest.BuildClosure(t, e, nixtest.ClosureSpec{Paths: 10, FileBytes: 16 << 10})
	second := nixtest.BuildClosure(t, e, nixtest.ClosureSpec{Paths: 14, FileBytes: 16 << 10})
	upKey, published := nixtest.SignedCache(t, e, "upstream-gap-1", "xz", first.Root, second.Root)
	up := nixtest.ServeDir(t, published, 0)
	dataA := t.TempDir()
	a := startLarder(t, dataA, "--upstream", up.URL, "--trusted-key", upKey.Public)
	keyA := a.pubkey(t)
	mustRun(t, "prefetch", "--server", a.URL, "--pin", "trip", first.Root)

	out := filepath.Join(t.TempDir(), "bundle")
	stdout := mustRun(t, "export", "--data-dir", dataA, "--pin", "trip", out)
	if !strings.Contains(stdout, "10 paths: 10 written") {
		t.Fatalf("export:\n%s", stdout)
	}
	if _, err := nixtest.CopyFrom(t, e, "file://"+out, []string{keyA}, first.Root); err != nil {
		t.Fatalf("plain nix copy --from file:// of the bundle: %v", err)
	}

	dataB := t.TempDir()
	stdout = mustRun(t, "import", "--data-dir", dataB, "--trusted-key", keyA, out)
	if !strings.Contains(stdout, "pin trip: offline-ready (10 paths)") {
		t.Fatalf("import:\n%s", stdout)
	}
	mustRun(t, "check", "--data-dir", dataB, "--pin", "trip")
	b := startLarder(t, dataB, "--offline", "--trusted-key", keyA)
	store, err := nixtest.CopyFrom(t, e, b.URL, []string{b.pubkey(t)}, first.Root)
	if err != nil {
		t.Fatalf("client from the air-gapped Larder: %v\n%s", err, b.log)
	}
	for _, p := range first.Paths {
		if _, err := os.Stat(filepath.Join(store, p)); err != nil {
			t.Fatalf("client store lacks %s", p)
		}
	}

	// Incremental: a larger pin on A; export only what B lacks; import into
	// the running B through its API.
	mustRun(t, "prefetch", "--server", a.URL, "--pin", "trip", first.Root, second.Root)
	have := filepath.Join(t.TempDir(), "have.json")
	writeFile(t, have, mustRun(t, "inventory", "--data-dir", dataB))
	out2 := filepath.Join(t.TempDir(), "bundle2")
	stdout = mustRun(t, "export", "--server", a.URL, "--pin", "trip", "--exclude", have, out2)
	if infos, _ := filepath.Glob(filepath.Join(out2, "*.narinfo")); len(infos) != 14 || !strings.Contains(stdout, "10 excluded") {
		t.Fatalf("incremental export wrote %d narinfos:\n%s", len(infos), stdout)
	}
	stdout = mustRun(t, "import", "--server", b.URL, out2)
	if !strings.Contains(stdout, "pin trip: offline-ready (24 paths)") {
		t.Fatalf("incremental import:\n%s", stdout)
	}
	if _, err := nixtest.CopyFrom(t, e, b.URL, []string{b.pubkey(t)}, second.Root); err != nil {
		t.Fatalf("client after the incremental import: %v", err)
	}
}

func mustRun(t testing.TB, args ...string) string {
	t.Helper()
	stdout, stderr, code := run(t, args...)
	if code != 0 {
		t.Fatalf("larder %s: exit %d\n%s%s", strings.Join(args, " "), code, stdout, stderr)
	}
	return stdout
}

// A bundle with one corrupted NAR and one altered narinfo: import refuses
// exactly those, keeps the rest, reports the pin incomplete and exits 1.
func TestImportRefusesTampering(t *testing.T) {
	nixtest.Require(t)
	e := nixtest.NewEnv(t)
	closure := nixtest.BuildClosure(t, e, nixtest.ClosureSpec{Paths: 6, FileBytes: 16 << 10})
	upKey, published := nixtest.SignedCache(t, e, "upstream-tamper-1", "zstd", closure.Root)
	up := nixtest.ServeDir(t, published, 0)
	dataA := t.TempDir()
	a := startLarder(t, dataA, "--upstream", up.URL, "--trusted-key", upKey.Public)
	mustRun(t, "prefetch", "--server", a.URL, "--pin", "t", closure.Root)
	out := t.TempDir()
	mustRun(t, "export", "--data-dir", dataA, "--pin", "t", out)

	badNar, badInfo := closure.Paths[1], closure.Paths[2]
	ni := readNarInfo(t, out, badNar)
	narFile := filepath.Join(out, ni.URL)
	data, _ := os.ReadFile(narFile)
	data[len(data)/2] ^= 0xff
	os.WriteFile(narFile, data, 0o644)
	infoFile := filepath.Join(out, filepath.Base(badInfo)[:32]+".narinfo")
	text, _ := os.ReadFile(infoFile)
	os.WriteFile(infoFile, []byte(strings.Replace(string(text), "References: ", "References: "+filepath.Base(closure.Paths[0])+" ", 1)), 0o644)

	stdout, _, code := run(t, "import", "--data-dir", t.TempDir(), "--trusted-key", a.pubkey(t), out)
	refused := strings.Count(stdout, "refused: ")
	if code != 1 || refused != 2 || !strings.Contains(stdout, "4 paths imported") ||
		!strings.Contains(stdout, badNar) || !strings.Contains(stdout, badInfo) || !strings.Contains(stdout, "pin t: INCOMPLETE") {
		t.Fatalf("import of a tampered bundle: exit %d, %d refused\n%s", code, refused, stdout)
	}
}

func readNarInfo(t testing.TB, dir, storePath string) *nixfmt.NarInfo {
	t.Helper()
	text, err := os.ReadFile(filepath.Join(dir, filepath.Base(storePath)[:32]+".narinfo"))
	if err != nil {
		t.Fatal(err)
	}
	ni, err := nixfmt.ParseNarInfo(text)
	if err != nil {
		t.Fatal(err)
	}
	return ni
}

// Killed mid-way, export and import leave no partial file under a final
// name, and a re-run completes.
func TestExportImportKilled(t *testing.T) {
	nixtest.Require(t)
	e := nixtest.NewEnv(t)
	closure := nixtest.BuildClosure(t, e, nixtest.ClosureSpec{Paths: 4, FileBytes: 1 << 20})
	upKey, published := nixtest.SignedCache(t, e, "upstream-kill-exp-1", "none", closure.Root)
	up := nixtest.ServeDir(t, published, 0)
	dataA := t.TempDir()
	a := startLarder(t, dataA, "--upstream", up.URL, "--trusted-key", upKey.Public)
	mustRun(t, "prefetch", "--server", a.URL, "--pin", "k", closure.Root)
	keyA := a.pubkey(t)

	out := t.TempDir()
	killMidway(t, filepath.Join(out, "nar", ".larder-tmp-*"), "export", "--server", throttledProxy(t, a.URL, 1<<20), "--pin", "k", out)
	assertWholeFiles(t, out)
	if infos, _ := filepath.Glob(filepath.Join(out, "*.narinfo")); len(infos) == len(closure.Paths) {
		t.Fatal("the killed export had already written every path")
	}
	mustRun(t, "export", "--data-dir", dataA, "--pin", "k", out)
	if left, _ := filepath.Glob(filepath.Join(out, "nar", ".larder-tmp-*")); len(left) != 0 {
		t.Fatalf("temp files left after the re-run: %v", left)
	}

	dataB := t.TempDir()
	b := startLarder(t, dataB, "--offline", "--trusted-key", keyA)
	killMidway(t, filepath.Join(dataB, "store", "tmp", "blob-*"), "import", "--server", throttledProxy(t, b.URL, 1<<20), out)
	stdout, _, _ := run(t, "check", "--data-dir", dataB, "--pin", "k")
	for _, line := range strings.Split(stdout, "\n") {
		if strings.HasPrefix(line, "missing:") && !strings.Contains(line, "narinfo not stored") {
			t.Fatalf("a partial import was committed: %s", line)
		}
	}
	mustRun(t, "import", "--server", b.URL, out)
	mustRun(t, "check", "--data-dir", dataB, "--pin", "k")
}

// killMidway starts larder and kills it (SIGKILL) once a temp file matching
// pattern has data in it, i.e. in the middle of writing a file.
func killMidway(t testing.TB, pattern string, args ...string) {
	t.Helper()
	cmd := exec.Command(larderBin, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	caught := false
	for deadline := time.Now().Add(20 * time.Second); !caught && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		found, _ := filepath.Glob(pattern)
		for _, f := range found {
			if fi, err := os.Stat(f); err == nil && fi.Size() > 0 {
				caught = true
			}
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	if err := cmd.Wait(); err == nil || !caught {
		t.Fatalf("larder %s was not caught writing (%s): %v", args[0], pattern, err)
	}
}

// assertWholeFiles checks that every narinfo in a bundle names a NAR file of
// the right size.
func assertWholeFiles(t testing.TB, dir string) {
	t.Helper()
	infos, _ := filepath.Glob(filepath.Join(dir, "*.narinfo"))
	for _, f := range infos {
		ni := readNarInfo(t, dir, "/nix/store/"+strings.TrimSuffix(filepath.Base(f), ".narinfo")+"-x")
		fi, err := os.Stat(filepath.Join(dir, ni.URL))
		if err != nil || uint64(fi.Size()) != ni.FileSize {
			t.Fatalf("%s names an incomplete NAR file: %v", f, err)
		}
	}
}

// throttledProxy forwards to target with request and response bodies
// limited to bytesPerSec, so a test can interrupt a transfer.
func throttledProxy(t testing.TB, target string, bytesPerSec int) string {
	u, _ := url.Parse(target)
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.ModifyResponse = func(resp *http.Response) error {
		resp.Body = slowBody{resp.Body, bytesPerSec}
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			r.Body = slowBody{r.Body, bytesPerSec}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

type slowBody struct {
	io.ReadCloser
	rate int
}

func (s slowBody) Read(p []byte) (int, error) {
	chunk := max(s.rate/20, 1)
	if len(p) > chunk {
		p = p[:chunk]
	}
	time.Sleep(50 * time.Millisecond)
	return s.ReadCloser.Read(p)
}
