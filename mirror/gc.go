package mirror

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/nixlarder/larder/index"
	"github.com/nixlarder/larder/mirror/nixfmt"
)

// GC watermarks, as fractions of MaxSize: collection starts above High and
// evicts down to Low.
const (
	GCHigh = 0.95
	GCLow  = 0.85
)

// GCIndex is what garbage collection needs of the index beyond Index.
type GCIndex interface {
	AllNarFiles(ctx context.Context) ([]*index.NarFile, error)
	EvictNar(ctx context.Context, narHash string) ([]string, error)
	Pins(ctx context.Context) ([]*index.Pin, error)
	Counts(ctx context.Context) (narinfos, files, bytes int64, err error)
}

// Victim is a NAR garbage collection evicts, with the paths that go with it.
type Victim struct {
	NarHash    string
	Paths      []string
	Bytes      int64
	LastAccess time.Time
}

// GCPlan is what a collection would do, and why.
type GCPlan struct {
	Used, Limit, Target int64 // bytes on disk, MaxSize, low watermark
	Pinned              int64 // bytes of pinned closures, never evicted
	Victims             []Victim
	Freed               int64
	PinsOverLimit       bool
}

// PlanGC chooses least recently used NARs outside every pinned closure
// until the store would be under the low watermark. force plans even below
// the high watermark (a write just failed for lack of space).
func (m *Mirror) PlanGC(ctx context.Context, force bool) (*GCPlan, error) {
	gi, ok := m.cfg.Index.(GCIndex)
	if !ok || m.cfg.MaxSize <= 0 {
		return nil, errors.New("garbage collection needs --max-size")
	}
	_, _, used, err := gi.Counts(ctx)
	if err != nil {
		return nil, err
	}
	plan := &GCPlan{Used: used, Limit: m.cfg.MaxSize, Target: int64(float64(m.cfg.MaxSize) * GCLow)}
	if force {
		// The disk is full before the limit: free a share of what is used.
		plan.Target = min(plan.Target, int64(float64(used)*GCLow))
	} else if used <= int64(float64(m.cfg.MaxSize)*GCHigh) {
		return plan, nil
	}
	pinned, err := m.pinnedNars(ctx, gi)
	if err != nil {
		return nil, err
	}
	files, err := gi.AllNarFiles(ctx)
	if err != nil {
		return nil, err
	}
	plan.choose(files, pinned, m.inFlightNars())
	return plan, nil
}

func (p *GCPlan) choose(files []*index.NarFile, pinned, busy map[string]bool) {
	byHash := map[string]*Victim{}
	var order []*Victim
	for _, f := range files {
		if pinned[f.NarHash] {
			p.Pinned += f.FileSize
			continue
		}
		if busy[f.NarHash] {
			continue
		}
		v, ok := byHash[f.NarHash]
		if !ok {
			v = &Victim{NarHash: f.NarHash, LastAccess: f.LastAccess}
			byHash[f.NarHash] = v
			order = append(order, v)
		}
		v.Bytes += f.FileSize // every representation goes with the NAR
	}
	for _, v := range order {
		if p.Used-p.Freed <= p.Target {
			break
		}
		p.Victims = append(p.Victims, *v)
		p.Freed += v.Bytes
	}
	p.PinsOverLimit = p.Pinned > p.Limit
}

// pinnedNars walks every pin's closure over the index.
func (m *Mirror) pinnedNars(ctx context.Context, gi GCIndex) (map[string]bool, error) {
	pins, err := gi.Pins(ctx)
	if err != nil {
		return nil, err
	}
	pinned := map[string]bool{}
	seen := map[string]bool{}
	var queue []string
	for _, p := range pins {
		for _, r := range p.Roots {
			queue = append(queue, nixfmt.BaseName(r))
		}
	}
	for len(queue) > 0 {
		base := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		if len(base) < 32 || seen[base[:32]] {
			continue
		}
		seen[base[:32]] = true
		row, err := m.cfg.Index.NarInfo(ctx, base[:32])
		if errors.Is(err, index.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		pinned[row.NarHash] = true
		queue = append(queue, row.References...)
	}
	return pinned, nil
}

func (m *Mirror) inFlightNars() map[string]bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	busy := map[string]bool{}
	for _, d := range m.downloads {
		busy[d.narHash] = true
	}
	return busy
}

// RunGC plans and evicts: index rows first (narinfos and NAR files of a
// victim in one transaction), then the files, so nothing is ever advertised
// without its NAR.
func (m *Mirror) RunGC(ctx context.Context, force bool) (*GCPlan, error) {
	m.gcMu.Lock()
	defer m.gcMu.Unlock()
	plan, err := m.PlanGC(ctx, force)
	if err != nil || len(plan.Victims) == 0 {
		if plan != nil && plan.PinsOverLimit {
			m.log.Error("pinned closures alone exceed --max-size; they are never evicted", "pinned", plan.Pinned, "limit", plan.Limit)
		}
		return plan, err
	}
	gi := m.cfg.Index.(GCIndex)
	for i := range plan.Victims {
		v := &plan.Victims[i]
		files, err := m.cfg.Index.NarFiles(ctx, v.NarHash)
		if err != nil {
			return plan, err
		}
		m.rendered.invalidate() // before and after: no render of the victim survives
		if v.Paths, err = gi.EvictNar(ctx, v.NarHash); err != nil {
			return plan, err
		}
		m.rendered.invalidate()
		for _, f := range files {
			h, _ := nixfmt.ParseHash(f.NarHash)
			m.cfg.Blobs.Remove(blobKey(h, f.Compression))
		}
	}
	m.stats.GCRuns.Add(1)
	m.stats.BytesEvicted.Add(plan.Freed)
	m.log.Info("garbage collected", "nars", len(plan.Victims), "freed", plan.Freed, "used", plan.Used-plan.Freed, "limit", plan.Limit)
	if plan.PinsOverLimit {
		m.log.Error("pinned closures alone exceed --max-size; they are never evicted", "pinned", plan.Pinned, "limit", plan.Limit)
	}
	return plan, nil
}

// triggerGC asks the collector to look (force: a write failed for space).
func (m *Mirror) triggerGC(force bool) {
	if m.cfg.MaxSize <= 0 {
		return
	}
	select {
	case m.gcQ <- force:
	default:
	}
}

func (m *Mirror) gcWorker() {
	for {
		select {
		case <-m.stop:
			return
		case force := <-m.gcQ:
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			if _, err := m.RunGC(ctx, force); err != nil {
				m.log.Error("garbage collection failed", "err", err)
			}
			cancel()
		}
	}
}

// noSpace reports a write that failed for lack of disk space.
func noSpace(err error) bool { return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) }

// String summarises a plan for `larder gc`.
func (p *GCPlan) String() string {
	return fmt.Sprintf("store %d bytes, limit %d (collect above %d, down to %d); pinned %d bytes; evicting %d NARs, %d bytes",
		p.Used, p.Limit, int64(float64(p.Limit)*GCHigh), p.Target, p.Pinned, len(p.Victims), p.Freed)
}
