// Package bundle moves a Larder's closures across an air gap: export writes
// a standard file:// binary cache (readable by plain Nix) plus a manifest,
// import verifies everything in one before committing it, and an inventory
// of the receiving side makes the next export incremental.
package bundle

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// ManifestName is the bundle manifest next to the narinfos.
const ManifestName = "larder-bundle.json"

// Manifest describes a bundle.
type Manifest struct {
	Version int                 `json:"version"`
	Created time.Time           `json:"created"`
	Paths   []Entry             `json:"paths"`
	Pins    map[string][]string `json:"pins,omitempty"`
	Keys    []string            `json:"keys"` // public keys that signed the narinfos
	// URLs are source files kept by the forward proxy, under urls/<sha256>.
	URLs    []URLEntry          `json:"urls,omitempty"`
	PinURLs map[string][]string `json:"pin_urls,omitempty"`
}

// URLEntry is one kept source in a bundle.
type URLEntry struct {
	URL          string `json:"url"`
	SHA256       string `json:"sha256"`
	Size         int64  `json:"size"`
	ContentType  string `json:"content_type,omitempty"`
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
}

// Entry is one path in a bundle.
type Entry struct {
	Path     string `json:"path"`
	NarHash  string `json:"nar_hash"`
	NarSize  uint64 `json:"nar_size"`
	URL      string `json:"url"`
	FileSize uint64 `json:"file_size"`
}

// Inventory lists the store paths a Larder holds (`larder inventory`).
type Inventory struct {
	Paths []string `json:"paths"`
}

// ReadManifest reads dir's manifest; a directory without one (any file://
// cache written by Nix) gives an empty manifest.
func ReadManifest(dir string) (*Manifest, error) {
	m := &Manifest{Version: 1, Pins: map[string][]string{}, PinURLs: map[string][]string{}}
	data, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if os.IsNotExist(err) {
		return m, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ManifestName), err)
	}
	if m.Pins == nil {
		m.Pins = map[string][]string{}
	}
	if m.PinURLs == nil {
		m.PinURLs = map[string][]string{}
	}
	return m, nil
}

// mergeURLs adds kept sources and the pins that need them.
func (m *Manifest) mergeURLs(entries []URLEntry, pinURLs map[string][]string) {
	byURL := map[string]URLEntry{}
	for _, e := range append(m.URLs, entries...) {
		byURL[e.URL] = e
	}
	m.URLs = m.URLs[:0]
	for _, e := range byURL {
		m.URLs = append(m.URLs, e)
	}
	sort.Slice(m.URLs, func(i, j int) bool { return m.URLs[i].URL < m.URLs[j].URL })
	for pin, urls := range pinURLs {
		m.PinURLs[pin] = urls
	}
}

// merge adds entries, pins and keys, replacing entries of the same path.
func (m *Manifest) merge(entries []Entry, pins map[string][]string, keys []string) {
	byPath := map[string]Entry{}
	for _, e := range append(m.Paths, entries...) {
		byPath[e.Path] = e
	}
	m.Paths = m.Paths[:0]
	for _, e := range byPath {
		m.Paths = append(m.Paths, e)
	}
	sort.Slice(m.Paths, func(i, j int) bool { return m.Paths[i].Path < m.Paths[j].Path })
	for name, roots := range pins {
		m.Pins[name] = roots
	}
	seen := map[string]bool{}
	var all []string
	for _, k := range append(m.Keys, keys...) {
		if !seen[k] {
			seen[k] = true
			all = append(all, k)
		}
	}
	m.Keys = all
	m.Created = time.Now().UTC()
}

// writeJSON writes v to path atomically and durably.
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(path, func(f *os.File) error {
		_, err := f.Write(append(data, '\n'))
		return err
	})
}

// tmpPrefix marks files being written; a re-run removes leftovers.
const tmpPrefix = ".larder-tmp-"

// writeAtomic writes a file through a temp file in the same directory:
// written, fsynced, renamed, directory fsynced. A kill leaves either the old
// state or the new file, never a partial one under the final name.
func writeAtomic(path string, write func(*os.File) error) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, tmpPrefix+"*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// cleanTemps removes what an interrupted run left behind.
func cleanTemps(dir string) error {
	for _, sub := range []string{dir, filepath.Join(dir, "nar"), filepath.Join(dir, "urls")} {
		leftovers, _ := filepath.Glob(filepath.Join(sub, tmpPrefix+"*"))
		for _, f := range leftovers {
			if err := os.Remove(f); err != nil {
				return err
			}
		}
	}
	return nil
}
