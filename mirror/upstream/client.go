// Package upstream is Larder's HTTP client for one upstream binary cache:
// timeouts on connect and headers but none on bodies (stall detection
// instead), retries for transient errors only, a circuit breaker, and a
// shared bandwidth cap.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/nixlarder/larder/mirror/nixfmt"
)

// ErrNotFound means the upstream answered that it does not have the object.
var ErrNotFound = errors.New("not found upstream")

// ErrUnavailable means the breaker is open: the upstream was not asked.
var ErrUnavailable = errors.New("upstream unavailable (circuit open)")

// StatusError is an unexpected HTTP status.
type StatusError struct {
	URL  string
	Code int
}

func (e *StatusError) Error() string { return fmt.Sprintf("GET %s: HTTP %d", e.URL, e.Code) }

// Transient reports whether an error may go away by itself (and so must never
// be cached as "missing"): network errors, timeouts, 408, 429 and 5xx.
func Transient(err error) bool {
	if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, context.Canceled) {
		return false
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Code == 408 || se.Code == 429 || se.Code >= 500
	}
	return true
}

// refused reports a connection that could not even be opened: the host is
// down, and retrying only makes the client wait (the breaker takes over).
func refused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// Options tune a Client.
type Options struct {
	ConnectTimeout time.Duration // dial + TLS
	HeaderTimeout  time.Duration // request sent → response headers
	StallTimeout   time.Duration // longest pause inside a body
	Retries        int           // extra attempts for transient errors
	Limiter        *rate.Limiter // shared by every upstream; nil = unlimited
	Breaker        *Breaker
	// Observe, if set, is told how long each request took until its
	// response headers, and its error.
	Observe func(time.Duration, error)
}

// DefaultOptions are tuned for a WAN upstream seen from a LAN.
func DefaultOptions() Options {
	return Options{ConnectTimeout: 5 * time.Second, HeaderTimeout: 20 * time.Second,
		StallTimeout: 60 * time.Second, Retries: 2}
}

// Client talks to one upstream cache.
type Client struct {
	base *url.URL
	opts Options
	http *http.Client
}

// New returns a client for the cache at rawURL (http or https).
func New(rawURL string, opts Options) (*Client, error) {
	u, err := url.Parse(strings.TrimSuffix(rawURL, "/") + "/")
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("upstream %q: want an http(s) URL", rawURL)
	}
	if opts.Breaker == nil {
		opts.Breaker = NewBreaker(3, 15*time.Second)
	}
	dialer := &net.Dialer{Timeout: opts.ConnectTimeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   opts.ConnectTimeout,
		ResponseHeaderTimeout: opts.HeaderTimeout,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true, // NAR bytes must arrive exactly as stored
		ForceAttemptHTTP2:     true,
	}
	return &Client{base: u, opts: opts, http: &http.Client{Transport: tr}}, nil
}

// URL is the upstream's base URL, ending in "/".
func (c *Client) URL() string { return c.base.String() }

// Breaker exposes the circuit breaker for health reporting.
func (c *Client) Breaker() *Breaker { return c.opts.Breaker }

// Resolve turns a URL from this upstream's narinfo into an absolute URL on the
// same host. Anything else (another host, another scheme, traversal) is refused:
// a narinfo must not make Larder fetch from arbitrary places.
func (c *Client) Resolve(ref string) (string, error) {
	r, err := url.Parse(ref)
	if err != nil {
		return "", fmt.Errorf("bad URL %q: %w", ref, err)
	}
	abs := c.base.ResolveReference(r)
	if abs.Scheme != c.base.Scheme || abs.Host != c.base.Host || strings.Contains(ref, "..") {
		return "", fmt.Errorf("URL %q leaves upstream %s", ref, c.base)
	}
	return abs.String(), nil
}

// NarInfo fetches and parses <hash>.narinfo. It does not check signatures.
func (c *Client) NarInfo(ctx context.Context, hash string) (*nixfmt.NarInfo, error) {
	u, _ := c.Resolve(hash + ".narinfo")
	resp, err := c.Get(ctx, u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, nixfmt.MaxNarInfoSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", u, err)
	}
	ni, err := nixfmt.ParseNarInfo(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", u, err)
	}
	if ni.HashPart() != hash {
		return nil, fmt.Errorf("%s: narinfo is for %s", u, ni.StorePath)
	}
	return ni, nil
}

// Response is a successful upstream answer. Body is rate-limited and fails
// if it stalls; Size is the Content-Length, or -1.
type Response struct {
	Body   io.ReadCloser
	Size   int64
	Header http.Header
}

// Get fetches an absolute URL (see Resolve), retrying transient failures
// before any byte of the body was read.
func (c *Client) Get(ctx context.Context, absURL string) (*Response, error) {
	for attempt := 0; ; attempt++ {
		if !c.opts.Breaker.Allow() {
			return nil, fmt.Errorf("%s: %w", c.base.Host, ErrUnavailable)
		}
		resp, err := c.get(ctx, absURL)
		switch {
		case err == nil || errors.Is(err, ErrNotFound):
			c.opts.Breaker.Success()
			return resp, err
		case !Transient(err) || ctx.Err() != nil:
			return nil, err
		}
		c.opts.Breaker.Failure()
		if attempt >= c.opts.Retries || refused(err) {
			return nil, err
		}
		backoff := time.Duration(100<<attempt)*time.Millisecond + rand.N(50*time.Millisecond)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
	}
}

func (c *Client) get(ctx context.Context, absURL string) (*Response, error) {
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, absURL, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set("User-Agent", "larder")
	start := time.Now()
	resp, err := c.http.Do(req)
	if c.opts.Observe != nil {
		obsErr := err
		if err == nil && resp.StatusCode >= 500 {
			obsErr = fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		c.opts.Observe(time.Since(start), obsErr)
	}
	if err != nil {
		cancel()
		return nil, err
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		return &Response{Body: newBody(resp.Body, cancel, c.opts), Size: resp.ContentLength, Header: resp.Header}, nil
	case resp.StatusCode == 404 || resp.StatusCode == 410 || resp.StatusCode == 403:
		drain(resp.Body)
		cancel()
		return nil, fmt.Errorf("%s: %w", absURL, ErrNotFound)
	default:
		drain(resp.Body)
		cancel()
		return nil, &StatusError{URL: absURL, Code: resp.StatusCode}
	}
}

func drain(r io.ReadCloser) {
	io.Copy(io.Discard, io.LimitReader(r, 64<<10))
	r.Close()
}

// body wraps a response body with the bandwidth cap and stall detection.
type body struct {
	rc      io.ReadCloser
	cancel  context.CancelFunc
	limiter *rate.Limiter
	stall   time.Duration
	timer   *time.Timer
	stalled chan struct{}
}

func newBody(rc io.ReadCloser, cancel context.CancelFunc, o Options) *body {
	b := &body{rc: rc, cancel: cancel, limiter: o.Limiter, stall: o.StallTimeout, stalled: make(chan struct{})}
	if b.stall > 0 {
		b.timer = time.AfterFunc(b.stall, func() { close(b.stalled); cancel() })
	}
	return b
}

func (b *body) Read(p []byte) (int, error) {
	if b.limiter != nil && len(p) > b.limiter.Burst() {
		p = p[:b.limiter.Burst()]
	}
	n, err := b.rc.Read(p)
	if b.timer != nil && n > 0 {
		b.timer.Reset(b.stall)
	}
	if err != nil && err != io.EOF {
		select {
		case <-b.stalled:
			err = fmt.Errorf("upstream body stalled for %s: %w", b.stall, err)
		default:
		}
	}
	if b.limiter != nil && n > 0 {
		if werr := b.limiter.WaitN(context.Background(), n); werr != nil && err == nil {
			err = werr
		}
	}
	return n, err
}

func (b *body) Close() error {
	if b.timer != nil {
		b.timer.Stop()
	}
	b.cancel()
	return b.rc.Close()
}
