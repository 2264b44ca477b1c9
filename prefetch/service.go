package prefetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/nixlarder/larder/index"
	"github.com/nixlarder/larder/mirror"
	"github.com/nixlarder/larder/mirror/nixfmt"
)

// CAStore takes content-addressed paths from a local store, and verified
// paths from bundles.
type CAStore interface {
	AddCA(ctx context.Context, ni *nixfmt.NarInfo, nar io.Reader) error
	Import(ctx context.Context, ni *nixfmt.NarInfo, file io.Reader) error
}

// PinLister lists pins.
type PinLister interface {
	Pins(ctx context.Context) ([]*index.Pin, error)
}

// Service is prefetch, pins and checks over one data dir: what the server
// offers on /api and what the CLI runs in-process with --data-dir.
type Service struct {
	Engine   Engine
	Store    Store
	PinList  PinLister
	CA       CAStore
	Runs     RunRecorder   // may be nil
	URLPins  URLPinner     // may be nil
	Interval time.Duration // between progress reports

	running sync.Map // *Request → Progress of prefetches in flight
}

// Running sums the progress of the prefetches in flight (for metrics).
func (s *Service) Running() (p Progress, n int) {
	s.running.Range(func(_, v any) bool {
		q := v.(Progress)
		p.PathsTotal += q.PathsTotal
		p.PathsDone += q.PathsDone
		p.BytesTotal += q.BytesTotal
		p.BytesDone += q.BytesDone
		n++
		return true
	})
	return p, n
}

// URLPinner records source URLs under pins.
type URLPinner interface {
	PinURLs(ctx context.Context, pin string, urls []string) error
}

// RunRecorder keeps a record of finished prefetches for the status page.
type RunRecorder interface {
	AddPrefetchRun(ctx context.Context, r index.PrefetchRun) error
}

// AddCA stores a content-addressed local artifact (see mirror.AddCA).
func (s *Service) AddCA(ctx context.Context, ni *nixfmt.NarInfo, nar io.Reader) error {
	return s.CA.AddCA(ctx, ni, nar)
}

// Prefetch resolves the request's roots (an error here means nothing was
// recorded), then mirrors their closures.
func (s *Service) Prefetch(ctx context.Context, req *Request, progress func(Progress)) (*Report, error) {
	roots, err := s.Engine.Resolve(ctx, req)
	if err != nil {
		return nil, err
	}
	interval := s.Interval
	if interval <= 0 {
		interval = time.Second
	}
	defer s.running.Delete(req)
	track := func(p Progress) {
		s.running.Store(req, p)
		if progress != nil {
			progress(p)
		}
	}
	rep := s.Engine.Run(ctx, req, roots, interval, track)
	if s.Runs != nil {
		s.Runs.AddPrefetchRun(context.WithoutCancel(ctx), index.PrefetchRun{Finished: time.Now(), Pin: req.Pin,
			Paths: rep.PathsTotal, Fetched: rep.Fetched, Bytes: rep.BytesDone, Complete: rep.Complete})
	}
	return rep, nil
}

// PinStatus is a pin with the state of its closure on disk.
type PinStatus struct {
	Name         string    `json:"name"`
	Roots        []string  `json:"roots"`
	Paths        int       `json:"paths"`
	Bytes        int64     `json:"bytes"`
	OfflineReady bool      `json:"offline_ready"`
	Problems     []Problem `json:"problems,omitempty"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// PinStatuses checks every pin (sizes only unless deep).
func (s *Service) PinStatuses(ctx context.Context, deep bool) ([]PinStatus, error) {
	pins, err := s.PinList.Pins(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]PinStatus, 0, len(pins))
	for _, p := range pins {
		rep, err := Check(ctx, s.Store, p.Roots, deep)
		if err != nil {
			return nil, err
		}
		out = append(out, PinStatus{Name: p.Name, Roots: p.Roots, Paths: rep.Paths, Bytes: rep.Bytes,
			OfflineReady: rep.OK(), Problems: rep.Problems, UpdatedAt: p.UpdatedAt})
	}
	return out, nil
}

// Import stores a verified path from a bundle (see mirror.Import).
func (s *Service) Import(ctx context.Context, ni *nixfmt.NarInfo, file io.Reader) error {
	return s.CA.Import(ctx, ni, file)
}

// PinURLs records source URLs a pin needs (kept by the forward proxy).
func (s *Service) PinURLs(ctx context.Context, pin string, urls []string) error {
	if s.URLPins == nil {
		return errors.New("this Larder cannot record URLs")
	}
	return s.URLPins.PinURLs(ctx, pin, urls)
}

// SetPin records a pin's roots.
func (s *Service) SetPin(ctx context.Context, name string, roots []string) error {
	return s.Engine.Pins.SetPin(ctx, name, roots)
}

// Missing returns the paths no upstream (and not Larder itself) has.
func (s *Service) Missing(ctx context.Context, paths []string) ([]string, error) {
	found := make([]error, len(paths))
	var wg sync.WaitGroup
	sem := make(chan struct{}, DefaultLookups)
	for i, p := range paths {
		hash, err := ParseRoot(p)
		if err != nil {
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			_, found[i] = s.Engine.Source.Lookup(ctx, hash)
		}()
	}
	wg.Wait()
	var missing []string
	for i, err := range found {
		switch {
		case errors.Is(err, mirror.ErrNotFound):
			missing = append(missing, paths[i])
		case err != nil:
			return nil, fmt.Errorf("%s: %w", paths[i], err)
		}
	}
	return missing, nil
}
