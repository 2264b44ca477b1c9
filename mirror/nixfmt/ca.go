package nixfmt

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// VerifyCA checks that the store path is the one its CA field determines,
// which makes a content-addressed path trustworthy without any signature
// (Nix's ValidPathInfo::isContentAddressed).
func (ni *NarInfo) VerifyCA() error {
	if ni.CA == "" {
		return errors.New("no CA field")
	}
	_, name, err := SplitStorePath(ni.StorePath)
	if err != nil {
		return err
	}
	want, err := ni.caPath(name)
	if err != nil {
		return fmt.Errorf("CA %q: %w", ni.CA, err)
	}
	if want != ni.StorePath {
		return fmt.Errorf("CA %q gives %s, not %s", ni.CA, want, ni.StorePath)
	}
	return nil
}

func (ni *NarInfo) caPath(name string) (string, error) {
	method, rest, _ := strings.Cut(ni.CA, ":")
	switch method {
	case "text":
		h, err := parseAlgoDigest(rest)
		if err != nil || h.Algo != "sha256" {
			return "", errors.New("text needs a sha256 hash")
		}
		return makeStorePath(makeType("text", ni.References, false), h, name), nil
	case "fixed":
		recursive := strings.HasPrefix(rest, "r:")
		h, err := parseAlgoDigest(strings.TrimPrefix(rest, "r:"))
		if err != nil {
			return "", err
		}
		return ni.fixedPath(recursive, h, name)
	}
	return "", fmt.Errorf("unknown method %q", method)
}

func (ni *NarInfo) fixedPath(recursive bool, h Hash, name string) (string, error) {
	if recursive && h.Algo == "sha256" {
		self := BaseName(ni.StorePath)
		var refs []string
		hasSelf := false
		for _, r := range ni.References {
			if r == self {
				hasSelf = true
			} else {
				refs = append(refs, r)
			}
		}
		return makeStorePath(makeType("source", refs, hasSelf), h, name), nil
	}
	if len(ni.References) > 0 {
		return "", errors.New("a flat or non-sha256 fixed output cannot have references")
	}
	prefix := ""
	if recursive {
		prefix = "r:"
	}
	inner := sha256.Sum256([]byte("fixed:out:" + prefix + h.Algo + ":" + h.Base16() + ":"))
	return makeStorePath("output:out", Hash{"sha256", inner[:]}, name), nil
}

func parseAlgoDigest(s string) (Hash, error) {
	algo, digest, ok := strings.Cut(s, ":")
	if !ok {
		return Hash{}, fmt.Errorf("hash %q: want algo:digest", s)
	}
	return parseDigest(algo, digest)
}

// makeType appends the sorted full reference paths (and ":self") to a type.
func makeType(typ string, refs []string, hasSelf bool) string {
	sorted := append([]string(nil), refs...)
	sort.Strings(sorted)
	for _, r := range sorted {
		typ += ":" + StoreDir + "/" + r
	}
	if hasSelf {
		typ += ":self"
	}
	return typ
}

// makeStorePath is Nix's Store::makeStorePath.
func makeStorePath(typ string, h Hash, name string) string {
	s := typ + ":" + h.Algo + ":" + h.Base16() + ":" + StoreDir + ":" + name
	full := sha256.Sum256([]byte(s))
	var short [20]byte
	for i, b := range full {
		short[i%20] ^= b
	}
	return StoreDir + "/" + EncodeNix32(short[:]) + "-" + name
}

// FixedOutputPath is the store path of a fixed-output (or added) path
// without references: recursive sha256 is the "source" type, anything else
// goes through "output:out".
func FixedOutputPath(recursive bool, h Hash, name string) string {
	ni := &NarInfo{}
	p, _ := ni.fixedPath(recursive, h, name)
	return p
}
