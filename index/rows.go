package index

import (
	"context"
	"database/sql"
	"time"
)

// scanner is a row to scan: *sql.Row or *sql.Rows.
type scanner interface{ Scan(...any) error }

// querier runs queries: the reader pool or a transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// queryAll runs a query and scans every row with scan.
func queryAll[T any](ctx context.Context, q querier, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func scanString(row scanner) (string, error) {
	var s string
	err := row.Scan(&s)
	return s, err
}

func scanTraffic(row scanner) (Traffic, error) {
	var t Traffic
	var hour int64
	err := row.Scan(&hour, &t.Served, &t.Upstream, &t.Hits, &t.Misses)
	t.Hour = time.Unix(hour*3600, 0)
	return t, err
}

func scanPrefetchRun(row scanner) (PrefetchRun, error) {
	var r PrefetchRun
	var finished int64
	err := row.Scan(&finished, &r.Pin, &r.Paths, &r.Fetched, &r.Bytes, &r.Complete)
	r.Finished = time.Unix(finished, 0)
	return r, err
}
