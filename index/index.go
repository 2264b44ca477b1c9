// Package index is Larder's SQLite index: narinfos, the NAR files on disk,
// and pins. SQLite runs in WAL mode with one writer connection and a pool of
// readers, so lookups never queue behind a write.
package index

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"sort"
	"strings"
	"time"

	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver
)

// ErrNotFound is returned when a row does not exist.
var ErrNotFound = errors.New("not found in index")

//go:embed migrations/*.sql
var migrations embed.FS

// DB is the index. Reads go to a pool, writes to a single connection.
type DB struct {
	read  *sql.DB
	write *sql.DB
}

// Open opens (creating if needed) the index at path and applies migrations.
func Open(path string) (*DB, error) {
	dsn := func(mode string) string {
		q := url.Values{}
		q.Set("_journal_mode", "WAL")
		q.Set("_busy_timeout", "10000")
		q.Set("_foreign_keys", "on")
		q.Set("_synchronous", "NORMAL")
		q.Set("_txlock", "immediate")
		if mode != "" {
			q.Set("mode", mode)
		}
		return "file:" + path + "?" + q.Encode()
	}
	write, err := sql.Open("sqlite3", dsn(""))
	if err != nil {
		return nil, fmt.Errorf("open index %s: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	if err := migrate(write); err != nil {
		write.Close()
		return nil, fmt.Errorf("migrate index %s: %w", path, err)
	}
	read, err := sql.Open("sqlite3", dsn(""))
	if err != nil {
		write.Close()
		return nil, err
	}
	read.SetMaxOpenConns(8)
	read.SetMaxIdleConns(8)
	return &DB{read: read, write: write}, nil
}

// Close closes both connection pools.
func (db *DB) Close() error {
	return errors.Join(db.read.Close(), db.write.Close())
}

// migrate applies every embedded migration newer than PRAGMA user_version,
// each in its own transaction together with the version bump.
func migrate(db *sql.DB) error {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	var version int
	if err := db.QueryRow("PRAGMA user_version").Scan(&version); err != nil {
		return err
	}
	for i, name := range names {
		if i < version {
			continue
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		tx, err := db.Begin()
		if err != nil {
			return err
		}
		if _, err := tx.Exec(string(body)); err != nil {
			tx.Rollback()
			return fmt.Errorf("%s: %w", name, err)
		}
		if _, err := tx.Exec(fmt.Sprintf("PRAGMA user_version = %d", i+1)); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	if version > len(names) {
		return fmt.Errorf("index schema version %d is newer than this Larder (%d)", version, len(names))
	}
	return nil
}

func now() int64 { return time.Now().Unix() }

// NarInfo is one accepted narinfo.
type NarInfo struct {
	Hash       string // store path hash part
	StorePath  string
	NarHash    string
	NarSize    int64
	References []string
	Text       string // the narinfo as accepted
	Source     string
	NarURL     string
	CreatedAt  time.Time
	LastAccess time.Time
}

const narInfoCols = `hash, store_path, nar_hash, nar_size, refs, narinfo, source, nar_url, created_at, last_access`

func scanNarInfo(row scanner) (*NarInfo, error) {
	var n NarInfo
	var refs string
	var created, access int64
	err := row.Scan(&n.Hash, &n.StorePath, &n.NarHash, &n.NarSize, &refs, &n.Text, &n.Source, &n.NarURL, &created, &access)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	n.References = strings.Fields(refs)
	n.CreatedAt, n.LastAccess = time.Unix(created, 0), time.Unix(access, 0)
	return &n, nil
}

// NarInfo returns the narinfo of a store path hash part.
func (db *DB) NarInfo(ctx context.Context, hash string) (*NarInfo, error) {
	return scanNarInfo(db.read.QueryRowContext(ctx, `SELECT `+narInfoCols+` FROM narinfos WHERE hash = ?`, hash))
}

// NarInfosByNarHash returns the narinfos whose NAR has this hash.
func (db *DB) NarInfosByNarHash(ctx context.Context, narHash string) ([]*NarInfo, error) {
	return queryAll(ctx, db.read, scanNarInfo, `SELECT `+narInfoCols+` FROM narinfos WHERE nar_hash = ?`, narHash)
}

const upsertNarInfo = `INSERT INTO narinfos (` + narInfoCols + `) VALUES (?,?,?,?,?,?,?,?,?,?)
	ON CONFLICT(hash) DO UPDATE SET store_path=excluded.store_path, nar_hash=excluded.nar_hash,
	nar_size=excluded.nar_size, refs=excluded.refs, narinfo=excluded.narinfo, source=excluded.source,
	nar_url=excluded.nar_url, last_access=excluded.last_access`

func narInfoArgs(n *NarInfo, t int64) []any {
	return []any{n.Hash, n.StorePath, n.NarHash, n.NarSize, strings.Join(n.References, " "), n.Text, n.Source, n.NarURL, t, t}
}

// PutNarInfo inserts or replaces a narinfo.
func (db *DB) PutNarInfo(ctx context.Context, n *NarInfo) error {
	_, err := db.write.ExecContext(ctx, upsertNarInfo, narInfoArgs(n, now())...)
	if err != nil {
		return fmt.Errorf("index narinfo %s: %w", n.Hash, err)
	}
	return nil
}

// DeleteNarInfo removes a narinfo.
func (db *DB) DeleteNarInfo(ctx context.Context, hash string) error {
	_, err := db.write.ExecContext(ctx, `DELETE FROM narinfos WHERE hash = ?`, hash)
	return err
}

// NarFile is one verified NAR file on disk.
type NarFile struct {
	NarHash     string
	Compression string
	FileHash    string
	FileSize    int64
	NarSize     int64
	CreatedAt   time.Time
	LastAccess  time.Time
}

const narFileCols = `nar_hash, compression, file_hash, file_size, nar_size, created_at, last_access`

func scanNarFile(row scanner) (*NarFile, error) {
	var f NarFile
	var created, access int64
	err := row.Scan(&f.NarHash, &f.Compression, &f.FileHash, &f.FileSize, &f.NarSize, &created, &access)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	f.CreatedAt, f.LastAccess = time.Unix(created, 0), time.Unix(access, 0)
	return &f, nil
}

// NarFile returns the file of a NAR in one compression.
func (db *DB) NarFile(ctx context.Context, narHash, compression string) (*NarFile, error) {
	return scanNarFile(db.read.QueryRowContext(ctx,
		`SELECT `+narFileCols+` FROM nar_files WHERE nar_hash = ? AND compression = ?`, narHash, compression))
}

// NarFiles returns every stored representation of a NAR, smallest first.
func (db *DB) NarFiles(ctx context.Context, narHash string) ([]*NarFile, error) {
	return queryAll(ctx, db.read, scanNarFile,
		`SELECT `+narFileCols+` FROM nar_files WHERE nar_hash = ? ORDER BY file_size`, narHash)
}

// PutNarFile records a committed NAR file.
func (db *DB) PutNarFile(ctx context.Context, f *NarFile) error {
	t := now()
	_, err := db.write.ExecContext(ctx, `INSERT INTO nar_files (`+narFileCols+`) VALUES (?,?,?,?,?,?,?)
		ON CONFLICT(nar_hash, compression) DO UPDATE SET file_hash=excluded.file_hash,
		file_size=excluded.file_size, nar_size=excluded.nar_size, last_access=excluded.last_access`,
		f.NarHash, f.Compression, f.FileHash, f.FileSize, f.NarSize, t, t)
	if err != nil {
		return fmt.Errorf("index nar file %s: %w", f.NarHash, err)
	}
	return nil
}

// DeleteNarFile forgets a NAR file (for example one found missing on disk).
func (db *DB) DeleteNarFile(ctx context.Context, narHash, compression string) error {
	_, err := db.write.ExecContext(ctx, `DELETE FROM nar_files WHERE nar_hash = ? AND compression = ?`, narHash, compression)
	return err
}

// Touch records accesses in one transaction; callers batch them so that hits
// do not each cost a write.
func (db *DB) Touch(ctx context.Context, narInfoHashes, narHashes []string, at time.Time) error {
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, h := range narInfoHashes {
		if _, err := tx.ExecContext(ctx, `UPDATE narinfos SET last_access = ? WHERE hash = ?`, at.Unix(), h); err != nil {
			return err
		}
	}
	for _, h := range narHashes {
		if _, err := tx.ExecContext(ctx, `UPDATE nar_files SET last_access = ? WHERE nar_hash = ?`, at.Unix(), h); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Counts returns the number of narinfos and NAR files and the bytes on disk.
func (db *DB) Counts(ctx context.Context) (narinfos, files, bytes int64, err error) {
	err = db.read.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM narinfos),
		(SELECT count(*) FROM nar_files), (SELECT coalesce(sum(file_size),0) FROM nar_files)`).Scan(&narinfos, &files, &bytes)
	return
}

// PutNarInfosBulk inserts many narinfos in one transaction (benchmarks and
// imports of large indexes).
func (db *DB) PutNarInfosBulk(ctx context.Context, rows []*NarInfo) error {
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, upsertNarInfo)
	if err != nil {
		return err
	}
	defer stmt.Close()
	t := now()
	for _, n := range rows {
		if _, err := stmt.ExecContext(ctx, narInfoArgs(n, t)...); err != nil {
			return err
		}
	}
	return tx.Commit()
}
