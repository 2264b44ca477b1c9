package main

import (
	"io"
	"net/http"
	"testing"

	"github.com/nixlarder/larder/cmd/larder/internal/nixtest"
)

// BenchmarkLocalStore: serving the host's own store (the nix-serve /
// harmonia job) — a 64 MiB path's NAR made on the fly, uncompressed and
// zstd, and narinfo latency. MB/s counts NAR bytes.
func BenchmarkLocalStore(b *testing.B) {
	nixtest.Require(b)
	e := nixtest.NewEnv(b)
	closure := nixtest.BuildClosure(b, e, nixtest.ClosureSpec{Paths: 1, FileBytes: 64 << 20})
	info := nixtest.PathInfoOf(b, e, "local", closure.Root)[0]
	for _, compression := range []string{"none", "zstd"} {
		l := startLarder(b, b.TempDir(), "--offline", "--local-store", "--local-store-compression", compression)
		nar := narURLsOf(b, l.URL, closure.Paths)[0]
		b.Run("nar-"+compression, func(b *testing.B) {
			b.SetBytes(info.NarSize)
			for i := 0; i < b.N; i++ {
				resp, err := http.Get(nar)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
		if compression == "none" {
			narinfo := l.URL + "/" + closure.Root[11:43] + ".narinfo"
			b.Run("narinfo", func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					resp, err := http.Get(narinfo)
					if err != nil {
						b.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		}
		l.stop()
	}
}
