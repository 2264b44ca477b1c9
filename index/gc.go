package index

import (
	"context"
)

// AllNarFiles returns every NAR file row, least recently used first: the
// order garbage collection evicts in and verification walks.
func (db *DB) AllNarFiles(ctx context.Context) ([]*NarFile, error) {
	return queryAll(ctx, db.read, scanNarFile, `SELECT `+narFileCols+` FROM nar_files ORDER BY last_access, nar_hash`)
}

// EvictNar forgets a NAR and every narinfo that names it, in one
// transaction, so a narinfo never outlives its NAR. It returns the store
// paths that went.
func (db *DB) EvictNar(ctx context.Context, narHash string) ([]string, error) {
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	paths, err := queryAll(ctx, tx, scanString, `SELECT store_path FROM narinfos WHERE nar_hash = ?`, narHash)
	if err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM narinfos WHERE nar_hash = ?`, narHash); err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM nar_files WHERE nar_hash = ?`, narHash); err != nil {
		return nil, err
	}
	return paths, tx.Commit()
}
