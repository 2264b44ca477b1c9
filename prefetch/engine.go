package prefetch

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/nixlarder/larder/index"
	"github.com/nixlarder/larder/mirror"
	"github.com/nixlarder/larder/mirror/nixfmt"
)

// Source is what prefetching needs of the mirror.
type Source interface {
	Lookup(ctx context.Context, hash string) (*mirror.Entry, error)
	StoredNAR(ctx context.Context, e *mirror.Entry) (*index.NarFile, error)
	FetchNAR(ctx context.Context, e *mirror.Entry, pace *rate.Limiter) (int64, error)
}

// Pins records pin roots.
type Pins interface {
	SetPin(ctx context.Context, name string, roots []string) error
}

// Request is one prefetch.
type Request struct {
	Roots   []string `json:"roots"` // store paths, basenames or hash parts
	Pin     string   `json:"pin,omitempty"`
	Jobs    int      `json:"jobs,omitempty"`    // NAR downloads at once
	Lookups int      `json:"lookups,omitempty"` // narinfo lookups at once
	Rate    int64    `json:"rate,omitempty"`    // bytes/s for this prefetch; 0 = no cap
}

// Defaults hide WAN latency: many narinfo round trips and several NAR
// downloads in flight.
const (
	DefaultJobs    = 8
	DefaultLookups = 48
)

// Progress is a snapshot of a running prefetch. Byte counts are NAR file
// bytes that had to be fetched.
type Progress struct {
	PathsTotal int           `json:"paths_total"`
	PathsDone  int           `json:"paths_done"`
	Cached     int           `json:"cached"`
	Fetched    int           `json:"fetched"`
	Missing    int           `json:"missing"`
	Failed     int           `json:"failed"`
	BytesTotal int64         `json:"bytes_total"`
	BytesDone  int64         `json:"bytes_done"`
	Elapsed    time.Duration `json:"elapsed_ns"`
}

// Failure is a path that could not be mirrored, and why.
type Failure struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// Report is the outcome of a prefetch.
type Report struct {
	Progress
	Roots        []string  `json:"roots"`
	MissingPaths []string  `json:"missing_paths,omitempty"` // no upstream has them
	Failures     []Failure `json:"failures,omitempty"`
	Interrupted  bool      `json:"interrupted,omitempty"`
	Complete     bool      `json:"complete"`
}

// Engine runs prefetches against a mirror.
type Engine struct {
	Source Source
	Pins   Pins
}

// Resolve looks up the roots (and records the pin) before any closure work,
// so bad input fails whole: a root no upstream has is an error naming it,
// and the pin is left as it was.
func (en *Engine) Resolve(ctx context.Context, req *Request) ([]*mirror.Entry, error) {
	if len(req.Roots) == 0 {
		return nil, fmt.Errorf("%w: no store paths given", ErrBadInput)
	}
	hashes := make([]string, len(req.Roots))
	for i, r := range req.Roots {
		h, err := ParseRoot(r)
		if err != nil {
			return nil, err
		}
		hashes[i] = h
	}
	entries := make([]*mirror.Entry, len(hashes))
	errs := make([]error, len(hashes))
	var wg sync.WaitGroup
	sem := make(chan struct{}, lookups(req))
	for i, h := range hashes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			entries[i], errs[i] = en.Source.Lookup(ctx, h)
			if errors.Is(errs[i], mirror.ErrNotFound) {
				errs[i] = fmt.Errorf("%w: %s: no upstream has this path", ErrBadInput, req.Roots[i])
			} else if errs[i] != nil {
				errs[i] = fmt.Errorf("%s: %w", req.Roots[i], errs[i])
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if req.Pin != "" {
		if err := en.Pins.SetPin(ctx, req.Pin, storePaths(entries)); err != nil {
			return nil, fmt.Errorf("record pin %q: %w", req.Pin, err)
		}
	}
	return entries, nil
}

func lookups(req *Request) int {
	if req.Lookups > 0 {
		return req.Lookups
	}
	return max(DefaultLookups, 4*req.Jobs)
}

func storePaths(entries []*mirror.Entry) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.Info.StorePath
	}
	return out
}

// Run mirrors the closures of the resolved roots, calling progress every
// interval, and reports. It stops early only when ctx ends; paths already
// mirrored stay mirrored, so a re-run resumes.
func (en *Engine) Run(ctx context.Context, req *Request, roots []*mirror.Entry, interval time.Duration, progress func(Progress)) *Report {
	w := &walk{en: en, ctx: ctx, start: time.Now(), seen: map[string]bool{},
		lookupSem: make(chan struct{}, lookups(req)), fetchSem: make(chan struct{}, max(req.Jobs, 1))}
	if req.Jobs <= 0 {
		w.fetchSem = make(chan struct{}, DefaultJobs)
	}
	if req.Rate > 0 {
		w.pace = rate.NewLimiter(rate.Limit(req.Rate), int(min(req.Rate, 1<<20)))
	}
	for _, e := range roots {
		w.add(nixfmt.BaseName(e.Info.StorePath), e)
	}
	if progress != nil {
		progress(w.snapshot()) // at once: a caller waiting on a stream sees it start
	}
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-done:
			rep := w.report(storePaths(roots))
			if progress != nil {
				progress(rep.Progress)
			}
			return rep
		case <-tick.C:
			if progress != nil {
				progress(w.snapshot())
			}
		}
	}
}

// walk is one closure traversal: a goroutine per path, bounded by two
// semaphores (narinfo lookups, NAR downloads).
type walk struct {
	en        *Engine
	ctx       context.Context
	start     time.Time
	pace      *rate.Limiter
	lookupSem chan struct{}
	fetchSem  chan struct{}
	wg        sync.WaitGroup

	mu       sync.Mutex
	seen     map[string]bool
	p        Progress
	missing  []string
	failures []Failure
}

// add schedules a path (basename) once; e is its entry when already looked up.
func (w *walk) add(base string, e *mirror.Entry) {
	hash := base[:32]
	w.mu.Lock()
	if w.seen[hash] {
		w.mu.Unlock()
		return
	}
	w.seen[hash] = true
	w.p.PathsTotal++
	w.mu.Unlock()
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		w.visit(base, e)
	}()
}

func (w *walk) visit(base string, e *mirror.Entry) {
	if e == nil {
		var err error
		if e, err = w.lookup(base[:32]); err != nil {
			w.finish(func() { w.recordLookupError(nixfmt.StoreDir+"/"+base, err) })
			return
		}
	}
	for _, ref := range e.Info.References {
		w.add(ref, nil)
	}
	stored, err := w.en.Source.StoredNAR(w.ctx, e)
	if err != nil {
		w.fail(e.Info.StorePath, err)
		return
	}
	if stored != nil {
		w.finish(func() { w.p.Cached++ })
		return
	}
	w.fetch(e)
}

func (w *walk) lookup(hash string) (*mirror.Entry, error) {
	select {
	case w.lookupSem <- struct{}{}:
	case <-w.ctx.Done():
		return nil, w.ctx.Err()
	}
	defer func() { <-w.lookupSem }()
	return w.en.Source.Lookup(w.ctx, hash)
}

func (w *walk) fetch(e *mirror.Entry) {
	size := int64(e.Info.FileSize)
	if size == 0 {
		size = int64(e.Info.NarSize)
	}
	w.mu.Lock()
	w.p.BytesTotal += size
	w.mu.Unlock()
	select {
	case w.fetchSem <- struct{}{}:
	case <-w.ctx.Done():
		w.fail(e.Info.StorePath, w.ctx.Err())
		return
	}
	n, err := w.en.Source.FetchNAR(w.ctx, e, w.pace)
	<-w.fetchSem
	if err != nil {
		w.fail(e.Info.StorePath, err)
		return
	}
	w.finish(func() { w.p.Fetched++; w.p.BytesDone += n })
}

func (w *walk) recordLookupError(path string, err error) {
	if errors.Is(err, mirror.ErrNotFound) {
		w.p.Missing++
		w.missing = append(w.missing, path)
		return
	}
	w.p.Failed++
	w.failures = append(w.failures, Failure{Path: path, Reason: err.Error()})
}

func (w *walk) fail(path string, err error) {
	w.finish(func() {
		w.p.Failed++
		w.failures = append(w.failures, Failure{Path: path, Reason: err.Error()})
	})
}

func (w *walk) finish(f func()) {
	w.mu.Lock()
	f()
	w.p.PathsDone++
	w.mu.Unlock()
}

func (w *walk) snapshot() Progress {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.p
	p.Elapsed = time.Since(w.start)
	return p
}

func (w *walk) report(roots []string) *Report {
	rep := &Report{Progress: w.snapshot(), Roots: roots, Interrupted: w.ctx.Err() != nil}
	w.mu.Lock()
	rep.MissingPaths = append(rep.MissingPaths, w.missing...)
	rep.Failures = append(rep.Failures, w.failures...)
	w.mu.Unlock()
	sort.Strings(rep.MissingPaths)
	sort.Slice(rep.Failures, func(i, j int) bool { return rep.Failures[i].Path < rep.Failures[j].Path })
	rep.Complete = rep.Missing == 0 && rep.Failed == 0 && !rep.Interrupted
	return rep
}

// String is the human summary printed at the end of a prefetch.
func (r *Report) String() string {
	var b strings.Builder
	verdict := "complete: offline-ready"
	if !r.Complete {
		verdict = "INCOMPLETE"
	}
	fmt.Fprintf(&b, "%d paths: %d already cached, %d fetched (%s), %d missing from every upstream, %d failed — %s in %s\n",
		r.PathsTotal, r.Cached, r.Fetched, HumanBytes(r.BytesDone), r.Missing, r.Failed, verdict, r.Elapsed.Round(time.Millisecond))
	for _, m := range r.MissingPaths {
		fmt.Fprintf(&b, "  missing: %s\n", m)
	}
	for _, f := range r.Failures {
		fmt.Fprintf(&b, "  failed:  %s: %s\n", f.Path, f.Reason)
	}
	if r.Interrupted {
		b.WriteString("  interrupted: re-run the same command to resume\n")
	}
	return b.String()
}

// HumanBytes prints a byte count with a binary unit.
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
