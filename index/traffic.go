package index

import (
	"context"
	"time"
)

// Traffic is one hour's totals (or a sum of hours).
type Traffic struct {
	Hour                           time.Time
	Served, Upstream, Hits, Misses int64
}

// AddTraffic adds counts to the hour containing at.
func (db *DB) AddTraffic(ctx context.Context, at time.Time, t Traffic) error {
	_, err := db.write.ExecContext(ctx, `INSERT INTO traffic (hour, served, upstream, hits, misses) VALUES (?,?,?,?,?)
		ON CONFLICT(hour) DO UPDATE SET served = served + excluded.served, upstream = upstream + excluded.upstream,
		hits = hits + excluded.hits, misses = misses + excluded.misses`,
		at.Unix()/3600, t.Served, t.Upstream, t.Hits, t.Misses)
	return err
}

// TrafficSince returns the hours from since on, oldest first.
func (db *DB) TrafficSince(ctx context.Context, since time.Time) ([]Traffic, error) {
	return queryAll(ctx, db.read, scanTraffic,
		`SELECT hour, served, upstream, hits, misses FROM traffic WHERE hour >= ? ORDER BY hour`, since.Unix()/3600)
}

// PrefetchRun is a finished prefetch.
type PrefetchRun struct {
	Finished       time.Time
	Pin            string
	Paths, Fetched int
	Bytes          int64
	Complete       bool
}

// AddPrefetchRun records a finished prefetch.
func (db *DB) AddPrefetchRun(ctx context.Context, r PrefetchRun) error {
	_, err := db.write.ExecContext(ctx, `INSERT INTO prefetch_runs (finished, pin, paths, fetched, bytes, complete) VALUES (?,?,?,?,?,?)`,
		r.Finished.Unix(), r.Pin, r.Paths, r.Fetched, r.Bytes, r.Complete)
	return err
}

// RecentPrefetchRuns returns the last n prefetches, newest first.
func (db *DB) RecentPrefetchRuns(ctx context.Context, n int) ([]PrefetchRun, error) {
	return queryAll(ctx, db.read, scanPrefetchRun,
		`SELECT finished, pin, paths, fetched, bytes, complete FROM prefetch_runs ORDER BY id DESC LIMIT ?`, n)
}
