// Package fwdproxy is Larder's caching HTTP(S) forward proxy for the sources
// of fixed-output derivations, built on elazarl/goproxy: HTTPS is
// intercepted with Larder's own CA so bodies can be kept and replayed.
package fwdproxy

import (
	"crypto/tls"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/elazarl/goproxy"
)

// Server answers through a Cache.
type Server interface {
	Serve(r *http.Request) *http.Response
}

// Options configure the proxy.
type Options struct {
	CA           *tls.Certificate
	Allow        []netip.Prefix // client addresses allowed
	ConnectPorts []string       // CONNECT targets allowed (default 443)
	Log          *slog.Logger
}

// DefaultAllow is loopback and private ranges: never an open proxy.
var DefaultAllow = []string{"127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "fe80::/10"}

// ParseAllow reads CIDRs.
func ParseAllow(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("proxy-allow %q: %w", s, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// New returns the proxy handler.
func New(cache interface {
	Serve(r *http.Request) *http.Response
}, opts Options) http.Handler {
	if len(opts.ConnectPorts) == 0 {
		opts.ConnectPorts = []string{"443"}
	}
	p := goproxy.NewProxyHttpServer()
	p.Logger = log.New(discard{}, "", 0)
	mitm := &goproxy.ConnectAction{Action: goproxy.ConnectMitm, TLSConfig: goproxy.TLSConfigFromCA(opts.CA)}
	p.OnRequest().HandleConnectFunc(func(host string, ctx *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
		if !allowed(ctx.Req.RemoteAddr, opts.Allow) {
			opts.Log.Warn("proxy: CONNECT refused, client not allowed", "client", ctx.Req.RemoteAddr, "host", host)
			return goproxy.RejectConnect, host
		}
		if _, port, err := net.SplitHostPort(host); err != nil || !contains(opts.ConnectPorts, port) {
			opts.Log.Warn("proxy: CONNECT refused, port not allowed", "host", host)
			return goproxy.RejectConnect, host
		}
		return mitm, host
	})
	p.OnRequest().DoFunc(func(r *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
		if !allowed(r.RemoteAddr, opts.Allow) {
			return r, goproxy.NewResponse(r, "text/plain", http.StatusForbidden, "larder: this client may not use the proxy\n")
		}
		return r, cache.Serve(r)
	})
	return p
}

func allowed(remote string, allow []netip.Prefix) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	addr, err := netip.ParseAddr(strings.TrimPrefix(strings.TrimSuffix(host, "]"), "["))
	if err != nil {
		return false
	}
	addr = addr.Unmap()
	for _, p := range allow {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
