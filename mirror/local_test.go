package mirror_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"testing"

	"github.com/nixlarder/larder/mirror"
	"github.com/nixlarder/larder/mirror/mirrortest"
	"github.com/nixlarder/larder/mirror/nixfmt"
)

func sha(b []byte) nixfmt.Hash {
	s := sha256.Sum256(b)
	return nixfmt.Hash{Algo: "sha256", Digest: s[:]}
}

// caPath describes a single-file path added recursively ("source") or flat.
func caPath(name string, contents []byte, recursive bool) (*nixfmt.NarInfo, []byte) {
	nar := mirrortest.NarOfFile(contents, false)
	h := sha(contents)
	ca := "fixed:sha256:" + nixfmt.EncodeNix32(h.Digest)
	if recursive {
		h = sha(nar)
		ca = "fixed:r:sha256:" + nixfmt.EncodeNix32(h.Digest)
	}
	return &nixfmt.NarInfo{StorePath: nixfmt.FixedOutputPath(recursive, h, name), URL: "nar/local.nar",
		Compression: "none", NarHash: sha(nar), NarSize: uint64(len(nar)), CA: ca}, nar
}

func TestAddCAServesSignedAndVerbatim(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	for _, recursive := range []bool{true, false} {
		ni, nar := caPath("local-src", []byte("contents only this machine has\n"), recursive)
		if err := f.m.AddCA(ctx, ni, bytes.NewReader(nar)); err != nil {
			t.Fatalf("recursive=%v: %v", recursive, err)
		}
		text, err := f.m.NarInfo(ctx, ni.HashPart())
		if err != nil {
			t.Fatal(err)
		}
		served, _ := nixfmt.ParseNarInfo(text)
		if !nixfmt.VerifyNarInfo(served, []nixfmt.PublicKey{f.ownKey.Public()}) || served.CA != ni.CA {
			t.Fatalf("served narinfo not signed by Larder or lost its CA:\n%s", text)
		}
		got, err := f.m.OpenNAR(ctx, ni.NarHash, served.Compression)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(got.File)
		got.Close()
		if !bytes.Equal(data, nar) {
			t.Fatal("served NAR differs from the one added")
		}
	}
	if f.up.Total() != 0 {
		t.Fatalf("adding a local artifact contacted the upstream %d times", f.up.Total())
	}
}

func TestAddCARejects(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	contents := []byte("real source\n")
	good, nar := caPath("src", contents, false)

	wrongName := *good
	wrongName.StorePath = good.StorePath[:len(good.StorePath)-3] + "xyz"

	// A NAR of other contents, with NarHash and NarSize made to match it,
	// under the CA and path of the real source.
	forged := *good
	evil := mirrortest.NarOfFile([]byte("evil source\n"), false)
	forged.NarHash, forged.NarSize = sha(evil), uint64(len(evil))

	noCA := *good
	noCA.CA = ""

	withRef := *good
	withRef.References = []string{"00000000000000000000000000000000-absent"}

	cases := []struct {
		name string
		ni   *nixfmt.NarInfo
		nar  []byte
	}{
		{"CA does not give the path", &wrongName, nar},
		{"contents do not match the CA", &forged, evil},
		{"bytes do not match NarHash", good, append(bytes.Clone(nar[:len(nar)-1]), 'x')},
		{"truncated", good, nar[:len(nar)/2]},
		{"no CA", &noCA, nar},
		{"reference not present", &withRef, nar},
	}
	for _, c := range cases {
		err := f.m.AddCA(ctx, c.ni, bytes.NewReader(c.nar))
		if !errors.Is(err, mirror.ErrRejected) {
			t.Errorf("%s: err = %v, want ErrRejected", c.name, err)
		}
		if _, err := f.m.NarInfo(ctx, c.ni.HashPart()); !errors.Is(err, mirror.ErrNotFound) {
			t.Errorf("%s: something was stored: %v", c.name, err)
		}
	}
}
