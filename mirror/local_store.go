package mirror

import (
	"context"
	"errors"
	"io"

	"github.com/klauspost/compress/zstd"

	"github.com/nixlarder/larder/mirror/localstore"
	"github.com/nixlarder/larder/mirror/nixfmt"
)

// LocalStore is the host's own Nix store, answered before any upstream.
type LocalStore interface {
	NarInfo(ctx context.Context, hash string) (*nixfmt.NarInfo, error)
	PathOf(ctx context.Context, narHash nixfmt.Hash) (string, error)
	Dump(ctx context.Context, ni *nixfmt.NarInfo, w io.Writer) error
	Listing(ctx context.Context, hash string) ([]byte, error)
}

// Listing is the `.ls` file of a path in the local store.
func (m *Mirror) Listing(ctx context.Context, hash string) ([]byte, error) {
	if m.cfg.Local == nil {
		return nil, ErrNotFound
	}
	ls, err := m.cfg.Local.Listing(ctx, hash)
	if errors.Is(err, localstore.ErrNotFound) {
		return nil, ErrNotFound
	}
	return ls, err
}

// localNarInfo answers from the local store: its path info, Larder's URL
// and signature.
func (m *Mirror) localNarInfo(ctx context.Context, hash string) (*nixfmt.NarInfo, bool) {
	if m.cfg.Local == nil {
		return nil, false
	}
	ni, err := m.cfg.Local.NarInfo(ctx, hash)
	if err != nil {
		if !errors.Is(err, localstore.ErrNotFound) {
			m.log.Warn("local store lookup failed", "hash", hash, "err", err)
		}
		return nil, false
	}
	ni.Compression = m.cfg.LocalCompression
	if ni.Compression == "none" {
		ni.FileHash, ni.FileSize = ni.NarHash, ni.NarSize
	}
	return m.render(ni, nil), true
}

// localNAR streams a NAR serialised from the local store, compressed as the
// local narinfos say. The stream fails (and the client's transfer with it)
// if the path changed on disk.
func (m *Mirror) localNAR(ctx context.Context, narHash nixfmt.Hash, compression string) (*NAR, bool) {
	if m.cfg.Local == nil || compression != m.cfg.LocalCompression {
		return nil, false
	}
	p, err := m.cfg.Local.PathOf(ctx, narHash)
	if err != nil {
		return nil, false
	}
	ni, err := m.cfg.Local.NarInfo(ctx, nixfmt.BaseName(p)[:32])
	if err != nil || !ni.NarHash.Equal(narHash) {
		return nil, false
	}
	pr, pw := io.Pipe()
	go func() {
		err := m.dumpLocal(ctx, ni, compression, pw)
		if err != nil && !errors.Is(err, io.ErrClosedPipe) {
			m.log.Error("local store NAR failed; transfer aborted", "path", ni.StorePath, "err", err)
		}
		pw.CloseWithError(err)
	}()
	size := int64(-1)
	if compression == "none" {
		size = int64(ni.NarSize)
	}
	m.stats.LocalNars.Add(1)
	return &NAR{Stream: pr, Size: size}, true
}

func (m *Mirror) dumpLocal(ctx context.Context, ni *nixfmt.NarInfo, compression string, w io.Writer) error {
	if compression == "none" {
		return m.cfg.Local.Dump(ctx, ni, w)
	}
	enc, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return err
	}
	if err := m.cfg.Local.Dump(ctx, ni, enc); err != nil {
		return err // the frame is never finished: the client sees a broken stream
	}
	return enc.Close()
}
