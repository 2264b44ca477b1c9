package nixfmt

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
)

// NewHasher returns a hash.Hash for a Nix hash algorithm name.
func NewHasher(algo string) (hash.Hash, error) {
	switch algo {
	case "sha256":
		return sha256.New(), nil
	case "sha512":
		return sha512.New(), nil
	case "sha1":
		return sha1.New(), nil
	case "md5":
		return md5.New(), nil
	}
	return nil, fmt.Errorf("unknown hash algorithm %q", algo)
}

// HashFlatNAR hashes the contents of a NAR that holds one regular file, as
// flat fixed-output and text store paths are addressed.
func HashFlatNAR(r io.Reader, algo string) (Hash, error) {
	h, err := NewHasher(algo)
	if err != nil {
		return Hash{}, err
	}
	nr := narReader{r: r}
	for _, want := range []string{"nix-archive-1", "(", "type", "regular"} {
		nr.expect(want)
	}
	tag := nr.str(64)
	if tag == "executable" {
		nr.expect("")
		tag = nr.str(64)
	}
	if nr.err == nil && tag != "contents" {
		nr.err = fmt.Errorf("NAR: want contents, got %q", tag)
	}
	nr.copyStr(h)
	nr.expect(")")
	if nr.err == nil {
		var extra [1]byte
		if n, _ := r.Read(extra[:]); n > 0 {
			nr.err = errors.New("NAR: data after the end")
		}
	}
	if nr.err != nil {
		return Hash{}, fmt.Errorf("not a single-file NAR: %w", nr.err)
	}
	return Hash{Algo: algo, Digest: h.Sum(nil)}, nil
}

// narReader reads NAR strings: u64le length, bytes, zero padding to 8.
type narReader struct {
	r   io.Reader
	err error
}

func (n *narReader) length() uint64 {
	var b [8]byte
	if n.err == nil {
		_, n.err = io.ReadFull(n.r, b[:])
	}
	return binary.LittleEndian.Uint64(b[:])
}

func (n *narReader) pad(l uint64) {
	if p := (8 - l%8) % 8; p > 0 && n.err == nil {
		var b [8]byte
		if _, n.err = io.ReadFull(n.r, b[:p]); n.err == nil && b != [8]byte{} {
			n.err = errors.New("NAR: non-zero padding")
		}
	}
}

func (n *narReader) str(max uint64) string {
	l := n.length()
	if n.err != nil {
		return ""
	}
	if l > max {
		n.err = fmt.Errorf("NAR: string of %d bytes where a tag was expected", l)
		return ""
	}
	b := make([]byte, l)
	_, n.err = io.ReadFull(n.r, b)
	n.pad(l)
	return string(b)
}

func (n *narReader) expect(want string) {
	if got := n.str(64); n.err == nil && got != want {
		n.err = fmt.Errorf("NAR: want %q, got %q", want, got)
	}
}

func (n *narReader) copyStr(w io.Writer) {
	l := n.length()
	if n.err != nil {
		return
	}
	var c int64
	c, n.err = io.CopyN(w, n.r, int64(l))
	if n.err == nil && uint64(c) == l {
		n.pad(l)
	}
}
