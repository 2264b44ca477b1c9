package mirror

import (
	"bytes"
	"crypto/sha256"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/nixlarder/larder/mirror/mirrortest"
	"github.com/nixlarder/larder/mirror/nixfmt"
)

// realBytes returns n bytes of the machine's shared libraries, which
// compress like real store paths do (xz -6: about 3.8:1, close to
// cache.nixos.org's 25-30 %); synthetic text tops it up.
func realBytes(n int) []byte {
	var b bytes.Buffer
	filepath.WalkDir("/usr/lib/x86_64-linux-gnu", func(p string, d os.DirEntry, err error) error {
		if err != nil || b.Len() >= n || !d.Type().IsRegular() {
			return nil
		}
		if f, err := os.Open(p); err == nil {
			io.Copy(&b, io.LimitReader(f, int64(n-b.Len())))
			f.Close()
		}
		return nil
	})
	if b.Len() < n {
		b.Write(mirrortest.Payload(n - b.Len()))
	}
	return b.Bytes()
}

func compressWith(b *testing.B, compression string, data []byte) []byte {
	switch compression {
	case "zstd":
		// Level 19 is what cache.nixos.org writes; decoding speed barely depends on it.
		enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
		return enc.EncodeAll(data, nil)
	case "xz":
		cmd := exec.Command("xz", "-6", "-T0", "-c")
		cmd.Stdin = bytes.NewReader(data)
		out, err := cmd.Output()
		if err != nil {
			b.Skipf("xz program: %v", err)
		}
		return out
	}
	return data
}

// benchVerify measures verifyNar, the decompress+hash pass every fetched NAR
// goes through, in MB/s of uncompressed NAR on one goroutine.
func benchVerify(b *testing.B, compression string) {
	nar := realBytes(64 << 20)
	file := compressWith(b, compression, nar)
	sum := sha256.Sum256(nar)
	ni := &nixfmt.NarInfo{StorePath: "/nix/store/00000000000000000000000000000000-bench",
		Compression: compression, NarSize: uint64(len(nar)), NarHash: nixfmt.Hash{Algo: "sha256", Digest: sum[:]}}
	b.SetBytes(int64(len(nar)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		pr, pw := io.Pipe()
		go func() { pw.Write(file); pw.Close() }()
		if err := verifyNar(pr, ni); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(nar))/float64(len(file)), "ratio")
}

// BenchmarkXZProgramBaseline is the xz program (the same liblzma) decoding
// the same file to /dev/null: the ceiling for BenchmarkVerifyXZ.
func BenchmarkXZProgramBaseline(b *testing.B) {
	nar := realBytes(64 << 20)
	file := compressWith(b, "xz", nar)
	b.SetBytes(int64(len(nar)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cmd := exec.Command("xz", "-dc", "-T1")
		cmd.Stdin = bytes.NewReader(file)
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyXZ(b *testing.B)   { benchVerify(b, "xz") }
func BenchmarkVerifyZstd(b *testing.B) { benchVerify(b, "zstd") }
func BenchmarkVerifyNone(b *testing.B) { benchVerify(b, "none") }
