package serve

import (
	"context"
	_ "embed"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/nixlarder/larder/index"
	"github.com/nixlarder/larder/mirror"
	"github.com/nixlarder/larder/prefetch"
)

// StatusIndex is what the status figures are read from: the index, so the
// page and `larder stats` show the same numbers.
type StatusIndex interface {
	TrafficSince(ctx context.Context, since time.Time) ([]index.Traffic, error)
	RecentPrefetchRuns(ctx context.Context, n int) ([]index.PrefetchRun, error)
}

// Status is one screen for a LAN admin.
type Status struct {
	Generated         time.Time
	Today, AllTime    Totals
	Used, Limit       int64
	Upstreams         []mirror.UpstreamHealth
	Pins              []prefetch.PinStatus
	Prefetches        []index.PrefetchRun
	Hours             []index.Traffic // last 24 hours, oldest first, one per hour
	PublicKey, Listen string
	Proxy             *ProxyFigures // nil when the forward proxy is off
}

// ProxyFigures are the forward proxy's counters since start.
type ProxyFigures struct {
	Hits, Misses, Saved int64
}

// Totals sums traffic.
type Totals struct {
	Served, Fetched, Hits, Misses int64
}

// Saved is what clients got without the WAN paying for it.
func (t Totals) Saved() int64 { return max(t.Served-t.Fetched, 0) }

// HitRatio is narinfo hits over lookups, as a percentage string.
func (t Totals) HitRatio() string {
	if t.Hits+t.Misses == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(t.Hits)/float64(t.Hits+t.Misses))
}

// BuildStatus gathers the figures.
func BuildStatus(ctx context.Context, idx StatusIndex, usage func(context.Context) (int64, int64, error),
	pins func(context.Context) ([]prefetch.PinStatus, error), health []mirror.UpstreamHealth) (*Status, error) {
	now := time.Now()
	st := &Status{Generated: now, Upstreams: health}
	all, err := idx.TrafficSince(ctx, time.Unix(0, 0))
	if err != nil {
		return nil, err
	}
	midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, now.Location())
	byHour := map[int64]index.Traffic{}
	for _, h := range all {
		add(&st.AllTime, h)
		if !h.Hour.Before(midnight) {
			add(&st.Today, h)
		}
		byHour[h.Hour.Unix()/3600] = h
	}
	for i := 23; i >= 0; i-- {
		hour := now.Unix()/3600 - int64(i)
		h := byHour[hour]
		h.Hour = time.Unix(hour*3600, 0)
		st.Hours = append(st.Hours, h)
	}
	if st.Used, st.Limit, err = usage(ctx); err != nil {
		return nil, err
	}
	if st.Pins, err = pins(ctx); err != nil {
		return nil, err
	}
	st.Prefetches, err = idx.RecentPrefetchRuns(ctx, 5)
	return st, err
}

func add(t *Totals, h index.Traffic) {
	t.Served += h.Served
	t.Fetched += h.Upstream
	t.Hits += h.Hits
	t.Misses += h.Misses
}

// Text is the terminal rendering (`larder stats`).
func (s *Status) Text() string {
	var b strings.Builder
	hb := prefetch.HumanBytes
	fmt.Fprintf(&b, "hit ratio        today %s   all time %s\n", s.Today.HitRatio(), s.AllTime.HitRatio())
	fmt.Fprintf(&b, "bytes saved      today %s   all time %s\n", hb(s.Today.Saved()), hb(s.AllTime.Saved()))
	fmt.Fprintf(&b, "served / fetched today %s / %s   all time %s / %s\n", hb(s.Today.Served), hb(s.Today.Fetched), hb(s.AllTime.Served), hb(s.AllTime.Fetched))
	fmt.Fprintf(&b, "disk             %s of %s\n", hb(s.Used), limitText(s.Limit))
	for _, u := range s.Upstreams {
		fmt.Fprintf(&b, "upstream         %s %s\n", u.URL, healthText(u.Healthy))
	}
	for _, p := range s.Pins {
		fmt.Fprintf(&b, "pin              %s: %d paths, %s, %s\n", p.Name, p.Paths, hb(p.Bytes), readyText(p.OfflineReady))
	}
	if p := s.Proxy; p != nil {
		fmt.Fprintf(&b, "source proxy     %d hits, %d misses, %s saved since start\n", p.Hits, p.Misses, hb(p.Saved))
	}
	for _, r := range s.Prefetches {
		fmt.Fprintf(&b, "prefetch         %s %s: %d paths, %d fetched, %s, %s\n", r.Finished.Format("2006-01-02 15:04"), r.Pin, r.Paths, r.Fetched, hb(r.Bytes), completeText(r.Complete))
	}
	return b.String()
}

func limitText(limit int64) string {
	if limit <= 0 {
		return "no limit"
	}
	return prefetch.HumanBytes(limit)
}

func healthText(ok bool) string {
	if ok {
		return "up"
	}
	return "DOWN (circuit open)"
}

func readyText(ok bool) string {
	if ok {
		return "offline-ready"
	}
	return "INCOMPLETE"
}

func completeText(ok bool) string {
	if ok {
		return "complete"
	}
	return "incomplete"
}

//go:embed status.html
var statusHTML string

var statusTmpl = template.Must(template.New("status").Funcs(template.FuncMap{
	"bytes": prefetch.HumanBytes, "limit": limitText, "ready": readyText, "complete": completeText, "health": healthText,
	"pct": func(a, b int64) float64 {
		if b <= 0 {
			return 0
		}
		return min(100, 100*float64(a)/float64(b))
	},
	"bars": bars,
	"subf": func(a, b float64) float64 { return a - b },
	"addi": func(a, b int) int { return a + b },
}).Parse(statusHTML))

// bar is one hour of the traffic chart, scaled to 100 px.
type bar struct {
	X                 int
	ServedH, FetchedH float64
	Label             string
}

func bars(hours []index.Traffic) []bar {
	var peak int64 = 1
	for _, h := range hours {
		peak = max(peak, h.Served, h.Upstream)
	}
	out := make([]bar, len(hours))
	for i, h := range hours {
		out[i] = bar{X: i * 20, ServedH: 100 * float64(h.Served) / float64(peak), FetchedH: 100 * float64(h.Upstream) / float64(peak),
			Label: fmt.Sprintf("%s: served %s, fetched %s", h.Hour.Format("15:04"), prefetch.HumanBytes(h.Served), prefetch.HumanBytes(h.Upstream))}
	}
	return out
}

// StatusPage serves the status page at /.
type StatusPage func(ctx context.Context) (*Status, error)

func (s *Server) statusPage(w http.ResponseWriter, r *http.Request) error {
	st, err := s.opts.Status(r.Context())
	if err != nil {
		return err
	}
	st.PublicKey = s.cache.PublicKey().String()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	return statusTmpl.Execute(w, st)
}
