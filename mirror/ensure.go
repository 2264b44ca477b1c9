package mirror

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"golang.org/x/time/rate"

	"github.com/nixlarder/larder/index"
	"github.com/nixlarder/larder/mirror/nixfmt"
)

// Entry is a narinfo Larder holds in its index, for whole-closure work
// (prefetch, check) rather than for serving one client.
type Entry struct {
	Info *nixfmt.NarInfo
	row  *index.NarInfo
}

// Source is where the narinfo came from (an upstream URL, "local", …).
func (e *Entry) Source() string { return e.row.Source }

// Lookup returns the narinfo of a hash part from the index, or asks the
// upstreams (and records it). ErrNotFound means no upstream has it.
func (m *Mirror) Lookup(ctx context.Context, hash string) (*Entry, error) {
	return m.lookup(ctx, hash, !m.cfg.Offline)
}

// LookupStored is Lookup from the index alone.
func (m *Mirror) LookupStored(ctx context.Context, hash string) (*Entry, error) {
	return m.lookup(ctx, hash, false)
}

func (m *Mirror) lookup(ctx context.Context, hash string, upstreams bool) (*Entry, error) {
	row, err := m.cfg.Index.NarInfo(ctx, hash)
	if errors.Is(err, index.ErrNotFound) && upstreams {
		row, err = m.fetchNarInfo(ctx, hash)
	}
	if errors.Is(err, index.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	ni, err := nixfmt.ParseNarInfo([]byte(row.Text))
	if err != nil {
		return nil, fmt.Errorf("indexed narinfo %s: %w", hash, err)
	}
	return &Entry{Info: ni, row: row}, nil
}

// StoredNAR returns the committed NAR file of an entry, or nil if none is on
// disk.
func (m *Mirror) StoredNAR(ctx context.Context, e *Entry) (*index.NarFile, error) {
	files, err := m.cfg.Index.NarFiles(ctx, e.row.NarHash)
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		if m.blobPresent(f) {
			return f, nil
		}
	}
	return nil, nil
}

// FetchNAR downloads and commits an entry's NAR (joining a download already
// running) and returns the file's size. pace, if not nil, caps the download
// rate while no client is waiting for the same NAR.
func (m *Mirror) FetchNAR(ctx context.Context, e *Entry, pace *rate.Limiter) (int64, error) {
	d, err := m.startDownloadPaced(e.row, e.Info, pace)
	if err != nil {
		return 0, err
	}
	if err := d.file.Wait(ctx); err != nil {
		return 0, err
	}
	f, err := m.cfg.Index.NarFile(ctx, e.row.NarHash, e.Info.Compression)
	if err != nil {
		return 0, fmt.Errorf("NAR of %s committed but not indexed: %w", e.Info.StorePath, err)
	}
	return f.FileSize, nil
}

// VerifyStored checks from disk alone that an entry's NAR is stored whole:
// some indexed file of it exists with its recorded size and, when deep, its
// recorded FileHash (which was computed when the NAR verified). It returns
// that file's size.
func (m *Mirror) VerifyStored(ctx context.Context, e *Entry, deep bool) (int64, error) {
	files, err := m.cfg.Index.NarFiles(ctx, e.row.NarHash)
	if err != nil {
		return 0, err
	}
	if len(files) == 0 {
		return 0, fmt.Errorf("%w: no NAR file of %s is stored", ErrNotFound, e.Info.StorePath)
	}
	var problems []error
	for _, f := range files {
		if err := m.verifyFile(f, deep); err != nil {
			problems = append(problems, err)
			continue
		}
		return f.FileSize, nil
	}
	return 0, errors.Join(problems...)
}

func (m *Mirror) verifyFile(f *index.NarFile, deep bool) error {
	h, err := nixfmt.ParseHash(f.NarHash)
	if err != nil {
		return err
	}
	key := blobKey(h, f.Compression)
	file, err := m.cfg.Blobs.Open(key)
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	defer file.Close()
	fi, err := file.Stat()
	if err != nil {
		return err
	}
	if fi.Size() != f.FileSize {
		return fmt.Errorf("%s is %d bytes, index says %d", key, fi.Size(), f.FileSize)
	}
	if !deep {
		return nil
	}
	sum := sha256.New()
	if _, err := io.Copy(sum, file); err != nil {
		return fmt.Errorf("read %s: %w", key, err)
	}
	if got := (nixfmt.Hash{Algo: "sha256", Digest: sum.Sum(nil)}).String(); got != f.FileHash {
		return fmt.Errorf("%s has hash %s, index says %s", key, got, f.FileHash)
	}
	return nil
}
