// Package blob keeps verified files under content-addressed keys. Disk is the
// only store today; an S3-compatible one is planned behind the same methods.
package blob

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrNotFound is returned when a key has no file.
var ErrNotFound = errors.New("blob not found")

// Disk stores blobs as files below a root directory. Temp files live in
// root/tmp so that a commit is a rename on one filesystem.
type Disk struct {
	root string
}

// NewDisk creates the directories it needs and removes temp files a crash
// left behind: nothing in tmp/ was ever committed.
func NewDisk(root string) (*Disk, error) {
	d := &Disk{root: root}
	if err := os.MkdirAll(d.tmpDir(), 0o755); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(d.tmpDir())
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(d.tmpDir(), e.Name())); err != nil {
			return nil, fmt.Errorf("clean temp files: %w", err)
		}
	}
	return d, nil
}

func (d *Disk) tmpDir() string { return filepath.Join(d.root, "tmp") }

// path maps a key such as "nar/abc….nar.xz" to a file, fanned out by the first
// two characters of the name so directories stay small.
func (d *Disk) path(key string) (string, error) {
	if !validKey(key) {
		return "", fmt.Errorf("invalid blob key %q", key)
	}
	dir, name := filepath.Split(key)
	return filepath.Join(d.root, dir, name[:2], name), nil
}

// validKey allows "<kind>/<name>" with a plain name: keys are made by Larder,
// but a bad one must never reach the filesystem.
func validKey(key string) bool {
	kind, name, ok := strings.Cut(key, "/")
	if !ok || kind == "" || kind == "tmp" || len(name) < 3 || strings.ContainsAny(kind, `/\.`) {
		return false
	}
	return !strings.ContainsAny(name, "/\\\x00") && !strings.HasPrefix(name, ".")
}

// CreateTemp returns a new temp file for a blob being written.
func (d *Disk) CreateTemp() (*os.File, error) {
	return os.CreateTemp(d.tmpDir(), "blob-*")
}

// Commit moves a fully written, verified temp file to key: fsync the file,
// rename, fsync the directory, so a crash leaves either nothing or the whole file.
func (d *Disk) Commit(tmp *os.File, key string) error {
	final, err := d.path(key)
	if err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmp.Name(), err)
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return fmt.Errorf("commit %s: %w", key, err)
	}
	return syncDir(filepath.Dir(final))
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// Open opens a committed blob.
func (d *Disk) Open(key string) (*os.File, error) {
	p, err := d.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", key, ErrNotFound)
	}
	return f, err
}

// Remove deletes a committed blob; a missing one is not an error.
func (d *Disk) Remove(key string) error {
	p, err := d.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// OpenDisk opens an existing store for reading alongside the process that
// owns it: unlike NewDisk it leaves temp files alone.
func OpenDisk(root string) (*Disk, error) {
	d := &Disk{root: root}
	if _, err := os.Stat(d.tmpDir()); err != nil {
		return nil, fmt.Errorf("no Larder store at %s: %w", root, err)
	}
	return d, nil
}

// Quarantine moves a blob that failed verification out of the store, into
// root/quarantine, for a human to look at.
func (d *Disk) Quarantine(key string) (string, error) {
	p, err := d.path(key)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(d.root, "quarantine")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	dst := filepath.Join(dir, filepath.Base(p))
	if err := os.Rename(p, dst); err != nil {
		return "", err
	}
	return dst, nil
}
