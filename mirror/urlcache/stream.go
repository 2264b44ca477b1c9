package urlcache

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync/atomic"

	"github.com/nixlarder/larder/index"
	"github.com/nixlarder/larder/mirror/growing"
)

// stream is one origin fetch being written to a temp file; any number of
// clients read the file as it grows.
type stream struct {
	key    string
	file   *growing.File
	header http.Header
	size   int64                     // Content-Length, or -1
	kept   atomic.Pointer[index.URL] // set before the file finishes well
}

func (s *stream) finish(u *index.URL, err error) {
	if err == nil {
		s.kept.Store(u)
	}
	s.file.Finish(err)
}

// reader returns a reader of the growing body, or, if the fetch already
// ended, the kept entry or the error.
func (s *stream) reader(ctx context.Context) (io.ReadCloser, *index.URL, error) {
	r, err := s.file.Follow(ctx)
	if errors.Is(err, growing.ErrFinished) {
		return nil, s.kept.Load(), nil
	}
	return r, nil, err
}
