package bundle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/nixlarder/larder/mirror"
	"github.com/nixlarder/larder/mirror/nixfmt"
	"github.com/nixlarder/larder/prefetch"
)

// Source is the Larder an export reads: narinfos as it serves them (signed)
// and NAR files by their URL.
type Source interface {
	NarInfo(ctx context.Context, hash string) ([]byte, error)
	OpenNAR(ctx context.Context, url string) (io.ReadCloser, error)
}

// Export is one export run.
type Export struct {
	Src     Source
	Dir     string
	Roots   []string            // store paths whose closures go in
	Pins    map[string][]string // recorded in the manifest
	Keys    []string            // public keys to record
	Exclude map[string]bool     // store paths the other side has
}

// ExportReport says what an export did.
type ExportReport struct {
	Paths, Written, AlreadyThere, Excluded int
	Bytes                                  int64
	Missing                                []string
	Elapsed                                time.Duration
}

// Run walks the closures and writes what the directory lacks: each NAR
// file before the narinfo that names it, each file atomically, the manifest
// last. Re-running into the same directory adds only what is new.
func (x *Export) Run(ctx context.Context, progress func(prefetch.Progress)) (*ExportReport, error) {
	start := time.Now()
	if err := cleanTemps(x.Dir); err != nil {
		return nil, err
	}
	if err := x.writeCacheInfo(); err != nil {
		return nil, err
	}
	rep := &ExportReport{}
	var entries []Entry
	queue := append([]string(nil), x.Roots...)
	seen := map[string]bool{}
	for len(queue) > 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		path := queue[0]
		queue = queue[1:]
		if seen[path] {
			continue
		}
		seen[path] = true
		rep.Paths++
		ni, err := x.narInfo(ctx, path)
		if errors.Is(err, mirror.ErrNotFound) {
			rep.Missing = append(rep.Missing, path)
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, r := range ni.References {
			queue = append(queue, nixfmt.StoreDir+"/"+r)
		}
		if x.Exclude[path] {
			rep.Excluded++
			continue
		}
		written, err := x.writePath(ctx, ni)
		if err != nil {
			return nil, fmt.Errorf("export %s: %w", path, err)
		}
		if written {
			rep.Written++
			rep.Bytes += int64(ni.FileSize)
		} else {
			rep.AlreadyThere++
		}
		entries = append(entries, Entry{Path: ni.StorePath, NarHash: ni.NarHash.String(), NarSize: ni.NarSize, URL: ni.URL, FileSize: ni.FileSize})
		if progress != nil {
			progress(prefetch.Progress{PathsTotal: rep.Paths + len(queue), PathsDone: rep.Paths, BytesDone: rep.Bytes, Elapsed: time.Since(start)})
		}
	}
	rep.Elapsed = time.Since(start)
	return rep, x.writeManifest(entries)
}

func (x *Export) narInfo(ctx context.Context, path string) (*nixfmt.NarInfo, error) {
	hash, err := prefetch.ParseRoot(path)
	if err != nil {
		return nil, err
	}
	text, err := x.Src.NarInfo(ctx, hash)
	if err != nil {
		return nil, err
	}
	return nixfmt.ParseNarInfo(text)
}

// writePath writes a path's NAR file and narinfo unless both are there.
func (x *Export) writePath(ctx context.Context, ni *nixfmt.NarInfo) (bool, error) {
	narFile := filepath.Join(x.Dir, filepath.FromSlash(ni.URL))
	infoFile := filepath.Join(x.Dir, ni.HashPart()+".narinfo")
	if fi, err := os.Stat(narFile); err == nil && uint64(fi.Size()) == ni.FileSize {
		if _, err := os.Stat(infoFile); err == nil {
			return false, nil
		}
	} else {
		src, err := x.Src.OpenNAR(ctx, ni.URL)
		if err != nil {
			return false, err
		}
		err = writeAtomic(narFile, func(f *os.File) error {
			n, err := io.Copy(f, src)
			if err == nil && uint64(n) != ni.FileSize {
				err = fmt.Errorf("NAR file is %d bytes, narinfo says %d", n, ni.FileSize)
			}
			return err
		})
		src.Close()
		if err != nil {
			return false, err
		}
	}
	return true, writeAtomic(infoFile, func(f *os.File) error {
		_, err := f.Write(ni.Bytes())
		return err
	})
}

func (x *Export) writeCacheInfo() error {
	path := filepath.Join(x.Dir, "nix-cache-info")
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	return writeAtomic(path, func(f *os.File) error {
		_, err := fmt.Fprintf(f, "StoreDir: %s\n", nixfmt.StoreDir)
		return err
	})
}

func (x *Export) writeManifest(entries []Entry) error {
	m, err := ReadManifest(x.Dir)
	if err != nil {
		return err
	}
	m.merge(entries, x.Pins, x.Keys)
	return writeJSON(filepath.Join(x.Dir, ManifestName), m)
}
