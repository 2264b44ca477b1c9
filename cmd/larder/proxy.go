package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/nixlarder/larder/mirror/urlcache"
	"github.com/nixlarder/larder/serve"
	"github.com/nixlarder/larder/serve/fwdproxy"
)

// startProxy runs the caching forward proxy on cfg.ProxyListen.
func startProxy(cfg *serveConfig, dd *dataDir, log *slog.Logger) (*http.Server, *serve.ProxyInfo, *urlcache.Cache, error) {
	ca, err := fwdproxy.LoadOrCreateCA(cfg.DataDir)
	if err != nil {
		return nil, nil, nil, err
	}
	allow, err := fwdproxy.ParseAllow(cfg.ProxyAllow)
	if err != nil {
		return nil, nil, nil, err
	}
	cache := urlcache.New(urlcache.Config{Index: dd.idx, Blobs: dd.blobs, Client: originClient(cfg),
		MaxSize: cfg.ProxyMaxSize, Offline: cfg.Offline, ImmutableAfter: cfg.ProxyImmutableAfter, Revalidate: cfg.ProxyRevalidate})
	ln, err := net.Listen("tcp", cfg.ProxyListen)
	if err != nil {
		return nil, nil, nil, err
	}
	srv := &http.Server{Handler: fwdproxy.New(cache, fwdproxy.Options{CA: ca, Allow: allow, ConnectPorts: cfg.ProxyConnectPorts, Log: log}),
		ReadHeaderTimeout: 30 * time.Second}
	go srv.Serve(ln)
	log.Info("forward proxy for fixed-output fetches", "listen", ln.Addr().String(),
		"ca", filepath.Join(cfg.DataDir, fwdproxy.CACertFile), "allow", cfg.ProxyAllow)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	pemBytes, err := os.ReadFile(filepath.Join(cfg.DataDir, fwdproxy.CACertFile))
	return srv, &serve.ProxyInfo{Port: port, CAPEM: string(pemBytes)}, cache, err
}

// originClient fetches from origins directly (never through an environment
// proxy, which could be Larder itself) and verifies their certificates.
func originClient(cfg *serveConfig) *http.Client {
	dialer := &net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 30 * time.Second}
	return &http.Client{Transport: &http.Transport{
		DialContext: dialer.DialContext, TLSHandshakeTimeout: cfg.ConnectTimeout,
		ResponseHeaderTimeout: cfg.HeaderTimeout, MaxIdleConnsPerHost: 16, ForceAttemptHTTP2: true,
	}}
}

// runCA prints the proxy CA certificate (creating it on first use) for the
// clients' NIX_SSL_CERT_FILE bundle.
func runCA(args []string) error {
	fs := readerFlags("ca")
	if err := fs.Parse(args); err != nil {
		return helpIsFine(err)
	}
	dir, _ := fs.GetString("data-dir")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if _, err := fwdproxy.LoadOrCreateCA(dir); err != nil {
		return err
	}
	pem, err := os.ReadFile(filepath.Join(dir, fwdproxy.CACertFile))
	if err != nil {
		return err
	}
	_, err = fmt.Print(string(pem))
	return err
}
