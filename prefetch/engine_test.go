package prefetch_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixlarder/larder/index"
	"github.com/nixlarder/larder/mirror"
	"github.com/nixlarder/larder/mirror/blob"
	"github.com/nixlarder/larder/mirror/mirrortest"
	"github.com/nixlarder/larder/mirror/nixfmt"
	"github.com/nixlarder/larder/mirror/upstream"
	"github.com/nixlarder/larder/prefetch"
)

type fixture struct {
	svc   *prefetch.Service
	idx   *index.DB
	up    *mirrortest.Upstream
	upKey nixfmt.SecretKey
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	idx, err := index.Open(filepath.Join(dir, "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idx.Close() })
	blobs, err := blob.NewDisk(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{idx: idx, up: mirrortest.NewUpstream(t)}
	f.upKey, _ = nixfmt.GenerateKey("up-1")
	own, _ := nixfmt.GenerateKey("larder-1")
	opts := upstream.DefaultOptions()
	opts.Retries = 0
	c, _ := upstream.New(f.up.URL, opts)
	m := mirror.New(mirror.Config{Index: idx, Blobs: blobs, Upstreams: []mirror.Upstream{c},
		TrustedKeys: []nixfmt.PublicKey{f.upKey.Public()}, Key: own, NegativeTTL: time.Millisecond,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(m.Close)
	f.svc = &prefetch.Service{Engine: prefetch.Engine{Source: m, Pins: idx}, Store: m, PinList: idx, CA: m,
		Interval: 10 * time.Millisecond}
	return f
}

func (f *fixture) path(t *testing.T, name string, refs ...string) *mirrortest.Path {
	p := mirrortest.MakePath(t, f.upKey, name, mirrortest.Payload(50_000), "zstd", refs...)
	f.up.Add(p)
	return p
}

// A closure with a path no upstream has and a NAR that fails verification:
// the report names both, and a re-run after the fault clears fetches only
// what is still missing.
func TestPrefetchReportsAndResumes(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	leaf := f.path(t, "leaf")
	ghost := "0000000000000000000000000000000g-ghost"
	mid := f.path(t, "mid", leaf.Basename(), ghost)
	root := f.path(t, "root", mid.Basename())
	f.up.SetFault(mirrortest.NarPath(leaf), mirrortest.CorruptByte)

	var updates int
	rep, err := f.svc.Prefetch(ctx, &prefetch.Request{Roots: []string{root.Info.StorePath}, Pin: "trip"},
		func(prefetch.Progress) { updates++ })
	if err != nil {
		t.Fatal(err)
	}
	if rep.Complete || rep.PathsTotal != 4 || rep.Fetched != 2 || rep.Missing != 1 || rep.Failed != 1 || updates == 0 {
		t.Fatalf("report: %+v (updates %d)", rep, updates)
	}
	if rep.MissingPaths[0] != nixfmt.StoreDir+"/"+ghost || rep.Failures[0].Path != leaf.Info.StorePath ||
		!strings.Contains(rep.Failures[0].Reason, "verification") {
		t.Fatalf("missing %v, failures %v", rep.MissingPaths, rep.Failures)
	}
	pins, _ := f.svc.PinStatuses(ctx, true)
	if len(pins) != 1 || pins[0].OfflineReady || len(pins[0].Problems) != 2 {
		t.Fatalf("pin status: %+v", pins)
	}

	f.up.SetFault(mirrortest.NarPath(leaf), mirrortest.OK)
	before := f.up.Count(mirrortest.NarPath(root))
	time.Sleep(5 * time.Millisecond) // let the negative cache entry expire
	rep, err = f.svc.Prefetch(ctx, &prefetch.Request{Roots: []string{root.Info.StorePath}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Cached != 2 || rep.Fetched != 1 || rep.Missing != 1 || f.up.Count(mirrortest.NarPath(root)) != before {
		t.Fatalf("re-run: %+v", rep)
	}
}

// A root no upstream has is bad input: an error naming it, and no pin.
func TestUnknownRootRecordsNothing(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	known := f.path(t, "known")
	unknown := nixfmt.StoreDir + "/11111111111111111111111111111111-unknown"
	_, err := f.svc.Prefetch(ctx, &prefetch.Request{Roots: []string{known.Info.StorePath, unknown}, Pin: "p"}, nil)
	if !errors.Is(err, prefetch.ErrBadInput) || !strings.Contains(err.Error(), unknown) {
		t.Fatalf("err = %v", err)
	}
	if _, err := f.idx.Pin(ctx, "p"); !errors.Is(err, index.ErrNotFound) {
		t.Fatalf("pin recorded despite bad input: %v", err)
	}
	for _, bad := range []string{"", "/nix/store/short", "../../etc/passwd", "/nix/store/" + strings.Repeat("e", 32) + "-x"} {
		if _, err := prefetch.ParseRoot(bad); !errors.Is(err, prefetch.ErrBadInput) {
			t.Errorf("ParseRoot(%q) = %v", bad, err)
		}
	}
}

func TestReadListAcceptsXZ(t *testing.T) {
	text := "# a channel's store-paths\n/nix/store/11111111111111111111111111111111-a\n\n/nix/store/22222222222222222222222222222222-b/bin/x\n"
	list, err := prefetch.ReadList(strings.NewReader(text), "plain")
	if err != nil || len(list) != 2 {
		t.Fatalf("plain: %v %v", list, err)
	}
	xz := mirrortest.Compress(t, "xz", []byte(text))
	got, err := prefetch.ReadList(strings.NewReader(string(xz)), "store-paths.xz")
	if err != nil || len(got) != 2 || got[1] != strings.Repeat("2", 32) {
		t.Fatalf("xz: %v %v", got, err)
	}
	if _, err := prefetch.ReadList(strings.NewReader("/nix/store/x\n"), "f"); err == nil || !strings.Contains(err.Error(), "f:1:") {
		t.Fatalf("malformed line: %v", err)
	}
}
