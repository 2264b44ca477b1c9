package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nixlarder/larder/cmd/larder/internal/nixtest"
	"github.com/nixlarder/larder/mirror/mirrortest"
)

// chromium runs headless Chromium with the flags this machine needs and
// returns stdout and stderr.
func chromium(t testing.TB, args ...string) (string, string) {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		mirrortest.Unavailable(t, "chromium not installed (apt-get install chromium)")
	}
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(), "--enable-logging=stderr", "--v=0"}
	cmd := exec.Command(bin, append(base, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	return stdout.String(), stderr.String()
}

// The status page, loaded in headless Chromium after real client traffic,
// shows the figures `larder stats` prints, renders to a screenshot, and
// logs no console errors.
func TestStatusPageInChromium(t *testing.T) {
	nixtest.Require(t)
	e := nixtest.NewEnv(t)
	closure := nixtest.BuildClosure(t, e, nixtest.ClosureSpec{Paths: 4, FileBytes: 64 << 10})
	upKey, published := nixtest.SignedCache(t, e, "upstream-status-1", "zstd", closure.Root)
	up := nixtest.ServeDir(t, published, 0)
	dataDir := t.TempDir()
	l := startLarder(t, dataDir, "--upstream", up.URL, "--trusted-key", upKey.Public, "--max-size", "1G")
	mustRun(t, "prefetch", "--server", l.URL, "--pin", "trip", closure.Root)
	for i := 0; i < 2; i++ {
		if _, err := nixtest.CopyFrom(t, e, l.URL, []string{l.pubkey(t)}, closure.Root); err != nil {
			t.Fatal(err)
		}
	}

	dom, stderr := chromium(t, "--dump-dom", l.URL+"/")
	stats := mustRun(t, "stats", "--data-dir", dataDir, "--max-size", "1G")
	if strings.Contains(stderr, "Uncaught") || regexp.MustCompile(`(?i)CONSOLE.*error`).MatchString(stderr) {
		t.Fatalf("console errors:\n%s", stderr)
	}
	field := func(id string) string {
		m := regexp.MustCompile(`id="` + id + `">([^<]*)<`).FindStringSubmatch(dom)
		if m == nil {
			t.Fatalf("page has no #%s:\n%s", id, dom)
		}
		return m[1]
	}
	statLine := func(label string) string {
		for _, line := range strings.Split(stats, "\n") {
			if strings.HasPrefix(line, label) {
				return strings.Join(strings.Fields(line), " ")
			}
		}
		t.Fatalf("larder stats has no %q line:\n%s", label, stats)
		return ""
	}
	want := map[string]string{
		"hit ratio":   "hit ratio today " + field("hit-today") + " all time " + field("hit-all"),
		"bytes saved": "bytes saved today " + field("saved-today") + " all time " + field("saved-all"),
		"disk":        "disk " + field("disk-used") + " of " + field("disk-limit"),
	}
	for label, w := range want {
		if got := statLine(label); got != w {
			t.Errorf("page and larder stats disagree:\n page:  %s\n stats: %s", w, got)
		}
	}
	if field("saved-today") == "0 B" || field("hit-today") == "–" {
		t.Fatalf("no traffic shown after two client runs: saved %s, hits %s", field("saved-today"), field("hit-today"))
	}
	if !strings.Contains(dom, "<td>trip</td><td>4</td>") || !strings.Contains(dom, "offline-ready") || !strings.Contains(stats, "pin              trip: 4 paths") {
		t.Fatalf("pin missing from the page or stats:\n%s\n%s", dom, stats)
	}

	shot := filepath.Join(t.TempDir(), "status.png")
	chromium(t, "--screenshot="+shot, "--window-size=1200,1100", l.URL+"/")
	if fi, err := os.Stat(shot); err != nil || fi.Size() < 10_000 {
		t.Fatalf("screenshot: %v", err)
	}
	if dir := os.Getenv("LARDER_SCREENSHOT_DIR"); dir != "" {
		data, _ := os.ReadFile(shot)
		os.WriteFile(filepath.Join(dir, "status.png"), data, 0o644)
	}
}
