// Package prefetch mirrors whole closures ahead of time, records them as
// pins, and checks from the index and disk alone that a pin is complete, so
// a LAN or a laptop can go offline knowing nothing is missing.
package prefetch

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/nixlarder/larder/mirror/codec"
	"github.com/nixlarder/larder/mirror/nixfmt"
)

// ErrBadInput marks input that names no store path; nothing was recorded.
var ErrBadInput = errors.New("bad input")

// ParseRoot accepts a full store path (a path inside one is cut to the
// store path), a basename, or a bare hash part, and returns the hash part.
func ParseRoot(s string) (string, error) {
	s = strings.TrimSpace(s)
	if rest, ok := strings.CutPrefix(s, nixfmt.StoreDir+"/"); ok {
		s, _, _ = strings.Cut(rest, "/")
	}
	if nixfmt.ValidHashPart(s) || nixfmt.ValidBasename(s) {
		return s[:32], nil
	}
	return "", fmt.Errorf("%w: %q is not a store path", ErrBadInput, s)
}

var xzMagic = []byte{0xFD, '7', 'z', 'X', 'Z', 0x00}

// ReadList reads store paths one a line (blank lines and # comments
// skipped). An xz-compressed list, such as a channel's store-paths.xz, is
// accepted as is. name is used in errors.
func ReadList(r io.Reader, name string) ([]string, error) {
	br := bufio.NewReader(r)
	if head, _ := br.Peek(len(xzMagic)); bytes.Equal(head, xzMagic) {
		dec, err := codec.NewReader("xz", br)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		defer dec.Close()
		return readLines(dec, name)
	}
	return readLines(br, name)
}

func readLines(r io.Reader, name string) ([]string, error) {
	var hashes []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		h, err := ParseRoot(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, n, err)
		}
		hashes = append(hashes, h)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return hashes, nil
}
