package index

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// URL is a response kept by the forward proxy.
type URL struct {
	URL, SHA256, ContentType, ETag, LastModified string
	Size                                         int64
	FetchedAt                                    time.Time
}

// URL returns the kept response for a normalised URL.
func (db *DB) URL(ctx context.Context, url string) (*URL, error) {
	var u URL
	var fetched int64
	err := db.read.QueryRowContext(ctx, `SELECT url, sha256, size, content_type, etag, last_modified, fetched_at FROM urls WHERE url = ?`, url).
		Scan(&u.URL, &u.SHA256, &u.Size, &u.ContentType, &u.ETag, &u.LastModified, &fetched)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	u.FetchedAt = time.Unix(fetched, 0)
	return &u, err
}

// PutURL records (or replaces) a kept response.
func (db *DB) PutURL(ctx context.Context, u *URL) error {
	_, err := db.write.ExecContext(ctx, `INSERT INTO urls (url, sha256, size, content_type, etag, last_modified, fetched_at, last_access)
		VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(url) DO UPDATE SET sha256=excluded.sha256, size=excluded.size,
		content_type=excluded.content_type, etag=excluded.etag, last_modified=excluded.last_modified,
		fetched_at=excluded.fetched_at, last_access=excluded.last_access`,
		u.URL, u.SHA256, u.Size, u.ContentType, u.ETag, u.LastModified, u.FetchedAt.Unix(), now())
	return err
}

// PinURLs adds URLs to a pin.
func (db *DB) PinURLs(ctx context.Context, pin string, urls []string) error {
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, u := range urls {
		if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO pin_urls (pin, url) VALUES (?, ?)`, pin, u); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// URLsOfPin lists the URLs recorded under a pin.
func (db *DB) URLsOfPin(ctx context.Context, pin string) ([]string, error) {
	return queryAll(ctx, db.read, scanString, `SELECT url FROM pin_urls WHERE pin = ? ORDER BY url`, pin)
}
