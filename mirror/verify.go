package mirror

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/nixlarder/larder/index"
	"github.com/nixlarder/larder/mirror/nixfmt"
)

// Quarantiner moves a damaged blob aside.
type Quarantiner interface {
	Quarantine(key string) (string, error)
}

// Damaged is a stored NAR file that no longer verifies.
type Damaged struct {
	Key, Reason, QuarantinedAs string
}

// VerifyReport is the outcome of re-hashing the store.
type VerifyReport struct {
	Files   int
	Bytes   int64
	Damaged []Damaged
}

// Verify re-reads every stored NAR file: FileHash of the file, and NarHash
// and NarSize of its decompressed contents. With repair, a damaged file is
// quarantined and its row dropped; its narinfo stays, so the NAR is fetched
// again on the next request.
func (m *Mirror) Verify(ctx context.Context, repair bool, progress func(done, total int)) (*VerifyReport, error) {
	gi, ok := m.cfg.Index.(GCIndex)
	if !ok {
		return nil, errors.New("verify: index cannot list NAR files")
	}
	files, err := gi.AllNarFiles(ctx)
	if err != nil {
		return nil, err
	}
	rep := &VerifyReport{}
	for i, f := range files {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		h, _ := nixfmt.ParseHash(f.NarHash)
		key := blobKey(h, f.Compression)
		rep.Files++
		rep.Bytes += f.FileSize
		if err := m.verifyStored(f, h, key); err != nil {
			d := Damaged{Key: key, Reason: err.Error()}
			m.stats.VerifyFailures.Add(1)
			if repair {
				if d.QuarantinedAs, err = m.quarantine(ctx, f, key); err != nil {
					return rep, err
				}
			}
			rep.Damaged = append(rep.Damaged, d)
		}
		if progress != nil {
			progress(i+1, len(files))
		}
	}
	return rep, nil
}

func (m *Mirror) verifyStored(f *index.NarFile, narHash nixfmt.Hash, key string) error {
	file, err := m.cfg.Blobs.Open(key)
	if err != nil {
		return fmt.Errorf("missing on disk: %w", err)
	}
	defer file.Close()
	ni := &nixfmt.NarInfo{StorePath: key, Compression: f.Compression, NarHash: narHash, NarSize: uint64(f.NarSize)}
	pr, pw := io.Pipe()
	result := make(chan error, 1)
	go func() { result <- verifyNar(pr, ni) }()
	sum := sha256.New()
	n, err := io.Copy(io.MultiWriter(sum, pw), file)
	pw.CloseWithError(err)
	if verr := <-result; verr != nil {
		return verr
	}
	if err != nil {
		return err
	}
	if n != f.FileSize {
		return fmt.Errorf("file is %d bytes, index says %d", n, f.FileSize)
	}
	if got := (nixfmt.Hash{Algo: "sha256", Digest: sum.Sum(nil)}).String(); got != f.FileHash {
		return fmt.Errorf("file hash %s, index says %s", got, f.FileHash)
	}
	return nil
}

func (m *Mirror) quarantine(ctx context.Context, f *index.NarFile, key string) (string, error) {
	if err := m.cfg.Index.DeleteNarFile(ctx, f.NarHash, f.Compression); err != nil {
		return "", err
	}
	m.rendered.invalidate()
	if q, ok := m.cfg.Blobs.(Quarantiner); ok {
		if dst, err := q.Quarantine(key); err == nil {
			return dst, nil
		}
	}
	return "", m.cfg.Blobs.Remove(key)
}
