package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nixlarder/larder/index"
	"github.com/nixlarder/larder/mirror"
	"github.com/nixlarder/larder/mirror/blob"
	"github.com/nixlarder/larder/mirror/localstore"
	"github.com/nixlarder/larder/mirror/nixfmt"
	"github.com/nixlarder/larder/prefetch"
)

// dataDir is an opened data dir: index, blobs and the mirror over them.
type dataDir struct {
	idx    *index.DB
	mirror *mirror.Mirror
	blobs  *blob.Disk
	lock   *os.File
	hasKey bool
}

// openDataDir opens cfg.DataDir. The owner (a server, or an in-process
// prefetch) takes the data dir's lock and may clean temp files; a reader
// (check, pins) takes no lock, never cleans, and never contacts upstreams.
func openDataDir(cfg *serveConfig, log *slog.Logger, owner bool) (*dataDir, error) {
	if !owner {
		return openReadOnly(cfg, log)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, err
	}
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	dd, err := openOwned(cfg, log)
	if err != nil {
		lock.Close()
		return nil, err
	}
	dd.lock = lock
	return dd, nil
}

// lockDataDir makes sure one process owns a data dir: two owners would
// delete each other's temp files.
func lockDataDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("data dir %s is in use by another larder (a running server? then use --server): %w", dir, err)
	}
	return f, nil
}

func openOwned(cfg *serveConfig, log *slog.Logger) (*dataDir, error) {
	key, created, err := loadOrCreateKey(cfg.SecretKeyFile)
	if err != nil {
		return nil, err
	}
	if created {
		log.Info("created signing key", "file", cfg.SecretKeyFile, "name", key.Name)
	}
	trusted, err := parseKeys(cfg.TrustedKeys)
	if err != nil {
		return nil, err
	}
	blobs, err := blob.NewDisk(filepath.Join(cfg.DataDir, "store"))
	if err != nil {
		return nil, err
	}
	ups, upKeys, err := buildUpstreams(cfg)
	if err != nil {
		return nil, err
	}
	var local mirror.LocalStore
	if cfg.LocalStore {
		ls, err := localstore.Open(cfg.LocalStoreRoot, cfg.LocalStoreExclude)
		if err != nil {
			return nil, fmt.Errorf("--local-store: %w", err)
		}
		local = ls
	}
	idx, err := index.Open(filepath.Join(cfg.DataDir, "index.db"))
	if err != nil {
		return nil, err
	}
	m := mirror.New(mirror.Config{
		Index: idx, Blobs: blobs, Upstreams: ups, TrustedKeys: trusted, UpstreamKeys: upKeys, Key: key,
		Offline: cfg.Offline, Prepull: cfg.Prepull, NegativeTTL: cfg.NegativeTTL, Log: log,
		Local: local, LocalCompression: cfg.LocalStoreCompression, MaxSize: cfg.MaxSize, Recompress: cfg.Recompress,
	})
	return &dataDir{idx: idx, mirror: m, blobs: blobs, hasKey: true}, nil
}

func openReadOnly(cfg *serveConfig, log *slog.Logger) (*dataDir, error) {
	blobs, err := blob.OpenDisk(filepath.Join(cfg.DataDir, "store"))
	if err != nil {
		return nil, err
	}
	idx, err := index.Open(filepath.Join(cfg.DataDir, "index.db"))
	if err != nil {
		return nil, err
	}
	// The key, if the data dir has one, signs narinfos for export; a reader
	// never creates one.
	var key nixfmt.SecretKey
	if data, err := os.ReadFile(cfg.SecretKeyFile); err == nil {
		if key, err = nixfmt.ParseSecretKey(string(data)); err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.SecretKeyFile, err)
		}
	}
	m := mirror.New(mirror.Config{Index: idx, Blobs: blobs, Offline: true, Key: key, MaxSize: cfg.MaxSize, Log: log})
	return &dataDir{idx: idx, mirror: m, blobs: blobs, hasKey: key.Key != nil}, nil
}

func (d *dataDir) service() *prefetch.Service {
	return &prefetch.Service{
		Engine:   prefetch.Engine{Source: d.mirror, Pins: d.idx},
		Store:    d.mirror,
		PinList:  d.idx,
		CA:       d.mirror,
		Runs:     d.idx,
		URLPins:  d.idx,
		Interval: time.Second,
	}
}

func (d *dataDir) Close() error {
	d.mirror.Close()
	err := d.idx.Close()
	if d.lock != nil {
		d.lock.Close()
	}
	return err
}
