package mirror

import (
	"context"
	"errors"
	"io"
	"os"

	"github.com/nixlarder/larder/mirror/blob"
	"github.com/nixlarder/larder/mirror/growing"
	"github.com/nixlarder/larder/mirror/nixfmt"
)

// NAR is an open NAR file: either committed (File, served with Range and
// sendfile) or still downloading (Stream, which ends in an error if the
// download fails verification).
type NAR struct {
	File   *os.File
	Stream io.ReadCloser
	Size   int64 // file size; -1 when not known yet
}

// Close releases the NAR.
func (n *NAR) Close() error {
	if n.File != nil {
		return n.File.Close()
	}
	return n.Stream.Close()
}

// OpenNAR opens the NAR file with this NarHash and compression, from disk or
// by joining (or starting) its one upstream download.
func (m *Mirror) OpenNAR(ctx context.Context, narHash nixfmt.Hash, compression string) (*NAR, error) {
	key := blobKey(narHash, compression)
	for attempt := 0; attempt < 3; attempt++ {
		if nar, err := m.openCommitted(ctx, narHash, compression); err == nil || !errors.Is(err, ErrNotFound) {
			return nar, err
		}
		if nar, ok := m.localNAR(ctx, narHash, compression); ok {
			return nar, nil
		}
		d, err := m.downloadFor(ctx, narHash, compression, key)
		if err != nil {
			return nil, err
		}
		f, err := d.file.Follow(ctx)
		if errors.Is(err, growing.ErrFinished) {
			continue // it committed between the two looks: try the disk again
		}
		if err != nil {
			return nil, err
		}
		return &NAR{Stream: f, Size: d.size.Load()}, nil
	}
	return nil, ErrNotFound
}

// openCommitted opens a committed file. Blobs are only ever committed after
// they verified, so the file itself is the proof: no index lookup on this,
// the hottest path.
func (m *Mirror) openCommitted(ctx context.Context, narHash nixfmt.Hash, compression string) (*NAR, error) {
	f, err := m.cfg.Blobs.Open(blobKey(narHash, compression))
	if errors.Is(err, blob.ErrNotFound) {
		m.forgetMissing(ctx, narHash, compression)
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	m.stats.NarHits.Add(1)
	m.touchNar(narHash.String())
	return &NAR{File: f, Size: fi.Size()}, nil
}

// forgetMissing drops the row of an indexed NAR file that vanished from
// disk, so its narinfo is no longer advertised on its account.
func (m *Mirror) forgetMissing(ctx context.Context, narHash nixfmt.Hash, compression string) {
	if _, err := m.cfg.Index.NarFile(ctx, narHash.String(), compression); err != nil {
		return
	}
	m.log.Warn("indexed NAR file missing on disk; forgetting it", "nar", narHash.String())
	m.cfg.Index.DeleteNarFile(ctx, narHash.String(), compression)
	m.rendered.invalidate()
}

// downloadFor finds a narinfo that names this NAR at an upstream and joins or
// starts its download.
func (m *Mirror) downloadFor(ctx context.Context, narHash nixfmt.Hash, compression, key string) (*download, error) {
	m.mu.Lock()
	d, ok := m.downloads[key]
	m.mu.Unlock()
	if ok {
		return d, nil
	}
	rows, err := m.cfg.Index.NarInfosByNarHash(ctx, narHash.String())
	if err != nil {
		return nil, err
	}
	for _, row := range rows {
		ni, err := nixfmt.ParseNarInfo([]byte(row.Text))
		if err != nil || ni.Compression != compression {
			continue
		}
		if d, err := m.startDownload(row, ni); err == nil {
			return d, nil
		}
	}
	return nil, ErrNotFound
}

// WaitNAR blocks until the NAR is committed (or its download failed). Used by
// background pre-pulls and by Range requests on a NAR still downloading.
func (m *Mirror) WaitNAR(ctx context.Context, narHash nixfmt.Hash, compression string) error {
	nar, err := m.openCommitted(ctx, narHash, compression)
	if err == nil {
		return nar.Close()
	}
	if !errors.Is(err, ErrNotFound) {
		return err
	}
	d, err := m.downloadFor(ctx, narHash, compression, blobKey(narHash, compression))
	if err != nil {
		return err
	}
	return d.file.Wait(ctx)
}
