// Package codec names the compressions of Nix binary caches and opens
// decompressing readers for the ones Larder can verify.
package codec

import (
	"compress/bzip2"
	"compress/gzip"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// extensions maps a narinfo Compression value to the suffix Nix puts after ".nar".
var extensions = map[string]string{
	"none": "", "xz": ".xz", "zstd": ".zst", "bzip2": ".bz2", "gzip": ".gz",
	"br": ".br", "lzip": ".lzip", "lz4": ".lz4",
}

// Extension returns the file suffix for a compression, and whether it is known.
func Extension(compression string) (string, bool) {
	ext, ok := extensions[compression]
	return ext, ok
}

// FromExtension maps a suffix such as ".zst" (or "") back to a compression name.
func FromExtension(ext string) (string, bool) {
	for name, e := range extensions {
		if e == ext {
			return name, true
		}
	}
	return "", false
}

// Supported reports whether Larder can decompress (and so verify) this compression.
func Supported(compression string) bool {
	switch compression {
	case "none", "xz", "zstd", "bzip2", "gzip":
		return true
	}
	return false
}

// NewReader returns a reader of the decompressed bytes of r. Close releases
// decoder resources; it does not close r.
func NewReader(compression string, r io.Reader) (io.ReadCloser, error) {
	switch compression {
	case "none":
		return io.NopCloser(r), nil
	case "xz":
		return newXZReader(r)
	case "zstd":
		d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return zstdCloser{d}, nil
	case "bzip2":
		return io.NopCloser(bzip2.NewReader(r)), nil
	case "gzip":
		g, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return g, nil
	}
	return nil, fmt.Errorf("compression %q is not supported for verification", compression)
}

type zstdCloser struct{ *zstd.Decoder }

func (z zstdCloser) Close() error { z.Decoder.Close(); return nil }
