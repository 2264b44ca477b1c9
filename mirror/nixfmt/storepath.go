package nixfmt

import (
	"fmt"
	"strings"
)

// StoreDir is the only store directory Larder serves.
const StoreDir = "/nix/store"

// ValidHashPart reports whether s is 32 nix32 characters.
func ValidHashPart(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(nix32Alphabet, s[i]) < 0 {
			return false
		}
	}
	return true
}

// ValidName checks a store path name the way Nix does.
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > 211 || name == "." || name == ".." ||
		strings.HasPrefix(name, ".-") || strings.HasPrefix(name, "..-") {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("+-._?=", c) >= 0
		if !ok {
			return false
		}
	}
	return true
}

// ValidBasename checks "<hashpart>-<name>".
func ValidBasename(b string) bool {
	return len(b) > 33 && b[32] == '-' && ValidHashPart(b[:32]) && ValidName(b[33:])
}

// SplitStorePath splits a full store path into hash part and name.
func SplitStorePath(p string) (hashPart, name string, err error) {
	base, ok := strings.CutPrefix(p, StoreDir+"/")
	if !ok || !ValidBasename(base) {
		return "", "", fmt.Errorf("invalid store path %q", p)
	}
	return base[:32], base[33:], nil
}

// BaseName strips the store directory if present.
func BaseName(p string) string { return strings.TrimPrefix(p, StoreDir+"/") }
