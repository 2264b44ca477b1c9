package mirror

import (
	"context"
	"time"

	"github.com/nixlarder/larder/index"
	"github.com/nixlarder/larder/mirror/nixfmt"
)

// Nix asks for narinfos largely one after another, so every cold round trip
// to the upstream is paid in series. When a narinfo is fetched for a client,
// Larder looks up its references in the background (and theirs, and so on)
// and pre-pulls NARs, so the client's next questions are answered from disk.

type prepullJob struct {
	narHash     nixfmt.Hash
	compression string
}

func (m *Mirror) warmReferences(row *index.NarInfo) {
	for _, ref := range row.References {
		hash, _, ok := cutBasename(ref)
		if !ok || hash == row.Hash || m.negative.has(hash) {
			continue
		}
		if _, loaded := m.queued.LoadOrStore(hash, true); loaded {
			continue
		}
		select {
		case m.warmQ <- hash:
		default:
			m.queued.Delete(hash) // queue full: best effort only
		}
	}
}

func cutBasename(base string) (hash, name string, ok bool) {
	if len(base) < 34 || base[32] != '-' || !nixfmt.ValidHashPart(base[:32]) {
		return "", "", false
	}
	return base[:32], base[33:], true
}

func (m *Mirror) warmWorker() {
	for {
		select {
		case <-m.stop:
			return
		case hash := <-m.warmQ:
			m.warmOne(hash)
			m.queued.Delete(hash)
		}
	}
}

// warmOne fetches a narinfo unless it is known, which warms its references
// in turn, and queues its NAR for pre-pull.
func (m *Mirror) warmOne(hash string) {
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.NarInfoTimeout)
	defer cancel()
	if _, err := m.cfg.Index.NarInfo(ctx, hash); err == nil || m.cfg.Offline {
		return
	}
	row, err := m.fetchNarInfo(ctx, hash)
	if err != nil {
		return
	}
	if m.cfg.Prepull {
		if ni, err := nixfmt.ParseNarInfo([]byte(row.Text)); err == nil {
			m.enqueuePrepull(row, ni)
		}
	}
}

func (m *Mirror) enqueuePrepull(row *index.NarInfo, ni *nixfmt.NarInfo) {
	if m.inFlight(blobKey(ni.NarHash, ni.Compression)) {
		return
	}
	select {
	case m.prepullQ <- prepullJob{ni.NarHash, ni.Compression}:
	default:
	}
}

func (m *Mirror) prepullWorker() {
	for {
		select {
		case <-m.stop:
			return
		case job := <-m.prepullQ:
			ctx, cancel := context.WithTimeout(context.Background(), m.cfg.DownloadDeadline)
			m.WaitNAR(ctx, job.narHash, job.compression) // failures are logged by the download
			cancel()
		}
	}
}

type touch struct {
	narInfo string // hash part, or ""
	nar     string // NarHash, or ""
}

func (m *Mirror) touchNarInfo(hash string) {
	select {
	case m.touches <- touch{narInfo: hash}:
	default: // access times are advisory; never slow a hit down
	}
}

func (m *Mirror) touchNar(narHash string) {
	select {
	case m.touches <- touch{nar: narHash}:
	default:
	}
}

// touchFlusher writes access times in batches, so hits cost no write each.
func (m *Mirror) touchFlusher() {
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	infos, nars := map[string]bool{}, map[string]bool{}
	var last StatsSnapshot
	flush := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		last = m.flushTraffic(ctx, last)
		if len(infos)+len(nars) == 0 {
			return
		}
		if err := m.cfg.Index.Touch(ctx, keys(infos), keys(nars), time.Now()); err != nil {
			m.log.Warn("recording access times failed", "err", err)
		}
		clear(infos)
		clear(nars)
	}
	for {
		select {
		case <-m.stop:
			flush()
			return
		case t := <-m.touches:
			if t.narInfo != "" {
				infos[t.narInfo] = true
			}
			if t.nar != "" {
				nars[t.nar] = true
			}
		case <-tick.C:
			flush()
		case done := <-m.syncs:
			flush()
			close(done)
		}
	}
}

// TrafficIndex keeps hourly traffic totals.
type TrafficIndex interface {
	AddTraffic(ctx context.Context, at time.Time, t index.Traffic) error
}

// flushTraffic adds what moved since the last snapshot to the hour's totals.
func (m *Mirror) flushTraffic(ctx context.Context, last StatsSnapshot) StatsSnapshot {
	ti, ok := m.cfg.Index.(TrafficIndex)
	now := m.stats.snapshot()
	if !ok {
		return now
	}
	d := index.Traffic{Served: now.BytesServed - last.BytesServed, Upstream: now.BytesFromUpstream - last.BytesFromUpstream,
		Hits: now.NarInfoHits - last.NarInfoHits, Misses: now.NarInfoMisses - last.NarInfoMisses}
	if d == (index.Traffic{}) {
		return now
	}
	if err := ti.AddTraffic(ctx, time.Now(), d); err != nil {
		m.log.Warn("recording traffic failed", "err", err)
		return last
	}
	return now
}

// SyncStats writes pending traffic counts and access times to the index
// now, so figures read from it are current.
func (m *Mirror) SyncStats(ctx context.Context) {
	done := make(chan struct{})
	select {
	case m.syncs <- done:
	case <-ctx.Done():
		return
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// RecordServed counts NAR bytes sent to clients.
func (m *Mirror) RecordServed(n int64) { m.stats.BytesServed.Add(n) }

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
