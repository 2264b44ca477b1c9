// Package mirror is the cache itself: it decides which source answers (disk,
// then upstreams in priority order), fetches each NAR once while clients
// follow the download, verifies before committing, and signs what it serves.
package mirror

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/nixlarder/larder/index"
	"github.com/nixlarder/larder/mirror/nixfmt"
	"github.com/nixlarder/larder/mirror/upstream"
)

// ErrNotFound means Larder cannot deliver the object now.
var ErrNotFound = errors.New("not found")

// Index is what the mirror needs of the index.
type Index interface {
	NarInfo(ctx context.Context, hash string) (*index.NarInfo, error)
	NarInfosByNarHash(ctx context.Context, narHash string) ([]*index.NarInfo, error)
	PutNarInfo(ctx context.Context, n *index.NarInfo) error
	NarFile(ctx context.Context, narHash, compression string) (*index.NarFile, error)
	NarFiles(ctx context.Context, narHash string) ([]*index.NarFile, error)
	PutNarFile(ctx context.Context, f *index.NarFile) error
	DeleteNarFile(ctx context.Context, narHash, compression string) error
	DeleteNarInfo(ctx context.Context, hash string) error
	Touch(ctx context.Context, narInfoHashes, narHashes []string, at time.Time) error
}

// Blobs is what the mirror needs of blob storage: temp files to stream into,
// an atomic commit of a verified temp file, and opening committed files.
type Blobs interface {
	CreateTemp() (*os.File, error)
	Commit(tmp *os.File, key string) error
	Open(key string) (*os.File, error)
	Remove(key string) error
}

// Upstream is one upstream cache, as the mirror uses it.
type Upstream interface {
	URL() string
	Resolve(ref string) (string, error)
	NarInfo(ctx context.Context, hash string) (*nixfmt.NarInfo, error)
	Get(ctx context.Context, absURL string) (*upstream.Response, error)
	Breaker() *upstream.Breaker
}

// Config wires a Mirror.
type Config struct {
	Index       Index
	Blobs       Blobs
	Upstreams   []Upstream // priority order: first wins when several have a path
	TrustedKeys []nixfmt.PublicKey
	// UpstreamKeys are trusted for narinfos from one upstream only, by URL.
	UpstreamKeys map[string][]nixfmt.PublicKey
	Key          nixfmt.SecretKey // Larder's own signing key
	Offline      bool             // never contact upstreams
	Prepull      bool             // start NAR downloads when a narinfo is fetched
	NegativeTTL  time.Duration    // how long an upstream 404 is remembered
	// DownloadDeadline bounds a detached NAR download nobody may wait for.
	DownloadDeadline time.Duration
	NarInfoTimeout   time.Duration // one upstream narinfo lookup, all upstreams together
	WarmWorkers      int           // concurrent background narinfo lookups
	PrepullWorkers   int           // concurrent background NAR downloads
	MaxSize          int64         // bytes of NAR files kept; 0 = no limit (no GC)
	Recompress       string        // "zstd": transcode xz/bzip2 NARs once, in the background; "" = never
	Local            LocalStore    // the host's own store; nil = not served
	LocalCompression string        // "none" or "zstd" for NARs made from Local
	Log              *slog.Logger
}

func (c *Config) setDefaults() {
	if c.NegativeTTL == 0 {
		c.NegativeTTL = 5 * time.Minute
	}
	if c.DownloadDeadline == 0 {
		c.DownloadDeadline = 2 * time.Hour
	}
	if c.NarInfoTimeout == 0 {
		c.NarInfoTimeout = 30 * time.Second
	}
	if c.WarmWorkers == 0 {
		c.WarmWorkers = 32
	}
	if c.PrepullWorkers == 0 {
		c.PrepullWorkers = 8
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.LocalCompression == "" {
		c.LocalCompression = "zstd"
	}
}

// Mirror serves narinfos and NARs. Create it with New and stop it with Close.
type Mirror struct {
	cfg      Config
	log      *slog.Logger
	flights  singleflight.Group // narinfo lookups by hash
	negative *negativeCache
	stats    Stats

	mu        sync.Mutex
	downloads map[string]*download // by blob key
	staged    map[string]stagedNAR // pushed NARs by URL, waiting for their narinfo

	gcMu sync.Mutex // one collection at a time
	gcQ  chan bool

	recompressQ chan *index.NarFile
	rendered    renderCache

	warmQ    chan string
	prepullQ chan prepullJob
	queued   sync.Map // hash parts waiting in warmQ
	touches  chan touch
	syncs    chan chan struct{}
	stop     chan struct{}
	wg       sync.WaitGroup
}

// New starts a Mirror and its background workers.
func New(cfg Config) *Mirror {
	cfg.setDefaults()
	m := &Mirror{
		cfg:         cfg,
		log:         cfg.Log,
		negative:    newNegativeCache(cfg.NegativeTTL, 100_000),
		downloads:   map[string]*download{},
		staged:      map[string]stagedNAR{},
		gcQ:         make(chan bool, 1),
		recompressQ: make(chan *index.NarFile, 4096),
		warmQ:       make(chan string, 16384),
		prepullQ:    make(chan prepullJob, 16384),
		touches:     make(chan touch, 4096),
		syncs:       make(chan chan struct{}),
		stop:        make(chan struct{}),
	}
	for i := 0; i < cfg.WarmWorkers; i++ {
		m.spawn(m.warmWorker)
	}
	for i := 0; i < cfg.PrepullWorkers; i++ {
		m.spawn(m.prepullWorker)
	}
	m.spawn(m.touchFlusher)
	m.spawn(m.gcWorker)
	m.spawn(m.recompressWorker)
	return m
}

func (m *Mirror) spawn(f func()) {
	m.wg.Add(1)
	go func() { defer m.wg.Done(); f() }()
}

// Close stops the background workers. Downloads in flight are abandoned;
// their temp files are removed at the next start.
func (m *Mirror) Close() {
	close(m.stop)
	m.wg.Wait()
}

// PublicKey is the key clients must trust.
func (m *Mirror) PublicKey() nixfmt.PublicKey { return m.cfg.Key.Public() }

// Stats returns counters since start.
func (m *Mirror) Stats() StatsSnapshot { return m.stats.snapshot() }

// upstreamByURL finds the configured upstream a narinfo came from.
func (m *Mirror) upstreamByURL(u string) Upstream {
	for _, up := range m.cfg.Upstreams {
		if up.URL() == u {
			return up
		}
	}
	return nil
}

// reachable reports whether an upstream may be asked now.
func (m *Mirror) reachable(up Upstream) bool {
	return up != nil && !m.cfg.Offline && up.Breaker().Healthy()
}
