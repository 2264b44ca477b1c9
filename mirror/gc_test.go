package mirror_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nixlarder/larder/index"
	"github.com/nixlarder/larder/mirror"
	"github.com/nixlarder/larder/mirror/blob"
	"github.com/nixlarder/larder/mirror/mirrortest"
	"github.com/nixlarder/larder/mirror/upstream"
)

// fetchAll fetches paths through the mirror, then gives them distinct last
// access times in that order (oldest first).
func (f *fixture) fetchAll(t *testing.T, paths ...*mirrortest.Path) {
	t.Helper()
	for i, p := range paths {
		if _, err := f.fetch(context.Background(), p); err != nil {
			t.Fatalf("fetch %s: %v", p.Info.StorePath, err)
		}
		at := time.Unix(1_700_000_000+int64(i), 0)
		f.idx.Touch(context.Background(), nil, []string{p.Info.NarHash.String()}, at)
	}
}

func TestGCKeepsPinsAndNeverAdvertisesEvicted(t *testing.T) {
	f := newFixture(t, func(c *mirror.Config, _ *upstream.Options) { c.MaxSize = 450_000 })
	ctx := context.Background()
	pinnedDep := f.path(t, "pinned-dep", 100_000, "none")
	pinned := f.path(t, "pinned", 100_000, "none", pinnedDep.Basename())
	var loose []*mirrortest.Path
	for _, n := range []string{"a", "b", "c"} {
		loose = append(loose, f.path(t, n, 100_000, "none"))
	}
	if err := f.idx.SetPin(ctx, "keep", []string{pinned.Info.StorePath}); err != nil {
		t.Fatal(err)
	}
	// The pinned paths come first, so they are the least recently used:
	// LRU alone would take them. GC runs by itself past the high watermark;
	// running it again here waits for that run and must find nothing left.
	f.fetchAll(t, append([]*mirrortest.Path{pinnedDep, pinned}, loose...)...)
	if _, err := f.m.RunGC(ctx, false); err != nil {
		t.Fatal(err)
	}
	_, _, used, _ := f.idx.Counts(ctx)
	if used > int64(float64(450_000)*mirror.GCLow) {
		t.Fatalf("store holds %d bytes, over the low watermark", used)
	}
	// With the upstream gone, evicted paths are not advertised; pinned ones are served.
	for _, p := range append(loose, pinned, pinnedDep) {
		f.up.SetFault(mirrortest.NarInfoPath(p), mirrortest.Status500)
		f.up.SetFault(mirrortest.NarPath(p), mirrortest.Status500)
	}
	for _, p := range []*mirrortest.Path{pinned, pinnedDep} {
		if _, err := f.fetch(ctx, p); err != nil {
			t.Fatalf("pinned %s lost: %v", p.Info.StorePath, err)
		}
	}
	evicted := 0
	for _, p := range loose {
		_, err := f.m.NarInfo(ctx, p.Info.HashPart())
		if errors.Is(err, mirror.ErrNotFound) {
			evicted++
			if _, err := f.idx.NarInfo(ctx, p.Info.HashPart()); !errors.Is(err, index.ErrNotFound) {
				t.Fatalf("%s: NAR evicted but narinfo kept", p.Info.StorePath)
			}
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if evicted < 1 || f.m.Stats().GCRuns < 1 {
		t.Fatalf("%d loose paths evicted in %d GC runs", evicted, f.m.Stats().GCRuns)
	}
}

func TestGCRunsAutomaticallyAboveHighWatermark(t *testing.T) {
	f := newFixture(t, func(c *mirror.Config, _ *upstream.Options) { c.MaxSize = 250_000 })
	for _, n := range []string{"a", "b", "c"} {
		if _, err := f.fetch(context.Background(), f.path(t, n, 100_000, "none")); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.m.Stats().GCRuns == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	_, _, used, _ := f.idx.Counts(context.Background())
	if f.m.Stats().GCRuns == 0 || used > int64(250_000*mirror.GCHigh) {
		t.Fatalf("no automatic GC: runs %d, %d bytes used", f.m.Stats().GCRuns, used)
	}
}

// A real full disk (a small tmpfs): the write fails cleanly, GC runs, and
// the request succeeds when retried.
func TestFullDiskTriggersGC(t *testing.T) {
	dir := t.TempDir()
	mnt := filepath.Join(dir, "small")
	os.Mkdir(mnt, 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=700k", "tmpfs", mnt).CombinedOutput(); err != nil {
		mirrortest.Unavailable(t, fmt.Sprintf("cannot mount a tmpfs here: %v %s", err, out))
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	f := newFixture(t, func(c *mirror.Config, _ *upstream.Options) {
		c.MaxSize = 100 << 20 // far above the disk: only the full disk can trigger GC
		b, err := blob.NewDisk(mnt)
		if err != nil {
			t.Fatal(err)
		}
		c.Blobs = b
	})
	var paths []*mirrortest.Path
	for _, n := range []string{"a", "b", "c", "d"} {
		paths = append(paths, f.path(t, n, 200_000, "none"))
	}
	f.fetchAll(t, paths[:3]...)
	if _, err := f.fetch(context.Background(), paths[3]); err == nil {
		t.Fatal("a fetch onto a full disk succeeded")
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.m.Stats().GCRuns == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := f.fetch(context.Background(), paths[3]); err != nil {
		t.Fatalf("retry after GC: %v (GC runs %d)", err, f.m.Stats().GCRuns)
	}
	if f.committed(t, paths[0]) {
		t.Fatal("the least recently used NAR was not the one evicted")
	}
}

func TestVerifyFindsAndRepairsDamage(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	good, bad := f.path(t, "good", 50_000, "zstd"), f.path(t, "bad", 50_000, "zstd")
	f.fetchAll(t, good, bad)
	file := filepath.Join(f.dataDir, "store", "nar")
	matches, _ := filepath.Glob(filepath.Join(file, "*", mirrortest.NarFileName(bad)))
	if len(matches) != 1 {
		t.Fatalf("NAR file of %s not found", bad.Info.StorePath)
	}
	data, _ := os.ReadFile(matches[0])
	data[len(data)/2] ^= 0x10
	os.WriteFile(matches[0], data, 0o644)

	rep, err := f.m.Verify(ctx, false, nil)
	if err != nil || rep.Files != 2 || len(rep.Damaged) != 1 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	before := f.up.Count(mirrortest.NarPath(bad))
	rep, err = f.m.Verify(ctx, true, nil)
	if err != nil || len(rep.Damaged) != 1 || rep.Damaged[0].QuarantinedAs == "" {
		t.Fatalf("repair: %+v %v", rep, err)
	}
	got, err := f.fetch(ctx, bad)
	if err != nil || string(got) != string(bad.File) || f.up.Count(mirrortest.NarPath(bad)) != before+1 {
		t.Fatalf("after repair the NAR must be fetched again: %v", err)
	}
	if rep, _ := f.m.Verify(ctx, false, nil); len(rep.Damaged) != 0 {
		t.Fatalf("still damaged after refetch: %+v", rep.Damaged)
	}
}

// Narinfos rendered (and cached) before a collection are not served after
// it evicted their NARs.
func TestGCDropsCachedNarInfos(t *testing.T) {
	f := newFixture(t, func(c *mirror.Config, _ *upstream.Options) { c.MaxSize = 100 << 20 })
	ctx := context.Background()
	var paths []*mirrortest.Path
	for _, n := range []string{"a", "b", "c"} {
		paths = append(paths, f.path(t, n, 100_000, "none"))
	}
	f.fetchAll(t, paths...)
	for _, p := range paths {
		if _, err := f.m.NarInfo(ctx, p.Info.HashPart()); err != nil { // rendered now, with the NAR on disk
			t.Fatal(err)
		}
		f.up.SetFault(mirrortest.NarInfoPath(p), mirrortest.Status500)
	}
	plan, err := f.m.RunGC(ctx, true)
	if err != nil || len(plan.Victims) == 0 {
		t.Fatalf("forced GC evicted nothing: %v", err)
	}
	if _, err := f.m.NarInfo(ctx, paths[0].Info.HashPart()); !errors.Is(err, mirror.ErrNotFound) {
		t.Fatalf("the least recently used path is still advertised after GC: %v", err)
	}
}
