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
	rows, err := db.read.QueryContext(ctx, `SELECT hour, served, upstream, hits, misses FROM traffic WHERE hour >= ? ORDER BY hour`, since.Unix()/3600)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Traffic
	for rows.Next() {
		var t Traffic
		var hour int64
		if err := rows.Scan(&hour, &t.Served, &t.Upstream, &t.Hits, &t.Misses); err != nil {
			return nil, err
		}
		t.Hour = time.Unix(hour*3600, 0)
		out = append(out, t)
	}
	return out, rows.Err()
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
	rows, err := db.read.QueryContext(ctx, `SELECT finished, pin, paths, fetched, bytes, complete FROM prefetch_runs ORDER BY id DESC LIMIT ?`, n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []PrefetchRun
	for rows.Next() {
		var r PrefetchRun
		var finished int64
		if err := rows.Scan(&finished, &r.Pin, &r.Paths, &r.Fetched, &r.Bytes, &r.Complete); err != nil {
			return nil, err
		}
		r.Finished = time.Unix(finished, 0)
		out = append(out, r)
	}
	return out, rows.Err()
}
