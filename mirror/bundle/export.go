package bundle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/nixlarder/larder/index"
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
	// URLs, when set, carries the source URLs recorded under the pins.
	URLs URLSource
}

// URLSource reads sources kept by the forward proxy.
type URLSource interface {
	URLsOfPin(ctx context.Context, pin string) ([]string, error)
	URL(ctx context.Context, url string) (*index.URL, error)
	OpenURL(sha256 string) (io.ReadCloser, error)
}

// ExportReport says what an export did.
type ExportReport struct {
	Paths, Written, AlreadyThere, Excluded, URLs int
	Bytes                                        int64
	Missing                                      []string
	Elapsed                                      time.Duration
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
	urls, pinURLs, err := x.writeURLs(ctx, rep)
	if err != nil {
		return nil, err
	}
	rep.Elapsed = time.Since(start)
	return rep, x.writeManifest(entries, urls, pinURLs)
}

// writeURLs copies the pins' kept sources to urls/<sha256>.
func (x *Export) writeURLs(ctx context.Context, rep *ExportReport) ([]URLEntry, map[string][]string, error) {
	if x.URLs == nil {
		return nil, nil, nil
	}
	var entries []URLEntry
	pinURLs := map[string][]string{}
	for pin := range x.Pins {
		urls, err := x.URLs.URLsOfPin(ctx, pin)
		if err != nil {
			return nil, nil, err
		}
		pinURLs[pin] = urls
		for _, u := range urls {
			kept, err := x.URLs.URL(ctx, u)
			if errors.Is(err, index.ErrNotFound) {
				rep.Missing = append(rep.Missing, u)
				continue
			}
			if err != nil {
				return nil, nil, err
			}
			if err := x.writeURL(kept); err != nil {
				return nil, nil, fmt.Errorf("export %s: %w", u, err)
			}
			rep.URLs++
			entries = append(entries, URLEntry{URL: kept.URL, SHA256: kept.SHA256, Size: kept.Size,
				ContentType: kept.ContentType, ETag: kept.ETag, LastModified: kept.LastModified})
		}
	}
	return entries, pinURLs, nil
}

func (x *Export) writeURL(u *index.URL) error {
	dst := filepath.Join(x.Dir, "urls", u.SHA256)
	if fi, err := os.Stat(dst); err == nil && fi.Size() == u.Size {
		return nil
	}
	src, err := x.URLs.OpenURL(u.SHA256)
	if err != nil {
		return err
	}
	defer src.Close()
	return writeAtomic(dst, func(f *os.File) error {
		_, err := io.Copy(f, src)
		return err
	})
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

func (x *Export) writeManifest(entries []Entry, urls []URLEntry, pinURLs map[string][]string) error {
	m, err := ReadManifest(x.Dir)
	if err != nil {
		return err
	}
	m.merge(entries, x.Pins, x.Keys)
	m.mergeURLs(urls, pinURLs)
	return writeJSON(filepath.Join(x.Dir, ManifestName), m)
}
