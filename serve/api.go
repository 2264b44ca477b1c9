package serve

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/nixlarder/larder/mirror"
	"github.com/nixlarder/larder/mirror/nixfmt"
	"github.com/nixlarder/larder/prefetch"
)

// Tools is what the /api endpoints need: prefetch and pin status.
type Tools interface {
	Prefetch(ctx context.Context, req *prefetch.Request, progress func(prefetch.Progress)) (*prefetch.Report, error)
	PinStatuses(ctx context.Context, deep bool) ([]prefetch.PinStatus, error)
	AddCA(ctx context.Context, ni *nixfmt.NarInfo, nar io.Reader) error
	Missing(ctx context.Context, paths []string) ([]string, error)
	Import(ctx context.Context, ni *nixfmt.NarInfo, file io.Reader) error
	SetPin(ctx context.Context, name string, roots []string) error
	PinURLs(ctx context.Context, pin string, urls []string) error
}

// ProxyInfo is what GET /api/proxy tells tools about the forward proxy.
type ProxyInfo struct {
	Port  string `json:"port"`   // on the server's host
	CAPEM string `json:"ca_pem"` // for NIX_SSL_CERT_FILE
}

// MissingRequest and MissingResponse are the body and answer of
// POST /api/missing: which of these paths neither Larder nor any upstream has.
type MissingRequest struct {
	Paths []string `json:"paths"`
}

type MissingResponse struct {
	Missing []string `json:"missing"`
}

// NarInfoHeader carries the path info of PUT /api/ca/<hash> (base64 of a
// narinfo); the body is the uncompressed NAR.
const NarInfoHeader = "X-Larder-NarInfo"

// Event is one line of the NDJSON stream of POST /api/prefetch.
type Event struct {
	Progress *prefetch.Progress `json:"progress,omitempty"`
	Report   *prefetch.Report   `json:"report,omitempty"`
	Error    string             `json:"error,omitempty"`
}

const maxAPIBody = 64 << 20 // a store-paths list of a whole channel fits

// apiPrefetch runs a prefetch for as long as the caller stays connected,
// streaming progress lines and a final report. Bad input answers 400 before
// anything is recorded.
func (s *Server) apiPrefetch(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return methodNotAllowed("POST")
	}
	var req prefetch.Request
	if err := decodeJSON(r, "prefetch request", &req); err != nil {
		return err
	}
	var mu sync.Mutex
	started := false
	enc := json.NewEncoder(w)
	rc := http.NewResponseController(w)
	emit := func(ev Event) {
		mu.Lock()
		defer mu.Unlock()
		if !started {
			w.Header().Set("Content-Type", "application/x-ndjson")
			started = true
		}
		enc.Encode(ev)
		rc.Flush()
	}
	rep, err := s.opts.Tools.Prefetch(r.Context(), &req, func(p prefetch.Progress) { emit(Event{Progress: &p}) })
	if errors.Is(err, prefetch.ErrBadInput) {
		return fmt.Errorf("%w: %v", errBadRequest, err)
	}
	if err != nil {
		return err
	}
	emit(Event{Report: rep})
	return nil
}

// narInfoFromHeader reads the narinfo of a PUT and checks it names hash.
func narInfoFromHeader(r *http.Request, hash string) (*nixfmt.NarInfo, error) {
	text, err := base64.StdEncoding.DecodeString(r.Header.Get(NarInfoHeader))
	if err != nil {
		return nil, fmt.Errorf("%w: %s header: %v", errBadRequest, NarInfoHeader, err)
	}
	ni, err := nixfmt.ParseNarInfo(text)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errBadRequest, err)
	}
	if ni.HashPart() != hash {
		return nil, fmt.Errorf("%w: narinfo is for %s, not %s", errBadRequest, ni.StorePath, hash)
	}
	return ni, nil
}

// apiImport takes one path of a bundle: its narinfo in the header, its NAR
// file as the body, checked against the server's own trusted keys.
func (s *Server) apiImport(w http.ResponseWriter, r *http.Request, hash string) error {
	if r.Method != http.MethodPut {
		return methodNotAllowed("PUT")
	}
	ni, err := narInfoFromHeader(r, hash)
	if err != nil {
		return err
	}
	if err := s.opts.Tools.Import(r.Context(), ni, r.Body); err != nil {
		if errors.Is(err, mirror.ErrRejected) {
			return fmt.Errorf("%w: %v", errBadRequest, err)
		}
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// apiProxy describes the forward proxy, or 404 when there is none.
func (s *Server) apiProxy(w http.ResponseWriter, r *http.Request) error {
	if s.opts.Proxy == nil {
		return mirror.ErrNotFound
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(s.opts.Proxy)
}

// apiPinURLs records the source URLs a pin needs: PUT /api/pins/<name>/urls.
func (s *Server) apiPinURLs(w http.ResponseWriter, r *http.Request, name string) error {
	if r.Method != http.MethodPut {
		return methodNotAllowed("PUT")
	}
	var urls []string
	if err := decodeJSON(r, "pin URLs", &urls); err != nil {
		return err
	}
	if err := s.opts.Tools.PinURLs(r.Context(), name, urls); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// apiSetPin records a pin: PUT /api/pins/<name> with a JSON list of roots.
func (s *Server) apiSetPin(w http.ResponseWriter, r *http.Request, name string) error {
	if r.Method != http.MethodPut {
		return methodNotAllowed("PUT")
	}
	var roots []string
	if err := decodeJSON(r, "pin roots", &roots); err != nil {
		return err
	}
	for _, root := range roots {
		if _, err := prefetch.ParseRoot(root); err != nil {
			return fmt.Errorf("%w: %v", errBadRequest, err)
		}
	}
	if err := s.opts.Tools.SetPin(r.Context(), name, roots); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// apiAddCA takes a content-addressed path from a local store. It needs no
// credentials: the bytes must match the CA field and the CA field the path.
func (s *Server) apiAddCA(w http.ResponseWriter, r *http.Request, hash string) error {
	if r.Method != http.MethodPut {
		return methodNotAllowed("PUT")
	}
	ni, err := narInfoFromHeader(r, hash)
	if err != nil {
		return err
	}
	if err := s.opts.Tools.AddCA(r.Context(), ni, r.Body); err != nil {
		if errors.Is(err, mirror.ErrRejected) {
			return fmt.Errorf("%w: %v", errBadRequest, err)
		}
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) apiMissing(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return methodNotAllowed("POST")
	}
	var req MissingRequest
	if err := decodeJSON(r, "missing request", &req); err != nil {
		return err
	}
	missing, err := s.opts.Tools.Missing(r.Context(), req.Paths)
	if errors.Is(err, prefetch.ErrBadInput) {
		return fmt.Errorf("%w: %v", errBadRequest, err)
	}
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(MissingResponse{Missing: missing})
}

// apiPins lists pins with their offline-ready state as JSON.
func (s *Server) apiPins(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return methodNotAllowed("GET, HEAD")
	}
	pins, err := s.opts.Tools.PinStatuses(r.Context(), false)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(pins)
}

// decodeJSON reads a bounded JSON request body; a bad one is a 400.
func decodeJSON(r *http.Request, what string, v any) error {
	if err := json.NewDecoder(io.LimitReader(r.Body, maxAPIBody)).Decode(v); err != nil {
		return fmt.Errorf("%w: %s: %v", errBadRequest, what, err)
	}
	return nil
}
