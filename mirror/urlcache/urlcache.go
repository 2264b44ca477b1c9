// Package urlcache keeps what the forward proxy fetched for fixed-output
// derivations and Nix's fetchers: whole successful GET responses, keyed by
// normalised URL, stored as content-addressed blobs with an index row, one
// origin fetch per URL however many clients ask, replayed when offline.
package urlcache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/nixlarder/larder/index"
	"github.com/nixlarder/larder/mirror/growing"
)

// Index is what the cache needs of the index.
type Index interface {
	URL(ctx context.Context, url string) (*index.URL, error)
	PutURL(ctx context.Context, u *index.URL) error
}

// Blobs is what the cache needs of blob storage.
type Blobs interface {
	CreateTemp() (*os.File, error)
	Commit(tmp *os.File, key string) error
	Open(key string) (*os.File, error)
}

// Config wires a Cache.
type Config struct {
	Index   Index
	Blobs   Blobs
	Client  *http.Client // to origins
	MaxSize int64        // largest response kept; larger ones are cut
	Offline bool         // never contact origins
	// ImmutableAfter: a kept response is served without asking the origin
	// for this long after it was fetched; 0 means forever (a fixed-output
	// fetch is checked against its hash by Nix anyway).
	ImmutableAfter time.Duration
	Revalidate     bool // ask the origin (conditionally) every time
}

// Stats are the proxy's counters.
type Stats struct {
	Hits, Misses, Passthrough, BytesServed, BytesFetched atomic.Int64
}

// Cache is the forward proxy's store.
type Cache struct {
	cfg     Config
	flights singleflight.Group
	Stats   Stats

	mu      sync.Mutex
	streams map[string]*stream // bodies being fetched, by key
}

// New returns a Cache.
func New(cfg Config) *Cache { return &Cache{cfg: cfg, streams: map[string]*stream{}} }

// BlobKey names a kept body.
func BlobKey(sha string) string { return "url/" + sha }

// Normalize is the cache key of a URL: scheme and host lower case, default
// port and fragment dropped.
func Normalize(u *url.URL) string {
	c := *u
	c.Scheme = strings.ToLower(c.Scheme)
	c.Host = strings.ToLower(c.Host)
	if (c.Scheme == "http" && c.Port() == "80") || (c.Scheme == "https" && c.Port() == "443") {
		c.Host = c.Hostname()
	}
	c.Fragment, c.RawFragment = "", ""
	return c.String()
}

// cacheable reports whether a request may be answered from (or kept in)
// the cache: a plain GET without credentials.
func cacheable(r *http.Request) bool {
	return r.Method == http.MethodGet && r.Header.Get("Authorization") == "" &&
		r.Header.Get("Cookie") == "" && r.Header.Get("Range") == "" && r.URL.User == nil
}

// Serve answers a proxied request.
func (c *Cache) Serve(r *http.Request) *http.Response {
	ctx := r.Context()
	if !cacheable(r) {
		c.Stats.Passthrough.Add(1)
		return c.passthrough(r)
	}
	key := Normalize(r.URL)
	kept, err := c.cfg.Index.URL(ctx, key)
	if err != nil && !errors.Is(err, index.ErrNotFound) {
		return errorResponse(r, http.StatusInternalServerError, err.Error())
	}
	if kept != nil && (c.cfg.Offline || c.fresh(kept)) {
		return c.hit(r, kept)
	}
	if c.cfg.Offline {
		return errorResponse(r, http.StatusGatewayTimeout, "larder is offline and has no copy of "+key)
	}
	if st := c.streaming(key); st != nil {
		return c.follow(r, st)
	}
	v, err, _ := c.flights.Do(key, func() (any, error) { return c.fetch(key, r.URL.String(), kept) })
	if err != nil {
		if kept != nil {
			return c.hit(r, kept) // origin unreachable: replay what was kept
		}
		return errorResponse(r, http.StatusBadGateway, fmt.Sprintf("fetching %s: %v", key, err))
	}
	switch res := v.(type) {
	case *index.URL:
		return c.hit(r, res)
	case *buffered:
		return res.response(r)
	case *stream:
		return c.follow(r, res)
	}
	return errorResponse(r, http.StatusInternalServerError, "unexpected fetch result")
}

func (c *Cache) fresh(u *index.URL) bool {
	return !c.cfg.Revalidate && (c.cfg.ImmutableAfter <= 0 || time.Since(u.FetchedAt) < c.cfg.ImmutableAfter)
}

// hit serves a kept body.
func (c *Cache) hit(r *http.Request, u *index.URL) *http.Response {
	f, err := c.cfg.Blobs.Open(BlobKey(u.SHA256))
	if err != nil {
		return errorResponse(r, http.StatusBadGateway, "kept copy of "+u.URL+" is missing on disk")
	}
	c.Stats.Hits.Add(1)
	c.Stats.BytesServed.Add(u.Size)
	h := http.Header{}
	setIf(h, "Content-Type", u.ContentType)
	setIf(h, "ETag", u.ETag)
	setIf(h, "Last-Modified", u.LastModified)
	h.Set("X-Larder-Cache", "hit")
	return &http.Response{StatusCode: http.StatusOK, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: f, ContentLength: u.Size, Request: r}
}

func setIf(h http.Header, k, v string) {
	if v != "" {
		h.Set(k, v)
	}
}

// buffered is an origin answer that is not kept (not a 200, or not
// cacheable), small enough to hand to every waiting client.
type buffered struct {
	status int
	header http.Header
	body   []byte
}

func (b *buffered) response(r *http.Request) *http.Response {
	return &http.Response{StatusCode: b.status, Status: fmt.Sprintf("%d %s", b.status, http.StatusText(b.status)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: b.header.Clone(),
		Body: io.NopCloser(bytes.NewReader(b.body)), ContentLength: int64(len(b.body)), Request: r}
}

// fetch does the one origin request for a URL and keeps a cacheable 200.
// It runs detached from the client that started it.
func (c *Cache) fetch(key, rawURL string, kept *index.URL) (result any, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Hour)
	defer func() {
		if _, streaming := result.(*stream); !streaming {
			cancel()
		}
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, err
	}
	if kept != nil {
		setIf(req.Header, "If-None-Match", kept.ETag)
		setIf(req.Header, "If-Modified-Since", kept.LastModified)
	}
	resp, err := c.cfg.Client.Do(req)
	if err != nil {
		return nil, err
	}
	c.Stats.Misses.Add(1)
	if resp.StatusCode == http.StatusNotModified && kept != nil {
		resp.Body.Close()
		kept.FetchedAt = time.Now()
		return kept, c.cfg.Index.PutURL(ctx, kept)
	}
	cc := strings.ToLower(resp.Header.Get("Cache-Control"))
	if resp.StatusCode != http.StatusOK || strings.Contains(cc, "no-store") || strings.Contains(cc, "private") {
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
		return &buffered{status: resp.StatusCode, header: resp.Header, body: body}, err
	}
	if resp.ContentLength > c.cfg.MaxSize {
		resp.Body.Close()
		return nil, fmt.Errorf("response of %d bytes is over the %d-byte cap: not kept", resp.ContentLength, c.cfg.MaxSize)
	}
	st, err := c.keep(key, resp, cancel)
	if err != nil {
		resp.Body.Close()
		return nil, err
	}
	return st, nil
}

// keep starts streaming a body into a temp file and returns at once: every
// client reads the growing file while one goroutine fetches, hashes and, at
// the end, commits it.
func (c *Cache) keep(key string, resp *http.Response, cancel context.CancelFunc) (*stream, error) {
	tmp, err := c.cfg.Blobs.CreateTemp()
	if err != nil {
		return nil, err
	}
	st := &stream{key: key, file: growing.New(tmp, false), header: resp.Header.Clone(), size: resp.ContentLength}
	c.mu.Lock()
	c.streams[key] = st
	c.mu.Unlock()
	go func() {
		defer cancel()
		defer resp.Body.Close()
		u, err := c.fill(st, resp)
		if err == nil {
			err = c.commit(st, u)
		}
		st.finish(u, err)
		c.mu.Lock()
		delete(c.streams, key)
		c.mu.Unlock()
		tmp.Close()
		os.Remove(tmp.Name()) // fails harmlessly once committed
	}()
	return st, nil
}

// fill copies the body into the temp file, hashing it, within the size cap.
func (c *Cache) fill(st *stream, resp *http.Response) (*index.URL, error) {
	sum := sha256.New()
	buf := make([]byte, 128<<10)
	var n int64
	for {
		k, rerr := resp.Body.Read(buf)
		if k > 0 {
			if n+int64(k) > c.cfg.MaxSize {
				return nil, fmt.Errorf("response over the %d-byte cap: cut and not kept", c.cfg.MaxSize)
			}
			if _, err := st.file.Write(buf[:k]); err != nil {
				return nil, err
			}
			sum.Write(buf[:k])
			n += int64(k)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return nil, rerr
		}
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return nil, fmt.Errorf("body is %d bytes, Content-Length says %d", n, resp.ContentLength)
	}
	c.Stats.BytesFetched.Add(n)
	return &index.URL{URL: st.key, SHA256: hex.EncodeToString(sum.Sum(nil)), Size: n,
		ContentType: resp.Header.Get("Content-Type"), ETag: resp.Header.Get("ETag"),
		LastModified: resp.Header.Get("Last-Modified"), FetchedAt: time.Now()}, nil
}

func (c *Cache) commit(st *stream, u *index.URL) error {
	if err := c.cfg.Blobs.Commit(st.file.OS(), BlobKey(u.SHA256)); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return c.cfg.Index.PutURL(ctx, u)
}

func (c *Cache) streaming(key string) *stream {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.streams[key]
}

// follow answers from a stream: the kept copy if it already finished,
// otherwise a reader of the growing file that fails if the fetch fails.
func (c *Cache) follow(r *http.Request, st *stream) *http.Response {
	body, u, err := st.reader(r.Context())
	switch {
	case u != nil:
		return c.hit(r, u)
	case err != nil:
		return errorResponse(r, http.StatusBadGateway, fmt.Sprintf("fetching %s: %v", st.key, err))
	}
	h := st.header.Clone()
	h.Del("Content-Length")
	h.Set("X-Larder-Cache", "miss")
	return &http.Response{StatusCode: http.StatusOK, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: body, ContentLength: st.size, Request: r}
}

// passthrough forwards a request that must not be cached.
func (c *Cache) passthrough(r *http.Request) *http.Response {
	if c.cfg.Offline {
		return errorResponse(r, http.StatusGatewayTimeout, "larder is offline")
	}
	out := r.Clone(r.Context())
	out.RequestURI = ""
	resp, err := c.cfg.Client.Do(out)
	if err != nil {
		return errorResponse(r, http.StatusBadGateway, err.Error())
	}
	return resp
}

func errorResponse(r *http.Request, code int, msg string) *http.Response {
	body := msg + "\n"
	return &http.Response{StatusCode: code, Status: fmt.Sprintf("%d %s", code, http.StatusText(code)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}},
		Body:   io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Request: r}
}

// Add stores a body for a URL from elsewhere (a bundle), checking that it
// hashes to u.SHA256 and has u.Size bytes before committing it.
func Add(ctx context.Context, idx Index, blobs Blobs, u *index.URL, body io.Reader) error {
	tmp, err := blobs.CreateTemp()
	if err != nil {
		return err
	}
	defer func() { tmp.Close(); os.Remove(tmp.Name()) }()
	sum := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, sum), io.LimitReader(body, u.Size+1))
	if err != nil {
		return err
	}
	if got := hex.EncodeToString(sum.Sum(nil)); n != u.Size || got != u.SHA256 {
		return fmt.Errorf("%s: body is %d bytes with sha256 %s, expected %d bytes with %s", u.URL, n, got, u.Size, u.SHA256)
	}
	if err := blobs.Commit(tmp, BlobKey(u.SHA256)); err != nil {
		return err
	}
	return idx.PutURL(ctx, u)
}
