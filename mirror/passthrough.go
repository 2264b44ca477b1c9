package mirror

import (
	"context"
	"errors"

	"github.com/nixlarder/larder/mirror/upstream"
)

// Passthrough fetches a file Larder does not keep (".ls" listings, build
// logs) from the first reachable upstream, in priority order, that has it.
func (m *Mirror) Passthrough(ctx context.Context, rel string) (*upstream.Response, error) {
	if m.cfg.Offline {
		return nil, ErrNotFound
	}
	for _, up := range m.cfg.Upstreams {
		if !up.Breaker().Healthy() {
			continue
		}
		u, err := up.Resolve(rel)
		if err != nil {
			continue
		}
		resp, err := up.Get(ctx, u)
		if err == nil {
			return resp, nil
		}
		if !errors.Is(err, upstream.ErrNotFound) {
			m.log.Warn("pass-through failed", "url", u, "err", err)
		}
	}
	return nil, ErrNotFound
}
