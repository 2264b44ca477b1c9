package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/nixlarder/larder/mirror/nixfmt"
)

// runKeygen writes a key pair in the format of nix-store --generate-binary-cache-key.
func runKeygen(args []string) error {
	if len(args) != 3 {
		return errors.New("usage: larder keygen NAME SECRET_FILE PUBLIC_FILE")
	}
	key, err := nixfmt.GenerateKey(args[0])
	if err != nil {
		return err
	}
	if err := writeNew(args[1], key.String(), 0o600); err != nil {
		return err
	}
	return writeNew(args[2], key.Public().String(), 0o644)
}

// writeNew refuses to overwrite: losing a signing key is not undoable.
func writeNew(path, content string, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// loadOrCreateKey reads the signing key, creating "<hostname>-1" on first start.
func loadOrCreateKey(path string) (nixfmt.SecretKey, bool, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		k, err := nixfmt.ParseSecretKey(strings.TrimSpace(string(data)))
		if err != nil {
			return k, false, fmt.Errorf("secret key %s: %w", path, err)
		}
		return k, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nixfmt.SecretKey{}, false, err
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "larder"
	}
	k, err := nixfmt.GenerateKey(host + "-1")
	if err != nil {
		return k, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return k, false, err
	}
	if err := writeNew(path, k.String(), 0o600); err != nil {
		return k, false, err
	}
	pub := strings.TrimSuffix(path, filepath.Ext(path)) + ".pub"
	if filepath.Base(path) == "secret-key" {
		pub = filepath.Join(filepath.Dir(path), "public-key")
	}
	os.Remove(pub)
	return k, true, writeNew(pub, k.Public().String(), 0o644)
}
