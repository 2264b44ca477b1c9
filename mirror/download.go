package mirror

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"github.com/nixlarder/larder/index"
	"github.com/nixlarder/larder/mirror/codec"
	"github.com/nixlarder/larder/mirror/nixfmt"
)

// errFinished means a download committed before a reader could join it.
var errFinished = errors.New("download already finished")

// ErrVerify marks a NAR whose bytes did not match its narinfo.
var ErrVerify = errors.New("NAR verification failed")

// download is one upstream fetch of a NAR into a temp file. Any number of
// readers follow the growing file; they see EOF only once the file verified
// and was committed, and an error otherwise.
type download struct {
	key     string
	narHash string // "sha256:<nix32>", for GC to leave it alone
	size    int64  // expected file size, or -1

	pace      *rate.Limiter // a prefetch's bandwidth cap, or nil
	followers atomic.Int32  // clients reading along; they lift the cap

	mu      sync.Mutex
	tmp     *os.File
	written int64
	done    bool
	err     error
	changed chan struct{} // closed and replaced on every change
}

func (d *download) state() (written int64, done bool, err error, changed <-chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.written, d.done, d.err, d.changed
}

func (d *download) update(f func()) {
	d.mu.Lock()
	f()
	close(d.changed)
	d.changed = make(chan struct{})
	d.mu.Unlock()
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
	size := int64(-1)
	if ni.FileSize > 0 {
		size = int64(ni.FileSize)
	}
	d := &download{key: key, narHash: ni.NarHash.String(), size: size, tmp: tmp, pace: pace, changed: make(chan struct{})}
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
	d.update(func() { d.done, d.err = true, err })
	d.tmp.Close()
	if err != nil {
		os.Remove(d.tmp.Name()) // fails harmlessly if already committed
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
	if d.size < 0 && resp.Size >= 0 {
		d.update(func() { d.size = resp.Size })
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
			if _, err := d.tmp.Write(buf[:n]); err != nil {
				pw.CloseWithError(err)
				return nil, fmt.Errorf("write temp file: %w", err)
			}
			fileHash.Write(buf[:n])
			if _, err := pw.Write(buf[:n]); err != nil {
				return nil, <-narResult // the verifier already knows what is wrong
			}
			total += int64(n)
			m.stats.BytesFromUpstream.Add(int64(n))
			d.update(func() { d.written = total })
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
	for d.pace != nil && n > 0 && d.followers.Load() == 0 {
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
	if err := m.cfg.Blobs.Commit(d.tmp, d.key); err != nil {
		return err
	}
	if err := m.cfg.Index.PutNarFile(ctx, f); err != nil {
		m.cfg.Blobs.Remove(d.key)
		return err
	}
	m.enqueueRecompress(f)
	return nil
}

// follower reads a download as it grows.
type follower struct {
	ctx context.Context
	d   *download
	f   *os.File
	off int64
}

func (d *download) follow(ctx context.Context) (*follower, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done {
		if d.err != nil {
			return nil, d.err
		}
		return nil, errFinished
	}
	// A duplicate descriptor keeps reading the same file after the commit
	// renames it.
	fd, err := syscall.Dup(int(d.tmp.Fd()))
	if err != nil {
		return nil, fmt.Errorf("follow download: %w", err)
	}
	d.followers.Add(1)
	return &follower{ctx: ctx, d: d, f: os.NewFile(uintptr(fd), d.key)}, nil
}

func (r *follower) Read(p []byte) (int, error) {
	for {
		written, done, err, changed := r.d.state()
		if done && err != nil {
			return 0, err // never hand out the rest of a bad file
		}
		if !done && written > 0 {
			// Hold the last byte back until the file verified: a client
			// that got every byte of a bad NAR would see a clean transfer.
			written--
		}
		if r.off < written {
			if int64(len(p)) > written-r.off {
				p = p[:written-r.off]
			}
			n, rerr := r.f.ReadAt(p, r.off)
			r.off += int64(n)
			if rerr == io.EOF && n > 0 {
				rerr = nil
			}
			return n, rerr
		}
		if done {
			return 0, io.EOF
		}
		select {
		case <-changed:
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		}
	}
}

func (r *follower) Close() error {
	r.d.followers.Add(-1)
	return r.f.Close()
}
