package main

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nixlarder/larder/cmd/larder/internal/nixtest"
)

// BenchmarkPrefetchClosure: mirroring a closure of LARDER_BENCH_PATHS
// (default 300) paths from an upstream with 50 ms latency per request
// behind a 50 MB/s link, with `larder prefetch` into a cold Larder, and
// with `nix copy --from UPSTREAM --to file://DIR?compression=none`, side by
// side. (compression=none is Nix's best case: the default, xz, adds seconds
// of CPU per path and is not what the comparison is about.) Reports
// both times, the floor (file bytes / bandwidth) and the two ratios
// (targets: larder/floor ≤ 1.25, nix/larder ≥ 10).
func BenchmarkPrefetchClosure(b *testing.B) {
	nixtest.Require(b)
	paths := 300
	if n, err := strconv.Atoi(os.Getenv("LARDER_BENCH_PATHS")); err == nil && n > 0 {
		paths = n
	}
	const bandwidth = 50 << 20
	e := nixtest.NewEnv(b)
	closure := nixtest.BuildClosure(b, e, nixtest.ClosureSpec{Paths: paths, FileBytes: 3 << 20})
	upKey, dir := nixtest.SignedCache(b, e, "upstream-pfbench-1", "zstd", closure.Root)
	fileBytes := dirBytes(b, filepath.Join(dir, "nar"))
	up := nixtest.ServeDirThrottled(b, dir, 50*time.Millisecond, bandwidth)

	var larderTime, nixTime time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		l := startLarder(b, b.TempDir(), "--upstream", up.URL, "--trusted-key", upKey.Public, "--prepull=false")
		b.StartTimer()
		start := time.Now()
		if out, errOut, code := run(b, "prefetch", "--server", l.URL, closure.Root); code != 0 {
			b.Fatalf("prefetch: exit %d\n%s%s", code, out, errOut)
		}
		larderTime += time.Since(start)
		b.StopTimer()
		l.stop()
		b.StartTimer()

		start = time.Now()
		conf := "trusted-public-keys = " + upKey.Public + "\n"
		if _, err := e.Try(conf, "nix", "copy", "--from", up.URL, "--to", "file://"+b.TempDir()+"?compression=none", closure.Root); err != nil {
			b.Fatal(err)
		}
		nixTime += time.Since(start)
	}
	floor := float64(fileBytes) / bandwidth
	lt, nt := larderTime.Seconds()/float64(b.N), nixTime.Seconds()/float64(b.N)
	b.ReportMetric(lt, "larder-s")
	b.ReportMetric(nt, "nixcopy-s")
	b.ReportMetric(floor, "floor-s")
	b.ReportMetric(lt/floor, "larder/floor")
	b.ReportMetric(nt/lt, "nixcopy/larder")
	b.ReportMetric(float64(fileBytes)/(1<<20), "MiB")
	b.ReportMetric(float64(len(closure.Paths)), "paths")
}

func dirBytes(b *testing.B, dir string) int64 {
	var total int64
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				total += fi.Size()
			}
		}
		return nil
	})
	if total == 0 {
		b.Fatalf("no NAR files under %s", dir)
	}
	return total
}
