// Package localstore serves the host's own Nix store: path info read-only
// from Nix's SQLite database, NARs serialised from the file system on the
// fly and checked against the database's NarHash as they stream.
package localstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver

	"github.com/nixlarder/larder/mirror/nixfmt"
)

// ErrNotFound means the local store does not have (or hides) the path.
var ErrNotFound = errors.New("not in the local store")

// Store is a read-only view of a local Nix store.
type Store struct {
	db      *sql.DB
	root    string // prefix of the store directory on disk ("" for /)
	exclude []string

	mu     sync.Mutex
	byHash map[string]string // NarHash → store path, learnt from lookups
}

// Open opens the Nix database of the store under root ("" or "/" for the
// host's own; a directory for a `local?root=DIR` store) read-only. exclude
// holds globs matched against store path basenames and names; matching
// paths are hidden.
func Open(root string, exclude []string) (*Store, error) {
	root = strings.TrimSuffix(root, "/")
	dbPath := root + "/nix/var/nix/db/db.sqlite"
	for _, g := range exclude {
		if _, err := path.Match(g, ""); err != nil {
			return nil, fmt.Errorf("exclude glob %q: %w", g, err)
		}
	}
	q := url.Values{"mode": {"ro"}, "_busy_timeout": {"5000"}}
	db, err := sql.Open("sqlite3", "file:"+dbPath+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("Nix database %s: %w", dbPath, err)
	}
	return &Store{db: db, root: root, exclude: exclude, byHash: map[string]string{}}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

func (s *Store) hidden(storePath string) bool {
	base := nixfmt.BaseName(storePath)
	for _, g := range s.exclude {
		if ok, _ := path.Match(g, base); ok {
			return true
		}
		if ok, _ := path.Match(g, base[min(33, len(base)):]); ok {
			return true
		}
	}
	return false
}

// NarInfo returns the path info of a hash part, URL and compression unset.
func (s *Store) NarInfo(ctx context.Context, hash string) (*nixfmt.NarInfo, error) {
	var id int64
	var p, narHash string
	var deriver, sigs, ca sql.NullString
	var narSize sql.NullInt64
	prefix := nixfmt.StoreDir + "/" + hash + "-"
	err := s.db.QueryRowContext(ctx, `SELECT id, path, hash, deriver, narSize, sigs, ca FROM ValidPaths
		WHERE path > ? AND path < ? LIMIT 1`, prefix, nixfmt.StoreDir+"/"+hash+".").
		Scan(&id, &p, &narHash, &deriver, &narSize, &sigs, &ca)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && s.hidden(p)) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	h, err := nixfmt.ParseHash(narHash)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	ni := &nixfmt.NarInfo{StorePath: p, NarHash: h, NarSize: uint64(narSize.Int64), CA: ca.String,
		Deriver: nixfmt.BaseName(deriver.String), Sigs: strings.Fields(sigs.String)}
	if ni.References, err = s.references(ctx, id); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.byHash[h.String()] = p
	s.mu.Unlock()
	return ni, nil
}

func (s *Store) references(ctx context.Context, id int64) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT v.path FROM Refs r JOIN ValidPaths v ON v.id = r.reference
		WHERE r.referrer = ? ORDER BY v.path`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var refs []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return nil, err
		}
		refs = append(refs, nixfmt.BaseName(p))
	}
	return refs, rows.Err()
}

// PathOf returns the store path whose NAR has this hash.
func (s *Store) PathOf(ctx context.Context, narHash nixfmt.Hash) (string, error) {
	s.mu.Lock()
	p, ok := s.byHash[narHash.String()]
	s.mu.Unlock()
	if !ok {
		// Not asked for its narinfo since start: look it up (a scan, as
		// Nix keeps no index on hash).
		err := s.db.QueryRowContext(ctx, `SELECT path FROM ValidPaths WHERE hash = ?`, "sha256:"+narHash.Base16()).Scan(&p)
		if errors.Is(err, sql.ErrNoRows) {
			return "", ErrNotFound
		}
		if err != nil {
			return "", err
		}
	}
	if s.hidden(p) {
		return "", ErrNotFound
	}
	return p, nil
}

// Dump writes a path's NAR to w, all but its last byte, then checks the
// whole against NarHash and NarSize and only then writes the last byte: a
// path changed or deleted while being served gives a failed transfer, never
// a complete wrong NAR.
func (s *Store) Dump(ctx context.Context, ni *nixfmt.NarInfo, w io.Writer) error {
	hw := &holdBack{w: w, sum: sha256.New()}
	if err := nixfmt.DumpPath(hw, s.root+ni.StorePath); err != nil {
		return fmt.Errorf("serialise %s: %w", ni.StorePath, err)
	}
	got := nixfmt.Hash{Algo: "sha256", Digest: hw.sum.Sum(nil)}
	if uint64(hw.n) != ni.NarSize || !got.Equal(ni.NarHash) {
		return fmt.Errorf("%s changed on disk: NAR is %d bytes with %s, Nix's database says %d bytes with %s",
			ni.StorePath, hw.n, got, ni.NarSize, ni.NarHash)
	}
	return hw.release()
}

// holdBack passes bytes through, keeping the last one back until release.
type holdBack struct {
	w    io.Writer
	sum  hash.Hash
	n    int64
	last []byte // zero or one byte
}

func (h *holdBack) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	h.sum.Write(p)
	h.n += int64(len(p))
	if len(h.last) > 0 {
		if _, err := h.w.Write(h.last); err != nil {
			return 0, err
		}
	}
	if _, err := h.w.Write(p[:len(p)-1]); err != nil {
		return 0, err
	}
	h.last = append(h.last[:0], p[len(p)-1])
	return len(p), nil
}

func (h *holdBack) release() error {
	_, err := h.w.Write(h.last)
	return err
}

// Listing is the `.ls` file of a local path: its file tree as JSON, in the
// format Nix writes with write-nar-listing (without NAR offsets).
func (s *Store) Listing(ctx context.Context, hash string) ([]byte, error) {
	ni, err := s.NarInfo(ctx, hash)
	if err != nil {
		return nil, err
	}
	root, err := listNode(s.root + ni.StorePath)
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{"version": 1, "root": root})
}

func listNode(p string) (map[string]any, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return nil, err
	}
	switch mode := fi.Mode(); {
	case mode.IsRegular():
		node := map[string]any{"type": "regular", "size": fi.Size()}
		if mode&0o111 != 0 {
			node["executable"] = true
		}
		return node, nil
	case mode&os.ModeSymlink != 0:
		target, err := os.Readlink(p)
		return map[string]any{"type": "symlink", "target": target}, err
	case mode.IsDir():
		names, err := readDirNames(p)
		if err != nil {
			return nil, err
		}
		entries := map[string]any{}
		for _, n := range names {
			if entries[n], err = listNode(filepath.Join(p, n)); err != nil {
				return nil, err
			}
		}
		return map[string]any{"type": "directory", "entries": entries}, nil
	}
	return nil, fmt.Errorf("%s: file type %v cannot be in a NAR", p, fi.Mode().Type())
}

func readDirNames(p string) ([]string, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}
