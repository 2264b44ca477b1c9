package mirror_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nixlarder/larder/index"
	"github.com/nixlarder/larder/mirror"
	"github.com/nixlarder/larder/mirror/blob"
	"github.com/nixlarder/larder/mirror/mirrortest"
	"github.com/nixlarder/larder/mirror/nixfmt"
	"github.com/nixlarder/larder/mirror/upstream"
)

type fixture struct {
	m       *mirror.Mirror
	idx     *index.DB
	blobs   *blob.Disk
	up      *mirrortest.Upstream
	upKey   nixfmt.SecretKey
	ownKey  nixfmt.SecretKey
	dataDir string
}

func newKey(t testing.TB, name string) nixfmt.SecretKey {
	t.Helper()
	k, err := nixfmt.GenerateKey(name)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newFixture wires a Mirror over a real SQLite index and disk store in front
// of one fake upstream. Pre-pull is off unless a test turns it on, so request
// counts are the client's own.
func newFixture(t testing.TB, tweak func(*mirror.Config, *upstream.Options)) *fixture {
	t.Helper()
	f := &fixture{up: mirrortest.NewUpstream(t), upKey: newKey(t, "up-1"), ownKey: newKey(t, "larder-test-1"), dataDir: t.TempDir()}
	var err error
	if f.idx, err = index.Open(filepath.Join(f.dataDir, "index.db")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.idx.Close() })
	if f.blobs, err = blob.NewDisk(filepath.Join(f.dataDir, "store")); err != nil {
		t.Fatal(err)
	}
	opts := upstream.DefaultOptions()
	opts.Retries = 0
	opts.HeaderTimeout = 2 * time.Second
	cfg := mirror.Config{Index: f.idx, Blobs: f.blobs, TrustedKeys: []nixfmt.PublicKey{f.upKey.Public()},
		Key: f.ownKey, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if tweak != nil {
		tweak(&cfg, &opts)
	}
	c, err := upstream.New(f.up.URL, opts)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Upstreams = append([]mirror.Upstream{c}, cfg.Upstreams...)
	f.m = mirror.New(cfg)
	t.Cleanup(f.m.Close)
	return f
}

func (f *fixture) path(t testing.TB, name string, size int, compression string, refs ...string) *mirrortest.Path {
	p := mirrortest.MakePath(t, f.upKey, name, mirrortest.Payload(size), compression, refs...)
	f.up.Add(p)
	return p
}

// fetch asks for the narinfo, then reads the whole NAR file it names.
func (f *fixture) fetch(ctx context.Context, p *mirrortest.Path) ([]byte, error) {
	text, err := f.m.NarInfo(ctx, p.Info.HashPart())
	if err != nil {
		return nil, err
	}
	ni, err := nixfmt.ParseNarInfo(text)
	if err != nil {
		return nil, err
	}
	nar, err := f.m.OpenNAR(ctx, ni.NarHash, ni.Compression)
	if err != nil {
		return nil, err
	}
	defer nar.Close()
	if nar.File != nil {
		return io.ReadAll(nar.File)
	}
	return io.ReadAll(nar.Stream)
}

// committed reports whether the index lists a NAR file for p.
func (f *fixture) committed(t testing.TB, p *mirrortest.Path) bool {
	_, err := f.idx.NarFile(context.Background(), p.Info.NarHash.String(), p.Info.Compression)
	if err != nil && !errors.Is(err, index.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

func TestPullThroughSignsAndRewrites(t *testing.T) {
	f := newFixture(t, nil)
	dep := f.path(t, "dep", 1000, "xz")
	p := f.path(t, "app", 200_000, "xz", dep.Basename())
	ctx := context.Background()
	got, err := f.fetch(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, p.File) {
		t.Fatalf("served %d bytes, want the upstream's %d", len(got), len(p.File))
	}
	text, err := f.m.NarInfo(ctx, p.Info.HashPart())
	if err != nil {
		t.Fatal(err)
	}
	ni, _ := nixfmt.ParseNarInfo(text)
	if !nixfmt.VerifyNarInfo(ni, []nixfmt.PublicKey{f.ownKey.Public()}) {
		t.Fatal("served narinfo lacks a valid Larder signature")
	}
	if !nixfmt.VerifyNarInfo(ni, []nixfmt.PublicKey{f.upKey.Public()}) {
		t.Fatal("upstream signature was not kept")
	}
	if ni.URL != "nar/"+nixfmt.EncodeNix32(p.Info.NarHash.Digest)+".nar.xz" || ni.FileSize != uint64(len(p.File)) {
		t.Fatalf("URL %q FileSize %d", ni.URL, ni.FileSize)
	}
	if !f.committed(t, p) {
		t.Fatal("verified NAR was not committed")
	}
	// A second fetch is served from disk: no new upstream request.
	before := f.up.Count(mirrortest.NarPath(p))
	if _, err := f.fetch(ctx, p); err != nil {
		t.Fatal(err)
	}
	if after := f.up.Count(mirrortest.NarPath(p)); after != before {
		t.Fatalf("cached NAR fetched upstream again (%d → %d requests)", before, after)
	}
}

// Each fault must fail the transfer, commit nothing, and leave the next
// request (after the fault clears) to succeed.
func TestNarFaults(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault mirrortest.Fault
	}{
		{"truncated body", mirrortest.Truncate},
		{"reset mid-stream", mirrortest.Reset},
		{"one corrupted byte", mirrortest.CorruptByte},
		{"HTTP 500", mirrortest.Status500},
		{"slow headers", mirrortest.SlowHeaders},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, func(_ *mirror.Config, o *upstream.Options) { o.HeaderTimeout = 300 * time.Millisecond })
			f.up.Delay = time.Second
			p := f.path(t, "faulty", 300_000, "xz")
			f.up.SetFault(mirrortest.NarPath(p), tc.fault)
			got, err := f.fetch(context.Background(), p)
			if err == nil {
				t.Fatalf("fault gave a clean read of %d bytes", len(got))
			}
			if f.committed(t, p) {
				t.Fatal("a faulty download was committed")
			}
			f.up.SetFault(mirrortest.NarPath(p), mirrortest.OK)
			got, err = f.fetch(context.Background(), p)
			if err != nil {
				t.Fatalf("after the fault cleared: %v", err)
			}
			if !bytes.Equal(got, p.File) || !f.committed(t, p) {
				t.Fatal("after the fault cleared: wrong bytes or not committed")
			}
		})
	}
}

func TestWrongNarHashIsNeverCommitted(t *testing.T) {
	f := newFixture(t, nil)
	p := f.path(t, "liar", 50_000, "zstd")
	bad := *p.Info
	bad.NarHash = nixfmt.Hash{Algo: "sha256", Digest: bytes.Repeat([]byte{7}, 32)}
	bad.Sigs = []string{f.upKey.SignNarInfo(&bad)} // validly signed, wrong contents
	f.up.SetNarInfo(p, bad.Bytes())
	text, err := f.m.NarInfo(context.Background(), p.Info.HashPart())
	if err != nil {
		t.Fatal(err)
	}
	ni, _ := nixfmt.ParseNarInfo(text)
	nar, err := f.m.OpenNAR(context.Background(), ni.NarHash, ni.Compression)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(nar.Stream)
	nar.Close()
	if !errors.Is(err, mirror.ErrVerify) {
		t.Fatalf("read error %v, want ErrVerify", err)
	}
	if _, err := f.idx.NarFile(context.Background(), bad.NarHash.String(), "zstd"); !errors.Is(err, index.ErrNotFound) {
		t.Fatalf("mismatching NAR committed: %v", err)
	}
	if s := f.m.Stats(); s.VerifyFailures != 1 {
		t.Fatalf("VerifyFailures = %d, want 1", s.VerifyFailures)
	}
}

func TestBadSignatureIsNotAvailable(t *testing.T) {
	f := newFixture(t, nil)
	p := f.path(t, "unsigned", 1000, "none")
	forged := *p.Info
	forged.Sigs = []string{newKey(t, "up-1").SignNarInfo(&forged)} // right name, wrong key
	f.up.SetNarInfo(p, forged.Bytes())
	if _, err := f.m.NarInfo(context.Background(), p.Info.HashPart()); !errors.Is(err, mirror.ErrNotFound) {
		t.Fatalf("forged narinfo: %v, want ErrNotFound", err)
	}
	if _, err := f.idx.NarInfo(context.Background(), p.Info.HashPart()); !errors.Is(err, index.ErrNotFound) {
		t.Fatal("forged narinfo was recorded")
	}
}

func TestConcurrentClientsShareOneDownload(t *testing.T) {
	f := newFixture(t, nil)
	f.up.Delay = 5 * time.Millisecond
	p := f.path(t, "popular", 400_000, "xz")
	f.up.SetFault(mirrortest.NarPath(p), mirrortest.Trickle) // slow enough that all 50 overlap
	results := make([][]byte, 50)
	errs := make([]error, 50)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() { defer wg.Done(); results[i], errs[i] = f.fetch(context.Background(), p) }()
	}
	wg.Wait()
	for i := range results {
		if errs[i] != nil || !bytes.Equal(results[i], p.File) {
			t.Fatalf("client %d: err %v, %d bytes", i, errs[i], len(results[i]))
		}
	}
	if n := f.up.Count(mirrortest.NarPath(p)); n != 1 {
		t.Fatalf("%d upstream GETs for one NAR, want 1", n)
	}
}

// A client that goes away never cancels the download: it completes and is
// committed for the next client.
func TestClientDisconnectDoesNotCancel(t *testing.T) {
	f := newFixture(t, nil)
	f.up.Delay = 2 * time.Millisecond
	p := f.path(t, "abandoned", 200_000, "zstd")
	f.up.SetFault(mirrortest.NarPath(p), mirrortest.Trickle)
	ctx, cancel := context.WithCancel(context.Background())
	text, err := f.m.NarInfo(ctx, p.Info.HashPart())
	if err != nil {
		t.Fatal(err)
	}
	ni, _ := nixfmt.ParseNarInfo(text)
	nar, err := f.m.OpenNAR(ctx, ni.NarHash, ni.Compression)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadFull(nar.Stream, make([]byte, 1000))
	cancel()
	nar.Close()
	if err := f.m.WaitNAR(context.Background(), ni.NarHash, ni.Compression); err != nil {
		t.Fatal(err)
	}
	if !f.committed(t, p) {
		t.Fatal("abandoned download was not committed")
	}
}
