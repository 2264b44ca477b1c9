package mirror

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"

	"github.com/nixlarder/larder/index"
	"github.com/nixlarder/larder/mirror/codec"
	"github.com/nixlarder/larder/mirror/nixfmt"
)

// SourceImport is the index source of paths imported from a bundle.
const SourceImport = "import"

// Import stores a path from a bundle or any file:// binary cache: the
// narinfo must be signed by a trusted key (or prove itself by its CA field)
// and the file must verify exactly as a download does before it is
// committed. A path already stored whole is left alone.
func (m *Mirror) Import(ctx context.Context, ni *nixfmt.NarInfo, file io.Reader) error {
	if !nixfmt.VerifyNarInfo(ni, m.cfg.TrustedKeys) && ni.VerifyCA() != nil {
		return fmt.Errorf("%w: %s: no valid signature by a trusted key and no valid CA", ErrRejected, ni.StorePath)
	}
	if !codec.Supported(ni.Compression) {
		return fmt.Errorf("%w: %s: compression %q cannot be verified", ErrRejected, ni.StorePath, ni.Compression)
	}
	if m.Has(ctx, ni.HashPart()) {
		return nil
	}
	return m.ingest(ctx, ni, file, SourceImport, nil)
}

// ingest verifies a NAR file against its narinfo (and with check, if
// given, against anything else) and commits both.
func (m *Mirror) ingest(ctx context.Context, ni *nixfmt.NarInfo, file io.Reader, source string, check func(*os.File) error) error {
	tmp, err := m.cfg.Blobs.CreateTemp()
	if err != nil {
		return err
	}
	defer func() { tmp.Close(); os.Remove(tmp.Name()) }()
	f, err := m.receive(ni, file, tmp)
	if noSpace(err) {
		m.triggerGC(true)
		return err
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRejected, err)
	}
	if check != nil {
		if err := check(tmp); err != nil {
			return err
		}
	}
	if err := m.cfg.Blobs.Commit(tmp, blobKey(ni.NarHash, ni.Compression)); err != nil {
		return err
	}
	if err := m.cfg.Index.PutNarFile(ctx, f); err != nil {
		return err
	}
	row := &index.NarInfo{Hash: ni.HashPart(), StorePath: ni.StorePath, NarHash: ni.NarHash.String(),
		NarSize: int64(ni.NarSize), References: ni.References, Text: string(ni.Bytes()), Source: source}
	if err := m.cfg.Index.PutNarInfo(ctx, row); err != nil {
		return err
	}
	m.rendered.invalidate() // after the write: a render racing it cannot outlive it
	m.negative.forget(ni.HashPart())
	m.triggerGC(false)
	m.enqueueRecompress(f)
	return nil
}

// receive copies a NAR file into tmp while checking FileHash/FileSize and,
// decompressed, NarHash/NarSize.
func (m *Mirror) receive(ni *nixfmt.NarInfo, file io.Reader, tmp *os.File) (*index.NarFile, error) {
	pr, pw := io.Pipe()
	narResult := make(chan error, 1)
	go func() { narResult <- verifyNar(pr, ni) }()
	sum := sha256.New()
	limit := int64(ni.FileSize) + 1
	if ni.FileSize == 0 {
		limit = int64(ni.NarSize)*2 + 1<<20 // no FileSize: bound a runaway file anyway
	}
	n, err := io.Copy(io.MultiWriter(tmp, sum, pw), io.LimitReader(file, limit))
	if err != nil {
		pw.CloseWithError(err)
		if nerr := <-narResult; nerr != nil {
			return nil, nerr // the verifier's reason is the useful one
		}
		return nil, fmt.Errorf("%s: reading file: %w", ni.StorePath, err)
	}
	pw.Close()
	if err := <-narResult; err != nil {
		return nil, err
	}
	got := nixfmt.Hash{Algo: "sha256", Digest: sum.Sum(nil)}
	if err := checkFile(ni, got, n); err != nil {
		return nil, err
	}
	return &index.NarFile{NarHash: ni.NarHash.String(), Compression: ni.Compression,
		FileHash: got.String(), FileSize: n, NarSize: int64(ni.NarSize)}, nil
}

// Has reports whether a path's narinfo and a NAR file of it are stored.
func (m *Mirror) Has(ctx context.Context, hash string) bool {
	e, err := m.LookupStored(ctx, hash)
	if err != nil {
		return false
	}
	f, err := m.StoredNAR(ctx, e)
	return err == nil && f != nil
}
