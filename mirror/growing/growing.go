// Package growing lets any number of readers follow a temp file while one
// writer fills it: NAR downloads and the forward proxy's fetches both stream
// to every waiting client this way, from a single origin request.
package growing

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
)

// ErrFinished means the file ended well before a reader could join: read
// the committed copy instead.
var ErrFinished = errors.New("already finished")

// File is a temp file being written.
type File struct {
	f        *os.File
	holdLast bool
	readers  atomic.Int32

	mu      sync.Mutex
	written int64
	done    bool
	err     error
	changed chan struct{} // closed and replaced on every change
}

// New wraps f. With holdLast, readers get the last byte only once the file
// ended well: a client that got every byte of a bad file would see a clean
// transfer.
func New(f *os.File, holdLast bool) *File {
	return &File{f: f, holdLast: holdLast, changed: make(chan struct{})}
}

// OS is the underlying file (to commit it).
func (g *File) OS() *os.File { return g.f }

// Readers is how many readers follow the file now.
func (g *File) Readers() int32 { return g.readers.Load() }

func (g *File) update(f func()) {
	g.mu.Lock()
	f()
	close(g.changed)
	g.changed = make(chan struct{})
	g.mu.Unlock()
}

func (g *File) state() (written int64, done bool, err error, changed <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.written, g.done, g.err, g.changed
}

// Write appends to the file and lets readers see the new bytes.
func (g *File) Write(p []byte) (int, error) {
	n, err := g.f.Write(p)
	if n > 0 {
		g.update(func() { g.written += int64(n) })
	}
	return n, err
}

// Finish ends the file: readers get EOF if err is nil, err otherwise.
func (g *File) Finish(err error) { g.update(func() { g.done, g.err = true, err }) }

// Wait blocks until the file ended and returns how.
func (g *File) Wait(ctx context.Context) error {
	for {
		_, done, err, changed := g.state()
		if done {
			return err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Follow returns a reader of the file as it grows. A file that already
// ended gives ErrFinished (ended well) or its error.
func (g *File) Follow(ctx context.Context) (io.ReadCloser, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.done {
		if g.err != nil {
			return nil, g.err
		}
		return nil, ErrFinished
	}
	// A duplicate descriptor keeps reading the same file after a commit
	// renames it.
	fd, err := syscall.Dup(int(g.f.Fd()))
	if err != nil {
		return nil, fmt.Errorf("follow %s: %w", g.f.Name(), err)
	}
	g.readers.Add(1)
	return &reader{ctx: ctx, g: g, f: os.NewFile(uintptr(fd), g.f.Name())}, nil
}

type reader struct {
	ctx context.Context
	g   *File
	f   *os.File
	off int64
}

func (r *reader) Read(p []byte) (int, error) {
	for {
		written, done, err, changed := r.g.state()
		if done && err != nil {
			return 0, err // never hand out the rest of a bad file
		}
		if !done && written > 0 && r.g.holdLast {
			written--
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

func (r *reader) Close() error {
	r.g.readers.Add(-1)
	return r.f.Close()
}
