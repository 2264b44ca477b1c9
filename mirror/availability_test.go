package mirror_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nixlarder/larder/mirror"
	"github.com/nixlarder/larder/mirror/mirrortest"
	"github.com/nixlarder/larder/mirror/upstream"
)

func TestNegativeCacheOnlyFor404(t *testing.T) {
	f := newFixture(t, nil)
	missing := mirrortest.MakePath(t, f.upKey, "missing", []byte("x"), "none") // never added
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := f.m.NarInfo(ctx, missing.Info.HashPart()); !errors.Is(err, mirror.ErrNotFound) {
			t.Fatalf("missing path: %v", err)
		}
	}
	if n := f.up.Count(mirrortest.NarInfoPath(missing)); n != 1 {
		t.Fatalf("404 asked upstream %d times, want 1 (negative cache)", n)
	}

	flaky := f.path(t, "flaky", 100, "none")
	f.up.SetFault(mirrortest.NarInfoPath(flaky), mirrortest.Status500)
	if _, err := f.m.NarInfo(ctx, flaky.Info.HashPart()); !errors.Is(err, mirror.ErrNotFound) {
		t.Fatalf("500: %v", err)
	}
	f.up.SetFault(mirrortest.NarInfoPath(flaky), mirrortest.OK)
	if _, err := f.m.NarInfo(ctx, flaky.Info.HashPart()); err != nil {
		t.Fatalf("a transient 500 was cached as missing: %v", err)
	}
}

// While the upstream is down, misses answer at once and cached paths are
// still served; the breaker closes by itself once the upstream is back.
func TestUpstreamDown(t *testing.T) {
	f := newFixture(t, func(_ *mirror.Config, o *upstream.Options) {
		o.Breaker = upstream.NewBreaker(3, 200*time.Millisecond)
	})
	ctx := context.Background()
	cached := f.path(t, "cached", 10_000, "xz")
	if _, err := f.fetch(ctx, cached); err != nil {
		t.Fatal(err)
	}
	notFetched := f.path(t, "known-but-not-fetched", 10_000, "xz")
	if _, err := f.m.NarInfo(ctx, notFetched.Info.HashPart()); err != nil {
		t.Fatal(err)
	}
	f.up.Close()
	for i := 0; i < 5; i++ {
		p := mirrortest.MakePath(t, f.upKey, "never-seen", []byte("x"), "none")
		f.m.NarInfo(ctx, p.Info.HashPart())
	}
	start := time.Now()
	p := mirrortest.MakePath(t, f.upKey, "never-seen", []byte("x"), "none")
	if _, err := f.m.NarInfo(ctx, p.Info.HashPart()); !errors.Is(err, mirror.ErrNotFound) {
		t.Fatalf("miss while down: %v", err)
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Fatalf("a miss took %v while the upstream was down", d)
	}
	if _, err := f.fetch(ctx, cached); err != nil {
		t.Fatalf("cached path not served while upstream down: %v", err)
	}
	// The narinfo is indexed but its NAR is not on disk and cannot be
	// fetched: it must not be advertised.
	if _, err := f.m.NarInfo(ctx, notFetched.Info.HashPart()); !errors.Is(err, mirror.ErrNotFound) {
		t.Fatalf("advertised a narinfo whose NAR is unavailable: %v", err)
	}
}

func TestBreakerRecovers(t *testing.T) {
	f := newFixture(t, func(_ *mirror.Config, o *upstream.Options) {
		o.Breaker = upstream.NewBreaker(2, 100*time.Millisecond)
	})
	ctx := context.Background()
	p := f.path(t, "comes-back", 100, "none")
	f.up.SetFault(mirrortest.NarInfoPath(p), mirrortest.Status500)
	for i := 0; i < 3; i++ {
		f.m.NarInfo(ctx, p.Info.HashPart())
	}
	asked := f.up.Count(mirrortest.NarInfoPath(p))
	if asked != 2 {
		t.Fatalf("upstream asked %d times; the breaker should open after 2", asked)
	}
	f.up.SetFault(mirrortest.NarInfoPath(p), mirrortest.OK)
	time.Sleep(150 * time.Millisecond)
	if _, err := f.m.NarInfo(ctx, p.Info.HashPart()); err != nil {
		t.Fatalf("breaker did not recover: %v", err)
	}
}

// With two upstreams, the first in priority order wins even when slower, and
// a dead first upstream costs no timeout.
func TestUpstreamPriority(t *testing.T) {
	second := mirrortest.NewUpstream(t)
	f := newFixture(t, func(c *mirror.Config, o *upstream.Options) {
		u, err := upstream.New(second.URL, *o)
		if err != nil {
			t.Fatal(err)
		}
		c.Upstreams = append(c.Upstreams, u)
	})
	p := f.path(t, "both", 1000, "none")
	second.Add(p)
	f.up.SetFault(mirrortest.NarInfoPath(p), mirrortest.SlowHeaders)
	f.up.Delay = 100 * time.Millisecond
	if _, err := f.fetch(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if f.up.Count(mirrortest.NarPath(p)) != 1 || second.Count(mirrortest.NarPath(p)) != 0 {
		t.Fatalf("NAR came from the lower-priority upstream")
	}
	onlySecond := mirrortest.MakePath(t, f.upKey, "only-second", []byte("abc"), "none")
	second.Add(onlySecond)
	if _, err := f.fetch(context.Background(), onlySecond); err != nil {
		t.Fatalf("path only the second upstream has: %v", err)
	}
}
