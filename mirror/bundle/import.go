package bundle

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/nixlarder/larder/index"
	"github.com/nixlarder/larder/mirror/nixfmt"
	"github.com/nixlarder/larder/prefetch"
)

// Sink is the Larder an import writes to.
type Sink interface {
	// Import verifies and commits one path (see mirror.Import).
	Import(ctx context.Context, ni *nixfmt.NarInfo, file io.Reader) error
	SetPin(ctx context.Context, name string, roots []string) error
}

// URLSink takes kept sources from a bundle (a data dir can; a server
// import skips them).
type URLSink interface {
	AddURL(ctx context.Context, u *index.URL, body io.Reader) error
	PinURLs(ctx context.Context, pin string, urls []string) error
}

// ImportReport says what an import did; Refused names each file or path
// that was not taken, and why.
type ImportReport struct {
	Imported int
	URLs     int
	Refused  []prefetch.Problem
	Pins     map[string][]string
	Elapsed  time.Duration
}

// Import reads every narinfo of a bundle (or any file:// cache) in dir and
// imports what verifies; one bad path never stops the others.
func Import(ctx context.Context, dst Sink, dir string, progress func(prefetch.Progress)) (*ImportReport, error) {
	start := time.Now()
	infos, err := filepath.Glob(filepath.Join(dir, "*.narinfo"))
	if err != nil {
		return nil, err
	}
	if len(infos) == 0 {
		return nil, fmt.Errorf("%s: no narinfo files: not a binary cache directory", dir)
	}
	sort.Strings(infos)
	manifest, err := ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	rep := &ImportReport{Pins: manifest.Pins}
	for i, file := range infos {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := importOne(ctx, dst, dir, file); err != nil {
			rep.Refused = append(rep.Refused, prefetch.Problem{Path: file, Reason: err.Error()})
		} else {
			rep.Imported++
		}
		if progress != nil {
			progress(prefetch.Progress{PathsTotal: len(infos), PathsDone: i + 1, Elapsed: time.Since(start)})
		}
	}
	for name, roots := range manifest.Pins {
		if err := dst.SetPin(ctx, name, roots); err != nil {
			return nil, fmt.Errorf("pin %s: %w", name, err)
		}
	}
	if err := importURLs(ctx, dst, dir, manifest, rep); err != nil {
		return nil, err
	}
	rep.Elapsed = time.Since(start)
	return rep, nil
}

func importOne(ctx context.Context, dst Sink, dir, file string) error {
	text, err := readLimited(file, nixfmt.MaxNarInfoSize)
	if err != nil {
		return err
	}
	ni, err := nixfmt.ParseNarInfo(text)
	if err != nil {
		return err
	}
	if strings.Contains(ni.URL, ":") || strings.HasPrefix(ni.URL, "/") {
		return fmt.Errorf("%s: NAR URL %q is not a file in the bundle", ni.StorePath, ni.URL)
	}
	f, err := os.Open(filepath.Join(dir, filepath.FromSlash(ni.URL)))
	if err != nil {
		return fmt.Errorf("%s: %w", ni.StorePath, err)
	}
	defer f.Close()
	return dst.Import(ctx, ni, f)
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit+1))
}

// importURLs ingests the bundle's kept sources, each checked against its
// sha256, and records the pins that need them.
func importURLs(ctx context.Context, dst Sink, dir string, m *Manifest, rep *ImportReport) error {
	if len(m.URLs) == 0 {
		return nil
	}
	us, ok := dst.(URLSink)
	if !ok {
		rep.Refused = append(rep.Refused, prefetch.Problem{Path: "urls/", Reason: "this Larder cannot take kept sources over its API; import with --data-dir"})
		return nil
	}
	for _, e := range m.URLs {
		f, err := os.Open(filepath.Join(dir, "urls", filepath.Base(e.SHA256)))
		if err == nil {
			err = us.AddURL(ctx, &index.URL{URL: e.URL, SHA256: e.SHA256, Size: e.Size, ContentType: e.ContentType,
				ETag: e.ETag, LastModified: e.LastModified, FetchedAt: time.Now()}, f)
			f.Close()
		}
		if err != nil {
			rep.Refused = append(rep.Refused, prefetch.Problem{Path: e.URL, Reason: err.Error()})
			continue
		}
		rep.URLs++
	}
	for pin, urls := range m.PinURLs {
		if err := us.PinURLs(ctx, pin, urls); err != nil {
			return err
		}
	}
	return nil
}
