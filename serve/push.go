package serve

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/nixlarder/larder/mirror"
	"github.com/nixlarder/larder/mirror/nixfmt"
)

// Pusher is what `nix copy --to http://larder` needs of the mirror.
type Pusher interface {
	StageNAR(url string, body io.Reader, max int64) error
	Staged(url string) (int64, bool)
	Push(ctx context.Context, ni *nixfmt.NarInfo, requireSig bool) error
	PutExtra(key string, body io.Reader, max int64) error
	OpenExtra(key string) (*os.File, error)
	DeletePath(ctx context.Context, hash string) error
}

var errUnauthorized = errors.New("unauthorized")

// authorized accepts the token as a Basic-auth password (what Nix sends from
// its netrc file) or as a Bearer token.
func (s *Server) authorized(r *http.Request) bool {
	token := ""
	if _, pass, ok := r.BasicAuth(); ok {
		token = pass
	} else if t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		token = t
	}
	if token == "" {
		return false
	}
	ok := 0
	for _, t := range s.opts.PushTokens {
		ok |= subtle.ConstantTimeCompare([]byte(t), []byte(token))
	}
	return ok == 1
}

// push handles PUT and DELETE. Nothing is read or changed before the token
// is checked.
func (s *Server) push(w http.ResponseWriter, r *http.Request, p string) error {
	if s.opts.Push == nil || !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="larder"`)
		return errUnauthorized
	}
	max := s.opts.PushMaxSize
	if r.ContentLength > max {
		return fmt.Errorf("%w: %d bytes announced, limit %d", mirror.ErrTooLarge, r.ContentLength, max)
	}
	if r.Method == http.MethodDelete {
		if m := narInfoRe.FindStringSubmatch(p); m != nil {
			return s.noContent(w, s.opts.Push.DeletePath(r.Context(), m[1]))
		}
		return fmt.Errorf("%w: only narinfos can be deleted", errBadRequest)
	}
	switch {
	case narRe.MatchString(p):
		return s.noContent(w, s.opts.Push.StageNAR(p[1:], r.Body, max))
	case narInfoRe.MatchString(p):
		return s.pushNarInfo(w, r, narInfoRe.FindStringSubmatch(p)[1])
	case lsRe.MatchString(p):
		return s.noContent(w, s.opts.Push.PutExtra("ls"+p, r.Body, min(max, 64<<20)))
	case strings.HasPrefix(p, "/log/") && nixfmt.ValidBasename(p[5:]):
		return s.noContent(w, s.opts.Push.PutExtra(p[1:], r.Body, min(max, 256<<20)))
	}
	return fmt.Errorf("%w: nothing can be uploaded to %s", errBadRequest, p)
}

func (s *Server) pushNarInfo(w http.ResponseWriter, r *http.Request, hash string) error {
	text, err := io.ReadAll(io.LimitReader(r.Body, nixfmt.MaxNarInfoSize+1))
	if err != nil {
		return err
	}
	ni, err := nixfmt.ParseNarInfo(text)
	if err != nil {
		return fmt.Errorf("%w: %v", errBadRequest, err)
	}
	if ni.HashPart() != hash {
		return fmt.Errorf("%w: narinfo for %s uploaded as %s.narinfo", errBadRequest, ni.StorePath, hash)
	}
	err = s.opts.Push.Push(r.Context(), ni, s.opts.PushRequireSig)
	if errors.Is(err, mirror.ErrRejected) || errors.Is(err, mirror.ErrVerify) {
		return fmt.Errorf("%w: %v", errBadRequest, err)
	}
	if err == nil {
		s.opts.Log.Info("path pushed", "path", ni.StorePath)
	}
	return s.noContent(w, err)
}

func (s *Server) noContent(w http.ResponseWriter, err error) error {
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// extra serves a pushed .ls listing or log, falling back to the upstreams.
func (s *Server) extra(w http.ResponseWriter, r *http.Request, key, contentType string) error {
	if s.opts.Push != nil {
		if f, err := s.opts.Push.OpenExtra(key); err == nil {
			defer f.Close()
			w.Header().Set("Content-Type", contentType)
			http.ServeContent(w, r, "", time.Time{}, f)
			return nil
		}
	}
	if hash, ok := strings.CutSuffix(strings.TrimPrefix(key, "ls/"), ".ls"); ok && strings.HasPrefix(key, "ls/") {
		if ls, err := s.cache.Listing(r.Context(), hash); err == nil {
			w.Header().Set("Content-Type", contentType)
			_, err = w.Write(ls)
			return err
		}
	}
	return s.passthrough(w, r, strings.TrimPrefix(key, "ls/"), contentType)
}
