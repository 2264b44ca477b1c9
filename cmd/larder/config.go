package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/nixlarder/larder/serve/fwdproxy"
)

// cacheNixosKey is the key cache.nixos.org signs with.
const cacheNixosKey = "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY="

// serveConfig is every setting of `larder serve`. Each is a flag, a key of
// the YAML config file and an environment variable LARDER_<KEY>.
type serveConfig struct {
	Listen         string
	DataDir        string
	Upstreams      []string
	TrustedKeys    []string
	SecretKeyFile  string
	Priority       int
	Offline        bool
	Prepull        bool
	NegativeTTL    time.Duration
	UpstreamRate   int64
	ConnectTimeout time.Duration
	HeaderTimeout  time.Duration
	StallTimeout   time.Duration
	LogLevel       string

	LocalStore            bool
	LocalStoreRoot        string
	LocalStoreExclude     []string
	LocalStoreCompression string

	PushTokenFile  string
	PushRequireSig bool
	PushMaxSize    int64
	MaxSize        int64
	Recompress     string

	ProxyListen         string
	ProxyAllow          []string
	ProxyConnectPorts   []string
	ProxyMaxSize        int64
	ProxyImmutableAfter time.Duration
	ProxyRevalidate     bool

	// PerUpstream, from the config file's `upstreams:` list, replaces
	// Upstreams when set.
	PerUpstream []upstreamConfig

	observe func(url string) func(time.Duration, error) // upstream metrics hook
}

// upstreamConfig is one entry of `upstreams:` in the config file: a LAN
// cache (nix-serve, harmonia, another Larder) or cache.nixos.org with its
// own keys, priority and timeouts. Zero values take the global settings.
type upstreamConfig struct {
	URL            string        `mapstructure:"url"`
	TrustedKeys    []string      `mapstructure:"trusted-keys"`
	Priority       int           `mapstructure:"priority"`
	ConnectTimeout time.Duration `mapstructure:"connect-timeout"`
	HeaderTimeout  time.Duration `mapstructure:"header-timeout"`
	StallTimeout   time.Duration `mapstructure:"stall-timeout"`
}

// pflagHelp means --help was asked for and printed.
var pflagHelp = pflag.ErrHelp

func defaultDataDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "larder")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "larder-data"
	}
	return filepath.Join(home, ".local", "share", "larder")
}

// serveFlags declares the flags; their defaults are the embedded defaults.
func serveFlags(name string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.String("config", "", "YAML config file")
	fs.String("listen", ":5000", "address to listen on")
	fs.String("data-dir", defaultDataDir(), "where NARs, the index and keys live")
	fs.StringArray("upstream", []string{"https://cache.nixos.org"}, "upstream cache URL (repeatable, priority order)")
	fs.StringArray("trusted-key", []string{cacheNixosKey}, "public key NAME:BASE64 an upstream narinfo must be signed with (repeatable)")
	fs.String("secret-key-file", "", "signing key (default: <data-dir>/secret-key, created on first start)")
	fs.Int("priority", 30, "nix-cache-info Priority (lower wins; cache.nixos.org is 40)")
	fs.Bool("offline", false, "never contact upstreams")
	fs.Bool("prepull", true, "start NAR downloads as soon as a narinfo is fetched")
	fs.Duration("negative-ttl", 5*time.Minute, "how long an upstream 404 is remembered")
	fs.Int64("upstream-rate", 0, "cap on total upstream bandwidth in bytes/s (0 = none)")
	fs.Duration("connect-timeout", 5*time.Second, "upstream connect timeout")
	fs.Duration("header-timeout", 20*time.Second, "upstream response-header timeout")
	fs.Duration("stall-timeout", 60*time.Second, "abort an upstream body that sends nothing for this long")
	fs.String("log-level", "info", "debug, info, warn or error")
	fs.Bool("local-store", false, "also serve this host's own Nix store, signed with Larder's key (off: a store can hold secrets)")
	fs.String("local-store-root", "", "serve the store under this root instead of / (as local?root=DIR)")
	fs.StringArray("local-store-exclude", nil, "hide local store paths whose basename or name matches this glob (repeatable)")
	fs.String("local-store-compression", "zstd", "compression of NARs made from the local store: zstd or none")
	fs.String("push-token-file", "", "accept `nix copy --to` pushes with a token from this file (one a line); no file, no pushes")
	fs.Bool("push-require-sig", false, "refuse pushed paths not signed by a trusted key")
	fs.String("push-max-size", "8G", "largest accepted upload (suffixes K, M, G)")
	fs.String("proxy-listen", "", "also run the caching forward proxy for fixed-output fetches here (e.g. :3128); off when empty")
	fs.StringArray("proxy-allow", fwdproxy.DefaultAllow, "client networks (CIDR) allowed to use the proxy (repeatable)")
	fs.StringArray("proxy-connect-port", []string{"443"}, "ports CONNECT may reach (repeatable)")
	fs.String("proxy-max-size", "4G", "largest response the proxy keeps; larger ones are cut")
	fs.Duration("proxy-immutable-after", 0, "serve kept responses without asking the origin for this long (0 = forever)")
	fs.Bool("proxy-revalidate", false, "ask the origin (conditionally) before serving a kept response")
	fs.String("recompress", "", "transcode xz/bzip2 NARs to this compression once, in the background (zstd), so LAN clients never pay for xz")
	fs.String("max-size", "0", "keep NAR files under this size (e.g. 200G); least recently used unpinned NARs go first; 0 = no limit")
	return fs
}

// loadServeConfig resolves flags > environment > config file > defaults.
func loadServeConfig(args []string) (*serveConfig, error) {
	fs := serveFlags("serve")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil, pflagHelp
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return configFrom(fs)
}

// configFrom reads the serve settings of a parsed flag set (which may hold
// more flags, as prefetch's does) through viper.
func configFrom(fs *pflag.FlagSet) (*serveConfig, error) {
	v := viper.New()
	v.SetEnvPrefix("LARDER")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	var bindErr error
	fs.VisitAll(func(f *pflag.Flag) {
		// BindEnv for every key: without it env-only values never reach
		// the typed getters (viper#761).
		bindErr = errors.Join(bindErr, v.BindPFlag(f.Name, f), v.BindEnv(f.Name))
	})
	if bindErr != nil {
		return nil, bindErr
	}
	if file := v.GetString("config"); file != "" {
		v.SetConfigFile(file)
		if err := v.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("config file %s: %w", file, err)
		}
	}
	c := &serveConfig{
		Listen: v.GetString("listen"), DataDir: v.GetString("data-dir"),
		Upstreams: stringList(v, "upstream"), TrustedKeys: stringList(v, "trusted-key"),
		SecretKeyFile: v.GetString("secret-key-file"), Priority: v.GetInt("priority"),
		Offline: v.GetBool("offline"), Prepull: v.GetBool("prepull"),
		NegativeTTL: v.GetDuration("negative-ttl"), UpstreamRate: v.GetInt64("upstream-rate"),
		ConnectTimeout: v.GetDuration("connect-timeout"), HeaderTimeout: v.GetDuration("header-timeout"),
		StallTimeout: v.GetDuration("stall-timeout"), LogLevel: v.GetString("log-level"),
		LocalStore: v.GetBool("local-store"), LocalStoreRoot: v.GetString("local-store-root"),
		LocalStoreExclude: stringList(v, "local-store-exclude"), LocalStoreCompression: v.GetString("local-store-compression"),
		PushTokenFile: v.GetString("push-token-file"), PushRequireSig: v.GetBool("push-require-sig"),
	}
	var err error
	if c.PushMaxSize, err = parseSize(v.GetString("push-max-size")); err != nil {
		return nil, fmt.Errorf("push-max-size: %w", err)
	}
	c.Recompress = v.GetString("recompress")
	if c.Recompress != "" && c.Recompress != "zstd" {
		return nil, fmt.Errorf("recompress: only zstd is supported, not %q", c.Recompress)
	}
	c.ProxyListen, c.ProxyAllow, c.ProxyConnectPorts = v.GetString("proxy-listen"), stringList(v, "proxy-allow"), stringList(v, "proxy-connect-port")
	c.ProxyImmutableAfter, c.ProxyRevalidate = v.GetDuration("proxy-immutable-after"), v.GetBool("proxy-revalidate")
	if c.ProxyMaxSize, err = parseSize(v.GetString("proxy-max-size")); err != nil {
		return nil, fmt.Errorf("proxy-max-size: %w", err)
	}
	if c.MaxSize, err = parseSize(v.GetString("max-size")); err != nil {
		return nil, fmt.Errorf("max-size: %w", err)
	}
	if err := v.UnmarshalKey("upstreams", &c.PerUpstream); err != nil {
		return nil, fmt.Errorf("upstreams: %w", err)
	}
	return c, c.validate()
}

// stringList reads a list key; from the environment it is split on commas
// and white space.
func stringList(v *viper.Viper, key string) []string {
	var out []string
	for _, s := range v.GetStringSlice(key) {
		for _, part := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' }) {
			out = append(out, part)
		}
	}
	return out
}

func (c *serveConfig) validate() error {
	if c.DataDir == "" {
		return fmt.Errorf("data-dir must be set")
	}
	if c.NegativeTTL < 0 || c.UpstreamRate < 0 {
		return fmt.Errorf("negative-ttl and upstream-rate must not be negative")
	}
	if c.LocalStoreCompression != "zstd" && c.LocalStoreCompression != "none" {
		return fmt.Errorf("local-store-compression must be zstd or none, not %q", c.LocalStoreCompression)
	}
	if c.SecretKeyFile == "" {
		c.SecretKeyFile = filepath.Join(c.DataDir, "secret-key")
	}
	for i, u := range c.PerUpstream {
		if u.URL == "" {
			return fmt.Errorf("upstreams[%d]: url is required", i)
		}
	}
	return nil
}
