package main

import (
	"path/filepath"
	"testing"
	"time"
)

// Every setting is a flag, an environment variable LARDER_<KEY> and a
// config-file key, with flag > environment > file > default.
func TestConfigPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "larder.yaml")
	writeFile(t, file, "priority: 11\nnegative-ttl: 1m\nupstream: [http://a.example, http://b.example]\nmax-size: 2G\n")
	t.Setenv("LARDER_PRIORITY", "22")
	t.Setenv("LARDER_STALL_TIMEOUT", "7s")
	t.Setenv("LARDER_TRUSTED_KEY", "k1:AAAA,k2:BBBB")

	cfg, err := loadServeConfig([]string{"--config", file, "--data-dir", t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Priority != 22 || cfg.StallTimeout != 7*time.Second || cfg.NegativeTTL != time.Minute ||
		len(cfg.Upstreams) != 2 || len(cfg.TrustedKeys) != 2 || cfg.MaxSize != 2<<30 || cfg.Listen != ":5000" {
		t.Fatalf("environment over file over defaults: %+v", cfg)
	}
	cfg, err = loadServeConfig([]string{"--config", file, "--data-dir", t.TempDir(), "--priority", "33"})
	if err != nil || cfg.Priority != 33 {
		t.Fatalf("flag over environment: %d %v", cfg.Priority, err)
	}
	for _, bad := range [][]string{{"--negative-ttl", "-1s"}, {"--local-store-compression", "xz"}, {"--recompress", "xz"}, {"--max-size", "lots"}} {
		if _, err := loadServeConfig(append(bad, "--data-dir", t.TempDir())); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
