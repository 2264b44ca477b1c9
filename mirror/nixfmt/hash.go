package nixfmt

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// Hash is a digest with its algorithm.
type Hash struct {
	Algo   string
	Digest []byte
}

var hashSizes = map[string]int{"md5": 16, "sha1": 20, "sha256": 32, "sha512": 64}

// ParseHash parses "algo:digest" (digest in nix32, base16 or base64, told
// apart by length, as Nix does) or SRI "algo-base64".
func ParseHash(s string) (Hash, error) {
	if algo, rest, ok := strings.Cut(s, ":"); ok {
		return parseDigest(algo, rest)
	}
	if algo, rest, ok := strings.Cut(s, "-"); ok {
		size, known := hashSizes[algo]
		if !known {
			return Hash{}, fmt.Errorf("hash %q: unknown algorithm %q", s, algo)
		}
		d, err := base64.StdEncoding.DecodeString(rest)
		if err != nil || len(d) != size {
			return Hash{}, fmt.Errorf("hash %q: invalid SRI digest", s)
		}
		return Hash{algo, d}, nil
	}
	return Hash{}, fmt.Errorf("hash %q: want algo:digest", s)
}

// parseDigest decodes a digest of a known algorithm in any of Nix's encodings.
func parseDigest(algo, s string) (Hash, error) {
	size, known := hashSizes[algo]
	if !known {
		return Hash{}, fmt.Errorf("hash %q: unknown algorithm %q", algo+":"+s, algo)
	}
	var d []byte
	var err error
	switch len(s) {
	case hex.EncodedLen(size):
		d, err = hex.DecodeString(s)
	case nix32Len(size):
		d, err = DecodeNix32(s)
	case base64.StdEncoding.EncodedLen(size):
		d, err = base64.StdEncoding.DecodeString(s)
	default:
		err = fmt.Errorf("wrong length %d", len(s))
	}
	if err != nil || len(d) != size {
		return Hash{}, fmt.Errorf("hash %q: invalid %s digest: %v", algo+":"+s, algo, err)
	}
	return Hash{algo, d}, nil
}

// String is Nix's narinfo form, "algo:<nix32>".
func (h Hash) String() string {
	if h.IsZero() {
		return ""
	}
	return h.Algo + ":" + EncodeNix32(h.Digest)
}

// IsZero reports an absent hash.
func (h Hash) IsZero() bool { return h.Algo == "" && len(h.Digest) == 0 }

// Equal compares algorithm and digest.
func (h Hash) Equal(o Hash) bool { return h.Algo == o.Algo && bytes.Equal(h.Digest, o.Digest) }

// Base16 is the lowercase hex digest.
func (h Hash) Base16() string { return hex.EncodeToString(h.Digest) }
