package nixfmt

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// MaxNarInfoSize bounds what Larder will read as one narinfo.
const MaxNarInfoSize = 1 << 20

// NarInfo is a parsed .narinfo file. References are basenames, as on the wire.
type NarInfo struct {
	StorePath   string
	URL         string
	Compression string
	FileHash    Hash
	FileSize    uint64
	NarHash     Hash
	NarSize     uint64
	References  []string
	Deriver     string
	Sigs        []string
	CA          string
}

// compressions are the names Nix accepts in a narinfo.
var compressions = map[string]bool{"none": true, "br": true, "bzip2": true, "compress": true,
	"grzip": true, "gzip": true, "lrzip": true, "lz4": true, "lzip": true, "lzma": true,
	"lzop": true, "xz": true, "zstd": true}

// ParseNarInfo parses a narinfo with Nix's own rules: "Key: value\n" lines,
// unknown keys ignored, References and CA at most once, Sig lines collected,
// other repeats last-wins. Unlike Nix it also rejects hostile URLs, because
// Larder follows them.
func ParseNarInfo(data []byte) (*NarInfo, error) {
	if len(data) > MaxNarInfoSize {
		return nil, fmt.Errorf("narinfo: larger than %d bytes", MaxNarInfoSize)
	}
	ni := &NarInfo{}
	seen := map[string]bool{}
	for len(data) > 0 {
		nl := bytes.IndexByte(data, '\n')
		if nl < 0 {
			return nil, errors.New("narinfo: last line does not end in a newline")
		}
		line := string(data[:nl])
		data = data[nl+1:]
		key, value, ok := strings.Cut(line, ": ")
		if !ok {
			return nil, fmt.Errorf("narinfo: malformed line %q", line)
		}
		if (key == "References" || key == "CA") && seen[key] {
			return nil, fmt.Errorf("narinfo: %s given twice", key)
		}
		seen[key] = true
		if err := ni.set(key, value); err != nil {
			return nil, fmt.Errorf("narinfo: %s: %w", key, err)
		}
	}
	if err := ni.complete(); err != nil {
		return nil, fmt.Errorf("narinfo: %w", err)
	}
	return ni, nil
}

func (ni *NarInfo) set(key, value string) (err error) {
	switch key {
	case "StorePath":
		_, _, err = SplitStorePath(value)
		ni.StorePath = value
	case "URL":
		err = checkURL(value)
		ni.URL = value
	case "Compression":
		if !compressions[value] {
			return fmt.Errorf("unknown compression %q", value)
		}
		ni.Compression = value
	case "FileHash":
		ni.FileHash, err = ParseHash(value)
	case "FileSize":
		ni.FileSize, err = strconv.ParseUint(value, 10, 64)
	case "NarHash":
		ni.NarHash, err = ParseHash(value)
	case "NarSize":
		ni.NarSize, err = strconv.ParseUint(value, 10, 64)
	case "References":
		ni.References, err = parseReferences(value)
	case "Deriver":
		if value != "unknown-deriver" && !(ValidBasename(value) && strings.HasSuffix(value, ".drv")) {
			return fmt.Errorf("invalid deriver %q", value)
		}
		if value != "unknown-deriver" {
			ni.Deriver = value
		}
	case "Sig":
		if !strings.Contains(value, ":") {
			return fmt.Errorf("malformed signature %q", value)
		}
		if !containsString(ni.Sigs, value) {
			ni.Sigs = append(ni.Sigs, value)
		}
	case "CA":
		ni.CA = value
	}
	return err
}

func parseReferences(value string) ([]string, error) {
	var refs []string
	for _, r := range strings.Fields(value) {
		if !ValidBasename(r) {
			return nil, fmt.Errorf("invalid reference %q", r)
		}
		refs = append(refs, r)
	}
	return refs, nil
}

// checkURL refuses what could make Larder fetch outside the upstream's NAR
// area: control characters, spaces, backslashes, dot-dot segments, fragments.
func checkURL(u string) error {
	if u == "" {
		return errors.New("empty URL")
	}
	for i := 0; i < len(u); i++ {
		if u[i] <= ' ' || u[i] == 0x7f || u[i] == '\\' || u[i] == '#' {
			return fmt.Errorf("URL %q contains a forbidden character", u)
		}
	}
	path, _, _ := strings.Cut(u, "?")
	if i := strings.Index(path, "://"); i >= 0 {
		path = path[i+3:]
	}
	for _, seg := range strings.Split(path, "/") {
		if seg == ".." || seg == "." || strings.Contains(strings.ToLower(seg), "%2e%2e") {
			return fmt.Errorf("URL %q contains a dot segment", u)
		}
	}
	return nil
}

func (ni *NarInfo) complete() error {
	switch {
	case ni.StorePath == "":
		return errors.New("missing StorePath")
	case ni.URL == "":
		return errors.New("missing URL")
	case ni.NarHash.IsZero():
		return errors.New("missing NarHash")
	case ni.NarHash.Algo != "sha256":
		return fmt.Errorf("NarHash must be sha256, not %s", ni.NarHash.Algo)
	case ni.NarSize == 0:
		return errors.New("missing or zero NarSize")
	}
	if ni.Compression == "" {
		ni.Compression = "bzip2"
	}
	return nil
}

// HashPart is the 32-character hash of the store path, the narinfo's name.
func (ni *NarInfo) HashPart() string { return BaseName(ni.StorePath)[:32] }

// Bytes renders the narinfo in the order Nix writes it.
func (ni *NarInfo) Bytes() []byte {
	var b bytes.Buffer
	line := func(k, v string) { b.WriteString(k + ": " + v + "\n") }
	line("StorePath", ni.StorePath)
	line("URL", ni.URL)
	line("Compression", ni.Compression)
	if !ni.FileHash.IsZero() {
		line("FileHash", ni.FileHash.String())
	}
	if ni.FileSize != 0 {
		line("FileSize", strconv.FormatUint(ni.FileSize, 10))
	}
	line("NarHash", ni.NarHash.String())
	line("NarSize", strconv.FormatUint(ni.NarSize, 10))
	line("References", strings.Join(ni.References, " "))
	if ni.Deriver != "" {
		line("Deriver", ni.Deriver)
	}
	for _, s := range ni.Sigs {
		line("Sig", s)
	}
	if ni.CA != "" {
		line("CA", ni.CA)
	}
	return b.Bytes()
}

// Fingerprint is what a narinfo signature signs (Nix's path-info.cc).
func (ni *NarInfo) Fingerprint() string {
	refs := make([]string, len(ni.References))
	for i, r := range ni.References {
		refs[i] = StoreDir + "/" + r
	}
	sort.Strings(refs)
	return "1;" + ni.StorePath + ";" + ni.NarHash.String() + ";" +
		strconv.FormatUint(ni.NarSize, 10) + ";" + strings.Join(refs, ",")
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
