package mirror

import "sync/atomic"

// Stats are the mirror's counters since start.
type Stats struct {
	NarInfoHits, NarInfoMisses, NarInfoUpstream atomic.Int64
	NarHits, NarFetches, NarFetchFailures       atomic.Int64
	VerifyFailures, SignatureRejects            atomic.Int64
	BytesFromDisk, BytesFromUpstream            atomic.Int64
	LocalNars, Pushes                           atomic.Int64
	GCRuns, BytesEvicted                        atomic.Int64
}

// StatsSnapshot is a copy of Stats.
type StatsSnapshot struct {
	NarInfoHits, NarInfoMisses, NarInfoUpstream int64
	NarHits, NarFetches, NarFetchFailures       int64
	VerifyFailures, SignatureRejects            int64
	BytesFromDisk, BytesFromUpstream            int64
	LocalNars, Pushes                           int64
	GCRuns, BytesEvicted                        int64
}

func (s *Stats) snapshot() StatsSnapshot {
	return StatsSnapshot{
		NarInfoHits: s.NarInfoHits.Load(), NarInfoMisses: s.NarInfoMisses.Load(), NarInfoUpstream: s.NarInfoUpstream.Load(),
		NarHits: s.NarHits.Load(), NarFetches: s.NarFetches.Load(), NarFetchFailures: s.NarFetchFailures.Load(),
		VerifyFailures: s.VerifyFailures.Load(), SignatureRejects: s.SignatureRejects.Load(),
		BytesFromDisk: s.BytesFromDisk.Load(), BytesFromUpstream: s.BytesFromUpstream.Load(),
		LocalNars: s.LocalNars.Load(), Pushes: s.Pushes.Load(),
		GCRuns: s.GCRuns.Load(), BytesEvicted: s.BytesEvicted.Load(),
	}
}
