package serve_test

import (
	"io"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/nixlarder/larder/mirror/mirrortest"
)

// warmFixture has one path fetched through Larder, so its narinfo and NAR
// are served from the index and disk.
func warmFixture(b *testing.B, narBytes int) (*fixture, *mirrortest.Path, string) {
	f := newFixture(b)
	p := mirrortest.MakePath(b, f.upKey, "bench", mirrortest.Payload(narBytes), "none")
	f.up.Add(p)
	nar := f.narURL(b, p)
	resp, body, err := f.get(b, "GET", nar)
	if err != nil || resp.StatusCode != 200 || len(body) != len(p.File) {
		b.Fatalf("warm-up GET: %v", err)
	}
	return f, p, nar
}

func client(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns, DisableCompression: true}}
}

// BenchmarkNarInfoHit: a cached narinfo over loopback HTTP with keep-alive,
// from parallel clients (index lookup, render, sign).
func BenchmarkNarInfoHit(b *testing.B) {
	f, p, _ := warmFixture(b, 4096)
	url := f.srv.URL + "/" + p.Info.HashPart() + ".narinfo"
	c := client(64)
	b.SetParallelism(32) // 64 concurrent clients on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}

// BenchmarkCachedNAR100MB: a committed 100 MB NAR over loopback HTTP, 4
// downloads at a time; MB/s is what clients receive.
func BenchmarkCachedNAR100MB(b *testing.B) {
	f, p, nar := warmFixture(b, 100<<20)
	url := f.srv.URL + nar
	c := client(4)
	var bad atomic.Int64
	b.SetBytes(int64(len(p.File)))
	b.SetParallelism(2)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if n != int64(len(p.File)) {
				bad.Add(1)
			}
		}
	})
	if bad.Load() > 0 {
		b.Fatalf("%d short downloads", bad.Load())
	}
}
