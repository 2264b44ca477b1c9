package mirror

import (
	"context"
	"strings"
	"sync/atomic"
)

// Stats are the mirror's counters since start.
type Stats struct {
	NarInfoHits, NarInfoMisses, NarInfoUpstream atomic.Int64
	NarHits, NarFetches, NarFetchFailures       atomic.Int64
	VerifyFailures, SignatureRejects            atomic.Int64
	BytesServed, BytesFromUpstream              atomic.Int64
	LocalNars, Pushes                           atomic.Int64
	GCRuns, BytesEvicted                        atomic.Int64
	Recompressed                                atomic.Int64
}

// StatsSnapshot is a copy of Stats.
type StatsSnapshot struct {
	NarInfoHits, NarInfoMisses, NarInfoUpstream int64
	NarHits, NarFetches, NarFetchFailures       int64
	VerifyFailures, SignatureRejects            int64
	BytesServed, BytesFromUpstream              int64
	LocalNars, Pushes                           int64
	GCRuns, BytesEvicted                        int64
	Recompressed                                int64
}

func (s *Stats) snapshot() StatsSnapshot {
	return StatsSnapshot{
		NarInfoHits: s.NarInfoHits.Load(), NarInfoMisses: s.NarInfoMisses.Load(), NarInfoUpstream: s.NarInfoUpstream.Load(),
		NarHits: s.NarHits.Load(), NarFetches: s.NarFetches.Load(), NarFetchFailures: s.NarFetchFailures.Load(),
		VerifyFailures: s.VerifyFailures.Load(), SignatureRejects: s.SignatureRejects.Load(),
		BytesServed: s.BytesServed.Load(), BytesFromUpstream: s.BytesFromUpstream.Load(),
		LocalNars: s.LocalNars.Load(), Pushes: s.Pushes.Load(),
		GCRuns: s.GCRuns.Load(), BytesEvicted: s.BytesEvicted.Load(), Recompressed: s.Recompressed.Load(),
	}
}

// UpstreamHealth is an upstream's circuit-breaker state.
type UpstreamHealth struct {
	URL     string
	Healthy bool
}

// UpstreamHealth reports every upstream's breaker.
func (m *Mirror) UpstreamHealth() []UpstreamHealth {
	out := make([]UpstreamHealth, 0, len(m.cfg.Upstreams))
	for _, u := range m.cfg.Upstreams {
		out = append(out, UpstreamHealth{URL: strings.TrimSuffix(u.URL(), "/"), Healthy: u.Breaker().Healthy()})
	}
	return out
}

// UsageIndex reports the bytes of NAR files stored.
type UsageIndex interface {
	Counts(ctx context.Context) (narinfos, files, bytes int64, err error)
}

// StoreUsage is the bytes of NAR files stored and the --max-size limit.
func (m *Mirror) StoreUsage(ctx context.Context) (used, limit int64, err error) {
	ui, ok := m.cfg.Index.(UsageIndex)
	if !ok {
		return 0, m.cfg.MaxSize, nil
	}
	_, _, used, err = ui.Counts(ctx)
	return used, m.cfg.MaxSize, err
}
