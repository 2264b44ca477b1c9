package mirror

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/nixlarder/larder/index"
	"github.com/nixlarder/larder/mirror/codec"
	"github.com/nixlarder/larder/mirror/nixfmt"
)

// Clients decompressing xz manage ~80 MB/s per core, zstd ~800 MB/s. With
// Recompress set to "zstd", a NAR fetched as xz or bzip2 is transcoded once,
// in the background after the fetch was served, and narinfos switch to the
// zstd file only once it is committed and verified. Signatures stay valid:
// they do not cover URL, Compression, FileHash or FileSize.

// recompressible reports a compression worth transcoding away from.
func recompressible(compression string) bool {
	return compression == "xz" || compression == "bzip2" || compression == "gzip"
}

func (m *Mirror) enqueueRecompress(f *index.NarFile) {
	if m.cfg.Recompress == "" || !recompressible(f.Compression) {
		return
	}
	select {
	case m.recompressQ <- f:
	default:
		m.log.Debug("recompress queue full; will not transcode", "nar", f.NarHash)
	}
}

// recompressWorker transcodes one NAR at a time: bounded CPU, and clients'
// own requests never wait for it.
func (m *Mirror) recompressWorker() {
	for {
		select {
		case <-m.stop:
			return
		case f := <-m.recompressQ:
			ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
			if err := m.recompress(ctx, f); err != nil {
				m.log.Warn("recompression failed; the original stays", "nar", f.NarHash, "err", err)
			}
			cancel()
		}
	}
}

func (m *Mirror) recompress(ctx context.Context, src *index.NarFile) error {
	narHash, err := nixfmt.ParseHash(src.NarHash)
	if err != nil {
		return err
	}
	if _, err := m.cfg.Index.NarFile(ctx, src.NarHash, m.cfg.Recompress); err == nil {
		return nil // already done
	}
	in, err := m.cfg.Blobs.Open(blobKey(narHash, src.Compression))
	if err != nil {
		return err
	}
	defer in.Close()
	dec, err := codec.NewReader(src.Compression, in)
	if err != nil {
		return err
	}
	defer dec.Close()
	tmp, err := m.cfg.Blobs.CreateTemp()
	if err != nil {
		return err
	}
	defer func() { tmp.Close(); os.Remove(tmp.Name()) }()
	fileSum := sha256.New()
	enc, err := zstd.NewWriter(io.MultiWriter(tmp, fileSum), zstd.WithEncoderLevel(zstd.SpeedBetterCompression), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return err
	}
	narSum := sha256.New()
	n, err := io.Copy(io.MultiWriter(enc, narSum), io.LimitReader(dec, src.NarSize+1))
	if err == nil {
		err = enc.Close()
	}
	if err != nil {
		return err
	}
	if got := (nixfmt.Hash{Algo: "sha256", Digest: narSum.Sum(nil)}); n != src.NarSize || !got.Equal(narHash) {
		return fmt.Errorf("%w: stored NAR decodes to %d bytes with %s", ErrVerify, n, got)
	}
	fi, err := tmp.Stat()
	if err != nil {
		return err
	}
	if err := m.cfg.Blobs.Commit(tmp, blobKey(narHash, m.cfg.Recompress)); err != nil {
		return err
	}
	out := &index.NarFile{NarHash: src.NarHash, Compression: m.cfg.Recompress, NarSize: src.NarSize, FileSize: fi.Size(),
		FileHash: (nixfmt.Hash{Algo: "sha256", Digest: fileSum.Sum(nil)}).String()}
	if err := m.cfg.Index.PutNarFile(ctx, out); err != nil {
		return err
	}
	m.rendered.invalidate() // narinfos now name the zstd file
	m.stats.Recompressed.Add(1)
	m.log.Info("recompressed", "nar", src.NarHash, "from", src.Compression, "bytes", src.FileSize, "to", m.cfg.Recompress, "zstd_bytes", fi.Size())
	return nil
}

// preferred orders a NAR's files: the recompression target first, then the
// smallest.
func (m *Mirror) preferred(files []*index.NarFile) []*index.NarFile {
	if m.cfg.Recompress == "" {
		return files
	}
	out := make([]*index.NarFile, 0, len(files))
	for _, f := range files {
		if f.Compression == m.cfg.Recompress {
			out = append(out, f)
		}
	}
	for _, f := range files {
		if f.Compression != m.cfg.Recompress {
			out = append(out, f)
		}
	}
	return out
}
