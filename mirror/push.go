package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nixlarder/larder/mirror/nixfmt"
)

// SourcePush is the index source of paths pushed with `nix copy --to`.
const SourcePush = "push"

// ErrTooLarge marks an upload over the size limit.
var ErrTooLarge = errors.New("upload too large")

// stagedNAR is a NAR file uploaded before the narinfo that names it (the
// order `nix copy --to http://…` uses). It is verified and committed only
// when that narinfo arrives.
type stagedNAR struct {
	path string
	size int64
	at   time.Time
}

const stageTTL = time.Hour

// StageNAR receives an uploaded NAR file under its URL ("nar/…"), reading at
// most max bytes; more is ErrTooLarge and nothing is kept.
func (m *Mirror) StageNAR(url string, body io.Reader, max int64) error {
	tmp, err := m.cfg.Blobs.CreateTemp()
	if err != nil {
		return err
	}
	n, err := io.Copy(tmp, io.LimitReader(body, max+1))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil && n > max {
		err = fmt.Errorf("%w: %s is over %d bytes", ErrTooLarge, url, max)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pruneStaged()
	if old, ok := m.staged[url]; ok {
		os.Remove(old.path)
	}
	m.staged[url] = stagedNAR{path: tmp.Name(), size: n, at: time.Now()}
	return nil
}

// pruneStaged forgets uploads whose narinfo never came. Called with m.mu held.
func (m *Mirror) pruneStaged() {
	for url, s := range m.staged {
		if time.Since(s.at) > stageTTL {
			os.Remove(s.path)
			delete(m.staged, url)
		}
	}
}

// Staged reports the size of an uploaded NAR waiting for its narinfo.
func (m *Mirror) Staged(url string) (int64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.staged[url]
	return s.size, ok
}

// Push commits an uploaded path: its NAR must have been uploaded and must
// match the narinfo (FileHash, FileSize, NarHash, NarSize), its references
// must be present, and with requireSig it must be signed by a trusted key.
// Its own Sig lines are kept; Larder adds its signature when serving.
func (m *Mirror) Push(ctx context.Context, ni *nixfmt.NarInfo, requireSig bool) error {
	if requireSig && !nixfmt.VerifyNarInfo(ni, m.cfg.TrustedKeys) {
		return fmt.Errorf("%w: %s is not signed by a trusted key", ErrRejected, ni.StorePath)
	}
	m.mu.Lock()
	s, ok := m.staged[ni.URL]
	delete(m.staged, ni.URL)
	m.mu.Unlock()
	if !ok {
		if m.Has(ctx, ni.HashPart()) {
			return nil // re-uploaded narinfo of a path already here
		}
		return fmt.Errorf("%w: %s: its NAR %s was not uploaded", ErrRejected, ni.StorePath, ni.URL)
	}
	defer os.Remove(s.path)
	if err := m.referencesPresent(ctx, ni); err != nil {
		return err
	}
	f, err := os.Open(s.path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := m.ingest(ctx, ni, f, SourcePush, nil); err != nil {
		return err
	}
	m.stats.Pushes.Add(1)
	return nil
}

// PutExtra stores a pushed `.ls` listing or build log under key
// ("ls/<hash>.ls", "log/<drv>").
func (m *Mirror) PutExtra(key string, body io.Reader, max int64) error {
	tmp, err := m.cfg.Blobs.CreateTemp()
	if err != nil {
		return err
	}
	defer func() { tmp.Close(); os.Remove(tmp.Name()) }()
	n, err := io.Copy(tmp, io.LimitReader(body, max+1))
	if err != nil {
		return err
	}
	if n > max {
		return fmt.Errorf("%w: %s is over %d bytes", ErrTooLarge, key, max)
	}
	return m.cfg.Blobs.Commit(tmp, key)
}

// OpenExtra opens a pushed listing or log.
func (m *Mirror) OpenExtra(key string) (*os.File, error) {
	f, err := m.cfg.Blobs.Open(key)
	if err != nil {
		return nil, ErrNotFound
	}
	return f, nil
}

// DeletePath forgets a pushed path's narinfo (its NAR file may be shared).
func (m *Mirror) DeletePath(ctx context.Context, hash string) error {
	if _, err := m.cfg.Index.NarInfo(ctx, hash); err != nil {
		return ErrNotFound
	}
	err := m.cfg.Index.DeleteNarInfo(ctx, hash)
	m.rendered.invalidate()
	return err
}
