package serve

import (
	"context"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nixlarder/larder/mirror"
	"github.com/nixlarder/larder/mirror/urlcache"
	"github.com/nixlarder/larder/prefetch"
)

// MetricsSource is what /metrics reads at scrape time.
type MetricsSource interface {
	Stats() mirror.StatsSnapshot
	StoreUsage(ctx context.Context) (used, limit int64, err error)
	UpstreamHealth() []mirror.UpstreamHealth
}

// Metrics is Larder's Prometheus registry: request counters kept by the
// server, upstream latency observed by the upstream clients, and the
// mirror's own counters and gauges read at scrape time.
type Metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	upstream *prometheus.HistogramVec
	source   MetricsSource
	prefetch interface {
		Running() (prefetch.Progress, int)
	}
	proxy    *urlcache.Stats
	children sync.Map // "kind/outcome" → prometheus.Counter
}

// SetProxy connects the forward proxy's counters.
func (m *Metrics) SetProxy(st *urlcache.Stats) { m.proxy = st }

// SetPrefetch connects the prefetch service, for progress gauges.
func (m *Metrics) SetPrefetch(p interface {
	Running() (prefetch.Progress, int)
}) {
	m.prefetch = p
}

// NewMetrics makes the registry; SetSource must be called before serving.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "larder_requests_total",
			Help: "HTTP requests by kind (narinfo, nar, ls, log, api, other) and outcome (ok, not_found, bad_request, unauthorized, error)."},
			[]string{"kind", "outcome"}),
		upstream: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "larder_upstream_request_seconds",
			Help: "Upstream requests until response headers, by upstream and outcome.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)},
			[]string{"upstream", "outcome"}),
	}
	m.reg.MustRegister(m.requests, m.upstream, m, prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// SetSource connects the mirror.
func (m *Metrics) SetSource(src MetricsSource) { m.source = src }

// ObserveUpstream returns the hook an upstream client calls per request.
func (m *Metrics) ObserveUpstream(url string) func(time.Duration, error) {
	return func(d time.Duration, err error) {
		outcome := "ok"
		if err != nil {
			outcome = "error"
		}
		m.upstream.WithLabelValues(url, outcome).Observe(d.Seconds())
	}
}

// requestCounter caches the counter children: a label lookup per request
// is measurable at tens of thousands of requests a second.
func (m *Metrics) requestCounter(kind, outcome string) prometheus.Counter {
	key := kind + "/" + outcome
	if c, ok := m.children.Load(key); ok {
		return c.(prometheus.Counter)
	}
	c := m.requests.WithLabelValues(kind, outcome)
	m.children.Store(key, c)
	return c
}

func (m *Metrics) observeRequest(kind string, status int) {
	outcome := "ok"
	switch {
	case status == http.StatusNotFound:
		outcome = "not_found"
	case status == http.StatusUnauthorized:
		outcome = "unauthorized"
	case status >= 400 && status < 500:
		outcome = "bad_request"
	case status >= 500:
		outcome = "error"
	}
	m.requestCounter(kind, outcome).Inc()
}

var (
	descs = map[string]*prometheus.Desc{}
	desc  = func(name, help string, labels ...string) *prometheus.Desc {
		d := prometheus.NewDesc(name, help, labels, nil)
		descs[name] = d
		return d
	}
	narinfoDesc      = desc("larder_narinfo_lookups_total", "narinfo lookups by outcome: hit (index or local store), upstream (fetched), miss (404).", "outcome")
	narDesc          = desc("larder_nar_total", "NAR opens by source: disk, upstream (downloads started), local (made from the local store), failed (downloads that failed).", "source")
	bytesDesc        = desc("larder_bytes_total", "NAR bytes: served to clients, fetched from upstreams; saved = served - fetched.", "direction")
	verifyDesc       = desc("larder_verification_failures_total", "NARs that failed verification (downloads, imports, verify).")
	rejectDesc       = desc("larder_signature_rejects_total", "Upstream narinfos refused for want of a trusted signature or valid CA.")
	gcRunsDesc       = desc("larder_gc_runs_total", "Garbage collections that evicted something.")
	evictedDesc      = desc("larder_gc_evicted_bytes_total", "Bytes evicted by garbage collection.")
	pushDesc         = desc("larder_pushes_total", "Paths accepted from nix copy --to.")
	storeDesc        = desc("larder_store_bytes", "Bytes of NAR files on disk, and the --max-size limit (0 = none).", "kind")
	breakerDesc      = desc("larder_upstream_up", "1 while an upstream's circuit breaker lets requests through.", "upstream")
	recompressedDesc = desc("larder_recompressed_total", "NARs transcoded to zstd by --recompress.")
	proxyReqDesc     = desc("larder_proxy_requests_total", "Forward proxy requests: hit (kept copy served), miss (fetched from the origin), passthrough (not cacheable).", "outcome")
	proxyBytesDesc   = desc("larder_proxy_bytes_total", "Forward proxy body bytes: served from kept copies (saved), fetched from origins.", "direction")
	runningDesc      = desc("larder_prefetch_running", "Prefetches in flight.")
	pfPathsDesc      = desc("larder_prefetch_paths", "Paths of the prefetches in flight: total known so far, and done.", "state")
	pfBytesDesc      = desc("larder_prefetch_bytes", "NAR file bytes of the prefetches in flight: to fetch, and fetched.", "state")
)

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector from the mirror's counters.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	if m.source == nil {
		return
	}
	st := m.source.Stats()
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(narinfoDesc, st.NarInfoHits, "hit")
	counter(narinfoDesc, st.NarInfoUpstream, "upstream")
	counter(narinfoDesc, st.NarInfoMisses, "miss")
	counter(narDesc, st.NarHits, "disk")
	counter(narDesc, st.NarFetches, "upstream")
	counter(narDesc, st.LocalNars, "local")
	counter(narDesc, st.NarFetchFailures, "failed")
	counter(bytesDesc, st.BytesServed, "served")
	counter(bytesDesc, st.BytesFromUpstream, "fetched")
	counter(verifyDesc, st.VerifyFailures)
	counter(rejectDesc, st.SignatureRejects)
	counter(gcRunsDesc, st.GCRuns)
	counter(evictedDesc, st.BytesEvicted)
	counter(pushDesc, st.Pushes)
	counter(recompressedDesc, st.Recompressed)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if used, limit, err := m.source.StoreUsage(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(storeDesc, prometheus.GaugeValue, float64(used), "used")
		ch <- prometheus.MustNewConstMetric(storeDesc, prometheus.GaugeValue, float64(limit), "limit")
	}
	if m.proxy != nil {
		counter(proxyReqDesc, m.proxy.Hits.Load(), "hit")
		counter(proxyReqDesc, m.proxy.Misses.Load(), "miss")
		counter(proxyReqDesc, m.proxy.Passthrough.Load(), "passthrough")
		counter(proxyBytesDesc, m.proxy.BytesServed.Load(), "served_from_cache")
		counter(proxyBytesDesc, m.proxy.BytesFetched.Load(), "fetched")
	}
	if m.prefetch != nil {
		p, n := m.prefetch.Running()
		gauge := func(d *prometheus.Desc, v int64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
		}
		gauge(runningDesc, int64(n))
		gauge(pfPathsDesc, int64(p.PathsTotal), "total")
		gauge(pfPathsDesc, int64(p.PathsDone), "done")
		gauge(pfBytesDesc, p.BytesTotal, "total")
		gauge(pfBytesDesc, p.BytesDone, "done")
	}
	for _, u := range m.source.UpstreamHealth() {
		ch <- prometheus.MustNewConstMetric(breakerDesc, prometheus.GaugeValue, float64(boolInt(u.Healthy)), u.URL)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler { return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}) }

// statusRecorder remembers the status code for the request counter.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(p)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func requestKind(p string) string {
	switch {
	case len(p) > 8 && p[len(p)-8:] == ".narinfo":
		return "narinfo"
	case len(p) > 5 && p[:5] == "/nar/":
		return "nar"
	case len(p) > 3 && p[len(p)-3:] == ".ls":
		return "ls"
	case len(p) > 5 && p[:5] == "/log/":
		return "log"
	case len(p) > 5 && p[:5] == "/api/":
		return "api"
	}
	return "other"
}

// ReadFrom keeps sendfile available through the recorder.
func (s *statusRecorder) ReadFrom(r io.Reader) (int64, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	if rf, ok := s.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{s.ResponseWriter}, r)
}
