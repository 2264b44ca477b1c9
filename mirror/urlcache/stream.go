package urlcache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"syscall"

	"github.com/nixlarder/larder/index"
)

// stream is one origin fetch being written to a temp file; any number of
// clients read the file as it grows.
type stream struct {
	key    string
	tmp    *os.File
	header http.Header
	size   int64 // Content-Length, or -1

	mu      sync.Mutex
	written int64
	done    bool
	kept    *index.URL
	err     error
	changed chan struct{} // closed and replaced on every change
}

func (s *stream) update(f func()) {
	s.mu.Lock()
	f()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

func (s *stream) finish(u *index.URL, err error) {
	s.update(func() { s.done, s.kept, s.err = true, u, err })
}

// reader returns a reader of the growing body, or, if the fetch already
// ended, the kept entry or the error.
func (s *stream) reader(ctx context.Context) (io.ReadCloser, *index.URL, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		if s.err != nil {
			return nil, nil, s.err
		}
		return nil, s.kept, nil
	}
	// A duplicate descriptor keeps reading the same file after the commit
	// renames it.
	fd, err := syscall.Dup(int(s.tmp.Fd()))
	if err != nil {
		return nil, nil, fmt.Errorf("follow fetch: %w", err)
	}
	return &follower{ctx: ctx, s: s, f: os.NewFile(uintptr(fd), s.key)}, nil, nil
}

type follower struct {
	ctx context.Context
	s   *stream
	f   *os.File
	off int64
}

func (r *follower) Read(p []byte) (int, error) {
	for {
		r.s.mu.Lock()
		written, done, err, changed := r.s.written, r.s.done, r.s.err, r.s.changed
		r.s.mu.Unlock()
		if done && err != nil {
			return 0, err // the origin failed: the client sees a broken body
		}
		if r.off < written {
			if int64(len(p)) > written-r.off {
				p = p[:written-r.off]
			}
			n, rerr := r.f.ReadAt(p, r.off)
			r.off += int64(n)
			if errors.Is(rerr, io.EOF) && n > 0 {
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

func (r *follower) Close() error { return r.f.Close() }
