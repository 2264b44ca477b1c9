package prefetch

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/nixlarder/larder/mirror"
	"github.com/nixlarder/larder/mirror/nixfmt"
)

// Store is what a check needs: narinfos from the index (never an upstream)
// and a look at the stored NAR files.
type Store interface {
	LookupStored(ctx context.Context, hash string) (*mirror.Entry, error)
	VerifyStored(ctx context.Context, e *mirror.Entry, deep bool) (int64, error)
}

// Problem is one path that would not substitute offline.
type Problem struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// CheckReport says whether a closure is complete on disk.
type CheckReport struct {
	Paths    int       `json:"paths"`
	Bytes    int64     `json:"bytes"` // stored NAR file bytes of the closure
	Problems []Problem `json:"problems,omitempty"`
}

// OK reports an offline-ready closure.
func (c *CheckReport) OK() bool { return len(c.Problems) == 0 }

// Check walks the closures of roots (store paths) over the index alone and
// verifies that every narinfo and NAR file is there; deep re-hashes files.
func Check(ctx context.Context, st Store, roots []string, deep bool) (*CheckReport, error) {
	rep := &CheckReport{}
	var mu sync.Mutex
	queue := append([]string(nil), roots...)
	seen := map[string]bool{}
	for len(queue) > 0 {
		batch := queue
		queue = nil
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for _, p := range batch {
			hash, err := ParseRoot(p)
			if err != nil {
				return nil, err
			}
			if seen[hash] {
				continue
			}
			seen[hash] = true
			rep.Paths++
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				refs, size, err := checkOne(ctx, st, hash, deep)
				mu.Lock()
				defer mu.Unlock()
				queue = append(queue, refs...)
				rep.Bytes += size
				if err != nil {
					rep.Problems = append(rep.Problems, Problem{Path: p, Reason: err.Error()})
				}
			}()
		}
		wg.Wait()
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	sort.Slice(rep.Problems, func(i, j int) bool { return rep.Problems[i].Path < rep.Problems[j].Path })
	return rep, nil
}

func checkOne(ctx context.Context, st Store, hash string, deep bool) ([]string, int64, error) {
	e, err := st.LookupStored(ctx, hash)
	if errors.Is(err, mirror.ErrNotFound) {
		return nil, 0, errors.New("narinfo not stored")
	}
	if err != nil {
		return nil, 0, err
	}
	refs := make([]string, len(e.Info.References))
	for i, r := range e.Info.References {
		refs[i] = nixfmt.StoreDir + "/" + r
	}
	size, err := st.VerifyStored(ctx, e, deep)
	if err != nil {
		return refs, 0, fmt.Errorf("NAR: %w", err)
	}
	return refs, size, nil
}
