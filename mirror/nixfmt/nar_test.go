package nixfmt_test

import (
	"bytes"
	"crypto/sha256"
	"testing"

	"github.com/nixlarder/larder/mirror/mirrortest"
	"github.com/nixlarder/larder/mirror/nixfmt"
)

func TestHashFlatNAR(t *testing.T) {
	contents := []byte("flat file contents\n")
	want := sha256.Sum256(contents)
	for _, exec := range []bool{false, true} {
		h, err := nixfmt.HashFlatNAR(bytes.NewReader(mirrortest.NarOfFile(contents, exec)), "sha256")
		if err != nil || !bytes.Equal(h.Digest, want[:]) {
			t.Fatalf("executable=%v: %v %v", exec, h, err)
		}
	}
	nar := mirrortest.NarOfFile(contents, false)
	bad := map[string][]byte{
		"truncated":     nar[:len(nar)-3],
		"trailing data": append(bytes.Clone(nar), 0),
		"not a NAR":     []byte("hello world, this is not a NAR at all...."),
		"dirty padding": func() []byte { c := bytes.Clone(nar); c[len(nar)-17] = 1; return c }(),
	}
	for name, data := range bad {
		if _, err := nixfmt.HashFlatNAR(bytes.NewReader(data), "sha256"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
