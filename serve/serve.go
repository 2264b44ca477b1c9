// Package serve is Larder's HTTP face: the Nix binary cache routes and the
// small endpoints beside them. It validates every path before anything else
// sees it, and maps errors to statuses in one place.
package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/nixlarder/larder/mirror"
	"github.com/nixlarder/larder/mirror/nixfmt"
	"github.com/nixlarder/larder/mirror/upstream"
)

// Cache is what the server needs of the mirror.
type Cache interface {
	NarInfo(ctx context.Context, hash string) ([]byte, error)
	OpenNAR(ctx context.Context, narHash nixfmt.Hash, compression string) (*mirror.NAR, error)
	WaitNAR(ctx context.Context, narHash nixfmt.Hash, compression string) error
	Passthrough(ctx context.Context, rel string) (*upstream.Response, error)
	Listing(ctx context.Context, hash string) ([]byte, error)
	RecordServed(n int64)
	StoreUsage(ctx context.Context) (used, limit int64, err error)
	PublicKey() nixfmt.PublicKey
}

// Options configure the server.
type Options struct {
	Priority int // nix-cache-info Priority: lower wins; cache.nixos.org is 40
	Log      *slog.Logger
	Tools    Tools      // the /api endpoints; nil turns them off
	Metrics  *Metrics   // /metrics; nil turns it off
	Status   StatusPage // the page at /; nil serves a plain text hint
	Proxy    *ProxyInfo // the forward proxy, for tools; nil when off

	Push           Pusher   // nix copy --to; nil turns pushing off
	PushTokens     []string // accepted tokens (Basic password or Bearer)
	PushRequireSig bool     // refuse pushed paths not signed by a trusted key
	PushMaxSize    int64    // largest upload, bytes
}

// Server is the HTTP handler.
type Server struct {
	cache Cache
	opts  Options
}

// New returns the handler.
func New(cache Cache, opts Options) *Server {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	return &Server{cache: cache, opts: opts}
}

// errBadRequest marks malformed or hostile requests.
var errBadRequest = errors.New("bad request")

// errMethod marks a method the route does not take.
var errMethod = errors.New("method not allowed")

// methodError is errMethod with the methods the route does take.
type methodError struct{ allow string }

func (e methodError) Error() string { return "method not allowed; use " + e.allow }
func (e methodError) Unwrap() error { return errMethod }

func methodNotAllowed(allow string) error { return methodError{allow} }

const maxPathLen = 512

var (
	narInfoRe = regexp.MustCompile(`^/([0-9a-df-np-sv-z]{32})\.narinfo$`)
	lsRe      = regexp.MustCompile(`^/([0-9a-df-np-sv-z]{32})\.ls$`)
	narRe     = regexp.MustCompile(`^/nar/([0-9a-df-np-sv-z]{52})\.nar((?:\.[a-z0-9]+)?)$`)
)

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w}
	defer func() {
		if s.opts.Metrics != nil {
			status := rec.status
			if p := recover(); p != nil {
				s.opts.Metrics.observeRequest(requestKind(r.URL.Path), http.StatusInternalServerError)
				panic(p) // http.ErrAbortHandler: cut the connection
			}
			s.opts.Metrics.observeRequest(requestKind(r.URL.Path), status)
		}
	}()
	w = rec
	err := s.route(w, r)
	if err != nil {
		s.writeError(w, r, err)
	}
	if s.opts.Log.Enabled(r.Context(), slog.LevelDebug) {
		s.opts.Log.Debug("request", "method", r.Method, "path", r.URL.Path, "err", err, "took", time.Since(start))
	}
}

// route dispatches on the raw path; nothing reaches a handler that was not
// matched against a strict pattern first.
func (s *Server) route(w http.ResponseWriter, r *http.Request) error {
	p := r.URL.Path
	if len(p) > maxPathLen || r.URL.RawPath != "" || strings.Contains(p, "..") || strings.ContainsAny(p, "\x00\\") {
		return fmt.Errorf("%w: malformed path", errBadRequest)
	}
	if strings.HasPrefix(p, "/api/") && s.opts.Tools != nil {
		return s.api(w, r, p)
	}
	if r.Method == http.MethodPut || r.Method == http.MethodDelete {
		return s.push(w, r, p)
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return methodNotAllowed("GET, HEAD")
	}
	switch {
	case p == "/nix-cache-info":
		return s.cacheInfo(w)
	case p == "/healthz":
		return s.healthz(w, r)
	case p == "/metrics" && s.opts.Metrics != nil:
		s.opts.Metrics.Handler().ServeHTTP(w, r)
		return nil
	case p == "/pubkey":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, err := io.WriteString(w, s.cache.PublicKey().String())
		return err
	case p == "/" && s.opts.Status != nil:
		return s.statusPage(w, r)
	case p == "/":
		return s.home(w)
	case strings.HasSuffix(p, ".narinfo"):
		m := narInfoRe.FindStringSubmatch(p)
		if m == nil {
			return fmt.Errorf("%w: not a store path hash", errBadRequest)
		}
		return s.narInfo(w, r, m[1])
	case strings.HasPrefix(p, "/nar/"):
		m := narRe.FindStringSubmatch(p)
		if m == nil {
			return fmt.Errorf("%w: not a NAR file name", errBadRequest)
		}
		return s.nar(w, r, m[1], m[2])
	case strings.HasSuffix(p, ".ls"):
		if lsRe.MatchString(p) {
			return s.extra(w, r, "ls"+p, "application/json")
		}
		return fmt.Errorf("%w: not a store path hash", errBadRequest)
	case strings.HasPrefix(p, "/log/"):
		if nixfmt.ValidBasename(p[5:]) {
			return s.extra(w, r, p[1:], "text/plain; charset=utf-8")
		}
		return fmt.Errorf("%w: not a derivation name", errBadRequest)
	}
	return mirror.ErrNotFound
}

var (
	caRe     = regexp.MustCompile(`^/api/ca/([0-9a-df-np-sv-z]{32})$`)
	importRe = regexp.MustCompile(`^/api/import/([0-9a-df-np-sv-z]{32})$`)
	pinRe    = regexp.MustCompile(`^/api/pins/([A-Za-z0-9._+-]{1,100})$`)
	pinURLRe = regexp.MustCompile(`^/api/pins/([A-Za-z0-9._+-]{1,100})/urls$`)
)

func (s *Server) api(w http.ResponseWriter, r *http.Request, p string) error {
	if m := caRe.FindStringSubmatch(p); m != nil {
		return s.apiAddCA(w, r, m[1])
	}
	if m := importRe.FindStringSubmatch(p); m != nil {
		return s.apiImport(w, r, m[1])
	}
	if m := pinRe.FindStringSubmatch(p); m != nil {
		return s.apiSetPin(w, r, m[1])
	}
	if m := pinURLRe.FindStringSubmatch(p); m != nil {
		return s.apiPinURLs(w, r, m[1])
	}
	switch p {
	case "/api/prefetch":
		return s.apiPrefetch(w, r)
	case "/api/pins":
		return s.apiPins(w, r)
	case "/api/missing":
		return s.apiMissing(w, r)
	case "/api/proxy":
		return s.apiProxy(w, r)
	}
	return mirror.ErrNotFound
}

// healthz answers 200 while the index answers; upstreams do not matter.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	if _, _, err := s.cache.StoreUsage(r.Context()); err != nil {
		http.Error(w, "index: "+err.Error(), http.StatusServiceUnavailable)
		return nil
	}
	_, err := io.WriteString(w, "ok\n")
	return err
}

func (s *Server) cacheInfo(w http.ResponseWriter) error {
	w.Header().Set("Content-Type", "text/x-nix-cache-info")
	_, err := fmt.Fprintf(w, "StoreDir: %s\nWantMassQuery: 1\nPriority: %d\n", nixfmt.StoreDir, s.opts.Priority)
	return err
}

func (s *Server) home(w http.ResponseWriter) error {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, err := fmt.Fprintf(w, "Larder: a Nix binary cache.\nsubstituters = http://<this host>/\ntrusted-public-keys = %s\n", s.cache.PublicKey())
	return err
}

func (s *Server) narInfo(w http.ResponseWriter, r *http.Request, hash string) error {
	body, err := s.cache.NarInfo(r.Context(), hash)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/x-nix-narinfo")
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	if r.Method == http.MethodHead {
		return nil
	}
	_, err = w.Write(body)
	return err
}

func (s *Server) passthrough(w http.ResponseWriter, r *http.Request, rel, contentType string) error {
	resp, err := s.cache.Passthrough(r.Context(), rel)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	w.Header().Set("Content-Type", contentType)
	if ce := resp.Header.Get("Content-Encoding"); ce != "" {
		w.Header().Set("Content-Encoding", ce)
	}
	if resp.Size >= 0 {
		w.Header().Set("Content-Length", fmt.Sprint(resp.Size))
	}
	if r.Method == http.MethodHead {
		return nil
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		panic(http.ErrAbortHandler) // headers are gone: only a cut connection tells the client
	}
	return nil
}

// writeError is the one place errors become statuses. Hostile or malformed
// input is 400; what Larder cannot deliver is 404 (the only answer every Nix
// version treats as "try elsewhere"); anything else is 500 and logged.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, errBadRequest):
		code = http.StatusBadRequest
	case errors.Is(err, errMethod):
		allow := "GET, HEAD"
		var me methodError
		if errors.As(err, &me) {
			allow = me.allow
		}
		w.Header().Set("Allow", allow)
		code = http.StatusMethodNotAllowed
	case errors.Is(err, mirror.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, errUnauthorized):
		code = http.StatusUnauthorized
	case errors.Is(err, mirror.ErrTooLarge):
		code = http.StatusRequestEntityTooLarge
	case errors.Is(err, context.Canceled):
		return // the client left
	default:
		s.opts.Log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	msg := http.StatusText(code)
	if code == http.StatusBadRequest || code == http.StatusRequestEntityTooLarge {
		msg = err.Error()
	}
	http.Error(w, msg, code)
}
