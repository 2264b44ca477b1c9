package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixlarder/larder/cmd/larder/internal/nixtest"
)

// Past --max-size with a pinned and an unpinned closure: GC brings the store
// under the low watermark, the pin still checks complete, and a client of
// the pinned closure is served with the upstream gone. `larder verify`
// finds a damaged file and --repair makes it refetchable.
func TestGCAndVerifyWithRealNix(t *testing.T) {
	nixtest.Require(t)
	e := nixtest.NewEnv(t)
	keep := nixtest.BuildClosure(t, e, nixtest.ClosureSpec{Paths: 4, FileBytes: 256 << 10})
	loose := nixtest.BuildClosure(t, e, nixtest.ClosureSpec{Paths: 6, FileBytes: 256 << 10})
	upKey, published := nixtest.SignedCache(t, e, "upstream-gc-1", "none", keep.Root, loose.Root)
	up := nixtest.ServeDir(t, published, 0)
	dataDir := t.TempDir()
	// 10 paths of ~256 KiB; room for about 7.
	l := startLarder(t, dataDir, "--upstream", up.URL, "--trusted-key", upKey.Public, "--max-size", "1900K")
	mustRun(t, "prefetch", "--server", l.URL, "--pin", "keep", keep.Root)
	run(t, "prefetch", "--server", l.URL, loose.Root) // may report paths evicted as it goes

	// Each GC run goes down to the low watermark; downloads that finish
	// after the last run may take the store back up, but never past the
	// high watermark without another run.
	deadline := time.Now().Add(10 * time.Second)
	var used int64
	for time.Now().Before(deadline) {
		if used = dirSize(filepath.Join(dataDir, "store", "nar")); used <= 1900<<10*95/100 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if used > 1900<<10*95/100 || used == 0 {
		t.Fatalf("store holds %d bytes after GC", used)
	}
	if _, _, code := run(t, "check", "--data-dir", dataDir, loose.Root); code != 1 {
		t.Fatal("nothing of the unpinned closure was evicted")
	}
	mustRun(t, "check", "--data-dir", dataDir, "--pin", "keep")
	if out := mustRun(t, "gc", "--data-dir", dataDir, "--max-size", "1900K", "--dry-run"); !strings.Contains(out, "evicting 0 NARs") {
		t.Fatalf("gc --dry-run after GC:\n%s", out)
	}
	up.Close()
	if _, err := nixtest.CopyFrom(t, e, l.URL, []string{l.pubkey(t)}, keep.Root); err != nil {
		t.Fatalf("pinned closure after GC: %v", err)
	}

	victim := narFileOf(t, l.URL, dataDir, keep.Paths[0])
	data, _ := os.ReadFile(victim)
	data[len(data)/3] ^= 1
	os.WriteFile(victim, data, 0o644)
	out, _, code := run(t, "verify", "--data-dir", dataDir)
	if code != 1 || !strings.Contains(out, "damaged: nar/") {
		t.Fatalf("verify: exit %d\n%s", code, out)
	}
	if out := mustRun(t, "verify", "--data-dir", dataDir, "--repair"); !strings.Contains(out, "quarantined as") {
		t.Fatalf("verify --repair:\n%s", out)
	}
	if _, _, code := run(t, "check", "--data-dir", dataDir, "--pin", "keep"); code != 1 {
		t.Fatal("check passed with a quarantined NAR")
	}
}

func dirSize(dir string) int64 {
	var total int64
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				total += fi.Size()
			}
		}
		return nil
	})
	return total
}
