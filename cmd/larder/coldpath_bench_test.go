package main

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nixlarder/larder/cmd/larder/internal/nixtest"
)

// BenchmarkColdPathRealNix: the real Nix client copies a closure of
// LARDER_BENCH_PATHS (default 128) paths into an empty store, once directly
// from an upstream that answers every request after 20 ms, once through a
// cold Larder in front of that upstream. Reports both times and their ratio
// (issue target: ≤ 0.5).
func BenchmarkColdPathRealNix(b *testing.B) {
	nixtest.Require(b)
	paths := 128
	if n, err := strconv.Atoi(os.Getenv("LARDER_BENCH_PATHS")); err == nil && n > 0 {
		paths = n
	}
	e := nixtest.NewEnv(b)
	closure := nixtest.BuildClosure(b, e, nixtest.ClosureSpec{Paths: paths, FileBytes: 256 << 10})
	upKey, published := nixtest.SignedCache(b, e, "upstream-bench-1", "zstd", closure.Root)
	up := nixtest.ServeDir(b, published, 20*time.Millisecond)

	var direct, larder time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, err := nixtest.CopyFrom(b, e, up.URL, []string{upKey.Public}, closure.Root); err != nil {
			b.Fatal(err)
		}
		direct += time.Since(start)

		b.StopTimer()
		l := startLarder(b, b.TempDir(), "--upstream", up.URL, "--trusted-key", upKey.Public)
		key := l.pubkey(b)
		b.StartTimer()
		start = time.Now()
		if _, err := nixtest.CopyFrom(b, e, l.URL, []string{key}, closure.Root); err != nil {
			b.Fatalf("%v\n%s", err, l.log)
		}
		larder += time.Since(start)
		b.StopTimer()
		l.stop()
		b.StartTimer()
	}
	b.ReportMetric(direct.Seconds()/float64(b.N), "direct-s")
	b.ReportMetric(larder.Seconds()/float64(b.N), "larder-s")
	b.ReportMetric(larder.Seconds()/direct.Seconds(), "ratio")
	b.ReportMetric(float64(len(closure.Paths)), "paths")
}
