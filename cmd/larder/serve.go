package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"github.com/nixlarder/larder/mirror"
	"github.com/nixlarder/larder/mirror/nixfmt"
	"github.com/nixlarder/larder/mirror/upstream"
	"github.com/nixlarder/larder/mirror/urlcache"
	"github.com/nixlarder/larder/serve"
)

func newLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

func runServe(args []string) error {
	cfg, err := loadServeConfig(args)
	if errors.Is(err, pflagHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log := newLogger(cfg.LogLevel)
	metrics := serve.NewMetrics()
	cfg.observe = metrics.ObserveUpstream
	dd, err := openDataDir(cfg, log, true)
	if err != nil {
		return err
	}
	defer dd.Close()
	m := dd.mirror

	var proxyStats *urlcache.Stats // set when the forward proxy runs
	metrics.SetSource(m)
	svc := dd.service()
	metrics.SetPrefetch(svc)
	opts := serve.Options{Priority: cfg.Priority, Log: log, Tools: svc, Metrics: metrics,
		Status: func(ctx context.Context) (*serve.Status, error) {
			m.SyncStats(ctx)
			st, err := serve.BuildStatus(ctx, dd.idx, m.StoreUsage, quickPins(svc), m.UpstreamHealth())
			if err == nil && proxyStats != nil {
				st.Proxy = &serve.ProxyFigures{Hits: proxyStats.Hits.Load(), Misses: proxyStats.Misses.Load(), Saved: proxyStats.BytesServed.Load()}
			}
			return st, err
		},
		PushRequireSig: cfg.PushRequireSig, PushMaxSize: cfg.PushMaxSize}
	if cfg.PushTokenFile != "" {
		if opts.PushTokens, err = readTokens(cfg.PushTokenFile); err != nil {
			return err
		}
		opts.Push = m
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	if cfg.ProxyListen != "" {
		proxySrv, info, cache, err := startProxy(cfg, dd, log)
		if err != nil {
			return fmt.Errorf("proxy: %w", err)
		}
		defer proxySrv.Close()
		opts.Proxy = info
		proxyStats = &cache.Stats
		metrics.SetProxy(proxyStats)
	}
	srv := &http.Server{
		Handler:           serve.New(m, opts),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	logClientSettings(log, ln.Addr(), m.PublicKey(), cfg)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(shutdownCtx)
}

func parseKeys(list []string) ([]nixfmt.PublicKey, error) {
	var keys []nixfmt.PublicKey
	for _, s := range list {
		k, err := nixfmt.ParsePublicKey(s)
		if err != nil {
			return nil, fmt.Errorf("trusted key %q: %w", s, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// buildUpstreams makes the upstream clients in priority order and the keys
// trusted for each one only.
func buildUpstreams(cfg *serveConfig) ([]mirror.Upstream, map[string][]nixfmt.PublicKey, error) {
	var limiter *rate.Limiter
	if cfg.UpstreamRate > 0 {
		burst := int(min(cfg.UpstreamRate, 1<<20))
		limiter = rate.NewLimiter(rate.Limit(cfg.UpstreamRate), burst)
	}
	list := cfg.PerUpstream
	if len(list) == 0 {
		for _, u := range cfg.Upstreams {
			list = append(list, upstreamConfig{URL: u})
		}
	}
	sort.SliceStable(list, func(i, j int) bool { return list[i].Priority < list[j].Priority })
	var ups []mirror.Upstream
	keys := map[string][]nixfmt.PublicKey{}
	for _, u := range list {
		opts := upstream.DefaultOptions()
		opts.ConnectTimeout = cmp.Or(u.ConnectTimeout, cfg.ConnectTimeout)
		opts.HeaderTimeout = cmp.Or(u.HeaderTimeout, cfg.HeaderTimeout)
		opts.StallTimeout = cmp.Or(u.StallTimeout, cfg.StallTimeout)
		opts.Limiter = limiter
		if cfg.observe != nil {
			opts.Observe = cfg.observe(u.URL)
		}
		c, err := upstream.New(u.URL, opts)
		if err != nil {
			return nil, nil, err
		}
		own, err := parseKeys(u.TrustedKeys)
		if err != nil {
			return nil, nil, fmt.Errorf("upstream %s: %w", u.URL, err)
		}
		keys[c.URL()] = own
		ups = append(ups, c)
	}
	return ups, keys, nil
}

// logClientSettings prints what to paste into clients' configuration.
func logClientSettings(log *slog.Logger, addr net.Addr, pub nixfmt.PublicKey, cfg *serveConfig) {
	host, _ := os.Hostname()
	_, port, _ := net.SplitHostPort(addr.String())
	url := fmt.Sprintf("http://%s:%s", host, port)
	log.Info("larder serving", "listen", addr.String(), "data-dir", cfg.DataDir, "upstreams", cfg.Upstreams, "offline", cfg.Offline, "public-key", pub.String())
	fmt.Fprintf(os.Stderr, `
Client settings — NixOS:
  nix.settings.substituters = [ "%[1]s" ];
  nix.settings.trusted-public-keys = [ "%[2]s" ];
Plain nix.conf:
  substituters = %[1]s https://cache.nixos.org
  trusted-public-keys = %[2]s %[3]s

`, url, pub, cacheNixosKey)
}

// readTokens reads push tokens, one a line (blank lines and # comments
// skipped). An empty file is an error: it would silently disable pushing.
func readTokens(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("push token file: %w", err)
	}
	var tokens []string
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			tokens = append(tokens, line)
		}
	}
	if len(tokens) == 0 {
		return nil, fmt.Errorf("push token file %s holds no token", path)
	}
	return tokens, nil
}
