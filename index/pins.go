package index

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// Pin is a named set of closure roots kept for offline use.
type Pin struct {
	Name      string
	Roots     []string // full store paths
	CreatedAt time.Time
	UpdatedAt time.Time
}

// SetPin records (or replaces) the roots of a pin in one transaction, so a
// pin is never half-written.
func (db *DB) SetPin(ctx context.Context, name string, roots []string) error {
	if name == "" || len(roots) == 0 {
		return fmt.Errorf("pin %q: a name and at least one root are needed", name)
	}
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	t := now()
	if _, err := tx.ExecContext(ctx, `INSERT INTO pins (name, created_at, updated_at) VALUES (?, ?, ?)
		ON CONFLICT(name) DO UPDATE SET updated_at = excluded.updated_at`, name, t, t); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM pin_roots WHERE pin = ?`, name); err != nil {
		return err
	}
	for _, r := range roots {
		if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO pin_roots (pin, store_path) VALUES (?, ?)`, name, r); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// DeletePin removes a pin; ErrNotFound if there is none of that name.
func (db *DB) DeletePin(ctx context.Context, name string) error {
	res, err := db.write.ExecContext(ctx, `DELETE FROM pins WHERE name = ?`, name)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// Pins lists every pin with its roots, by name.
func (db *DB) Pins(ctx context.Context) ([]*Pin, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT p.name, p.created_at, p.updated_at, r.store_path
		FROM pins p JOIN pin_roots r ON r.pin = p.name ORDER BY p.name, r.store_path`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Pin
	for rows.Next() {
		var name, root string
		var created, updated int64
		if err := rows.Scan(&name, &created, &updated, &root); err != nil {
			return nil, err
		}
		if len(out) == 0 || out[len(out)-1].Name != name {
			out = append(out, &Pin{Name: name, CreatedAt: time.Unix(created, 0), UpdatedAt: time.Unix(updated, 0)})
		}
		p := out[len(out)-1]
		p.Roots = append(p.Roots, root)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, rows.Err()
}

// Pin returns one pin; ErrNotFound if there is none of that name.
func (db *DB) Pin(ctx context.Context, name string) (*Pin, error) {
	pins, err := db.Pins(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range pins {
		if p.Name == name {
			return p, nil
		}
	}
	return nil, ErrNotFound
}

// StorePaths lists every store path whose narinfo and a NAR file are indexed.
func (db *DB) StorePaths(ctx context.Context) ([]string, error) {
	return queryAll(ctx, db.read, scanString, `SELECT n.store_path FROM narinfos n
		WHERE EXISTS (SELECT 1 FROM nar_files f WHERE f.nar_hash = n.nar_hash) ORDER BY n.store_path`)
}
