package mirror_test

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/nixlarder/larder/mirror"
	"github.com/nixlarder/larder/mirror/nixfmt"
	"github.com/nixlarder/larder/mirror/upstream"
)

// An xz NAR is served as fetched first; once the zstd copy is committed and
// verified, narinfos name it, with the upstream signature still valid, and
// the old xz URL keeps working for clients that cached it.
func TestRecompressSwitchesToZstdOnceVerified(t *testing.T) {
	f := newFixture(t, func(c *mirror.Config, _ *upstream.Options) { c.Recompress = "zstd" })
	ctx := context.Background()
	p := f.path(t, "xz-path", 300_000, "xz")
	first, err := f.fetch(ctx, p)
	if err != nil || !bytes.Equal(first, p.File) {
		t.Fatalf("first fetch: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for f.m.Stats().Recompressed == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	text, err := f.m.NarInfo(ctx, p.Info.HashPart())
	if err != nil {
		t.Fatal(err)
	}
	ni, _ := nixfmt.ParseNarInfo(text)
	if ni.Compression != "zstd" || !nixfmt.VerifyNarInfo(ni, []nixfmt.PublicKey{f.upKey.Public()}) ||
		!nixfmt.VerifyNarInfo(ni, []nixfmt.PublicKey{f.ownKey.Public()}) {
		t.Fatalf("after recompression:\n%s", text)
	}
	nar, err := f.m.OpenNAR(ctx, ni.NarHash, "zstd")
	if err != nil {
		t.Fatal(err)
	}
	file, _ := io.ReadAll(nar.File)
	nar.Close()
	dec, _ := zstd.NewReader(nil)
	plain, err := dec.DecodeAll(file, nil)
	if err != nil || !bytes.Equal(plain, p.NAR) || uint64(len(file)) != ni.FileSize {
		t.Fatalf("zstd file does not decode to the NAR: %v", err)
	}
	old, err := f.m.OpenNAR(ctx, ni.NarHash, "xz")
	if err != nil {
		t.Fatalf("the xz URL a client may have cached stopped working: %v", err)
	}
	old.Close()
}
