package mirror

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/nixlarder/larder/index"
	"github.com/nixlarder/larder/mirror/codec"
	"github.com/nixlarder/larder/mirror/growing"
	"github.com/nixlarder/larder/mirror/nixfmt"
)

// ErrVerify marks a NAR whose bytes did not match its narinfo.
var ErrVerify = errors.New("NAR verification failed")

// download is one upstream fetch of a NAR into a temp file. Any number of
// readers follow the growing file; they get its last byte and EOF only once
// the file verified and was committed, and an error otherwise.
type download struct {
	key     string
	narHash string       // "sha256:<nix32>", for GC to leave it alone
	size    atomic.Int64 // expected file size, or -1
	file    *growing.File
	pace    *rate.Limiter // a prefetch's bandwidth cap, or nil; readers lift it
}

func (m *Mirror) inFlight(key string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.downloads[key]
	return ok
}

// startDownload returns the download of a NAR, starting it if none runs.
func (m *Mirror) startDownload(row *index.NarInfo, ni *nixfmt.NarInfo) (*download, error) {
	return m.startDownloadPaced(row, ni, nil)
}

// startDownloadPaced is startDownload with a bandwidth cap for a new download.
func (m *Mirror) startDownloadPaced(row *index.NarInfo, ni *nixfmt.NarInfo, pace *rate.Limiter) (*download, error) {
	key := blobKey(ni.NarHash, ni.Compression)
	m.mu.Lock()
	defer m.mu.Unlock()
	if d, ok := m.downloads[key]; ok {
		return d, nil
	}
	up := m.upstreamByURL(row.Source)
	if !m.reachable(up) {
		return nil, ErrNotFound
	}
	tmp, err := m.cfg.Blobs.CreateTemp()
	if err != nil {
		return nil, fmt.Errorf("temp file for %s: %w", key, err)
	}
	d := &download{key: key, narHash: ni.NarHash.String(), file: growing.New(tmp, true), pace: pace}
	d.size.Store(-1)
	if ni.FileSize > 0 {
		d.size.Store(int64(ni.FileSize))
	}
	m.downloads[key] = d
	m.stats.NarFetches.Add(1)
	go m.runDownload(d, up, row, ni)
	return d, nil
}

// runDownload runs detached from every client, within DownloadDeadline.
func (m *Mirror) runDownload(d *download, up Upstream, row *index.NarInfo, ni *nixfmt.NarInfo) {
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.DownloadDeadline)
	defer cancel()
	start := time.Now()
	file, err := m.fetchVerified(ctx, d, up, row, ni)
	if err == nil {
		err = m.commit(ctx, d, file)
	}
	if err != nil {
		m.stats.NarFetchFailures.Add(1)
		if errors.Is(err, ErrVerify) {
			m.stats.VerifyFailures.Add(1)
		}
		if noSpace(err) {
			m.triggerGC(true)
		}
		m.log.Error("NAR download failed; nothing kept", "path", ni.StorePath, "url", row.NarURL, "err", err)
	} else {
		m.triggerGC(false)
		m.log.Info("NAR fetched and verified", "path", ni.StorePath, "bytes", file.FileSize, "took", time.Since(start).Round(time.Millisecond))
	}
	m.mu.Lock()
	delete(m.downloads, d.key)
	m.mu.Unlock()
	d.file.Finish(err)
	d.file.OS().Close()
	if err != nil {
		os.Remove(d.file.OS().Name()) // fails harmlessly if already committed
	}
}

// fetchVerified streams the upstream body into the temp file while hashing
// it and, in a second goroutine, decompressing and hashing the NAR.
func (m *Mirror) fetchVerified(ctx context.Context, d *download, up Upstream, row *index.NarInfo, ni *nixfmt.NarInfo) (*index.NarFile, error) {
	resp, err := up.Get(ctx, row.NarURL)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if d.size.Load() < 0 && resp.Size >= 0 {
		d.size.Store(resp.Size)
	}
	pr, pw := io.Pipe()
	narResult := make(chan error, 1)
	go func() { narResult <- verifyNar(pr, ni) }()

	fileHash := sha256.New()
	buf := make([]byte, 256<<10)
	var total int64
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, err := d.file.Write(buf[:n]); err != nil {
				pw.CloseWithError(err)
				return nil, fmt.Errorf("write temp file: %w", err)
			}
			fileHash.Write(buf[:n])
			if _, err := pw.Write(buf[:n]); err != nil {
				return nil, <-narResult // the verifier already knows what is wrong
			}
			total += int64(n)
			m.stats.BytesFromUpstream.Add(int64(n))
			if err := d.throttle(ctx, n); err != nil {
				pw.CloseWithError(err)
				<-narResult
				return nil, err
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			pw.CloseWithError(rerr)
			<-narResult
			return nil, fmt.Errorf("read %s after %d bytes: %w", row.NarURL, total, rerr)
		}
	}
	pw.Close()
	if err := <-narResult; err != nil {
		return nil, err
	}
	got := nixfmt.Hash{Algo: "sha256", Digest: fileHash.Sum(nil)}
	if err := checkFile(ni, got, total); err != nil {
		return nil, err
	}
	return &index.NarFile{NarHash: ni.NarHash.String(), Compression: ni.Compression,
		FileHash: got.String(), FileSize: total, NarSize: int64(ni.NarSize)}, nil
}

// throttle waits for a prefetch's bandwidth cap, unless a client is reading
// along: client traffic never waits behind a prefetch.
func (d *download) throttle(ctx context.Context, n int) error {
	for d.pace != nil && n > 0 && d.file.Readers() == 0 {
		chunk := min(n, d.pace.Burst())
		if err := d.pace.WaitN(ctx, chunk); err != nil {
			return err
		}
		n -= chunk
	}
	return nil
}

func checkFile(ni *nixfmt.NarInfo, got nixfmt.Hash, size int64) error {
	if ni.FileSize > 0 && uint64(size) != ni.FileSize {
		return fmt.Errorf("%w: %s: file is %d bytes, narinfo says FileSize %d", ErrVerify, ni.StorePath, size, ni.FileSize)
	}
	if !ni.FileHash.IsZero() && ni.FileHash.Algo == "sha256" && !ni.FileHash.Equal(got) {
		return fmt.Errorf("%w: %s: FileHash is %s, narinfo says %s", ErrVerify, ni.StorePath, got, ni.FileHash)
	}
	return nil
}

// verifyNar decompresses r and checks NarSize and NarHash, never reading more
// than NarSize+1 decompressed bytes (decompression bombs). It drains r so the
// writer never blocks, or closes it with the error.
func verifyNar(r *io.PipeReader, ni *nixfmt.NarInfo) (err error) {
	defer func() {
		if err != nil {
			r.CloseWithError(err)
		} else {
			io.Copy(io.Discard, r)
		}
	}()
	dec, err := codec.NewReader(ni.Compression, r)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrVerify, ni.StorePath, err)
	}
	defer dec.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(dec, int64(ni.NarSize)+1))
	if err != nil {
		return fmt.Errorf("%w: %s: decompress %s: %v", ErrVerify, ni.StorePath, ni.Compression, err)
	}
	if uint64(n) != ni.NarSize {
		return fmt.Errorf("%w: %s: NAR is %d bytes (at least), narinfo says NarSize %d", ErrVerify, ni.StorePath, n, ni.NarSize)
	}
	got := nixfmt.Hash{Algo: "sha256", Digest: h.Sum(nil)}
	if !got.Equal(ni.NarHash) {
		return fmt.Errorf("%w: %s: NarHash is %s, narinfo says %s", ErrVerify, ni.StorePath, got, ni.NarHash)
	}
	return nil
}

// commit makes a verified download durable: blob first, then index row, so
// the index never names a file that is not whole on disk.
func (m *Mirror) commit(ctx context.Context, d *download, f *index.NarFile) error {
	if err := m.cfg.Blobs.Commit(d.file.OS(), d.key); err != nil {
		return err
	}
	if err := m.cfg.Index.PutNarFile(ctx, f); err != nil {
		m.cfg.Blobs.Remove(d.key)
		return err
	}
	m.enqueueRecompress(f)
	return nil
}
