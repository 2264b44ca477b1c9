package codec

import (
	"bytes"
	"crypto/rand"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// compressWith runs a real compressor so the tests decode what tools write.
func compressWith(t testing.TB, tool string, data []byte) []byte {
	t.Helper()
	cmd := exec.Command(tool, "-c")
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("%s not available: %v", tool, err)
	}
	return out
}

func sample() []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < 3<<20; i++ {
		b.WriteString(strings.Repeat("larder nar payload ", i%7+1))
		b.WriteByte(byte(i))
	}
	noise := make([]byte, 256<<10)
	rand.Read(noise)
	b.Write(noise)
	return b.Bytes()
}

func TestRoundTrips(t *testing.T) {
	data := sample()
	enc, _ := zstd.NewWriter(nil)
	cases := map[string][]byte{
		"none":  data,
		"xz":    compressWith(t, "xz", data),
		"bzip2": compressWith(t, "bzip2", data),
		"gzip":  compressWith(t, "gzip", data),
		"zstd":  enc.EncodeAll(data, nil),
	}
	for comp, in := range cases {
		t.Run(comp, func(t *testing.T) {
			r, err := NewReader(comp, bytes.NewReader(in))
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("decoded %d bytes, want %d identical", len(got), len(data))
			}
		})
	}
}

func TestXZConcatenatedStreams(t *testing.T) {
	a, b := []byte("first stream\n"), []byte("second stream\n")
	in := append(compressWith(t, "xz", a), compressWith(t, "xz", b)...)
	r, _ := NewReader("xz", bytes.NewReader(in))
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil || string(got) != string(a)+string(b) {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestCorruptAndTruncatedInputsFail(t *testing.T) {
	data := sample()
	for _, comp := range []string{"xz", "zstd"} {
		var in []byte
		if comp == "xz" {
			in = compressWith(t, "xz", data)
		} else {
			enc, _ := zstd.NewWriter(nil)
			in = enc.EncodeAll(data, nil)
		}
		truncated := in[:len(in)/2]
		flipped := bytes.Clone(in)
		flipped[len(flipped)/2] ^= 0x55
		for name, bad := range map[string][]byte{"truncated": truncated, "flipped": flipped} {
			r, err := NewReader(comp, bytes.NewReader(bad))
			if err != nil {
				continue // rejected up front: also fine
			}
			got, err := io.ReadAll(r)
			r.Close()
			if err == nil && bytes.Equal(got, data) {
				t.Errorf("%s/%s: decoded as if intact", comp, name)
			}
			if err == nil {
				t.Errorf("%s/%s: no error for damaged input", comp, name)
			}
		}
	}
}

func TestUnsupported(t *testing.T) {
	if _, err := NewReader("br", bytes.NewReader(nil)); err == nil {
		t.Fatal("br should be refused")
	}
	if Supported("lz4") || !Supported("xz") {
		t.Fatal("Supported disagrees with NewReader")
	}
	if ext, _ := Extension("zstd"); ext != ".zst" {
		t.Fatalf("zstd extension %q", ext)
	}
	if c, ok := FromExtension(""); !ok || c != "none" {
		t.Fatalf("FromExtension(\"\") = %q %v", c, ok)
	}
}
