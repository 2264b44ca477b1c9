// Package nixfmt holds Nix's wire formats: nix32, hashes, store paths,
// narinfo, and signing keys. It imports nothing of Larder's.
package nixfmt

import (
	"fmt"
	"strings"
)

const nix32Alphabet = "0123456789abcdfghijklmnpqrsvwxyz" // no e, o, u, t

// nix32Len is the encoded length of n bytes.
func nix32Len(n int) int { return (n*8-1)/5 + 1 }

// EncodeNix32 encodes b the way Nix does: highest digit first, five bits at
// a time taken from the little-endian bit string.
func EncodeNix32(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	l := nix32Len(len(b))
	out := make([]byte, 0, l)
	for n := l - 1; n >= 0; n-- {
		bit := n * 5
		i, j := bit/8, uint(bit%8)
		c := b[i] >> j
		if i+1 < len(b) {
			c |= b[i+1] << (8 - j)
		}
		out = append(out, nix32Alphabet[c&0x1f])
	}
	return string(out)
}

// DecodeNix32 reverses EncodeNix32. It rejects characters outside the
// alphabet and encodings whose unused high bits are not zero.
func DecodeNix32(s string) ([]byte, error) {
	n := len(s) * 5 / 8
	if n == 0 || nix32Len(n) != len(s) {
		return nil, fmt.Errorf("nix32 %q: invalid length %d", s, len(s))
	}
	out := make([]byte, n)
	for k := 0; k < len(s); k++ {
		digit := strings.IndexByte(nix32Alphabet, s[len(s)-1-k])
		if digit < 0 {
			return nil, fmt.Errorf("nix32 %q: invalid character %q", s, s[len(s)-1-k])
		}
		bit := k * 5
		i, j := bit/8, uint(bit%8)
		out[i] |= byte(digit << j)
		carry := byte(digit >> (8 - j))
		if i+1 < n {
			out[i+1] |= carry
		} else if carry != 0 {
			return nil, fmt.Errorf("nix32 %q: non-zero padding bits", s)
		}
	}
	return out, nil
}
